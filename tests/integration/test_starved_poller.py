"""A poller whose host's CPUs are busy with others: a real ``mpp-poller`` observing 120 healthy
real MariaDB nodes (127.0.x.y aliases of two servers), a login per probe, pinned to one CPU
that a real-time process takes 19 ms of every 20 ms. The poller then gets a CPU too seldom
to finish its logins within their bound, although each pause is too short for its event
loop's stall watch to see: the time its thread waited for a CPU is its own, not the nodes',
and no healthy node may be failed for it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpp_agent.config import PoolConfig
from mpp_agent.model import NodeId, NodeType, State
from mpp_agent.store import Store
from tests.daemons import PollerProcess
from tests.servers import (
    MONITOR_PASSWORD,
    MONITOR_USER,
    MariaDBCluster,
    start_aliased,
    wait_until,
)

pytestmark = pytest.mark.integration

NAMESPACE = "mpp-starved"
POOLS = 30  # of 4 nodes: 120 logins per 2 s round, about 0.1 CPU-s of the poller's
STARVED_ROUNDS = 5

# A real-time process on one CPU: busy 19 ms, asleep 1 ms, until it is killed. Whatever shares
# that CPU under the normal scheduler runs only in the gaps.
HOG = """
import os, time
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
while True:
    end = time.monotonic() + 0.019
    while time.monotonic() < end:
        pass
    time.sleep(0.001)
"""


@pytest.fixture(scope="module")
def wide_cluster() -> Iterator[MariaDBCluster]:
    """Two servers listening on every loopback address, the monitor user allowed from any."""
    cluster = MariaDBCluster(2)
    try:
        start_aliased(cluster, cluster.nodes, MONITOR_USER, MONITOR_PASSWORD)
        yield cluster
    finally:
        cluster.cleanup()


def create_pools(store: Store, cluster: MariaDBCluster) -> list[str]:
    ports = [cluster.node1.port, cluster.node2.port]
    names = []
    for p in range(POOLS):
        members = [NodeId(f"127.0.1.{p * 4 + i + 1}", ports[i % 2]) for i in range(4)]
        kinds = [NodeType.PRIMARY] + [NodeType.SECONDARY] * 3
        names.append(f"st{p:02d}")
        store.create_pool(PoolConfig(names[-1], tuple(zip(members, kinds, strict=True)), 4, 2.0))
    return names


def pin(pid: int, cpu: int) -> None:
    """Every thread of process ``pid`` on ``cpu`` only."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def is_steady(store: Store, names: list[str]) -> bool:
    return all(
        p.nodes[0].state is State.ACTIVE and all(n.r == 0 for n in p.nodes)
        for p in store.load_pools(names)
    )


def test_a_poller_starved_of_cpu_abstains_instead_of_failing_healthy_nodes(
    redis_url: str, wide_cluster: MariaDBCluster
) -> None:
    store = Store.from_url(redis_url, NAMESPACE)
    names = create_pools(store, wide_cluster)
    poller = PollerProcess(redis_url, "p-starved", namespace=NAMESPACE, probe_options=[]).start()
    cpu = max(os.sched_getaffinity(0))
    hog: subprocess.Popen[bytes] | None = None
    try:
        assert poller.proc is not None
        wait_until(lambda: is_steady(store, names), 30, "every pool steady", interval=0.2)
        pin(poller.proc.pid, cpu)
        hog = subprocess.Popen([sys.executable, "-c", HOG])
        os.sched_setaffinity(hog.pid, {cpu})
        start = {p.name: p.last_round for p in store.load_pools(names)}
        wait_until(
            lambda: all(
                p.last_round >= start[p.name] + STARVED_ROUNDS for p in store.load_pools(names)
            ),
            60,
            f"{STARVED_ROUNDS} starved rounds of every pool",
            interval=0.5,
        )
        starved = store.load_pools(names)
        log = poller.output()
        hog.kill()
        hog.wait()
        hog = None
        wait_until(lambda: is_steady(store, names), 30, "every pool steady again", interval=0.2)
        events = [e for name in names for _, e in store.last_events(name, 200)]
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
        poller.cleanup()
        for name in names:
            store.remove_pool(name)
    troubled = [
        (n.node, n.state, n.r) for p in starved for n in p.nodes if n.r or n.state.is_failed
    ]
    assert not troubled, troubled  # no timeout of the starved rounds counted against a node
    failures = [e for e in events if "timed out" in (e.get("message") or "")]
    assert not failures, failures[:3]
    abstained = [line for line in log.splitlines() if "abstaining on" in line]
    assert any("for a CPU" in line for line in abstained), log[-5000:]
