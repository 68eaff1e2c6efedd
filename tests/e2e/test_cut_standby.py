"""End to end: a standby whose replication link is cut (a forwarder between it and its source,
stopped by the test) while the primary takes writes through HAProxy is counted failing, and
``kill -9`` of the primary does not promote it silently: with the lag gate off the pool was
reported degraded before the kill and the standby is not promoted; with the gate on it is held
with a message saying what to run; ``mpp-admin failover --to`` then promotes it by hand."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from mpp_agent.model import State
from tests.e2e.conftest import (
    BUDGET,
    INTERVAL,
    NAMESPACE,
    POOL,
    M,
    System,
    replicate_through,
    reset_source,
)
from tests.forwarder import Forwarder
from tests.servers import wait_until

pytestmark = pytest.mark.e2e


def admin(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    argv = ["mpp-admin", "--redis-url", system.redis.url, "--namespace", NAMESPACE, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def link(system: System) -> Iterator[Forwarder]:
    """node2 replicates from node1 through a forwarder (restored afterwards)."""
    node1, node2 = system.node1, system.node2
    forwarder = Forwarder(node1.port).start()
    try:
        replicate_through(node2, forwarder)
        system.cluster.wait_replicated(node1)
        time.sleep(2 * INTERVAL)  # a few ticks see node2 holding node1's position
        yield forwarder
    finally:
        forwarder.stop()
        reset_source(node2, node1)


def node2_state(system: System) -> State:
    return system.pool().nodes[1].state


def test_cut_standby_fails_the_pool_is_degraded_and_kill9_does_not_promote_it(
    system: System, link: Forwarder
) -> None:
    node1, node2 = system.node1, system.node2
    with system.recorder() as rec:
        link.stop()
        try:
            wait_until(lambda: node2_state(system) is State.FAILED_ONLINE, M * INTERVAL + 10, "f")
        except TimeoutError:
            status = node2.slave_status() or {}
            keys = ("Slave_IO_Running", "Last_IO_Errno", "Master_Server_Id", "Master_Port")
            raise AssertionError(({k: status.get(k) for k in keys}, system.pool())) from None
        listed = json.loads(admin(system, "list", "--json").stdout)["pools"][0]
        assert listed["degraded"] and str(node2.node_id) in listed["degraded"]
        assert "degraded: no failover candidate" in system.ask_agent(node1)
        time.sleep(1.0)  # node1 takes writes that node2 never receives
        killed_at = time.monotonic()
        node1.kill9()
        time.sleep(BUDGET + 2)
        assert node2_state(system) is State.FAILED_ONLINE
        assert rec.first_write_on(node2.port, killed_at) is None
        done = admin(system, "failover", POOL, "--to", node2.node_id, "--force")
        assert done.returncode == 0, done.stderr
        assert "transaction(s) of" in done.stdout and "lacks nothing" not in done.stdout
        wait_until(lambda: rec.first_write_on(node2.port, killed_at) is not None, 15, "writes")
    print(done.stdout)
    assert rec.misrouted() == []


def test_the_lag_gate_holds_a_briefly_cut_standby(system: System, link: Forwarder) -> None:
    node1, node2 = system.node1, system.node2
    applied = admin(system, "pool", "apply", POOL, "--max-failover-lag", "1")
    assert applied.returncode == 0, applied.stderr
    with system.recorder() as rec:
        link.stop()
        time.sleep(2 * INTERVAL)  # failing, not failed yet; node1 takes writes meanwhile
        assert node2_state(system) is State.STANDBY
        killed_at = time.monotonic()
        node1.kill9()
        wait_until(lambda: system.pool().nodes[0].state is State.FAILED_OFFLINE, BUDGET + 10, "1")
        time.sleep(2 * INTERVAL)
        held = system.pool().nodes[1]
        assert held.state is State.STANDBY, held
        assert "Not taking over:" in (held.message or "")
        assert f"mpp-admin failover {POOL} --to {node2.node_id}" in (held.message or "")
        assert rec.first_write_on(node2.port, killed_at) is None
        events = [e for _, e in system.store.last_events(POOL, 100)]
        assert any(e.get("kind") == "held" for e in events), events
        done = admin(system, "failover", POOL, "--to", node2.node_id)
        assert done.returncode == 0, done.stderr
        wait_until(lambda: rec.first_write_on(node2.port, killed_at) is not None, 15, "writes")
    assert rec.misrouted() == []
