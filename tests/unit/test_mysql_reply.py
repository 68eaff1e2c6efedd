"""The MySQL reply reader (mpp_agent/mysql_reply.py): replies built byte by byte as a server
sends them, fed whole and in pieces; malformed ones are ProtocolErrors naming the fault."""

from __future__ import annotations

import pytest

from mpp_agent.mysql_reply import (
    ProtocolError,
    Reply,
    ReplyReader,
    ResultSet,
    ServerError,
)

NULL_TYPE, LONGLONG, VARCHAR, VAR_STRING, BLOB, NEWDECIMAL = 6, 8, 15, 253, 252, 246
UTF8MB4, BINARY = 45, 63
MORE = 0x0008


def lenenc_int(value: int) -> bytes:
    if value < 0xFB:
        return bytes([value])
    if value < 1 << 16:
        return b"\xfc" + value.to_bytes(2, "little")
    if value < 1 << 24:
        return b"\xfd" + value.to_bytes(3, "little")
    return b"\xfe" + value.to_bytes(8, "little")


def lenenc(text: bytes | None) -> bytes:
    return b"\xfb" if text is None else lenenc_int(len(text)) + text


def column(name: str, kind: int = VARCHAR, charset: int = UTF8MB4) -> bytes:
    strings = b"".join(lenenc(s) for s in (b"def", b"", b"", b"", name.encode(), b""))
    fixed = charset.to_bytes(2, "little") + (255).to_bytes(4, "little") + bytes([kind])
    return strings + b"\x0c" + fixed + b"\x00\x00" + b"\x00" + b"\x00\x00"


def eof(flags: int = 0) -> bytes:
    return b"\xfe\x00\x00" + flags.to_bytes(2, "little")


def ok(flags: int = 0) -> bytes:
    return b"\x00\x00\x00" + flags.to_bytes(2, "little") + b"\x00\x00"


def err(code: int, message: str) -> bytes:
    return b"\xff" + code.to_bytes(2, "little") + b"#42000" + message.encode()


def row(*values: bytes | None) -> bytes:
    return b"".join(lenenc(v) for v in values)


def result(columns: list[bytes], rows: list[bytes], more: bool = False) -> list[bytes]:
    return [
        lenenc_int(len(columns)),
        *columns,
        eof(),
        *rows,
        eof(MORE if more else 0),
    ]


def packets(payloads: list[bytes], first_seq: int = 1) -> bytes:
    out = b""
    for i, payload in enumerate(payloads):
        out += len(payload).to_bytes(3, "little") + bytes([(first_seq + i) % 256]) + payload
    return out


def read(
    data: bytes,
    chunk: int | None = None,
    limit: int | None = None,
    only: tuple[frozenset[str] | None, ...] = (),
) -> Reply:
    reader = ReplyReader("utf8", only=only) if limit is None else ReplyReader("utf8", limit)
    step = chunk or len(data)
    reply = None
    for at in range(0, len(data), step):
        assert reply is None, "the reply ended before its last bytes"
        reply = reader.feed(data[at : at + step])
    assert reply is not None, "the reply never ended"
    return reply


THREE = packets(
    [
        *result([column("Tables_in_mppmon")], [row(b"heartbeat"), row(b"positions")], more=True),
        *result(
            [column("Slave_IO_Running"), column("Read_Master_Log_Pos", LONGLONG), column("x")],
            [row(b"Yes", b"1234", None)],
            more=True,
        ),
        *result([column("read_only", LONGLONG), column("binlog")], [row(b"1", b"0-1-7")]),
    ]
)
THREE_RESULTS = (
    ResultSet(("Tables_in_mppmon",), (("heartbeat",), ("positions",))),
    ResultSet(("Slave_IO_Running", "Read_Master_Log_Pos", "x"), (("Yes", 1234, None),)),
    ResultSet(("read_only", "binlog"), ((1, "0-1-7"),)),
)


@pytest.mark.parametrize("chunk", [None, 1, 3, 7, 64], ids=lambda c: f"chunk={c}")
def test_three_result_sets_fed_whole_or_in_pieces(chunk: int | None) -> None:
    assert read(THREE, chunk) == Reply(THREE_RESULTS)


