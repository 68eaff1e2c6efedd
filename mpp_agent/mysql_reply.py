"""A MySQL/MariaDB server's reply to one query, read from its bytes: pure, no I/O.

A probe on a kept connection sends its statements in one ``COM_QUERY`` and reads the whole
reply in a few socket reads; ``ReplyReader`` turns those bytes into result sets. Read packet by
packet through PyMySQL, the same reply cost about 70 Python-level socket reads and packet
objects (most of them ``SHOW SLAVE STATUS``'s column definitions), which was most of a kept
probe's CPU. This module is the spec of what it reads; the probe does the socket reads.

The classic text protocol (protocol 4.1, without ``CLIENT_DEPRECATE_EOF``, as PyMySQL asks for):

* **packet**: payload length (3 bytes, little-endian), sequence id (1 byte, counting from 1 in
  a reply, modulo 256), payload. (A payload of 0xFFFFFF bytes would continue in the next
  packet; it is far past the reader's ``limit``.)
* **reply**: one or more results, each starting with
  * ``0x00``: OK (a statement without rows): affected rows and insert id (length-encoded
    integers), status flags (2 bytes), warnings (2 bytes);
  * ``0xFF``: ERR: error code (2 bytes), ``#`` and the SQLSTATE (5 bytes, optional), the
    message. The reply ends there, whatever statements were left;
  * ``0xFB``: a LOCAL INFILE request: never honoured, a ``ProtocolError``;
  * otherwise the column count (a length-encoded integer), that many column definitions, an
    EOF, the rows, and an EOF (or an ERR in place of a row).
* **EOF**: ``0xFE`` and fewer than 9 bytes: warnings (2 bytes), status flags (2 bytes). Status
  bit 0x0008 (``SERVER_MORE_RESULTS_EXISTS``, also in an OK) says another result follows.
* **column definition**: catalog, schema, table, original table, name, original name
  (length-encoded strings), the length of the fixed fields (a length-encoded integer, 0x0C),
  character set (2 bytes), column length (4), type (1), flags (2), decimals (1), filler (2).
* **row**: one length-encoded string per column; ``0xFB`` is NULL.
* **length-encoded integer**: below 0xFB the byte itself; ``0xFC``, ``0xFD``, ``0xFE``: a 2-,
  3- or 8-byte little-endian integer follows.

Values are typed as PyMySQL types them, so a row never differs from what a cursor gives:
integer types (TINY, SHORT, LONG, LONGLONG, INT24, YEAR) as ``int``; text types, and the NULL
type, as ``str`` in the connection's encoding; text types in the binary character set (63) as
``bytes``; NULL as None. A column of any other type (DECIMAL, FLOAT, dates, JSON, ENUM) makes
the reply ``unsupported``: the caller asks again through PyMySQL's own path.

A reader may be told to keep ``only`` some columns of a result set (by the result set's place
in the reply): the others are stepped over, neither decoded nor typed (their type does not
matter then), and left out of the result set's names and rows. ``SHOW SLAVE STATUS`` has some
60 columns, of which a probe reads 15.

Guarantees: bytes past the reply's last packet are a ``ProtocolError`` (the connection would
be out of step: a server sends nothing it was not asked for). Whatever does not follow the
protocol is a ``ProtocolError`` naming what was wrong, and so is a reply longer than ``limit``
bytes (a server cannot make the reader hold unbounded data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_REPLY = 1 << 20  # bytes: a probe's reply is a few KB

_MORE_RESULTS = 0x0008
_BINARY_CHARSET = 63
_OK, _EOF, _ERR, _INFILE = 0x00, 0xFE, 0xFF, 0xFB
_NULL = 0xFB

# Field types (MySQL's enum_field_types).
_INTEGER_TYPES = frozenset({1, 2, 3, 8, 9, 13})  # TINY SHORT LONG LONGLONG INT24 YEAR
# BIT, VARCHAR, TINY/MEDIUM/LONG_BLOB, BLOB, VAR_STRING, STRING, GEOMETRY: PyMySQL's text types.
_TEXT_TYPES = frozenset({15, 16, 249, 250, 251, 252, 253, 254, 255})
_NULL_TYPE = 6  # SELECT NULL: every value NULL; text whatever its character set, as in PyMySQL


class ProtocolError(ValueError):
    """The bytes are not a reply of the MySQL protocol: the conversation is over."""


@dataclass(frozen=True)
class ServerError:
    """The ERR packet that ended a reply."""

    code: int
    message: str


@dataclass(frozen=True)
class ResultSet:
    """One statement's columns and rows (an OK, a statement without rows, has neither)."""

    names: tuple[str, ...] = ()
    rows: tuple[tuple[Any, ...], ...] = ()


