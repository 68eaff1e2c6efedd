"""The store's batched reads and writes against a real Redis when one pool's key is unusable:
that pool gets a BadKey (nothing of it written), the others their values, and the process logs
each bad key once."""

from __future__ import annotations

import logging

import pytest
import redis

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import Observation
from mpp_agent.state import tick
from mpp_agent.store import BadKey, Commit, CommitRefusal, CommitResult, Store, UnknownPool
from tests.servers import RedisServer, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def store(redis_url: str) -> Store:
    store = Store.from_url(redis_url)
    for name in ("a", "b", "c"):
        store.create_pool(parse_failoverpool(f"name:{name};primary:db1;secondary:db2"))
    return store


def records(store: Store, round_: int) -> list:
    out = []
    for pool in store.load_pools():
        observations = {n.node: Observation.healthy() for n in pool.nodes}
        metrics = {str(n.node): '{"seconds_behind": 0}' for n in pool.nodes}
        out.append((pool.name, round_, observations, metrics))
    return out


def record(store: Store, round_: int) -> list[str]:
    done = store.record_observations(records(store, round_), "p1", 30, 30)
    return [r.pool for r in done]


def test_a_bad_pool_hash_is_a_badkey_among_good_pools(store: Store) -> None:
    store.client.delete(store.keys.pool("b"))
    store.client.set(store.keys.pool("b"), "x")
    found = store.read_pools()
    assert [n for n, p in found.items() if not isinstance(p, BadKey)] == ["a", "c"]
    bad = found["b"]
    assert isinstance(bad, BadKey)
    assert str(bad) == "mpp:{b}:pool is a string, not a hash"
    assert [p.name for p in store.load_pools()] == ["a", "c"]
    with pytest.raises(BadKey, match="is a string, not a hash"):
        store.load_pool("b")


def test_a_pool_document_of_another_pool_is_refused(store: Store) -> None:
    doc = store.client.hget(store.keys.pool("a"), "doc")
    store.client.hset(store.keys.pool("b"), "doc", doc)
    bad = store.read_pools()["b"]
    assert isinstance(bad, BadKey)
    assert bad.problem == (
        "holds an unreadable pool document under the key of pool 'b': it names pool 'a'"
    )


@pytest.mark.parametrize(
    ("which", "kind"), [("metrics", "hash"), ("pool_pollers", "zset")], ids=["metrics", "pollers"]
)
def test_a_record_refused_by_one_key_writes_nothing_of_that_pool(
    store: Store, which: str, kind: str
) -> None:
    key = getattr(store.keys, which)("b")
    store.client.set(key, "x")
    assert record(store, 5) == ["a", "c"]
    assert not store.client.exists(store.keys.observations("b", 5))  # checked before writing
    assert store.client.get(key) == b"x"
    assert store.client.exists(store.keys.observations("a", 5))
    rounds = store.load_round([("a", 5), ("b", 5), ("c", 5)])
    assert [sorted(reports) for _, reports in rounds] == [["p1"], [], ["p1"]]


def test_a_commit_refused_by_its_events_stream_writes_nothing(store: Store) -> None:
    store.client.delete(store.keys.events("b"))
    store.client.set(store.keys.events("b"), "x")
    pool = store.load_pool("b")
    now = store.server_time()
    result = tick(pool, {n.node: Observation.healthy() for n in pool.nodes}, now)
    with pytest.raises(BadKey, match=r"mpp:\{b\}:events is a string, not a stream"):
        store.commit(pool, result.pool, result.events, "p1", 10)
    assert store.load_pool("b") == pool  # not half-written: same version, round and document
    other = store.load_pool("a")
    assert store.commit(other, other, [], "p1", 10) == CommitResult(True)
    assert store.commit(other, other, [], "p1", 11) == (False, CommitRefusal.VERSION)
    again = store.load_pool("a")
    assert store.commit(again, again, [], "p1", 10) == (False, CommitRefusal.ROUND)