def test_the_same_reply_again_reads_the_same() -> None:
    # The second time its column definitions are known bytes (one comparison, not 7 packets).
    assert read(THREE) == read(THREE) == Reply(THREE_RESULTS)


@pytest.mark.parametrize("chunk", [None, 1, 5], ids=lambda c: f"chunk={c}")
def test_only_the_columns_asked_for_are_kept(chunk: int | None) -> None:
    # The slave status keeps Read_Master_Log_Pos: the text before it and the NULL after it are
    # stepped over; the first and last result sets keep every column.
    only = (None, frozenset({"Read_Master_Log_Pos", "absent"}))
    for _ in range(2):  # the second time its column definitions are known bytes
        reply = read(THREE, chunk, only=only)
        assert reply.results == (
            THREE_RESULTS[0],
            ResultSet(("Read_Master_Log_Pos",), ((1234,),)),
            THREE_RESULTS[2],
        )
    assert read(THREE) == Reply(THREE_RESULTS)  # a reader keeping every column still does


def test_a_column_not_kept_may_have_any_type() -> None:
    data = packets(result([column("d", NEWDECIMAL), column("n", LONGLONG)], [row(b"1.5", b"2")]))
    assert "column d has type 246" in read(data).unsupported
    kept = read(data, only=(frozenset({"n"}),))
    assert kept == Reply((ResultSet(("n",), ((2,),)),))


def test_a_column_not_kept_still_has_to_fit_its_row() -> None:
    data = packets(result([column("a"), column("b")], [lenenc_int(9) + b"abc"]))
    with pytest.raises(ProtocolError, match="column a overruns its row"):
        read(data, only=(frozenset({"b"}),))


def test_known_definitions_never_stand_in_for_other_columns() -> None:
    first = packets(result([column("a"), column("b", LONGLONG)], [row(b"x", b"1")]))
    other = packets(result([column("c"), column("d")], [row(b"y", b"2")]))
    assert read(first).results == (ResultSet(("a", "b"), (("x", 1),)),)
    assert read(other).results == (ResultSet(("c", "d"), (("y", "2"),)),)
    assert read(first).results == (ResultSet(("a", "b"), (("x", 1),)),)


@pytest.mark.parametrize(
    ("kind", "charset", "raw", "value"),
    [
        (VARCHAR, UTF8MB4, "é".encode(), "é"),
        (VAR_STRING, UTF8MB4, b"", ""),
        (BLOB, BINARY, b"\x00\xff", b"\x00\xff"),
        (LONGLONG, BINARY, b"-42", -42),
        (LONGLONG, BINARY, b"18446744073709551615", 18446744073709551615),
        (NULL_TYPE, BINARY, b"", ""),  # SELECT NULL's type: its values are NULL
        (VARCHAR, UTF8MB4, b"x" * 300, "x" * 300),  # a 2-byte length
        (VARCHAR, UTF8MB4, b"y" * 70_000, "y" * 70_000),  # a 3-byte length
    ],
    ids=[
        "text",
        "empty",
        "binary",
        "negative",
        "unsigned-64",
        "null-type",
        "300-bytes",
        "70000-bytes",
    ],
)
def test_values_are_typed_as_pymysql_types_them(
    kind: int, charset: int, raw: bytes, value: object
) -> None:
    reply = read(packets(result([column("v", kind, charset)], [row(raw), row(None)])))
    assert reply.results == (ResultSet(("v",), ((value,), (None,))),)


def test_a_server_error_ends_the_reply_with_what_came_before() -> None:
    data = packets(
        [*result([column("t")], [row(b"a")], more=True), err(1227, "Access denied; SLAVE MONITOR")]
    )
    reply = read(data, chunk=5)
    assert reply.results == (ResultSet(("t",), (("a",),)),)
    assert reply.error == ServerError(1227, "Access denied; SLAVE MONITOR")


def test_an_error_in_place_of_a_row() -> None:
    data = packets([lenenc_int(1), column("t"), eof(), row(b"a"), err(1317, "interrupted")])
    reply = read(data)
    assert reply.error == ServerError(1317, "interrupted") and reply.results == ()