@dataclass(frozen=True)
class Reply:
    """A whole reply: its result sets in statement order, the error that ended it (None: it
    ran to its end) and, when ``unsupported`` is not empty, why its rows could not be typed
    here (then ``results`` are not to be used)."""

    results: tuple[ResultSet, ...]
    error: ServerError | None = None
    unsupported: str = ""


@dataclass(frozen=True)
class _Column:
    name: str
    # "int", "text", "bytes"; "skip": not kept (``ReplyReader.only``); "": not supported here
    # (the reason is elsewhere)
    kind: str


# Column definitions already parsed, by the bytes they came in: a server sends the same
# definitions (packet headers included) for the same statement at the same place in a reply, so
# a probe compares them (one memcmp) instead of reading 50-60 packets. Keyed by (column count,
# the first definition's sequence id, encoding, the columns kept); each key holds the few blocks
# seen for it.
_Columns = tuple[tuple["_Column", ...], tuple[str, ...], str]  # columns, kept names, why not
_Only = frozenset[str] | None  # the columns of a result set to keep (None: every one)
_Key = tuple[int, int, str, _Only]
_KNOWN: dict[_Key, list[tuple[bytes, _Columns]]] = {}
_MAX_KNOWN = 1_000  # keys: a few per statement and server version; bounded all the same
_MAX_BLOCKS = 4  # per key: a fleet of a few server versions


def _remember(key: _Key, block: bytes, columns: _Columns) -> None:
    if len(_KNOWN) >= _MAX_KNOWN:
        _KNOWN.clear()
    blocks = _KNOWN.setdefault(key, [])
    if len(blocks) >= _MAX_BLOCKS:
        blocks.pop(0)
    blocks.append((block, columns))


def _parse_columns(definitions: tuple[bytes, ...], encoding: str, only: _Only) -> _Columns:
    columns, unsupported = [], ""
    for payload in definitions:
        column, why = _column(payload, encoding, only)
        columns.append(column)
        unsupported = unsupported or why
    names = tuple(c.name for c in columns if c.kind != "skip")
    return tuple(columns), names, unsupported


def _column(payload: bytes, encoding: str, only: _Only = None) -> tuple[_Column, str]:
    at = 0
    texts = []
    for _ in range(6):  # catalog, schema, table, org_table, name, org_name
        text, at = _string(payload, at)
        if text is None:
            raise ProtocolError("a NULL in a column definition")
        texts.append(text)
    fixed, at = _integer(payload, at)
    if fixed < 10 or at + fixed > len(payload):
        raise ProtocolError(f"a column definition's fixed fields are {fixed} bytes")
    charset = int.from_bytes(payload[at : at + 2], "little")
    kind_code = payload[at + 6]
    name = _decode(texts[4], encoding, "a column name")
    if only is not None and name not in only:
        return _Column(name, "skip"), ""
    if kind_code in _INTEGER_TYPES:
        return _Column(name, "int"), ""
    if kind_code == _NULL_TYPE:
        return _Column(name, "text"), ""
    if kind_code in _TEXT_TYPES:
        return _Column(name, "bytes" if charset == _BINARY_CHARSET else "text"), ""
    return _Column(name, ""), f"column {name} has type {kind_code}"


def _integer(data: bytes, at: int) -> tuple[int, int]:
    """A length-encoded integer at ``at``, and where what follows it starts."""
    if at >= len(data):
        raise ProtocolError("a packet ends where a length-encoded integer should be")
    first = data[at]
    if first < 0xFB:
        return first, at + 1
    width = {0xFC: 2, 0xFD: 3, 0xFE: 8}.get(first)
    if width is None or at + 1 + width > len(data):
        raise ProtocolError(f"a bad length-encoded integer (0x{first:02x})")
    return int.from_bytes(data[at + 1 : at + 1 + width], "little"), at + 1 + width


