"""A real Redis Cluster (3 masters, 3 replicas on loopback): pools spread over the shards,
pollers, agent and mpp-admin through ``redis+cluster://``, and ``kill -9`` of a master that holds
pools: once its replica is promoted every pool ticks again, nothing went backwards, and no pool
ever had two ACTIVE nodes."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import NodeId, Observation, PoolState, State
from mpp_agent.poller import Poller, PollerSettings
from mpp_agent.probe import NodeMetrics, ProbeResult, ProbeSettings
from mpp_agent.rounds import pool_heartbeat_ttl, round_of
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


# ----------------------------------------------------------------- the pool index on a Cluster

INDEXED = [f"idx{i:02d}" for i in range(12)]
POOL_SPEC = ("--primary", "10.0.0.1", "--secondary", "10.0.0.2", "--interval", str(INTERVAL))


def admin_create(url: str, name: str, *more: str) -> None:
    done = mpp_admin(url, *more, "pool", "create", name, *POOL_SPEC)
    assert done.exit_code == 0, done.stdout + done.stderr


def admin_remove(url: str, name: str) -> None:
    done = mpp_admin(url, "pool", "remove", name, "--yes")
    assert done.exit_code == 0, done.stdout + done.stderr


def listed(url: str) -> list[str]:
    done = mpp_admin(url, "pools", "--json")
    assert done.exit_code == 0, done.stdout + done.stderr
    return sorted(p["name"] for p in json.loads(done.stdout)["pools"])


def indexed_anywhere(store: Store) -> set[str]:
    """Every name in every bucket the directory lists, read key by key."""
    tags = store.client.smembers(store.keys.pool_buckets())
    names: set[str] = set()
    for tag in tags:
        names |= {m.decode() for m in store.client.smembers(store.keys.pool_bucket(tag.decode()))}
    return names


def test_the_pool_index_changes_with_the_pool_on_every_shard(
    cluster_url: str, redis_cluster: RedisClusterServers
) -> None:
    store = Store.from_url(cluster_url)
    shards = {redis_cluster.master_of(store.keys.pool(n)).port for n in INDEXED}
    assert len(shards) == 3, shards  # the names spread over every master
    for name in INDEXED:
        admin_create(cluster_url, name)
    assert store.pool_names() == INDEXED
    assert listed(cluster_url) == INDEXED
    for name in INDEXED:
        bucket = store.keys.pool_bucket(store.keys.bucket_tag(name))
        slot = store.client.cluster_keyslot(bucket)
        assert slot == store.client.cluster_keyslot(store.keys.pool(name)), name
        assert store.client.sismember(bucket, name)
        # the bucket is on the pool's own master: the script changes both
        assert redis_cluster.master_of(bucket) is redis_cluster.master_of(store.keys.pool(name))
    tags = {t.decode() for t in store.client.smembers(store.keys.pool_buckets())}
    assert tags == {store.keys.bucket_tag(n) for n in INDEXED}
    # Removed pools leave no name behind; the directory keeps its tags (empty buckets list none).
    removed = INDEXED[::2]
    for name in removed:
        admin_remove(cluster_url, name)
    kept = INDEXED[1::2]
    assert store.pool_names() == kept
    assert listed(cluster_url) == kept
    assert indexed_anywhere(store) == set(kept)
    assert {t.decode() for t in store.client.smembers(store.keys.pool_buckets())} == tags
    # Created again, removed again: the name follows the pool each time.
    admin_create(cluster_url, removed[0])
    assert store.pool_names() == sorted([*kept, removed[0]])
    for name in [removed[0], *kept]:
        admin_remove(cluster_url, name)
    assert store.pool_names() == []
    assert indexed_anywhere(store) == set()
    done = mpp_admin(cluster_url, "pools")
    assert (done.exit_code, done.stdout) == (0, "No pools.\n")
    # A namespace without pools points at the one that has some.
    admin_create(cluster_url, "elsewhere", "--namespace", "other")
    done = mpp_admin(cluster_url, "pools")
    assert "namespaces with pools: other" in done.stderr, done.stderr


def test_the_cluster_index_is_read_again_when_pools_change_and_at_least_every_refresh(
    cluster_url: str,
) -> None:
    reader = Store.from_url(cluster_url)
    admin_create(cluster_url, INDEXED[0])
    assert reader.pool_names() == INDEXED[:1]
    commands = reader.client.pipeline  # every bucket read goes through one pipeline
    reads: list[int] = []

    def counted() -> object:
        reads.append(1)
        return commands(transaction=False)

    reader.client.pipeline = lambda transaction=False: counted()
    assert reader.pool_names() == INDEXED[:1]
    assert reads == []  # nothing created or removed: the buckets are not read again
    admin_create(cluster_url, INDEXED[1])  # mpp-admin bumps ns:pool-changes after the script
    assert reader.pool_names() == INDEXED[:2]
    admin_remove(cluster_url, INDEXED[0])
    assert reader.pool_names() == INDEXED[1:2]
    assert len(reads) == 2
    # A creator that died between its script and the bump: the pool is seen at the next whole
    # read, which comes within the refresh period whatever the counter says.
    writer = Store.from_url(cluster_url)
    writer.pool_changed = lambda: None  # type: ignore[method-assign]
    writer.create_pool(parse_failoverpool(f"name:{INDEXED[2]};primary:10.0.0.1"))
    assert reader.pool_names() == INDEXED[1:2]
    reader.index_refresh = 0.0
    assert reader.pool_names() == INDEXED[1:3]


def same_bucket(store: Store, one: str, other: str) -> bool:
    return store.keys.bucket_tag(one) == store.keys.bucket_tag(other)


def test_a_wrong_typed_bucket_or_directory_is_a_bad_key(cluster_url: str) -> None:
    store = Store.from_url(cluster_url)
    for name in INDEXED[:6]:
        admin_create(cluster_url, name)
    victim = INDEXED[0]
    bucket = store.keys.pool_bucket(store.keys.bucket_tag(victim))
    share = sorted(n for n in INDEXED[:6] if same_bucket(store, n, victim))
    store.client.delete(bucket)
    store.client.set(bucket, "not a set")
    # The other buckets' pools are still listed; the bad bucket is said, exit 7 (BAD_STATE).
    others = sorted(set(INDEXED[:6]) - set(share))
    assert store.pool_names() == others
    done = mpp_admin(cluster_url, "pools")
    assert done.exit_code == 7, done.stdout + done.stderr
    assert f"{bucket} is a string, not a set (left out)" in done.stderr
    assert all(name in done.stdout for name in others) and "Traceback" not in done.stderr
    # Neither creating nor removing a pool of that bucket writes anything.
    again = mpp_admin(cluster_url, "pool", "remove", victim, "--yes")
    assert again.exit_code == 7 and f"{bucket} is a string, not a set" in again.stderr
    assert store.load_pool(victim).name == victim
    twin = next(f"twin{i}" for i in itertools.count() if same_bucket(store, f"twin{i}", victim))
    created = mpp_admin(cluster_url, "pool", "create", twin, *POOL_SPEC)
    assert created.exit_code == 7 and f"{bucket} is a string, not a set" in created.stderr
    assert not store.client.exists(store.keys.pool(twin), store.keys.events(twin))
    store.client.delete(bucket)
    store.client.sadd(bucket, *share)
    # A wrong-typed directory: nothing is listed, every command says why, nothing is created.
    directory = store.keys.pool_buckets()
    store.client.delete(directory)
    store.client.set(directory, "not a set")
    done = mpp_admin(cluster_url, "pools")
    assert done.exit_code == 7, done.stdout + done.stderr
    assert f"{directory} is a string, not a set" in done.stderr and "Traceback" not in done.stderr
    created = mpp_admin(cluster_url, "pool", "create", "newcomer", *POOL_SPEC)
    assert created.exit_code == 7 and f"{directory} is a string, not a set" in created.stderr
    assert not store.client.exists(store.keys.pool("newcomer"))


def test_a_poller_forgets_no_pool_while_a_bucket_cannot_be_read(cluster_url: str) -> None:
    """Removed pools are forgotten; pools left out of the index because their bucket cannot
    be read are not removed, and the poller keeps what it holds of them."""
    store = Store.from_url(cluster_url)
    for name in INDEXED[:6]:
        admin_create(cluster_url, name)
    poller = Poller(
        Store.from_url(cluster_url), PollerSettings("p", ProbeSettings("m", "x")), healthy
    )
    poller.store.index_refresh = 0.0  # the index read whole every cycle
    assert sorted(poller.cycle(force=True).committed) == INDEXED[:6]
    victim = INDEXED[0]
    bucket = store.keys.pool_bucket(store.keys.bucket_tag(victim))
    share = sorted(n for n in INDEXED[:6] if same_bucket(store, n, victim))
    store.client.delete(bucket)
    store.client.set(bucket, "not a set")
    try:
        poller.cycle(force=True)
        assert set(share) <= poller.seen.keys() & poller.handled.keys()
        assert set(share) <= set(poller.metrics.committed)
    finally:
        store.client.delete(bucket)
        store.client.sadd(bucket, *share)
    admin_remove(cluster_url, victim)
    poller.cycle(force=True)
    assert victim not in poller.seen and victim not in poller.metrics.committed
    assert set(INDEXED[:6]) - {victim} <= poller.seen.keys()


# ----------------------------------------------------------------- one clock per pool

DEFAULT_SKEW = 40.0  # what the skewed poller gets wrong about the default clock...
SHARD_SKEWS = (7.0, -7.0, 0.0)  # ...and about each shard's, one amount per master


def healthy(node: NodeId, _settings: ProbeSettings) -> ProbeResult:
    return ProbeResult(node, Observation.healthy(), NodeMetrics(), 0.0)


class SkewedPoller(Poller):
    """A poller whose clocks are all off, each by another amount: whatever a per-pool script
    stores must still be in the time frame of the shard holding the pool."""

    def __init__(self, store: Store, skews: dict[str, float]) -> None:
        super().__init__(store, PollerSettings("skewed", ProbeSettings("m", "x")), healthy)
        self.skews = skews

    def sync_clocks(self, pools: Sequence[PoolState]) -> float:
        now = super().sync_clocks(pools)
        self.offset += DEFAULT_SKEW
        self.offsets = {name: t + self.skews[name] for name, t in self.offsets.items()}
        return now + DEFAULT_SKEW


def shard_ms(redis_cluster: RedisClusterServers, store: Store, name: str) -> float:
    with redis_cluster.master_of(store.keys.pool(name)).client() as c:
        seconds, micros = c.time()
    return seconds * 1000 + micros / 1000


def test_per_pool_scripts_stamp_by_their_shards_clock_whatever_the_poller_thinks(
    cluster_url: str, redis_cluster: RedisClusterServers
) -> None:
    store = Store.from_url(cluster_url)
    for name in INDEXED:
        admin_create(cluster_url, name)
    masters = sorted({redis_cluster.master_of(store.keys.pool(n)).port for n in INDEXED})
    skew_of = dict(zip(masters, SHARD_SKEWS, strict=True))
    skews = {n: skew_of[redis_cluster.master_of(store.keys.pool(n)).port] for n in INDEXED}
    poller = SkewedPoller(store, skews)
    before = {name: shard_ms(redis_cluster, store, name) for name in INDEXED}
    report = poller.cycle(force=True)
    after = {name: shard_ms(redis_cluster, store, name) for name in INDEXED}
    assert sorted(report.committed) == INDEXED  # every shard's pools recorded and committed
    ttl_ms = pool_heartbeat_ttl(INTERVAL) * 1000
    for name in INDEXED:
        # The poller's heartbeat for the pool expires by the pool's shard's clock...
        score = store.client.zscore(store.keys.pool_pollers(name), "skewed")
        assert before[name] + ttl_ms - 1 <= score <= after[name] + ttl_ms + 1, (name, skews[name])
        # ...and so are the events of its commit stamped.
        ((_, event),) = store.last_events(name, 1)
        assert before[name] - 1 <= event["at"] * 1000 <= after[name] + 1, (name, skews[name])
        # The round is still the poller's to number, by its idea of the pool's clock.
        assert store.load_pool(name).last_round == poller.handled[name]
