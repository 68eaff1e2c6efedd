"""Commits confirmed by a Redis replica (``WAIT``) where the master has one, against real
redis-servers: no replica, no WAIT; a replica in sync confirms; a frozen one is a WARNING and the
commit stands."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.store import Commit, CommitResult, Store
from tests.servers import RedisServer, wait_until


def commit_once(store: Store) -> bool:
    pool = store.load_pool("p1")
    return store.commit(pool, pool, [], "test", None).committed


def test_no_replica_no_wait(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = Store.from_url(redis_url, "wait1")
    store.create_pool(parse_failoverpool("name:p1;primary:db1", interval=1.0))
    assert not store.has_replicas("pool1")
    assert store.confirm("p1", 2, 1.0)
    with caplog.at_level(logging.WARNING, "mpp.store"):
        assert commit_once(store)
    assert "not confirmed" not in caplog.text


def test_a_replica_confirms_and_a_frozen_one_is_a_warning(
    redis_master_and_replica: tuple[RedisServer, RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    master, replica = redis_master_and_replica
    store = Store.from_url(master.url, "wait2")
    store.create_pool(parse_failoverpool("name:p1;primary:db1", interval=1.0))
    assert store.has_replicas("pool1")
    version = store.load_pool("p1").version
    assert commit_once(store)
    assert replica.client().hget(store.keys.pool("p1"), "version") == str(version + 1)
    os.kill(replica.pid, signal.SIGSTOP)
    with caplog.at_level(logging.WARNING, "mpp.store"):
        assert commit_once(store)  # the commit stands
    assert "commit of pool p1 version" in caplog.text
    assert "not confirmed by any Redis replica within 200ms" in caplog.text
    assert store.load_pool("p1").version == version + 2


def test_commits_in_one_round_trip_are_confirmed_in_it(
    redis_master_and_replica: tuple[RedisServer, RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    master, replica = redis_master_and_replica
    store = Store.from_url(master.url, "wait3")
    names = [f"q{i}" for i in range(7)]
    for name in names:
        store.create_pool(parse_failoverpool(f"name:{name};primary:db1", interval=1.0))
    pools = [store.load_pool(name) for name in names]
    assert store.commit_many([Commit(p, p, [], "test", None) for p in pools]) == [
        CommitResult(True)
    ] * len(names)
    key = store.keys.pool("q6")
    assert replica.client().hget(key, "version") == str(pools[6].version + 1)
    os.kill(replica.pid, signal.SIGSTOP)
    pools = [store.load_pool(name) for name in names]
    with caplog.at_level(logging.WARNING, "mpp.store"):
        results = store.commit_many([Commit(p, p, [], "test", None) for p in pools])
    os.kill(replica.pid, signal.SIGCONT)
    assert results == [CommitResult(True)] * len(names)  # the commits stand
    lines = [r.getMessage() for r in caplog.records if "not confirmed" in r.getMessage()]
    assert lines == [  # one line for the round trip, not one per pool
        f"commits of pools q0 (version {pools[0].version + 1}), q1 (version "
        f"{pools[1].version + 1}), q2 (version {pools[2].version + 1}), q3 (version "
        f"{pools[3].version + 1}), q4 (version {pools[4].version + 1}) and 2 more not confirmed "
        "by any Redis replica within 200ms: a Redis failover now could lose them"
    ]


def test_losing_the_last_replica_is_said_once_and_its_return_too(
    redis_master_and_replica: tuple[RedisServer, RedisServer],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    master, replica = redis_master_and_replica
    monkeypatch.setattr("mpp_agent.store.REPLICA_CHECK_EVERY", 0.0)  # look at every commit
    store = Store.from_url(master.url, "wait4")
    store.create_pool(parse_failoverpool("name:p1;primary:db1", interval=1.0))
    with caplog.at_level(logging.WARNING, "mpp.store"):
        assert commit_once(store)
    assert "replica" not in caplog.text  # a replica in sync: nothing to say
    os.kill(replica.pid, signal.SIGSTOP)  # it cannot reconnect once its link is dropped
    master.client().client_kill_filter(_type="replica")
    try:
        with caplog.at_level(logging.WARNING, "mpp.store"):
            assert commit_once(store)  # the commit stands, unconfirmed
            assert commit_once(store)
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    lost = [r.getMessage() for r in caplog.records if "any more" in r.getMessage()]
    assert lost == [
        f"Redis master {store.redacted_url} has no connected replica any more: commits not "
        "confirmed by any Redis replica until one connects; a Redis failover now could lose them"
    ]
    with caplog.at_level(logging.WARNING, "mpp.store"):
        wait_until(lambda: store.has_replicas("p1"), 15, "the replica connected again")
        assert commit_once(store)
    assert "has a connected replica again: commits are confirmed" in caplog.text
    assert replica.client().hget(store.keys.pool("p1"), "version") == str(
        store.load_pool("p1").version
    )
