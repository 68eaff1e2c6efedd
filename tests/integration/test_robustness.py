"""What a broken stored document, a probe bug or a changed interval must not break (real Redis)."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import gevent
import pytest

from mpp_agent.agent_server import is_pool_stale
from mpp_agent.config import apply_config, config_of, parse_failoverpool
from mpp_agent.model import NodeId, Observation, Outcome
from mpp_agent.poller import CycleReport, Poller, PollerSettings
from mpp_agent.probe import NodeMetrics, ProbeResult, ProbeSettings
from mpp_agent.rounds import deadline_at, round_of
from mpp_agent.state import AdminResult
from mpp_agent.store import Store
from tests.daemons import PollerProcess
from tests.servers import wait_until

pytestmark = pytest.mark.integration

SETTINGS = PollerSettings("p-test", ProbeSettings("monitor", "x"), probe_timeout=0.4)


@pytest.fixture
def store(redis_url: str) -> Store:
    return Store.from_url(redis_url, "mpp")


def create(store: Store, name: str, interval: float = 2.0) -> None:
    text = f"name:{name};primary:10.0.0.1;secondary:10.0.0.2"
    store.create_pool(parse_failoverpool(text, interval=interval))


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda d: {**d, "interval": 0}, id="zero-interval"),
        pytest.param(lambda d: {k: v for k, v in d.items() if k != "nodes"}, id="no-nodes"),
        pytest.param(
            lambda d: {**d, "nodes": [{**d["nodes"][0], "requests": "many"}]}, id="bad-requests"
        ),
        pytest.param(lambda d: {**d, "interval": 1e-300}, id="tiny-interval"),
        # the bad pool's key holds a document naming the good pool: it must not replace it
        pytest.param(lambda d: {**d, "name": "good"}, id="hijacking-name"),
    ],
)
def test_one_unreadable_pool_does_not_hide_the_others(store: Store, corrupt) -> None:
    create(store, "good")
    create(store, "bad")
    key = store.keys.pool("bad")
    doc = json.loads(store.client.hget(key, "doc"))
    store.client.hset(key, "doc", json.dumps(corrupt(doc)))
    assert [p.name for p in store.load_pools()] == ["good"]
    # A poller still ticks the readable pool (its probes answer healthy here).
    healthy = lambda node, _s: ProbeResult(node, Observation.healthy(), NodeMetrics(), 0.0)  # noqa: E731
    poller = Poller(store, SETTINGS, probe=healthy)
    report = poller.cycle(force=True)
    assert list(report.committed) == ["good"]
    good = store.load_pool("good")
    assert good.name == "good" and good.last_round >= 0
    assert [str(n.node) for n in good.nodes] == ["10.0.0.1:3306", "10.0.0.2:3306"]


def test_a_probe_bug_costs_one_verdict_not_the_round(store: Store) -> None:
    create(store, "p1")

    def probe(node: NodeId, _settings: ProbeSettings) -> ProbeResult:
        if node.host == "10.0.0.2":
            raise IndexError("garbage from the server")
        return ProbeResult(node, Observation.healthy(), NodeMetrics(), 0.0)

    report = Poller(store, SETTINGS, probe=probe).cycle(force=True)
    pool = report.committed["p1"]
    assert pool.nodes[0].requests == 0
    assert pool.nodes[1].requests == 1
    assert pool.nodes[1].message == (
        "Could not connect to mysql host 10.0.0.2:3306: probe failed: IndexError"
    )


def test_a_round_numbered_under_the_old_interval_is_not_committed(store: Store) -> None:
    create(store, "p1", interval=2.0)
    poller = Poller(store, SETTINGS)
    old_round = round_of(store.server_time(), 2.0)

    def longer(p):  # type: ignore[no-untyped-def]
        return AdminResult(apply_config(p, replace(config_of(p), interval=10.0)), "", ())

    store.admin("p1", longer)
    pool = store.load_pool("p1")
    reports = {"p-test": {n.node: Observation(Outcome.HEALTHY) for n in pool.nodes}}
    outcome = poller.tick_round("p1", old_round, pool, reports)
    assert outcome == f"round {old_round} belongs to the pool's previous interval; not ticked"
    assert store.load_pool("p1").last_round == -1
    # The agent would call such a pool stale rather than trust it.
    assert is_pool_stale(replace(pool, last_round=old_round), store.server_time())


def test_a_failing_cycle_is_logged_once_and_its_end_too(store: Store, redis_url: str) -> None:
    # The one key no pool owns (the pool index) made a string: every cycle fails until it is
    # repaired. The poller says so once, without a traceback at INFO, and once when it ends.
    create(store, "good", interval=0.5)
    store.client.delete(store.keys.pools())
    store.client.set(store.keys.pools(), "not a set")
    poller = PollerProcess(redis_url, "p-loud").start()
    try:
        wait_until(lambda: "poll cycles fail" in poller.log.read_text(), 10, "the error line")
        time.sleep(2.0)  # about 20 more failing cycles
        # (a cycle that fails just as the key is repaired may say so in other words)
        failing = poller.log.read_text()
        store.client.delete(store.keys.pools())
        store.client.sadd(store.keys.pools(), "good")
        wait_until(lambda: store.load_pool("good").last_round >= 0, 10, "a committed round")
        wait_until(lambda: "succeed again" in poller.log.read_text(), 10, "the recovery line")
    finally:
        poller.stop()
    assert failing.count("poll cycles fail") == 1, failing
    log = poller.log.read_text()
    assert log.count("succeed again") == 1, log
    assert "mpp:pools is a string, not a set" in log and "Traceback" not in log


def test_rounds_due_at_one_deadline_are_committed_together(store: Store) -> None:
    # Two live observers; only "pa" reports. Its three rounds wait for "pb" until their common
    # deadline, on one timer; the round "pb" commits meanwhile is not committed again.
    names = ["d1", "d2", "d3"]
    for name in names:
        create(store, name, interval=2.0)
    healthy = lambda node, _s: ProbeResult(node, Observation.healthy(), NodeMetrics(), 0.0)  # noqa: E731
    pa = Poller(store, replace(SETTINGS, poller_id="pa"), probe=healthy)
    pb = Poller(store, replace(SETTINGS, poller_id="pb"), probe=healthy)
    store.heartbeat("pb", {"pools": []}, store.server_time(), ttl=30, observer=True)
    start = round_of(store.server_time(), 2.0)
    wait_until(lambda: round_of(store.server_time(), 2.0) > start, 5, "a round start")
    report = pa.cycle()
    round_ = report.rounds["d1"]
    assert sorted(report.deferred) == names and not report.committed, report.sentence()
    assert len(pa.pending) == 1  # one timer for the three rounds
    assert list(pb.commit_rounds([("d2", round_)], CycleReport())) == ["d2"]
    committed_by_pb = store.load_pool("d2")
    gevent.sleep(deadline_at(round_, 2.0) - store.server_time() + 0.3)
    pools = {p.name: p for p in store.load_pools(names)}
    assert all(p.last_round == round_ for p in pools.values()), pools
    assert pools["d2"].version == committed_by_pb.version  # not committed twice
    assert not pa.pending and not pa.due_at


def test_a_round_committed_before_an_observer_records_it_is_left_alone(store: Store) -> None:
    # "pa" records the round and commits it alone (as at its deadline); "pb", late, records
    # the same round after that: it neither reads nor ticks it again, nor waits for it.
    names = ["e1", "e2"]
    for name in names:
        create(store, name, interval=2.0)
    healthy = lambda node, _s: ProbeResult(node, Observation.healthy(), NodeMetrics(), 0.0)  # noqa: E731
    pa = Poller(store, replace(SETTINGS, poller_id="pa"), probe=healthy)
    pb = Poller(store, replace(SETTINGS, poller_id="pb"), probe=healthy)
    for poller_id in ("pa", "pb"):
        store.heartbeat(poller_id, {"pools": []}, store.server_time(), ttl=30, observer=True)
    start = round_of(store.server_time(), 2.0)
    wait_until(lambda: round_of(store.server_time(), 2.0) > start, 5, "a round start")
    first = pa.cycle()
    round_ = first.rounds["e1"]
    assert sorted(first.deferred) == names, first.sentence()
    assert sorted(pa.commit_rounds([(n, round_) for n in names], CycleReport())) == names
    committed = {p.name: p.version for p in store.load_pools(names)}
    reads = []
    load_round = store.load_round
    store.load_round = lambda todo: reads.append(list(todo)) or load_round(todo)  # type: ignore[method-assign]
    late = pb.cycle()
    assert late.rounds == {n: round_ for n in names}, late.sentence()
    assert late.skipped == {n: f"round {round_} already committed" for n in names}
    assert not late.committed and not late.deferred and not pb.pending
    assert reads == []
    assert {p.name: p.version for p in store.load_pools(names)} == committed


def test_a_cycle_that_runs_over_into_the_next_round_does_not_skip_it(store: Store) -> None:
    # The first cycle starts late in a round and its probes take long enough to end inside
    # the next one, before that round's deadline: that round is probed at once, not skipped.
    create(store, "p1", interval=1.0)
    slow = {"first": True}

    def probe(node: NodeId, _settings: ProbeSettings) -> ProbeResult:
        if slow["first"]:
            gevent.sleep(0.3)
        return ProbeResult(node, Observation.healthy(), NodeMetrics(), 0.0)

    poller = Poller(store, SETTINGS, probe=probe)
    committed: list[int] = []

    def wait(delay: float) -> bool:
        slow["first"] = False
        committed.append(store.load_pool("p1").last_round)
        gevent.sleep(delay)
        return len(set(committed)) > 3

    start = round_of(store.server_time(), 1.0)
    wait_until(lambda: store.server_time() - start > 0.8, 5, "late in a round")
    assert round_of(store.server_time(), 1.0) == start, "the test's machine was too slow"
    poller.run(lambda: False, wait)
    rounds = sorted(set(committed))
    assert rounds == list(range(start, start + 4)), committed


def test_a_poller_that_only_read_a_newer_state_never_ticks_from_a_rolled_back_one(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    # "pa" commits; "pb" only reads the pools (as each of its cycles does) and never commits.
    # Redis then loses pa's commit (a failover to a replica that lacked it): pb's next tick
    # must start from the state it read, not from the older one Redis went back to.
    create(store, "p1", interval=2.0)
    healthy = lambda node, _s: ProbeResult(node, Observation.healthy(), NodeMetrics(), 0.0)  # noqa: E731
    key = store.keys.pool("p1")
    before = store.client.hgetall(key)
    Poller(store, replace(SETTINGS, poller_id="pa"), probe=healthy).cycle(force=True)
    read = store.load_pool("p1")
    pb = Poller(store, replace(SETTINGS, poller_id="pb"), probe=healthy)
    pb.load_pools()
    store.client.hset(key, mapping=before)
    assert store.load_pool("p1").version < read.version
    wait_until(lambda: round_of(store.server_time(), 2.0) > read.last_round, 5, "a new round")
    report = pb.cycle(force=True)
    assert list(report.committed) == ["p1"], report.sentence()
    assert store.load_pool("p1").version > read.version
    assert "state went backwards" in caplog.text
