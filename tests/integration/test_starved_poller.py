"""A poller whose host's CPUs are busy with others: a real ``mpp-poller`` observing 200 healthy
real MariaDB nodes (127.0.x.y aliases of two servers), a login per probe, pinned to one CPU
that a real-time process takes 19 ms of every 20 ms. The poller then gets a CPU too seldom
to finish its logins within their bound, although each pause is too short for its event
loop's stall watch to see: the time its thread waited for a CPU is its own, not the nodes',
and no healthy node may be failed for it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpp_agent.poller import RunQueue
from mpp_agent.store import Store
from tests.daemons import PollerProcess, create_pools, pools_steady
from tests.servers import (
    MONITOR_PASSWORD,
    MONITOR_USER,
    MariaDBCluster,
    aliases,
    start_aliased,
    unavailable,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.alone]

NAMESPACE = "mpp-starved"
POOLS = 50  # of 4 nodes: 200 logins per 2 s round, about 0.2 CPU-s of the poller's
STARVED_ROUNDS = 5

# A real-time process on one CPU: busy 19 ms, asleep 1 ms, until it is killed, its parent
# dies or HOG_LIFE has passed (a test killed meanwhile must not leave it behind). Whatever
# shares that CPU under the normal scheduler runs only in the gaps: the other processes move
# to the other CPUs, which is why this module runs alone (the mark), after the other tests.
HOG_LIFE = 120.0
HOG = f"""
import os, time
parent, stop = os.getppid(), time.monotonic() + {HOG_LIFE}
os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
while time.monotonic() < stop and os.getppid() == parent:
    end = time.monotonic() + 0.019
    while time.monotonic() < end:
        pass
    time.sleep(0.001)
"""


def start_hog(cpu: int) -> subprocess.Popen[bytes]:
    """The real-time process on ``cpu``, once it runs as one."""
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    os.sched_setaffinity(hog.pid, {cpu})
    try:
        wait_until(
            lambda: hog.poll() is None and os.sched_getscheduler(hog.pid) == os.SCHED_FIFO,
            5,
            "a real-time process",
        )
    except (TimeoutError, ProcessLookupError):
        hog.kill()
        hog.wait()
        unavailable("cannot start a real-time process here (SCHED_FIFO needs root or CAP_SYS_NICE)")
    return hog


def pin(pid: int, cpu: int) -> None:
    """Every thread of process ``pid`` on ``cpu`` only."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.sched_setaffinity(int(task.name), {cpu})


def test_the_run_queue_says_how_long_this_thread_waited_for_a_cpu() -> None:
    """Real contention: this thread and a busy process on one CPU for half a second."""
    queue = RunQueue()
    before = queue.cpu_wait()
    if before is None:
        unavailable("/proc/thread-self/schedstat unreadable: a poller here cannot see CPU waits")
    cpu, keep = max(os.sched_getaffinity(0)), os.sched_getaffinity(0)
    spin = "import time\nend = time.monotonic() + 10\nwhile time.monotonic() < end: pass"
    busy = subprocess.Popen([sys.executable, "-c", spin])
    try:
        os.sched_setaffinity(busy.pid, {cpu})
        os.sched_setaffinity(0, {cpu})
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            pass  # runnable all along: about half of it waiting for the CPU
    finally:
        os.sched_setaffinity(0, keep)
        busy.kill()
        busy.wait()
    after = queue.cpu_wait()
    queue.close()
    assert after is not None and after - before > 0.1, (before, after)
    assert queue.cpu_wait() is None  # closed


@pytest.fixture(scope="module")
def wide_cluster() -> Iterator[MariaDBCluster]:
    """Two servers listening on every loopback address, the monitor user allowed from any."""
    cluster = MariaDBCluster(2)
    try:
        start_aliased(cluster, cluster.nodes, MONITOR_USER, MONITOR_PASSWORD)
        yield cluster
    finally:
        cluster.cleanup()


def test_a_poller_starved_of_cpu_abstains_instead_of_failing_healthy_nodes(
    redis_url: str, wide_cluster: MariaDBCluster
) -> None:
    store = Store.from_url(redis_url, NAMESPACE)
    names = create_pools(store, aliases(wide_cluster, 4 * POOLS), 4, "st{:02d}")
    poller = PollerProcess(redis_url, "p-starved", namespace=NAMESPACE, probe_options=[]).start()
    cpu = max(os.sched_getaffinity(0))
    hog: subprocess.Popen[bytes] | None = None
    try:
        assert poller.proc is not None
        wait_until(lambda: pools_steady(store, names), 30, "every pool steady", interval=0.2)
        pin(poller.proc.pid, cpu)
        hog = start_hog(cpu)
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
        wait_until(lambda: pools_steady(store, names), 30, "every pool steady again", interval=0.2)
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
