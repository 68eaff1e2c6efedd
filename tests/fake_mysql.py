"""A fake MySQL server for tests: a plain TCP server that greets like MySQL, accepts any login,
then answers every query with scripted bytes (garbage, truncated packets, a hang-up).

It exists to prove that no reply a broken or hostile server can send makes the probe raise;
real behaviour is always tested against real MariaDB.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

# CLIENT_LONG_PASSWORD | CONNECT_WITH_DB | PROTOCOL_41 | TRANSACTIONS | SECURE_CONNECTION |
# PLUGIN_AUTH
CAPABILITIES = 0x1 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x80000
OK = b"\x00\x00\x00\x02\x00\x00\x00"


def packet(seq: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([seq & 0xFF]) + payload


def lenenc(text: bytes) -> bytes:
    assert len(text) < 251
    return bytes([len(text)]) + text


def result_set(column: str, rows: list[str]) -> bytes:
    """A well-formed text result set of one VARCHAR column (packets from sequence 1)."""
    definition = (
        b"".join(lenenc(x) for x in (b"def", b"", b"", b"", column.encode(), b""))
        + b"\x0c\x21\x00"
        + struct.pack("<I", 255)
        + b"\xfd\x00\x00\x00\x00\x00"
    )
    eof = b"\xfe\x00\x00\x02\x00"
    packets = [b"\x01", definition, eof, *(lenenc(r.encode()) for r in rows), eof]
    return b"".join(packet(seq, body) for seq, body in enumerate(packets, start=1))


def greeting() -> bytes:
    salt = b"abcdefghijklmnopqrst"
    payload = (
        b"\x0a"
        + b"5.7.99-fake\x00"
        + struct.pack("<I", 7)
        + salt[:8]
        + b"\x00"
        + struct.pack("<H", CAPABILITIES & 0xFFFF)
        + b"\x21"
        + struct.pack("<H", 2)
        + struct.pack("<H", CAPABILITIES >> 16)
        + bytes([21])
        + b"\x00" * 10
        + salt[8:]
        + b"\x00"
        + b"mysql_native_password\x00"
    )
    return packet(0, payload)


def read_packet(conn: socket.socket) -> bytes | None:
    header = b""
    while len(header) < 4:
        chunk = conn.recv(4 - len(header))
        if not chunk:
            return None
        header += chunk
    length = int.from_bytes(header[:3], "little")
    body = b""
    while len(body) < length:
        chunk = conn.recv(length - len(body))
        if not chunk:
            return None
        body += chunk
    return body


class FakeMySQL:
    """Serves every connection: greeting, OK to the login (or ``auth_reply``), then to each
    query the reply of the first ``replies`` key the query starts with, else ``query_reply``
    (raw bytes, framing included; empty: hang up)."""

    def __init__(
        self,
        query_reply: bytes = b"",
        auth_reply: bytes | None = None,
        replies: dict[bytes, bytes] | None = None,
    ) -> None:
        self.query_reply = query_reply
        self.auth_reply = auth_reply
        self.replies = replies or {}
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port: int = self.listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(5)
            conn.sendall(greeting())
            if read_packet(conn) is None:
                return
            conn.sendall(self.auth_reply if self.auth_reply is not None else packet(2, OK))
            while (query := read_packet(conn)) is not None:
                text = query[1:]  # after the COM_QUERY byte
                reply = next(
                    (r for key, r in self.replies.items() if text.startswith(key)),
                    self.query_reply,
                )
                if not reply:
                    return  # hang up
                conn.sendall(reply)

    def __enter__(self) -> FakeMySQL:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(5)


@contextlib.contextmanager
def fake_mysql(
    query_reply: bytes = b"",
    auth_reply: bytes | None = None,
    replies: dict[bytes, bytes] | None = None,
) -> Iterator[FakeMySQL]:
    with FakeMySQL(query_reply, auth_reply, replies) as server:
        yield server
