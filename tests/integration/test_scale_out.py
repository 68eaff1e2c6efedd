"""Sharded observation on a real Redis: 4 pollers, 12 pools, K = 2 observers per pool.

Each pool is probed by the 2 pollers rendezvous hashing assigns it; a round's observations
(``ns:{pool}:obs:<round>``, one field per poller that recorded it) show who observed it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import PoolState, State
from mpp_agent.rounds import assign, round_of
from mpp_agent.store import Store
from tests.daemons import PollerProcess
from tests.integration.admin_support import mpp_admin
from tests.servers import MariaDBCluster, wait_until

pytestmark = pytest.mark.integration

INTERVAL = 1.0
K = 2
POOLS = [f"pool{i:02d}" for i in range(12)]
POLLERS = ["sa", "sb", "sc", "sd"]


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store.from_url(redis_url, "mpp")


@pytest.fixture
def pollers(redis_url: str) -> Iterator[dict[str, PollerProcess]]:
    started = {name: PollerProcess(redis_url, name) for name in POLLERS}
    try:
        yield started
    finally:
        for proc in started.values():
            proc.cleanup()


def create_pools(store: Store, cluster: MariaDBCluster) -> None:
    nodes = [cluster.node1.node_id, cluster.node2.node_id, cluster.node3.node_id]
    for i, name in enumerate(POOLS):
        primary, secondary = nodes[i % 2], nodes[2]
        text = f"name:{name};primary:{primary};secondary:{secondary}"
        config = parse_failoverpool(text, interval=INTERVAL, max_requests=4)
        store.create_pool(replace(config, observers=K))


def is_steady(pool: PoolState) -> bool:
    return [n.state for n in pool.nodes] == [State.ACTIVE, State.STANDBY]


def observers_by_round(store: Store, first: int, last: int) -> dict[str, dict[int, set[str]]]:
    """pool -> round -> the pollers that recorded it."""
    return {
        name: {r: set(store.round_observations(name, r)) for r in range(first, last + 1)}
        for name in POOLS
    }


def heartbeat_pools(store: Store) -> dict[str, set[str]]:
    return {
        p.poller_id: set(p.info.get("pools", [])) for p in store.pollers() if p.alive and p.info
    }


def rounds_now(store: Store) -> int:
    return round_of(store.server_time(), INTERVAL)


def wait_rounds(store: Store, count: int) -> int:
    """Sleep until ``count`` more rounds have started and been given time to commit."""
    target = rounds_now(store) + count
    wait_until(lambda: rounds_now(store) >= target, count * INTERVAL + 5, f"round {target}")
    time.sleep(0.8 * INTERVAL)  # past the deadline of round ``target``
    return target


def committed_once(before: dict[str, PoolState], after: dict[str, PoolState]) -> None:
    """Every round between the two readings was committed, each exactly once."""
    for name in POOLS:
        rounds = after[name].last_round - before[name].last_round
        versions = after[name].version - before[name].version
        assert rounds == versions, (name, before[name], after[name])


def test_four_pollers_twelve_pools_two_observers_each(
    store: Store,
    mariadb_cluster: MariaDBCluster,
    pollers: dict[str, PollerProcess],
    redis_url: str,
) -> None:
    create_pools(store, mariadb_cluster)
    for proc in pollers.values():
        proc.start()
    wait_until(lambda: all(is_steady(store.load_pool(n)) for n in POOLS), 30, "12 steady pools")
    wait_rounds(store, 2)  # one round past every poller's first heartbeat

    # Steady state: exactly the 2 assigned pollers observe every round, which is committed once.
    before = {p.name: p for p in store.load_pools(POOLS)}
    first = rounds_now(store)
    last = wait_rounds(store, 5) - 1
    after = {p.name: p for p in store.load_pools(POOLS)}
    committed_once(before, after)
    assert all(after[n].last_round - before[n].last_round >= 5 for n in POOLS)
    seen = observers_by_round(store, first, last)
    expected = {name: set(assign(name, POLLERS, K)) for name in POOLS}
    for name in POOLS:
        assert all(who == expected[name] for who in seen[name].values()), (name, seen[name])
    by_poller = heartbeat_pools(store)
    assert by_poller == {p: {n for n in POOLS if p in expected[n]} for p in POLLERS}
    assert sum(len(pools) for pools in by_poller.values()) == K * len(POOLS)
    # mpp-admin pollers --json says the same, and no pool lacks an observer.
    done = mpp_admin(redis_url, "pollers", "--json")
    assert done.exit_code == 0, done.stderr
    shown = json.loads(done.stdout)
    assert {p["poller_id"]: set(p["pools"]) for p in shown["pollers"]} == by_poller
    assert shown["under_observed"] == []

    # kill -9 one poller: within 3 intervals every pool has 2 (live) observers again, and no
    # round of any pool goes unobserved or uncommitted meanwhile.
    victim = "sa"
    before = {p.name: p for p in store.load_pools(POOLS)}
    pollers[victim].kill9()
    killed = rounds_now(store)
    last = wait_rounds(store, 6) - 1
    after = {p.name: p for p in store.load_pools(POOLS)}
    committed_once(before, after)
    survivors = [p for p in POLLERS if p != victim]
    seen = observers_by_round(store, killed + 1, last)
    for name in POOLS:
        assert all(seen[name][r] for r in seen[name]), (name, seen[name])  # never unobserved
        for r in range(killed + 3, last + 1):
            assert seen[name][r] == set(assign(name, survivors, K)), (name, r, seen[name])
    assert all(after[n].last_round >= last for n in POOLS)

    # Started again, it gets its pools back.
    pollers[victim].start()
    wait_rounds(store, 3)
    first = rounds_now(store)
    last = wait_rounds(store, 3) - 1
    seen = observers_by_round(store, first, last)
    for name in POOLS:
        assert all(who == expected[name] for who in seen[name].values()), (name, seen[name])
    assert heartbeat_pools(store)[victim] == {n for n in POOLS if victim in expected[n]}
