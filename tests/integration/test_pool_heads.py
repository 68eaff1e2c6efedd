"""A poller reads in full only the pools it observes; of the others it reads their head (interval
and observers, kept beside the document by the scripts that write it). Real Redis."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from mpp_agent.codec import pool_from_doc
from mpp_agent.config import apply_config, config_of, parse_failoverpool
from mpp_agent.model import Fence, Observation, PoolHead, PoolState
from mpp_agent.poller import CycleReport, Poller, PollerSettings
from mpp_agent.probe import NodeMetrics, ProbeResult, ProbeSettings
from mpp_agent.rounds import assign, round_of
from mpp_agent.state import AdminResult
from mpp_agent.store import Store
from tests.servers import wait_until

pytestmark = pytest.mark.integration

INTERVAL = 1.0
K = 2
POOLS = [f"pool{i:02d}" for i in range(12)]
POLLERS = ["ha", "hb", "hc", "hd"]
SETTINGS = PollerSettings("h", ProbeSettings("monitor", "x"), probe_timeout=0.4)


def healthy(node, _settings):  # type: ignore[no-untyped-def]
    return ProbeResult(node, Observation.healthy(), NodeMetrics(), 0.0)


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store.from_url(redis_url, "mpp")


def create(store: Store, name: str, observers: int = K, interval: float = INTERVAL) -> None:
    text = f"name:{name};primary:10.0.0.1;secondary:10.0.0.2"
    store.create_pool(replace(parse_failoverpool(text, interval=interval), observers=observers))


def head_field(store: Store, name: str) -> bytes:
    raw: bytes = store.client.hget(store.keys.pool(name), "head")
    return raw


def next_round(store: Store) -> int:
    """Wait until a new round has started; its number."""
    target = round_of(store.server_time(), INTERVAL) + 1
    wait_until(lambda: round_of(store.server_time(), INTERVAL) >= target, 5, f"round {target}")
    return target


def cycle_all(pollers: dict[str, Poller]) -> dict[str, CycleReport]:
    reports = {}
    for poller_id, poller in pollers.items():
        reports[poller_id] = poller.cycle()
        poller.heartbeat(reports[poller_id], 0.0)
    return reports


def recorders(store: Store, round_: int) -> dict[str, set[str]]:
    return {name: set(store.round_observations(name, round_)) for name in POOLS}


def test_every_writer_of_a_pool_writes_its_head(store: Store) -> None:
    create(store, "p1", observers=3, interval=2.0)
    incarnation = store.load_pool("p1").incarnation
    assert incarnation and head_field(store, "p1") == f"1 2.0 3 {incarnation}".encode()

    def change(pool):  # type: ignore[no-untyped-def]
        config = replace(config_of(pool), interval=1.5, observers=0)
        return AdminResult(apply_config(pool, config), "", ())

    store.admin("p1", change)
    pool = store.load_pool("p1")
    assert (pool.version, head_field(store, "p1")) == (2, f"2 1.5 0 {incarnation}".encode())
    Poller(store, SETTINGS, probe=healthy).cycle(force=True)  # a tick's commit
    version = store.load_pool("p1").version
    assert head_field(store, "p1") == f"{version} 1.5 0 {incarnation}".encode()


def test_heads_stand_for_the_documents_and_the_others_are_read_whole(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("fresh", "whole", "no-head", "stale", "garbage"):
        create(store, name, observers=1, interval=2.0)
    # What a writer that keeps no head leaves, one for another version, one unreadable.
    store.client.hdel(store.keys.pool("no-head"), "head")
    store.client.hset(store.keys.pool("stale"), "head", "0 9.0 9")
    store.client.hset(store.keys.pool("garbage"), "head", "1 lots 2")
    store.client.set(store.keys.pool("wrong-type"), "not a hash")
    names = ["fresh", "whole", "no-head", "stale", "garbage", "wrong-type", "gone"]
    with caplog.at_level(logging.ERROR):
        heads, pools = store.read_heads(names, {"whole"})
    assert heads == [PoolHead.of(store.load_pool(n)) for n in names[:5]]
    assert {(h.interval, h.observers) for h in heads} == {(2.0, 1)}
    # Only the pool asked for whole, and those whose head could not stand for the document.
    assert sorted(pools) == ["garbage", "no-head", "stale", "whole"]
    assert pools["stale"] == store.load_pool("stale")
    assert "wrong-type" in caplog.text and "is a string" in caplog.text


def test_a_poller_reads_in_full_only_the_pools_it_observes(redis_url: str, store: Store) -> None:
    for name in POOLS:
        create(store, name)
    pollers = {
        pid: Poller(Store.from_url(redis_url, "mpp"), replace(SETTINGS, poller_id=pid), healthy)
        for pid in POLLERS
    }
    for poller in pollers.values():
        poller.heartbeat(CycleReport(), 0.0)
    # Its first cycle: a poller has judged no assignment yet, so it reads every pool whole.
    first = cycle_all(pollers)
    assert all(len(report.read) == len(POOLS) for report in first.values())

    round_ = next_round(store)
    reports = cycle_all(pollers)
    mine = {pid: {n for n in POOLS if pid in assign(n, POLLERS, K)} for pid in POLLERS}
    for pid, report in reports.items():
        assert {p.name for p in report.read} == mine[pid], pid
        assert set(report.rounds) == mine[pid], pid
        assert len(report.pools) == len(POOLS)  # the others known by their head
    assert recorders(store, round_) == {n: set(assign(n, POLLERS, K)) for n in POOLS}

    # One poller leaves: its pools move to pollers that did not read them whole last cycle.
    # They read them in the same cycle, so no round of those pools lacks an observer.
    pollers.pop("hd").leave()
    round_ = next_round(store)
    reports = cycle_all(pollers)
    left = [pid for pid in POLLERS if pid != "hd"]
    for pid, report in reports.items():
        now_mine = {n for n in POOLS if pid in assign(n, left, K)}
        assert now_mine <= set(report.rounds), pid
        assert now_mine - mine[pid] <= {p.name for p in report.read}, pid
    assert all(len(who) >= K for who in recorders(store, round_).values())
    moved = [n for n in POOLS if "hd" in assign(n, POLLERS, K)]
    assert moved  # the test moved some pools
    # And every round was committed.
    next_round(store)
    assert all(p.last_round >= round_ for p in store.load_pools(POOLS))


def test_a_poller_does_not_decode_again_the_state_it_committed(
    redis_url: str, store: Store
) -> None:
    create(store, "p1")
    Poller(store, SETTINGS, probe=healthy).cycle(force=True)
    decoded = pool_from_doc.cache_info()
    read = store.read_pools(["p1"])["p1"]
    assert pool_from_doc.cache_info() == decoded  # its own commit: not decoded
    assert read == Store.from_url(redis_url, "mpp").load_pool("p1")  # what others decode

    # Another document under the same version (nothing of ours writes that): decoded.
    key = store.keys.pool("p1")
    doc = json.loads(store.client.hget(key, "doc"))
    doc["nodes"][0]["message"] = "written by someone else"
    store.client.hset(key, "doc", json.dumps(doc))
    again = store.read_pools(["p1"])["p1"]
    assert isinstance(again, PoolState)
    assert again.nodes[0].message == "written by someone else"


def test_a_pool_a_poller_cannot_serve_is_known_by_its_head_only(store: Store) -> None:
    create(store, "fast", interval=0.1)  # shorter than this poller's probe timeout allows
    create(store, "slow", interval=2.0)
    poller = Poller(store, SETTINGS, probe=healthy)
    poller.cycle()
    report = poller.cycle()
    assert "fast" in report.unserved
    assert {h.name for h in report.pools} == {"fast", "slow"}
    assert [p.name for p in report.read] == ["slow"]


def test_a_rollback_below_a_version_known_by_its_head_is_written_above_it(
    redis_url: str, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # One observer per pool, two pollers: "hb" knows the pool by its head only. Redis then
    # loses the observer's last commit (a failover to a replica that lacked it) and the
    # observer is gone: "hb" takes the pool over from the older state, and must write its
    # tick above the version it saw, or every agent that saw that version would ignore it.
    name = next(n for n in POOLS if assign(n, ["ha", "hb"], 1) == ("ha",))
    create(store, name, observers=1)
    pollers = {
        pid: Poller(Store.from_url(redis_url, "mpp"), replace(SETTINGS, poller_id=pid), healthy)
        for pid in ("ha", "hb")
    }
    for poller in pollers.values():
        poller.heartbeat(CycleReport(), 0.0)
    cycle_all(pollers)
    key = store.keys.pool(name)
    next_round(store)
    before = store.client.hgetall(key)
    reports = cycle_all(pollers)
    assert list(reports["ha"].committed) == [name]
    assert reports["hb"].read == []  # the pool known to it by its head
    lost = store.load_pool(name).version
    store.client.hset(key, mapping=before)
    assert store.load_pool(name).version < lost
    pollers.pop("ha").leave()
    next_round(store)
    report = pollers["hb"].cycle()
    assert list(report.committed) == [name], report.sentence()
    assert store.load_pool(name).version > lost
    assert f"written above version {lost}" in caplog.text


def test_a_pool_named_twice_to_a_pinned_poller_is_polled_once(store: Store) -> None:
    create(store, "p1")
    poller = Poller(store, replace(SETTINGS, pools=("p1", "p1")), probe=healthy)
    report = poller.cycle(force=True)
    assert [h.name for h in report.pools] == ["p1"]
    assert list(report.committed) == ["p1"] and not report.skipped, report.sentence()


def test_a_poller_forgets_a_removed_pool_but_not_the_newest_version_it_saw(
    store: Store,
) -> None:
    create(store, "kept", observers=1)
    # fence=read_only, and this poller has no fencing account: a problem it reports.
    text = "name:removed;primary:10.0.0.1;secondary:10.0.0.2"
    store.create_pool(
        replace(parse_failoverpool(text, interval=INTERVAL), observers=1, fence=Fence.READ_ONLY)
    )
    poller = Poller(store, SETTINGS, probe=healthy)
    poller.heartbeat(CycleReport(), 0.0)
    poller.cycle()
    next_round(store)
    report = poller.cycle()
    assert sorted(report.committed) == ["kept", "removed"]
    committed = store.client.hgetall(store.keys.pool("removed"))
    assert store.written("removed", committed) is not None  # its own commit, held
    round_ = report.rounds["removed"]
    assert store.recorded_report("removed", round_) is not None  # its own report, held
    assert "removed" in poller.fencer.heartbeat()
    seen = poller.versions["removed"]
    store.remove_pool("removed")

    next_round(store)
    assert list(poller.cycle().committed) == ["kept"]
    for held in (poller.seen, poller.handled, poller.assigned, poller.observing):
        assert "removed" not in held and "kept" in held
    assert store.written("removed", committed) is None
    assert store.recorded_report("removed", round_) is None
    assert "removed" not in poller.fencer.heartbeat()
    assert "removed" not in poller.metrics.committed and "kept" in poller.metrics.committed
    assert {pool for pool, _ in poller.metrics.latency} == {"kept"}
    assert poller.versions["removed"] == seen  # a rolled-back copy must still lose to it

    # Created again under the same name (a new incarnation): polled from its first version.
    create(store, "removed", observers=1)
    next_round(store)
    poller.cycle()
    next_round(store)
    assert sorted(poller.cycle().committed) == ["kept", "removed"]
    assert store.load_pool("removed").incarnation != seen.incarnation
