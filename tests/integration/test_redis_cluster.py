"""A real Redis Cluster (3 masters, 3 replicas on loopback): pools spread over the shards,
pollers, agent and mpp-admin through ``redis+cluster://``, and ``kill -9`` of a master that holds
pools: once its replica is promoted every pool ticks again, nothing went backwards, and no pool
ever had two ACTIVE nodes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpp_agent.model import PoolState, State
from mpp_agent.rounds import round_of
from mpp_agent.store import Store
from tests.daemons import PollerProcess, ask_agent
from tests.integration.admin_support import mpp_admin
from tests.servers import (
    MariaDBCluster,
    RedisClusterServers,
    free_port,
    spawn,
    terminate,
    wait_until,
)

pytestmark = pytest.mark.integration

INTERVAL = 1.0
POOLS = [f"pool{i:02d}" for i in range(12)]


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterServers) -> str:
    redis_cluster.wait_healthy()
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def running(
    cluster_url: str, mariadb_cluster: MariaDBCluster, tmp_path: Path
) -> Iterator[tuple[Store, int]]:
    """12 pools created by mpp-admin, 2 pollers and an agent, all through redis+cluster://;
    the store and the agent's port once every pool is steady."""
    nodes = [mariadb_cluster.node1.node_id, mariadb_cluster.node2.node_id]
    for name in POOLS:
        done = mpp_admin(
            cluster_url,
            *("pool", "create", name, "--primary", nodes[0], "--secondary", nodes[1]),
            *("--interval", str(INTERVAL)),
        )
        assert done.exit_code == 0, done.stdout + done.stderr
    pollers = [PollerProcess(cluster_url, name).start() for name in ("ca", "cb")]
    port = free_port()
    # Full refreshes once a minute: what the agent learns meanwhile comes by notification.
    argv = ["mpp-agent", "--redis-url", cluster_url, "--listen", f"127.0.0.1:{port}"]
    argv += ["--refresh-interval", "60"]
    agent = spawn(argv, tmp_path / "agent.log")
    store = Store.from_url(cluster_url)
    try:
        wait_until(lambda: all(is_steady(p) for p in store.load_pools(POOLS)), 40, "steady pools")
        yield store, port
    finally:
        terminate(agent)
        for poller in pollers:
            poller.cleanup()


def is_steady(pool: PoolState) -> bool:
    return [n.state for n in pool.nodes] == [State.ACTIVE, State.STANDBY]


ask = ask_agent


def test_pollers_agent_and_admin_work_through_redis_cluster(
    running: tuple[Store, int],
    redis_cluster: RedisClusterServers,
    mariadb_cluster: MariaDBCluster,
) -> None:
    store, port = running
    shards = {redis_cluster.master_of(store.keys.pool(name)).port for name in POOLS}
    assert len(shards) >= 2, shards
    url = redis_cluster.url
    listing = json.loads(mpp_admin(url, "pools", "--json").stdout)
    assert sorted(p["name"] for p in listing["pools"]) == POOLS
    pollers = json.loads(mpp_admin(url, "pollers", "--json").stdout)
    assert {p["poller_id"] for p in pollers["pollers"] if p["alive"]} == {"ca", "cb"}
    assert pollers["under_observed"] == []
    node1, node2 = mariadb_cluster.node1.node_id, mariadb_cluster.node2.node_id
    for name in POOLS:
        wait_until(
            lambda n=name: ask(port, f"{n} {node1} rw").startswith("up ready"), 10, "the agent"
        )
        assert ask(port, f"{name} {node2} rw").startswith("up drain")  # the STANDBY
    # An admin change reaches the agent by notification through the Cluster.
    done = mpp_admin(
        url, *("override", node1, "--pool", "pool03", "--state", "STANDBY", "--reason", "test")
    )
    assert done.exit_code == 0, done.stdout + done.stderr
    wait_until(lambda: ask(port, f"pool03 {node1} rw").startswith("up drain"), 5, "notified")
    assert ask(port, f"pool04 {node1} rw").startswith("up ready")
    # Every pool keeps ticking, once per interval, each by its own shard's clock.
    before = {p.name: p for p in store.load_pools(POOLS)}
    time.sleep(3 * INTERVAL)
    after = {p.name: p for p in store.load_pools(POOLS)}
    for name in POOLS:
        rounds = after[name].last_round - before[name].last_round
        assert 2 <= rounds <= 4, (name, rounds)


class Sampler:
    """Reads every pool all the time: its versions must never go down, and no reading may show
    two ACTIVE nodes of a pool."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: dict[str, list[int]] = {name: [] for name in POOLS}
        self.two_active: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        while not self.stop.is_set():
            try:
                pools = self.store.load_pools(POOLS)
            except Exception:  # a shard failing over: nothing to read there meanwhile
                time.sleep(0.05)
                continue
            for pool in pools:
                self.seen[pool.name].append(pool.version)
                if len(pool.active_nodes) > 1:
                    self.two_active.append(f"{pool.name} v{pool.version}")
            time.sleep(0.05)

    def went_backwards(self) -> dict[str, list[int]]:
        return {n: v for n, v in self.seen.items() if v != sorted(v)}


def test_kill9_of_a_master_holding_pools(
    running: tuple[Store, int], redis_cluster: RedisClusterServers
) -> None:
    store, _ = running
    victim = redis_cluster.master_of(store.keys.pool(POOLS[0]))
    held = [n for n in POOLS if redis_cluster.master_of(store.keys.pool(n)) is victim]
    sampler = Sampler(Store.from_url(redis_cluster.url))
    sampler.thread.start()
    try:
        time.sleep(1.5)
        killed_round = round_of(store.server_time(), INTERVAL)
        redis_cluster.kill9(victim)
        wait_until(
            lambda: redis_cluster.master_of(store.keys.pool(POOLS[0])) is not victim,
            20,
            "the replica promoted",
        )

        def all_tick_again() -> bool:
            try:
                return all(p.last_round >= killed_round + 3 for p in store.load_pools(POOLS))
            except Exception:
                return False

        wait_until(all_tick_again, 30, "every pool ticking again")
        time.sleep(1.0)
    finally:
        sampler.stop.set()
        sampler.thread.join(10)
        victim.start()  # back as a replica of the promoted one
        redis_cluster.wait_healthy(30)
    assert held, "the killed master held no pool"
    assert sampler.went_backwards() == {}
    assert sampler.two_active == []
    assert all(is_steady(p) for p in store.load_pools(POOLS))
    assert all(len(v) > 10 for v in sampler.seen.values())


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("redis+cluster://127.0.0.1:7000/3", "has only database 0"),
        ("redis+cluster://127.0.0.1:7000,127.0.0.1/", "expected host:port"),
        ("redis+cluster:///", "expected redis+cluster://h1:p1,h2:p2/"),
        ("redis+cluster://127.0.0.1:7000/?ssl_ca_certs=/x", "unknown parameter 'ssl_ca_certs'"),
        ("rediss+cluster://127.0.0.1:7000/?nope=1", "unknown parameter 'nope'"),
    ],
)
def test_bad_cluster_urls_are_refused_before_connecting(url: str, said: str) -> None:
    done = mpp_admin(url, "pools")
    assert done.exit_code == 2, done.stdout + done.stderr
    assert said in done.stderr


def test_an_unreachable_cluster_is_said_without_its_password() -> None:
    port = free_port()
    done = mpp_admin(f"redis+cluster://:hunter2@127.0.0.1:{port}/", "pools")
    assert done.exit_code == 6  # UNAVAILABLE
    assert "unreachable" in done.stderr and "hunter2" not in done.stdout + done.stderr
