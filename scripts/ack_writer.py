"""A client that writes through HAProxy and records every acknowledged write.

``AckWriter`` inserts one row through HAProxy's write port every ``every`` seconds in a thread,
with a new connection each time (as a pooled client reconnects after its session was cut), and
records each insert the server acknowledged: its row id, the node (``@@port``) that took it,
and when. ``bench/switchover.py`` and the switchover end-to-end tests judge a switchover by it:
the longest pause between acknowledged writes, writes on the old ACTIVE after the first on the
new one, and (against the nodes' tables) acknowledged rows that are missing.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from dataclasses import dataclass, field

import pymysql


@dataclass(frozen=True)
class Ack:
    start: float  # time.monotonic() before connecting
    end: float  # after the acknowledgement
    port: int  # the node's @@port
    row: int  # the id AUTO_INCREMENT gave the row


@dataclass
class AckWriter:
    """Inserts ``(<column>, v) = (@@port, tag)`` into ``app.t`` through ``127.0.0.1:rw_port``."""

    rw_port: int
    user: str
    password: str
    tag: str
    column: str = "port"  # the column that records the node's port
    every: float = 0.02
    acks: list[Ack] = field(default_factory=list)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> AckWriter:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.acks:
            if time.monotonic() > deadline:
                raise TimeoutError("no write acknowledged through HAProxy within 10 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            ack = self._insert(time.monotonic())
            if ack is None:
                self.failures += 1
            else:
                self.acks.append(ack)
            time.sleep(self.every)

    def _insert(self, start: float) -> Ack | None:
        try:
            conn = pymysql.connect(
                host="127.0.0.1", port=self.rw_port, user=self.user, password=self.password,
                autocommit=True, connect_timeout=0.5, read_timeout=0.5, write_timeout=0.5,
                ssl_disabled=True,
            )  # fmt: skip
        except (pymysql.err.MySQLError, OSError):
            return None
        try:
            with conn.cursor() as cur:
                sql = f"INSERT INTO app.t ({self.column}, v) VALUES (@@port, %s)"
                cur.execute(sql, (self.tag,))
                row = int(cur.lastrowid)
                cur.execute("SELECT @@port")
                return Ack(start, time.monotonic(), int(cur.fetchone()[0]), row)
        except (pymysql.err.MySQLError, OSError):
            return None  # not acknowledged: it may or may not have been written
        finally:
            with contextlib.suppress(Exception):
                conn.close()

    def since(self, moment: float) -> list[Ack]:
        return [a for a in self.acks if a.start >= moment]

    def longest_pause(self, since: float, until: float) -> float:
        """The longest time between two acknowledgements in [since, until]."""
        ends = [a.end for a in self.acks if since <= a.end <= until]
        return max((b - a for a, b in itertools.pairwise(ends)), default=0.0)

    def late_on(self, source: int, target: int, since: float) -> list[Ack]:
        """Writes on ``source`` that started after the first write on ``target`` (from
        ``since`` on) had been acknowledged: writes on the old ACTIVE after the new one's."""
        after = self.since(since)
        first = next((a for a in after if a.port == target), None)
        if first is None:
            return []
        return [a for a in after if a.port == source and a.start > first.end]

    def lost(self, rows: dict[int, int]) -> list[Ack]:
        """Acknowledged writes that a node's ``{id: port}`` rows lack (or hold for another
        node's port)."""
        return [a for a in self.acks if rows.get(a.row) != a.port]
