"""Abstention for real: a poller whose fault it is never fails a healthy node (real MariaDB,
real Redis, real mpp-poller processes).

Topology (tests/servers.py): node1 <-> node2 master-master, node3 a replica of node1. The pool
is node1 PRIMARY, node2 and node3 SECONDARY, interval 1 s, M = 4.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import PoolState, State
from mpp_agent.store import Store
from tests.daemons import PollerProcess, describe, watch_ticks
from tests.servers import MariaDBCluster, free_port

pytestmark = pytest.mark.integration

INTERVAL = 1.0
M = 4
DENIED = "Access denied for user 'monitor'@'127.0.0.1' (using password: YES)"


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store.from_url(redis_url, "mpp")


@pytest.fixture
def pollers() -> Iterator[list[PollerProcess]]:
    started: list[PollerProcess] = []
    yield started
    for p in started:
        p.cleanup()


def start(pollers: list[PollerProcess], url: str, name: str, **kw: object) -> PollerProcess:
    proc = PollerProcess(url, name, **kw)  # type: ignore[arg-type]
    pollers.append(proc)
    return proc.start()


def make_pool(store: Store, cluster: MariaDBCluster) -> None:
    text = (
        f"name:p1;primary:{cluster.node1.node_id};secondary:{cluster.node2.node_id};"
        f"secondary:{cluster.node3.node_id}"
    )
    store.create_pool(parse_failoverpool(text, interval=INTERVAL, max_requests=M))


def is_steady(pool: PoolState) -> bool:
    return [n.state for n in pool.nodes] == [State.ACTIVE, State.STANDBY, State.STANDBY] and all(
        n.requests == 0 for n in pool.nodes
    )


def wait_steady(store: Store) -> PoolState:
    return watch_ticks(store, "p1", lambda seen: is_steady(seen[-1]), 15)[-1]


def verdicts(pool: PoolState) -> list[tuple[str, str, int | None]]:
    return [(n.state.value, n.status.value, n.requests) for n in pool.nodes]


def warnings(poller: PollerProcess, text: str) -> list[str]:
    return [line for line in poller.output().splitlines() if " WARNING " in line and text in line]


def heartbeat(store: Store, poller_id: str) -> dict[str, object]:
    return next(p.info for p in store.pollers() if p.poller_id == poller_id)


def test_a_wrong_password_for_eight_intervals_changes_nothing(
    store, mariadb_cluster, pollers, redis_url
):
    make_pool(store, mariadb_cluster)
    good = start(pollers, redis_url, "p-good")
    steady = wait_steady(store)
    good.stop()
    history = store.events("p1", count=1000)
    bad = start(pollers, redis_url, "p-bad", password="not-the-password")
    ticks = watch_ticks(store, "p1", lambda seen: len(seen) >= 9, 20)[1:]  # 8 rounds by p-bad
    rounds = [t.last_round for t in ticks]
    assert rounds == list(range(rounds[0], rounds[0] + 8)), describe(ticks)
    for tick in ticks:
        assert verdicts(tick) == verdicts(steady), describe(ticks)
        assert [n.message for n in tick.nodes] == [n.message for n in steady.nodes]
    assert [n.monitor_note for n in ticks[-1].nodes] == [f"monitor cannot check: {DENIED}"] * 3
    # Loud, once: one WARNING naming every node (they share the reason), not one per tick.
    said = warnings(bad, "abstaining on")
    assert len(said) == 1, bad.output()
    assert said[0].endswith(DENIED)
    for node in mariadb_cluster.nodes:
        assert f"p1/{node.node_id}" in said[0]
    info = heartbeat(store, "p-bad")
    assert info["abstentions"] == {f"p1/{n.node_id}": DENIED for n in mariadb_cluster.nodes}
    assert store.events("p1", count=1000) == history  # not one event in 8 rounds


def test_one_good_poller_decides_against_two_wrong_passwords(
    store, mariadb_cluster, pollers, redis_url
):
    make_pool(store, mariadb_cluster)
    start(pollers, redis_url, "p-good")
    wait_steady(store)
    start(pollers, redis_url, "p-bad1", password="wrong")
    start(pollers, redis_url, "p-bad2", password="wrong")
    mariadb_cluster.node3.sql("STOP SLAVE")
    ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[2].state.is_failed, 20)
    counted = [(t.last_round, t.nodes[2].requests) for t in ticks if t.nodes[2].requests]
    assert [r for _, r in counted] == [1, 2, 3, 4], describe(ticks)
    assert ticks[-1].nodes[2].state is State.FAILED_ONLINE
    assert ticks[-1].nodes[2].message == (
        "Slave Error: Slave SQL is not running, Slave_SQL_Running=No."
    )
    assert all(t.nodes[0].state is State.ACTIVE and t.nodes[0].requests == 0 for t in ticks)
    assert ticks[-1].nodes[0].monitor_note == f"monitor cannot check (2 of 3 pollers): {DENIED}"
    assert all(p.is_running for p in pollers)


@contextlib.contextmanager
def listening(port: int) -> Iterator[None]:
    """A TCP port that accepts (and closes) connections: a reachable checkpoint."""
    server = socket.create_server(("127.0.0.1", port))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = server.accept()
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
        server.close()


@pytest.mark.parametrize("case", ["all-fail", "some-fail", "none"])
def test_checkpoints(store, mariadb_cluster, pollers, redis_url, case):
    reachable, dead1, dead2 = free_port(), free_port(), free_port()
    points = {
        "all-fail": [f"127.0.0.1:{dead1}", f"127.0.0.1:{dead2}"],
        "some-fail": [f"127.0.0.1:{reachable}", f"127.0.0.1:{dead1}"],
        "none": [],
    }[case]
    make_pool(store, mariadb_cluster)
    with listening(reachable):
        extra = [arg for point in points for arg in ("--checkpoint", point)]
        poller = start(pollers, redis_url, "p-a", extra=extra)
        if case == "all-fail":
            # Cut off from every checkpoint from the start: nothing is judged, not even the
            # bootstrap; a stopped replica is not failed.
            ticks = watch_ticks(store, "p1", lambda s: len(s) >= 4, 15)
            mariadb_cluster.node3.sql("STOP SLAVE")
            ticks += watch_ticks(store, "p1", lambda s: len(s) >= M + 2, 15)
            assert all(verdicts(t) == [("UNKNOWN", "OK", None)] * 3 for t in ticks), describe(ticks)
            refused = [f"127.0.0.1:{port} (Connection refused)" for port in sorted([dead1, dead2])]
            why = f"checkpoints unreachable: {', '.join(refused)}"
            assert ticks[-1].nodes[2].monitor_note == f"monitor cannot check: {why}"
            info = heartbeat(store, "p-a")
            assert info["abstentions"] == {f"p1/{n.node_id}": why for n in mariadb_cluster.nodes}
            assert info["checkpoints"] == points
            assert len(warnings(poller, "abstaining on")) == 1, poller.output()
            # One checkpoint answers again: the poller judges again, and says so once.
            with listening(dead2):
                ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[2].state.is_failed, 20)
            assert len(warnings(poller, "no longer abstaining on")) == 1, poller.output()
            assert ticks[-1].nodes[0].state is State.ACTIVE
        else:
            wait_steady(store)
            mariadb_cluster.node3.sql("STOP SLAVE")
            ticks = watch_ticks(store, "p1", lambda s: s[-1].nodes[2].state.is_failed, 15)
            counted = [t.nodes[2].requests for t in ticks if t.nodes[2].requests]
            assert counted == [1, 2, 3, 4], describe(ticks)
            assert not warnings(poller, "abstaining"), poller.output()
            assert heartbeat(store, "p-a")["abstentions"] == {}
    assert ticks[-1].nodes[2].state is State.FAILED_ONLINE