def _string(data: bytes, at: int) -> tuple[bytes | None, int]:
    """A length-encoded string at ``at`` (None: NULL), and where what follows it starts."""
    if at < len(data) and data[at] == _NULL:
        return None, at + 1
    length, at = _integer(data, at)
    if at + length > len(data):
        raise ProtocolError(f"a {length}-byte string overruns its packet")
    return data[at : at + length], at + length


def _decode(data: bytes, encoding: str, what: str) -> str:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as exc:
        raise ProtocolError(f"{what} is not {encoding}: {exc}") from None


def row_of(payload: bytes, columns: tuple[_Column, ...], encoding: str) -> tuple[Any, ...]:
    """One row's values, typed per column (see the module docstring), the skipped columns
    left out. The hot loop of a probe's reply: ``_string`` and the typing are inlined for the
    common cases."""
    values: list[Any] = []
    append = values.append
    at, end = 0, len(payload)
    column = None
    try:
        for column in columns:
            kind, first = column.kind, payload[at]
            if first < _NULL:  # the common case: a length below 251 in one byte
                length, at = first, at + 1
            elif first == _NULL:
                at += 1
                if kind != "skip":
                    append(None)
                continue
            else:
                length, at = _integer(payload, at)
            start, at = at, at + length
            if at > end:
                raise ProtocolError(f"column {column.name} overruns its row")
            if kind == "skip":
                continue
            raw = payload[start:at]
            append(raw.decode(encoding) if kind == "text" else int(raw) if kind == "int" else raw)
    except IndexError:
        raise ProtocolError(f"a row ends before its column {_name(column)}") from None
    except (ValueError, LookupError) as exc:  # not an integer, not in the encoding
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"column {_name(column)}: {exc}") from None
    if at != end:
        raise ProtocolError(f"a row has {end - at} bytes past its {len(columns)} columns")
    return tuple(values)


def _name(column: _Column | None) -> str:
    return column.name if column is not None else "?"


def server_error(payload: bytes) -> ServerError:
    """An ERR packet's code and message."""
    if len(payload) < 3:
        raise ProtocolError("an ERR packet without an error code")
    code = int.from_bytes(payload[1:3], "little")
    message = payload[9:] if payload[3:4] == b"#" else payload[3:]
    return ServerError(code, message.decode("utf-8", "replace"))


def _status_flags(payload: bytes) -> int:
    """The status flags of an OK packet."""
    _, at = _integer(payload, 1)  # affected rows
    _, at = _integer(payload, at)  # last insert id
    if at + 2 > len(payload):
        raise ProtocolError("an OK packet without status flags")
    return int.from_bytes(payload[at : at + 2], "little")


def _is_eof(payload: bytes) -> bool:
    return len(payload) < 9 and payload[0] == _EOF