def test_an_error_without_sqlstate() -> None:
    data = packets([b"\xff" + (1045).to_bytes(2, "little") + b"denied"])
    assert read(data).error == ServerError(1045, "denied")


def test_an_ok_is_a_result_without_rows() -> None:
    data = packets([ok(MORE), *result([column("t")], [row(b"a")])])
    assert read(data).results == (ResultSet(), ResultSet(("t",), (("a",),)))


def test_a_column_of_another_type_makes_the_reply_unsupported_read_to_its_end() -> None:
    data = packets(
        [
            *result([column("d", NEWDECIMAL, BINARY)], [row(b"1.50")], more=True),
            *result([column("t")], [row(b"a")]),
        ]
    )
    reply = ReplyReader("utf8").feed(data)
    assert reply is not None and "column d has type 246" in reply.unsupported


def test_sequence_ids_wrap_at_256() -> None:
    many = [row(str(i).encode()) for i in range(300)]
    data = packets(result([column("n", LONGLONG)], many))
    assert read(data, chunk=1000).results[0].rows == tuple((i,) for i in range(300))


def _garbage(data: bytes, at: int, value: int) -> bytes:
    return data[:at] + bytes([value]) + data[at + 1 :]


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (_garbage(THREE, 3, 9), "packet 9 where 1 was due"),
        (packets([b"\xfb/etc/passwd"]), "asked for a local file"),
        (packets([b""]), "an empty packet"),
        (packets([b"\xff\x01"]), "without an error code"),
        (packets([b"\x02\x00"]), "bad column count"),
        (packets([b"\x00\x00\x00"]), "without status flags"),
        (packets([lenenc_int(1), column("t"), row(b"a")]), "no EOF after the column"),
        (packets([lenenc_int(1), b"\x03def\xfb", eof()]), "a NULL in a column definition"),
        (packets([lenenc_int(1), b"\x03de", eof()]), "overruns its packet"),
        (packets(result([column("a"), column("b")], [row(b"x")])), "ends before its column b"),
        (packets(result([column("a")], [row(b"x", b"y")])), "bytes past its 1 columns"),
        (packets(result([column("a")], [b"\x05ab"])), "column a overruns its row"),
        (packets(result([column("n", LONGLONG)], [row(b"12a")])), "column n"),
        (packets(result([column("s")], [row(b"\xff\xfe")])), "column s"),
        (packets(result([column("a")], [b"\xfc\x01"])), "bad length-encoded integer"),
        (THREE + b"\x01\x00\x00\x10\x00", "after the end of the reply"),
    ],
    ids=[
        "sequence",
        "local-infile",
        "empty-packet",
        "short-error",
        "bad-count",
        "short-ok",
        "no-eof",
        "null-definition",
        "short-definition",
        "short-row",
        "long-row",
        "overrun",
        "not-an-integer",
        "not-utf8",
        "bad-lenenc",
        "trailing",
    ],
)
def test_a_malformed_reply_is_a_protocol_error(data: bytes, says: str) -> None:
    with pytest.raises(ProtocolError, match=says):
        ReplyReader("utf8").feed(data)


def test_bytes_after_the_end_in_a_later_feed() -> None:
    reader = ReplyReader("utf8")
    assert reader.feed(THREE) is not None
    with pytest.raises(ProtocolError, match="after the end"):
        reader.feed(b"\x00")


def test_a_reply_over_the_limit_is_refused_before_it_is_read() -> None:
    with pytest.raises(ProtocolError, match="more than 1000 bytes"):
        read(packets(result([column("n")], [row(b"x" * 100)] * 20)), chunk=600, limit=1000)
    reader = ReplyReader("utf8", 100)
    with pytest.raises(ProtocolError, match="more than 100 bytes"):
        reader.feed(b"\xff\xff\xff\x01" + b"x" * 200)  # a 16 MiB packet announced


def test_an_incomplete_reply_waits_for_more() -> None:
    reader = ReplyReader("utf8")
    assert reader.feed(THREE[:-1]) is None
    assert reader.feed(THREE[-1:]) == Reply(THREE_RESULTS)
