"""A real mpp-poller with the pool setting keep_connections, against real MariaDB and Redis.

Topology (tests/servers.py): node1 <-> node2 master-master, node3 a replica of node1; the pool
is node1 PRIMARY, node2 and node3 SECONDARY, interval 1 s, M = 4."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from mpp_agent.config import apply_config, config_of, parse_failoverpool
from mpp_agent.model import PoolState, State
from mpp_agent.state import AdminResult
from mpp_agent.store import Store
from tests.daemons import PollerProcess, describe, watch_ticks
from tests.servers import MONITOR_USER, MariaDBCluster, MariaDBNode, wait_until

pytestmark = pytest.mark.integration

INTERVAL = 1.0
M = 4


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store.from_url(redis_url, "mpp")


@pytest.fixture
def poller(redis_url: str) -> Iterator[PollerProcess]:
    proc = PollerProcess(redis_url, "keeper")
    yield proc
    proc.cleanup()


def make_pool(store: Store, cluster: MariaDBCluster, keep: float) -> PoolState:
    text = (
        f"name:p1;primary:{cluster.node1.node_id};secondary:{cluster.node2.node_id};"
        f"secondary:{cluster.node3.node_id}"
    )
    config = replace(
        parse_failoverpool(text, interval=INTERVAL, max_requests=M), keep_connections=keep
    )
    return store.create_pool(config)


def sessions(node: MariaDBNode) -> set[int]:
    rows = node.sql(f"SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{MONITOR_USER}'")
    return {int(row[0]) for row in rows}


def is_steady(pool: PoolState) -> bool:
    return [n.state for n in pool.nodes] == [State.ACTIVE, State.STANDBY, State.STANDBY] and all(
        n.requests == 0 for n in pool.nodes
    )


# A node's first login serves a random part of the period (renewals are spread over it), so
# with 60 s one of the three could fall due inside the few seconds a test watches it (about
# 7 % per node): an hour makes that about 0.1 %, and "no new logins" stays exact.
KEEP = 3600.0


def start_steady(store: Store, cluster: MariaDBCluster, poller: PollerProcess) -> None:
    """The pool with connections kept for an hour, its poller, and its nodes ACTIVE/STANDBY."""
    make_pool(store, cluster, keep=KEEP)
    poller.start()
    watch_ticks(store, "p1", lambda seen: is_steady(seen[-1]), 20)


def test_the_poller_probes_on_kept_connections_until_the_pool_says_otherwise(
    store: Store, mariadb_cluster: MariaDBCluster, poller: PollerProcess
) -> None:
    start_steady(store, mariadb_cluster, poller)
    held = {node.port: sessions(node) for node in mariadb_cluster.nodes}
    assert all(len(ids) == 1 for ids in held.values()), held
    watch_ticks(store, "p1", lambda seen: len(seen) >= 4, 10)  # more rounds, no new logins
    assert {node.port: sessions(node) for node in mariadb_cluster.nodes} == held

    def no_keeping(pool: PoolState) -> AdminResult:
        return AdminResult(apply_config(pool, replace(config_of(pool), keep_connections=0)), "", ())

    store.admin("p1", no_keeping)
    # A login per probe again: the kept sessions are closed, the pool goes on ticking.
    for node in mariadb_cluster.nodes:
        wait_until(lambda node=node: not sessions(node) & held[node.port], 10, "kept closed")
    ticks = watch_ticks(store, "p1", lambda seen: len(seen) >= 3, 10)
    assert is_steady(ticks[-1]), describe(ticks)


def test_a_killed_active_fails_over_with_kept_connections(
    store: Store, mariadb_cluster: MariaDBCluster, poller: PollerProcess
) -> None:
    start_steady(store, mariadb_cluster, poller)
    mariadb_cluster.node1.kill9()
    killed = time.monotonic()
    ticks = watch_ticks(store, "p1", lambda seen: seen[-1].nodes[1].state is State.ACTIVE, 15)
    elapsed = time.monotonic() - killed
    last = ticks[-1]
    assert last.nodes[0].state is State.FAILED_OFFLINE, describe(ticks)
    assert [n.state for n in last.nodes].count(State.ACTIVE) == 1
    # Failed on its M-th failing round, as with a login per probe (one round of slack).
    assert elapsed < (M + 1) * INTERVAL + 1.0, describe(ticks)