@dataclass
class ReplyReader:
    """Reads one reply, fed the bytes as they arrive: ``feed`` returns the ``Reply`` once the
    last packet is in, None until then. Bytes past the reply's end are a ``ProtocolError``
    (the server answered more than was asked)."""

    encoding: str
    limit: int = MAX_REPLY
    # The columns to keep of the result set at each place in the reply (None, or a place past
    # the end: every column); the others are stepped over.
    only: tuple[_Only, ...] = ()
    _buffer: bytearray = field(default_factory=bytearray)
    _at: int = 0  # where the first packet not yet read starts in the buffer
    _seq: int = 1  # the sequence id the next packet must carry
    _results: list[ResultSet] = field(default_factory=list)
    _unsupported: str = ""
    _count: int = 0  # the current result set's column count (0: between result sets)
    _block: tuple[int, int] = (0, 0)  # where its definitions start, and their first sequence id
    _definitions: list[bytes] = field(default_factory=list)
    _typed: tuple[_Column, ...] | None = None  # the current result set's columns, once read
    _names: tuple[str, ...] = ()
    _rows: list[bytes] = field(default_factory=list)
    _done: Reply | None = None

    def feed(self, data: bytes) -> Reply | None:
        if self._done is not None:
            raise ProtocolError(f"{len(data)} bytes after the end of the reply")
        self._buffer += data
        if len(self._buffer) > self.limit:
            raise ProtocolError(f"a reply of more than {self.limit} bytes")
        while self._done is None:
            if self._skip_known_columns():
                continue
            payload = self._packet()
            if payload is None:
                return None
            self._done = self._read(payload)
        if self._at != len(self._buffer):
            raise ProtocolError("bytes after the end of the reply")
        return self._done

    def _packet(self) -> bytes | None:
        """The next complete packet's payload, its sequence id checked; None: not all in."""
        at, buffer = self._at, self._buffer
        if at + 4 > len(buffer):
            return None
        end = at + 4 + int.from_bytes(buffer[at : at + 3], "little")
        if end > len(buffer):
            return None
        if buffer[at + 3] != self._seq:
            raise ProtocolError(f"packet {buffer[at + 3]} where {self._seq} was due")
        self._seq = (self._seq + 1) % 256
        self._at = end
        return bytes(buffer[at + 4 : end])

    def _skip_known_columns(self) -> bool:
        """Past the current result set's definitions and their EOF when they are bytes already
        parsed (``_KNOWN``); False when not at the start of definitions, or they are new."""
        if not self._count or self._definitions or self._typed is not None:
            return False
        for block, columns in _KNOWN.get(self._key(self._seq), ()):
            if self._buffer.startswith(block, self._at):
                self._at += len(block)
                self._seq = (self._seq + self._count + 1) % 256
                self._set_columns(columns)
                return True
        return False

    def _read(self, payload: bytes) -> Reply | None:
        if not payload:
            raise ProtocolError("an empty packet")
        if self._typed is not None:
            return self._row_or_end(payload)
        if len(self._definitions) < self._count:
            if not self._definitions:
                self._block = (self._at - len(payload) - 4, (self._seq - 1) % 256)
            self._definitions.append(payload)
            return None
        if self._count:
            return self._columns_end(payload)
        return self._result_start(payload)

    def _result_start(self, payload: bytes) -> Reply | None:
        first = payload[0]
        if first == _ERR:
            return self._end(server_error(payload))
        if first == _OK:
            self._results.append(ResultSet())
            return self._next(_status_flags(payload))
        if first == _INFILE:
            raise ProtocolError("the server asked for a local file")
        count, at = _integer(payload, 0)
        if count == 0 or at != len(payload):
            raise ProtocolError(f"a bad column count packet ({payload[:12].hex()})")
        self._count = count
        return None

    def _columns_end(self, payload: bytes) -> Reply | None:
        if not _is_eof(payload):
            raise ProtocolError("no EOF after the column definitions")
        columns = _parse_columns(tuple(self._definitions), self.encoding, self._only())
        start, seq = self._block
        _remember(self._key(seq), bytes(self._buffer[start : self._at]), columns)
        self._set_columns(columns)
        return None

    def _only(self) -> _Only:
        """The columns to keep of the current result set."""
        place = len(self._results)
        return self.only[place] if place < len(self.only) else None

    def _key(self, seq: int) -> _Key:
        """Where the current result set's definitions, starting at ``seq``, may be known."""
        return (self._count, seq, self.encoding, self._only())

    def _set_columns(self, columns: _Columns) -> None:
        self._typed, self._names, why = columns
        self._unsupported = self._unsupported or why

    def _row_or_end(self, payload: bytes) -> Reply | None:
        if payload[0] == _ERR:
            return self._end(server_error(payload))
        if not _is_eof(payload):
            self._rows.append(payload)
            return None
        rows = () if self._unsupported else self._typed_rows()
        self._results.append(ResultSet(self._names, rows))
        self._count, self._definitions, self._typed, self._rows = 0, [], None, []
        flags = int.from_bytes(payload[3:5], "little") if len(payload) >= 5 else 0
        return self._next(flags)

    def _typed_rows(self) -> tuple[tuple[Any, ...], ...]:
        typed = self._typed
        assert typed is not None  # rows come only after the column definitions
        return tuple(row_of(row, typed, self.encoding) for row in self._rows)

    def _next(self, flags: int) -> Reply | None:
        return None if flags & _MORE_RESULTS else self._end(None)

    def _end(self, error: ServerError | None) -> Reply:
        return Reply(tuple(self._results), error, self._unsupported)
