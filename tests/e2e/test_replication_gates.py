"""End to end, through a real HAProxy: only a node that has the data takes writes.

* ``read_only=ON`` set by hand on the ACTIVE is a failing observation: writes move to the
  standby within the failover budget.
* A standby with ``MASTER_DELAY=5`` takes over after ``kill -9`` of the ACTIVE, but takes no
  write before it has applied every row it had received: each write records how many of the
  old primary's rows the node held when the write ran, and that count is compared with the
  rows the new ACTIVE had received (counted once its relay log is applied).
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pymysql
import pytest

from mpp_agent.model import State
from tests.e2e.conftest import BUDGET, NAMESPACE, POOL, System, write_through
from tests.servers import APP_PASSWORD, APP_USER, MariaDBNode, wait_until

pytestmark = pytest.mark.e2e


def test_read_only_on_the_active_moves_writes_within_the_budget(system: System) -> None:
    node1, node2 = system.node1, system.node2
    with system.recorder() as rec:
        time.sleep(0.5)
        set_at = time.monotonic()
        node1.sql("SET GLOBAL read_only=ON")
        wait_until(lambda: rec.first_write_on(node2.port, set_at) is not None, BUDGET + 15, "w")
        first = rec.first_write_on(node2.port, set_at)
        time.sleep(0.5)
    assert first is not None
    moved = first.end - set_at
    print(f"writes moved {moved:.2f} s after read_only=ON (budget {BUDGET:.0f} s)")
    assert moved <= BUDGET, rec.timeline()
    pool = system.pool()
    assert [n.state for n in pool.nodes] == [State.FAILED_ONLINE, State.ACTIVE]
    history = [e for _, e in system.store.last_events(pool.name, 100)]
    assert any(
        e.get("to_state") == "FAILED_ONLINE" and e.get("message") == "ACTIVE node is read_only"
        for e in history
    ), history
    refused = [w for w in rec.writes if w.port is None and "read-only" in w.error.lower()]
    assert refused, "the read_only ACTIVE refused writes before the move"


@dataclass
class CountingWriter:
    """Writes through HAProxy; each row stores how many rows of ``origin`` its node held."""

    rw_port: int
    origin: int
    rows: list[tuple[float, int, int]] = field(default_factory=list)  # (at, port, held)
    acked: dict[int, int] = field(default_factory=dict)  # port -> acknowledged writes
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> CountingWriter:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._write()
            time.sleep(0.02)

    def _write(self) -> None:
        try:
            conn = pymysql.connect(
                host="127.0.0.1", port=self.rw_port, user=APP_USER, password=APP_PASSWORD,
                autocommit=True, connect_timeout=0.5, read_timeout=0.5, write_timeout=0.5,
                ssl_disabled=True,
            )  # fmt: skip
        except (pymysql.err.MySQLError, OSError):
            return
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT @@port, (SELECT COUNT(*) FROM app.t WHERE origin = %s)", (self.origin,)
                )
                port, held = cur.fetchone()
                cur.execute("INSERT INTO app.t (origin, v) VALUES (@@port, %s)", (str(held),))
                self.rows.append((time.monotonic(), int(port), int(held)))
                self.acked[int(port)] = self.acked.get(int(port), 0) + 1
        except (pymysql.err.MySQLError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                conn.close()


def delayed(node: MariaDBNode, seconds: int) -> None:
    node.sql(f"STOP SLAVE; CHANGE MASTER TO MASTER_DELAY={seconds}; START SLAVE")


def applied_everything(node: MariaDBNode) -> bool:
    status = node.slave_status() or {}
    return (
        bool(status.get("Gtid_IO_Pos"))
        and status.get("Gtid_IO_Pos") == node.sql("SELECT @@gtid_slave_pos")[0][0]
    )


def test_a_delayed_standby_takes_no_write_before_it_has_applied_what_it_received(
    system: System,
) -> None:
    node1, node2 = system.node1, system.node2
    delayed(node2, 5)
    try:
        with CountingWriter(system.rw_port, node1.port) as writer:
            time.sleep(3.0)
            killed_at = time.monotonic()
            node1.kill9()
            wait_until(
                lambda: any(port == node2.port for _, port, _ in writer.rows),
                45,
                "a write on node2",
            )
            time.sleep(1.0)
        wait_until(lambda: applied_everything(node2), 30, "node2 to apply its relay log")
        received = node2.sql(f"SELECT COUNT(*) FROM app.t WHERE origin = {node1.port}")[0][0]
        on_node2 = [(at, held) for at, port, held in writer.rows if port == node2.port]
        first_at, first_held = on_node2[0]
        acked_on_node1 = writer.acked.get(node1.port, 0)
        print(
            f"node1 acknowledged {acked_on_node1} rows, node2 received {received}; the first "
            f"write on node2 came {first_at - killed_at:.2f} s after the kill, holding "
            f"{first_held} of them"
        )
        assert first_held == received, "a write landed before the relay log was applied"
        assert all(held == received for _, held in on_node2)
        history = [e for _, e in system.store.last_events(system.pool().name, 100)]
        gates = [e for e in history if e.get("kind") == "catch-up"]
        assert any("catching up" in e.get("message", "") for e in gates), gates
        assert any(e.get("message") == "caught up: writes open" for e in gates), gates
    finally:
        delayed(node2, 0)
    assert write_through(system.rw_port)[0] == node2.port


def test_the_catch_up_timeout_opens_writes_with_a_warning(system: System) -> None:
    """The SQL thread held back (MASTER_DELAY=60: it applies nothing during the test; a stopped
    SQL thread would be a replication error and keep the standby from taking over at all):
    past the pool's catch-up timeout writes open anyway, with a WARNING event."""
    node1, node2 = system.node1, system.node2
    applied = subprocess.run(
        [
            *("mpp-admin", "--redis-url", system.redis.url, "--namespace", NAMESPACE),
            *("pool", "apply", POOL, "--catchup-timeout", "3"),
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    delayed(node2, 60)
    try:
        with CountingWriter(system.rw_port, node1.port) as writer:
            time.sleep(2.0)
            node1.kill9()
            wait_until(
                lambda: any(port == node2.port for _, port, _ in writer.rows), 45, "node2 writes"
            )

        def gate_events() -> list[dict[str, Any]]:
            history = [e for _, e in system.store.last_events(POOL, 100)]
            return [e for e in history if e.get("kind") == "catch-up"]

        def opened_events() -> list[dict[str, Any]]:
            return [e for e in gate_events() if (e.get("extra") or {}).get("level") == "WARNING"]

        # The agent opens writes at the deadline by itself; the event comes with the next tick.
        wait_until(lambda: bool(opened_events()), 15, "the WARNING catch-up event")
        gates, opened = gate_events(), opened_events()
        assert opened, gates
        assert "catch-up timeout (3s) passed with" in opened[0]["message"]
        promoted = next(e for e in gates if "catching up" in e.get("message", ""))
        assert float(opened[0]["at"]) - float(promoted["at"]) >= 2.5  # the timeout, not sooner
    finally:
        delayed(node2, 0)
