"""End to end: a real client writing through a real HAProxy while real MariaDB nodes die.

Every successful write is checked against the pool state in Redis at that moment: it may only
reach a node that was ACTIVE at some instant between one HAProxy lag (an agent-inter and a
margin) before it connected and the moment it finished. The failover is timed from the
``kill -9`` to the first write that lands on the new ACTIVE, against the budget
M x interval + agent-inter + 1 s.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from mpp_agent.model import State
from tests.daemons import PollerProcess
from tests.e2e.conftest import BUDGET, INTERVAL, NAMESPACE, Recorder, System
from tests.servers import wait_until

pytestmark = pytest.mark.e2e


def never_two_active(rec: Recorder) -> None:
    for snap in rec.snapshots:
        assert sum(s is State.ACTIVE for s in snap.states.values()) <= 1, rec.timeline()


def failover_seconds(rec: Recorder, port: int, since: float, timeout: float) -> float:
    wait_until(lambda: rec.first_write_on(port, since) is not None, timeout, f"a write on {port}")
    first = rec.first_write_on(port, since)
    assert first is not None
    return first.end - since


def kill_the_active(system: System, rec: Recorder) -> float:
    """``kill -9`` node1 after a second of writes: seconds to the first write on node2."""
    time.sleep(1.0)
    killed_at = time.monotonic()
    system.node1.kill9()
    return failover_seconds(rec, system.node2.port, killed_at, BUDGET + 15)


def test_kill9_of_the_active_fails_over_within_budget_then_recover_hands_back(
    system: System,
) -> None:
    node1, node2 = system.node1, system.node2
    with system.recorder() as rec:
        failover = kill_the_active(system, rec)
        assert system.pool().nodes[0].state is State.FAILED_OFFLINE

        node1.start()  # crash recovery; replication resumes by itself
        time.sleep(2 * INTERVAL)
        assert system.pool().nodes[0].state is State.FAILED_OFFLINE  # until recovered
        recovered_at = time.monotonic()
        done = subprocess.run(
            [
                *("mpp-admin", "--redis-url", system.redis.url, "--namespace", NAMESPACE),
                *("recover", node1.node_id),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        handback = failover_seconds(rec, node1.port, recovered_at, 30)
        wait_until(lambda: system.is_steady(node1), 15, "node1 ACTIVE and node2 STANDBY")
        time.sleep(1.5)
    print(f"failover {failover:.2f} s (budget {BUDGET:.0f} s), hand-back {handback:.2f} s")
    assert failover <= BUDGET, rec.timeline()
    assert rec.misrouted() == []
    never_two_active(rec)
    served = {w.port for w in rec.writes if w.port is not None}
    assert served == {node1.port, node2.port}
    tail = [w.port for w in rec.writes if w.start > rec.writes[-1].start - 1.0]
    assert set(tail) == {node1.port}, tail


def fail_over_killing_a_poller(system: System, victim: PollerProcess) -> None:
    """``kill -9`` node1, then ``victim`` after node1's first failing tick: the failover still
    lands within the budget plus one interval, every write where it may, never two ACTIVE."""
    node1, node2 = system.node1, system.node2
    with system.recorder() as rec:
        time.sleep(0.5)
        killed_at = time.monotonic()
        node1.kill9()
        wait_until(lambda: system.pool().nodes[0].r >= 1, 5, "node1's first failing tick")
        victim.kill9()
        failover = failover_seconds(rec, node2.port, killed_at, BUDGET + INTERVAL + 15)
        time.sleep(1.0)
    print(f"failover with poller {victim.poller_id} killed midway {failover:.2f} s")
    assert failover <= BUDGET + INTERVAL, rec.timeline()
    assert rec.misrouted() == []
    never_two_active(rec)
    pool = system.pool()
    assert [n.state for n in pool.nodes] == [State.FAILED_OFFLINE, State.ACTIVE]


def test_a_poller_killed_during_the_failover_costs_at_most_one_interval(system: System) -> None:
    fail_over_killing_a_poller(system, system.pollers[0])
    assert system.pollers[1].is_running


def test_redis_restart_in_steady_state_changes_nothing(system: System) -> None:
    """Redis with an append-only file restarts: the pool survives it, no node changes state,
    the agent answers its last decision throughout (marked stale meanwhile), writes go on."""
    node1, node2 = system.node1, system.node2
    replies: list[tuple[str, str]] = []
    stop = threading.Event()

    def ask_loop() -> None:
        while not stop.is_set():
            replies.append((system.ask_agent(node1), system.ask_agent(node2)))
            time.sleep(0.05)

    asker = threading.Thread(target=ask_loop, daemon=True)
    before = system.pool()
    with system.recorder() as rec:
        asker.start()
        try:
            time.sleep(1.0)
            system.redis.stop()
            wait_until(lambda: "stale" in system.ask_agent(node1), 5, "a stale answer")
            time.sleep(0.5)
            system.redis.start()
            after = system.pool()
            assert [(n.node, n.state) for n in after.nodes] == [
                (n.node, n.state) for n in before.nodes
            ]
            wait_until(lambda: system.pool().last_round > after.last_round + 2, 10, "ticks")
            wait_until(lambda: "stale" not in system.ask_agent(node1), 10, "fresh answers")
            time.sleep(1.0)
        finally:
            stop.set()
            asker.join(5)
    assert replies, "the agent was never asked"
    assert all(r1.startswith("up ready") and r2.startswith("up drain") for r1, r2 in replies), [
        r for r in replies if not (r[0].startswith("up ready") and r[1].startswith("up drain"))
    ]
    assert any("stale" in r1 for r1, _ in replies)
    for snap in rec.snapshots:
        assert snap.states == {node1.port: State.ACTIVE, node2.port: State.STANDBY}
    failed = [w for w in rec.writes if w.port != node1.port]
    assert failed == [], failed[:3]
    assert all(p.is_running for p in system.pollers)
    assert system.is_steady(node1)
