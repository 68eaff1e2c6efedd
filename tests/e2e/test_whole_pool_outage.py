"""End to end: every node of the pool dies at once, then comes back. Real MariaDB, Redis, two
mpp-pollers, mpp-agent and HAProxy (``haproxy/haproxy.cfg``).

When all nodes fail together nobody can take over, so the ACTIVE stays ACTIVE (counting, with
MPP's "Not failing from ACTIVE state ..." message) and HAProxy keeps it as the writer: once the
servers are back, writes through HAProxy reach the primary again by themselves, with no
``mpp-admin`` command. The standby fails as usual and stays failed until recovered.
"""

from __future__ import annotations

import time

import pytest

from mpp_agent.model import State
from mpp_agent.state import MSG_NOT_FAILING
from tests.e2e.conftest import INTERVAL, M, Recorder, System
from tests.servers import wait_until

pytestmark = pytest.mark.e2e

OUTAGE_INTERVALS = 8


def never_two_active(rec: Recorder) -> None:
    for snap in rec.snapshots:
        assert sum(s is State.ACTIVE for s in snap.states.values()) <= 1, rec.timeline()


def test_both_nodes_killed_for_8_intervals_then_writes_resume_by_themselves(
    system: System,
) -> None:
    node1, node2 = system.node1, system.node2
    messages: set[str] = set()
    with system.recorder() as rec:
        time.sleep(1.0)
        killed_at = time.monotonic()
        node1.kill9()
        node2.kill9()
        while time.monotonic() < killed_at + OUTAGE_INTERVALS * INTERVAL:
            messages.add(system.pool().nodes[0].message or "")
            time.sleep(0.1)
        pool = system.pool()
        # The primary was never failed: nobody could take over in any of those rounds.
        assert pool.nodes[0].state is State.ACTIVE, rec.timeline()
        assert pool.nodes[0].r >= OUTAGE_INTERVALS - 2  # counting, round after round
        assert pool.nodes[1].state is State.FAILED_OFFLINE
        assert system.ask_agent(node1).startswith("up ready")
        outage_writes = [w for w in rec.writes if killed_at + 0.5 < w.start]
        assert outage_writes and all(w.port is None for w in outage_writes)

        restarted_at = time.monotonic()
        node1.start()
        node2.start()
        wait_until(
            lambda: rec.first_write_on(node1.port, restarted_at) is not None,
            45,
            "a write through HAProxy on node1 after the restart",
        )
        first = rec.first_write_on(node1.port, restarted_at)
        assert first is not None
        wait_until(lambda: system.pool().nodes[0].r == 0, 10, "node1 healthy again (R = 0)")
        time.sleep(1.0)
    resumed = first.end - restarted_at
    print(f"writes resumed {resumed:.2f} s after both nodes were restarted (no mpp-admin)")
    assert any(MSG_NOT_FAILING in m for m in messages), messages
    # node1 was ACTIVE in every snapshot of the pool, and every write went to it.
    assert all(s.states[node1.port] is State.ACTIVE for s in rec.snapshots), rec.timeline()
    never_two_active(rec)
    assert rec.misrouted() == []
    assert {w.port for w in rec.writes if w.port is not None} == {node1.port}
    tail = [w.port for w in rec.writes if w.start > rec.writes[-1].start - 1.0]
    assert set(tail) == {node1.port}, tail
    # The standby failed as usual (sticky until recovered); the pool is still one writer.
    pool = system.pool()
    assert [n.state for n in pool.nodes] == [State.ACTIVE, State.FAILED_OFFLINE]
    assert M < OUTAGE_INTERVALS
