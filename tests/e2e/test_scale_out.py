"""End to end at scale: with sharded observation (4 pollers, the pool observed by K = 2 of them)
one of its observers is killed in the middle of a failover, which still lands within budget;
and on a Redis Cluster (3 masters, 3 replicas) a failover lands within budget too."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mpp_agent.model import State
from mpp_agent.rounds import assign
from tests.e2e.conftest import BUDGET, POOL, System, running_system
from tests.e2e.test_failover import (
    fail_over_killing_a_poller,
    kill_the_active,
    never_two_active,
)
from tests.servers import HAProxy, MariaDBCluster, RedisClusterServers, RedisServer, wait_until

pytestmark = pytest.mark.e2e

POLLERS = ("poller-a", "poller-b", "poller-c", "poller-d")
K = 2


@pytest.fixture
def sharded(
    mariadb_cluster: MariaDBCluster,
    haproxy_factory: Callable[[str], HAProxy],
    tmp_path: Path,
) -> Iterator[System]:
    redis_server = RedisServer().start()
    try:
        with running_system(
            mariadb_cluster,
            haproxy_factory,
            tmp_path,
            redis_server,
            redis_server.url,
            poller_ids=POLLERS,
            observers=K,
        ) as system:
            yield system
    finally:
        redis_server.cleanup()


def test_an_observer_killed_during_the_failover_costs_at_most_one_interval(
    sharded: System,
) -> None:
    system = sharded
    observers = assign(POOL, POLLERS, K)
    wait_until(
        lambda: (
            {p.poller_id for p in system.store.pollers() if POOL in p.info.get("pools", [])}
            == set(observers)
        ),
        10,
        "the pool observed by its 2 assigned pollers",
    )
    victim = next(p for p in system.pollers if p.poller_id == observers[0])
    fail_over_killing_a_poller(system, victim)
    # The pool has 2 live observers again: the survivor and the next poller by its hash.
    survivors = [p for p in POLLERS if p != victim.poller_id]
    wait_until(
        lambda: (
            {
                p.poller_id
                for p in system.store.pollers()
                if p.alive and POOL in p.info.get("pools", [])
            }
            >= set(assign(POOL, survivors, K))
        ),
        10,
        "two live observers again",
    )


@pytest.fixture
def on_cluster(
    mariadb_cluster: MariaDBCluster,
    haproxy_factory: Callable[[str], HAProxy],
    tmp_path: Path,
    redis_cluster: RedisClusterServers,
) -> Iterator[System]:
    redis_cluster.wait_healthy()
    redis_cluster.flush()
    with running_system(
        mariadb_cluster, haproxy_factory, tmp_path, redis_cluster, redis_cluster.url
    ) as system:
        yield system


def test_failover_within_budget_on_a_redis_cluster(on_cluster: System) -> None:
    system = on_cluster
    with system.recorder() as rec:
        failover = kill_the_active(system, rec)
        time.sleep(1.0)
    print(f"failover on a Redis Cluster {failover:.2f} s (budget {BUDGET:.0f} s)")
    assert failover <= BUDGET, rec.timeline()
    assert rec.misrouted() == []
    never_two_active(rec)
    assert [n.state for n in system.pool().nodes] == [State.FAILED_OFFLINE, State.ACTIVE]