def test_commits_in_one_round_trip_stand_or_fall_each_on_its_own(store: Store) -> None:
    store.client.delete(store.keys.events("b"))
    store.client.set(store.keys.events("b"), "x")
    a, b, c = (store.load_pool(name) for name in ("a", "b", "c"))
    now = store.server_time()
    ticked = tick(a, {n.node: Observation.healthy() for n in a.nodes}, now)
    stale = store.load_pool("c")
    store.commit(c, c, [], "other", 9)  # another writer: the batch's "c" is now stale
    gone = store.load_pool("a")
    store.remove_pool("a")
    store.create_pool(parse_failoverpool("name:a2;primary:db1"))
    a2 = store.load_pool("a2")
    results = store.commit_many(
        [
            Commit(gone, ticked.pool, ticked.events, "p1", 10),
            Commit(b, b, [], "p1", 10),
            Commit(stale, stale, [], "p1", 10),
            Commit(a2, a2, [], "p1", 10),
        ]
    )
    assert isinstance(results[0], UnknownPool)
    assert isinstance(results[1], BadKey) and "events is a string" in str(results[1])
    assert results[2:] == [(False, CommitRefusal.VERSION), CommitResult(True)]
    assert store.load_pool("a2").version == a2.version + 1
    assert store.load_pool("b") == b  # nothing of it written
    assert store.load_pool("c").version == stale.version + 1  # only the other writer's


def test_a_pool_is_not_removed_past_a_wrong_typed_index(store: Store) -> None:
    store.client.delete(store.keys.pools())
    store.client.set(store.keys.pools(), "x")
    with pytest.raises(BadKey, match="mpp:pools is a string, not a set"):
        store.remove_pool("b")
    assert store.load_pool("b").name == "b"  # refused before deleting anything
    assert store.client.exists(store.keys.events("b"))
    store.client.delete(store.keys.pools())
    store.client.sadd(store.keys.pools(), "a", "b", "c")
    store.remove_pool("b")
    assert store.pool_names() == ["a", "c"]


def test_event_times_are_the_redis_time_of_their_commit(store: Store) -> None:
    before = store.server_time()
    pool = store.load_pool("a")
    result = tick(pool, {n.node: Observation.healthy() for n in pool.nodes}, before)
    assert result.events and store.commit(pool, result.pool, result.events, "p1", 10).committed
    after = store.server_time()
    stamps = [event["at"] for _, event in store.events("a")]
    assert len(stamps) == 1 + len(result.events)  # the creation's and the commit's
    assert all(isinstance(at, float) and at <= after for at in stamps)
    assert all(before <= at for at in stamps[1:])


def test_each_bad_key_is_logged_once_and_once_more_when_repaired(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    key = store.keys.metrics("b")
    store.client.set(key, "x")
    with caplog.at_level(logging.WARNING, logger="mpp.store"):
        for round_ in range(1, 6):
            assert record(store, round_) == ["a", "c"]
        store.client.delete(key)
        store.client.hset(key, "db1:3306", "{}")
        store.client.expire(key, 30)
        store.client.set(key, "y")  # a string again, the same problem: no new line
        record(store, 6)
        store.client.delete(key)
        assert record(store, 7) == ["a", "b", "c"]
        record(store, 8)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "mpp:{b}:metrics is a string, not a hash: left out until it is repaired "
        "(other pools go on)",
        "mpp:{b}:metrics is usable again",
    ]
    assert caplog.records[0].levelname == "ERROR"


def test_a_read_only_redis_is_not_taken_for_bad_keys(
    redis_url: str, fresh_redis: RedisServer
) -> None:
    """A replica (a Sentinel failover not yet seen) refuses writes: Redis is unavailable, which
    the daemons retry, not a pool's bad key."""
    source = Store.from_url(redis_url)
    source.create_pool(parse_failoverpool("name:a;primary:db1"))
    replica = Store.from_url(fresh_redis.url)
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    replica.client.replicaof(host, port)
    try:
        wait_until(lambda: replica.pool_names() == ["a"], 10, "the replica in sync")
        with pytest.raises(redis.exceptions.ReadOnlyError):
            record(replica, 1)
        pool = replica.load_pool("a")
        with pytest.raises(redis.exceptions.ReadOnlyError):
            replica.commit(pool, pool, [], "p1", 1)
        assert replica.problems.known == {}
    finally:
        replica.client.replicaof("no", "one")
