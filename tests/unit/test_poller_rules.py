"""The poller's pure rules: what it records per pool, and what it says about abstentions."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from mpp_agent.config import new_pool, parse_failoverpool
from mpp_agent.model import (
    NodeId,
    Observation,
    Outcome,
    PoolHead,
    PoolState,
    PoolStatus,
    State,
    Status,
)
from mpp_agent.poller import (
    SUMMARY_EVERY,
    AbstentionKey,
    CycleReport,
    CycleSummary,
    LoopWatch,
    Lost,
    abstention_changes,
    by_reason,
    deadline_sentence,
    has_changed,
    lateness,
    name_list,
    overload_text,
    pool_observations,
    voids_timeout,
)
from mpp_agent.probe import LoginSlots, NodeMetrics, ProbeResult
from mpp_agent.timeouts import Timeouts

A, B = NodeId("10.0.0.1"), NodeId("10.0.0.2")


def pool(max_lag: float = 30.0, interval: float = 1.0) -> PoolState:
    return replace(
        new_pool(parse_failoverpool("name:p1;primary:10.0.0.1;secondary:10.0.0.2")),
        max_lag=max_lag,
        interval=interval,
    )


def result(node: NodeId, observation: Observation, lag: int | None = None) -> ProbeResult:
    return ProbeResult(node, observation, NodeMetrics(lag=lag), 0.001)


def test_pool_observations_apply_each_pools_max_lag() -> None:
    results = {A: result(A, Observation.healthy(), 0), B: result(B, Observation.healthy(), 12)}
    relaxed = pool_observations(pool(max_lag=30), results, None)
    strict = pool_observations(pool(max_lag=10), results, None)
    assert relaxed == {A: Observation.healthy(), B: Observation.healthy()}
    assert strict[A] == Observation.healthy()
    assert strict[B] == Observation(Outcome.REQUEST, "Slave Error: Seconds Behind Master: 12")


def test_all_checkpoints_down_abstains_on_every_node_even_healthy_ones() -> None:
    results = {A: result(A, Observation.healthy()), B: result(B, Observation.connect_error(B, "x"))}
    why = "checkpoints unreachable: 10.0.0.9:53 (Connection refused)"
    assert pool_observations(pool(), results, why) == {
        A: Observation.abstain(why),
        B: Observation.abstain(why),
    }


DENIED = "Access denied for user 'monitor'@'10.0.0.9' (using password: YES)"
DOWN = "checkpoints unreachable: 10.0.0.9:53 (timed out)"
KA: AbstentionKey = ("p1", "10.0.0.1:3306")
KB: AbstentionKey = ("p1", "10.0.0.2:3306")


@pytest.mark.parametrize(
    ("before", "after", "started", "ended"),
    [
        pytest.param({}, {}, {}, {}, id="nothing"),
        pytest.param({}, {KA: DENIED}, {KA: DENIED}, {}, id="starts"),
        pytest.param({KA: DENIED}, {KA: DENIED}, {}, {}, id="goes-on-silently"),
        pytest.param({KA: DENIED}, {}, {}, {KA: DENIED}, id="ends"),
        pytest.param({KA: DENIED}, {KA: DOWN}, {KA: DOWN}, {}, id="new-reason-is-a-start"),
        pytest.param(
            {KA: DENIED}, {KB: DENIED}, {KB: DENIED}, {KA: DENIED}, id="one-ends-other-starts"
        ),
    ],
)
def test_abstention_changes(
    before: dict[AbstentionKey, str],
    after: dict[AbstentionKey, str],
    started: dict[AbstentionKey, str],
    ended: dict[AbstentionKey, str],
) -> None:
    assert abstention_changes(before, after) == (started, ended)


def test_abstentions_are_said_once_per_reason() -> None:
    assert by_reason({KB: DENIED, KA: DENIED, ("p2", "10.0.0.1:3306"): DOWN}) == [
        (DENIED, ["p1/10.0.0.1:3306", "p1/10.0.0.2:3306"]),
        (DOWN, ["p2/10.0.0.1:3306"]),
    ]
    assert name_list(["a", "b"]) == "a, b"
    assert name_list([str(i) for i in range(8)]) == "0, 1, 2, 3, 4 and 3 more"


def test_has_changed_is_state_or_status_only() -> None:
    before = pool()

    def first(**changes: object) -> PoolState:
        return replace(before, nodes=(replace(before.nodes[0], **changes), *before.nodes[1:]))

    r_only, state, status = (
        first(requests=2, message="x"),
        first(state=State.STANDBY),
        first(status=Status.OK_WARN),
    )
    assert not has_changed(before, before)
    assert not has_changed(before, r_only)
    assert has_changed(before, state)
    assert has_changed(before, status)
    assert has_changed(before, replace(before, status=PoolStatus.FAIL))


@pytest.mark.parametrize(
    ("now", "late"),
    [(100.0, False), (100.49, False), (100.51, True), (100.99, True)],
)
def test_lateness_is_past_the_deadline(now: float, late: bool) -> None:
    assert (lateness(pool(interval=1.0), 100, now) is not None) is late


@pytest.mark.parametrize(
    ("report", "notable"),
    [
        pytest.param(CycleReport(), False, id="steady"),
        pytest.param(CycleReport(skipped={"p1": "round 5 already committed"}), False, id="race"),
        pytest.param(CycleReport(skipped={"p1": "round 5 has no observations"}), True, id="skip"),
        pytest.param(CycleReport(changed=["p1"]), True, id="transition"),
        pytest.param(CycleReport(late={"p1": "late"}), True, id="late"),
        pytest.param(CycleReport(passed={"p1": (5, 6)}), True, id="rounds-not-probed"),
        pytest.param(CycleReport(news=True), True, id="abstention-or-unserved-change"),
        pytest.param(CycleReport(abstaining=3), False, id="abstaining-goes-on"),
    ],
)
def test_what_makes_an_info_line(report: CycleReport, notable: bool) -> None:
    assert report.is_notable is notable


def test_the_summary_comes_once_a_period_and_counts_the_quiet_cycles() -> None:
    summary = CycleSummary(since=1000.0)
    report = CycleReport(
        pools=[PoolHead.of(pool())], read=[pool()], committed={"p1": pool()}, abstaining=2
    )
    lines = [summary.add(report, 1000.0 + t) for t in range(1, int(SUMMARY_EVERY) + 2)]
    said = [line for line in lines if line is not None]
    assert len(said) == 1
    assert said[0].startswith(f"last {SUMMARY_EVERY:.0f}s: {int(SUMMARY_EVERY)} cycles, ")
    assert f"{int(SUMMARY_EVERY)} rounds committed" in said[0]
    assert "p1 status OK, ACTIVE: NONE" in said[0]
    assert said[0].endswith("abstaining on 2 node(s)")
    assert summary.add(report, 1000.0 + SUMMARY_EVERY + 2) is None  # counting afresh


def steady_pool(name: str) -> PoolState:
    first, second = pool().nodes
    nodes = (replace(first, state=State.ACTIVE, requests=0), replace(second, requests=0))
    return replace(pool(), name=name, nodes=nodes)


def test_a_cycle_of_a_thousand_pools_is_one_short_line() -> None:
    pools = [steady_pool(f"s{i:04d}") for i in range(1000)]
    report = CycleReport(
        committed={p.name: p for p in pools[:300]},
        changed=["s0299"],
        deferred=[p.name for p in pools[300:600]],
        skipped={p.name: "round 7 already committed" for p in pools[600:]},
        late={p.name: "round 7 probed 1.44s after it started (deadline 1s)" for p in pools},
        passed={p.name: (5, 6) for p in pools[:10]} | {"s0010": (6, 6)},
    )
    line = report.sentence()
    assert len(line) < 1500, line
    # The transition first; then every kind of clause, each pool counted.
    assert line.startswith("probed in 0.000s; committed s0299 status OK, ACTIVE: 10.0.0.1")
    assert "; and 295 more pools; " in line
    assert "s0300, s0301, s0302, s0303, s0304 and 295 more waiting for the other pollers" in line
    assert "s0600, s0601, s0602, s0603, s0604 and 395 more round 7 already committed" in line
    assert "s0000, s0001, s0002, s0003, s0004 and 995 more late: round 7 probed 1.44s" in line
    assert (
        "s0000, s0001, s0002, s0003, s0004 and 5 more rounds 5-6 not probed: this poller's "
        "previous cycle ran past their deadline (short of CPU, or held up)"
    ) in line
    assert "s0010 round 6 not probed: this poller's previous cycle ran past its deadline" in line
    small = CycleReport(committed={"p1": pool()}, deferred=["p2"], skipped={"p3": "was removed"})
    assert small.sentence() == (
        "probed in 0.000s; committed p1 status OK, ACTIVE: NONE; p2 waiting for the other "
        "pollers; p3 was removed"
    )


def test_the_summary_of_a_thousand_pools_shows_those_that_need_a_look() -> None:
    pools = [steady_pool(f"s{i:04d}") for i in range(1000)]
    pools[500] = replace(pools[500], status=PoolStatus.FAIL)
    heads = [PoolHead.of(p) for p in pools]
    summary = CycleSummary(since=0.0)
    line = summary.add(CycleReport(pools=heads, read=pools), SUMMARY_EVERY)
    assert line is not None and len(line) < 1500, line
    assert "committed by this poller; 1000 pools, 999 steady (status OK, an ACTIVE" in line
    assert "no node failing): s0500 status FAIL, ACTIVE: 10.0.0.1" in line
    assert line.endswith("; and 995 more pools")
    # A poller that observes half of them describes those it read, and counts the others.
    line = CycleSummary(since=0.0).add(CycleReport(pools=heads, read=pools[500:]), SUMMARY_EVERY)
    assert line is not None
    assert "; 1000 pools, 500 observed here, 499 steady (status OK, an ACTIVE" in line, line
    assert "no node failing): s0500 status FAIL" in line
    assert CycleSummary(since=0.0).add(CycleReport(), SUMMARY_EVERY) == (
        f"last {SUMMARY_EVERY:.0f}s: 1 cycles, 0 rounds committed by this poller; no pools"
    )


def named(name: str) -> PoolState:
    return replace(pool(), name=name)


@pytest.mark.parametrize(
    ("names", "rounds", "sentence"),
    [
        (["a"], {"a": 7}, "round 7 deadline: committed a status OK, ACTIVE: NONE"),
        (
            ["b", "a"],
            {"a": 7, "b": 7},
            "round 7 deadline: committed a status OK, ACTIVE: NONE; b status OK, ACTIVE: NONE",
        ),
        (
            ["a", "b"],
            {"a": 7, "b": 14},
            "rounds 7, 14 deadline: committed a status OK, ACTIVE: NONE; b status OK, ACTIVE: NONE",
        ),
        (
            [f"p{i}" for i in range(7)],
            {f"p{i}": 3 for i in range(7)},
            "round 3 deadline: committed "
            + "; ".join(f"p{i} status OK, ACTIVE: NONE" for i in range(5))
            + "; and 2 more pools",
        ),
        (
            [f"p{i}" for i in range(6)],
            {f"p{i}": 3 for i in range(6)},
            "round 3 deadline: committed "
            + "; ".join(f"p{i} status OK, ACTIVE: NONE" for i in range(5))
            + "; and 1 more pool",
        ),
    ],
    ids=["one", "two-sorted", "two-rounds", "seven", "six"],
)
def test_a_deadline_is_one_line_however_many_pools_it_commits(
    names: list[str], rounds: dict[str, int], sentence: str
) -> None:
    assert deadline_sentence({n: named(n) for n in names}, rounds) == sentence


def test_the_loop_watch_reports_the_longest_stall_in_a_span() -> None:
    watch = LoopWatch()
    assert watch.stalled(0.0, 100.0) == 0.0  # nothing watches: nothing to void
    watch.woke(10.0, 0.0)
    watch.woke(10.02, 0.02)  # on time
    watch.woke(10.54, 0.02)  # 0.5 s late
    watch.woke(10.56, 0.02)
    watch.woke(10.88, 0.02)  # 0.3 s late
    assert watch.stalled(10.0, 10.88) == pytest.approx(0.5)
    assert watch.stalled(10.6, 10.88) == pytest.approx(0.3)  # the 0.5 s one ended before
    assert watch.stalled(10.9, 10.9) == 0.0
    # A stall under way counts for what it is so far: the watcher has not woken since 10.88.
    assert watch.stalled(10.9, 12.0) == pytest.approx(12.0 - 10.88 - 0.02)


def test_the_loop_watch_reports_how_long_its_thread_waited_for_a_cpu_in_a_span() -> None:
    watch = LoopWatch()
    assert watch.starved(0.0) == 0.0  # no readings: nothing to void
    watch.woke(10.0, 0.0, None)  # a system that does not say it
    assert watch.starved(0.0) == 0.0
    for at, queued in [(10.02, 5.0), (10.04, 5.01), (10.06, 5.2), (10.08, 5.21), (10.10, 5.5)]:
        watch.woke(at, 0.02, queued)
    assert watch.starved(10.04) == pytest.approx(0.49)  # from the reading at 10.04 on
    assert watch.starved(10.05) == pytest.approx(0.3)  # from the first reading after it
    assert watch.starved(10.08) == pytest.approx(0.29)
    assert watch.starved(10.1) == 0.0  # the last reading: nothing after it
    assert watch.starved(10.2) == 0.0  # after the last reading
    assert watch.starved(1.0) == pytest.approx(0.5)  # before the oldest: from the oldest
    lost = watch.lost(10.03, 10.1, slot=0.1, started=9.9)
    assert lost == Lost(0.1, 0.0, pytest.approx(0.49), pytest.approx(0.2))
    assert watch.lost(10.03, 10.1).elapsed == pytest.approx(0.07)  # begun when it got a slot


LIMIT = 0.3  # half of a 0.6 s socket timeout


@pytest.mark.parametrize(
    ("lost", "explains"),
    [
        (Lost(stall=0.3, elapsed=0.9), True),
        (Lost(slot=0.1, stall=0.2, elapsed=0.9), True),
        (Lost(stall=0.29, elapsed=0.9), False),
        (Lost(starved=0.45, elapsed=0.9), True),  # half of the probe's time, and the limit
        (Lost(starved=0.44, elapsed=0.9), False),  # the limit, not half of the probe's time
        (Lost(slot=0.2, starved=0.25, elapsed=0.9), True),
        (Lost(starved=0.3, elapsed=0.5), True),
        (Lost(starved=0.29, elapsed=0.5), False),  # half of the probe's time, not the limit
        (Lost(starved=1.0, elapsed=4.5), False),  # a loaded host: 22 % of a long probe
        (Lost(starved=2.3, elapsed=4.5), True),
        (Lost(stall=0.2, starved=0.2, elapsed=0.9), False),  # the same time, maybe: not added
    ],
)
def test_lost_time_explains_a_timeout_when_the_stall_or_half_the_probe_was_the_pollers(
    lost: Lost, explains: bool
) -> None:
    assert lost.explains(LIMIT) is explains


BOUNDS = Timeouts(connect=0.6, read=0.6, probe=0.9)


@pytest.mark.parametrize(
    ("observation", "lost", "voided"),
    [
        (Observation.connect_error(A, "probe timed out after 0.9s"), Lost(stall=0.4), True),
        (
            Observation.connect_error(A, "(2003, Can't connect to MySQL (timed out))"),
            Lost(stall=0.3),
            True,
        ),
        (
            Observation.connect_error(A, "probe timed out after 0.9s"),
            Lost(starved=0.6, elapsed=0.9),
            True,
        ),
        (
            Observation.connect_error(A, "probe timed out after 0.9s"),
            Lost(0.2, 0.15, 0.3, 0.9),
            True,
        ),
        (Observation.connect_error(A, "probe timed out after 0.9s"), Lost(stall=0.29), False),
        (
            Observation.connect_error(A, "probe timed out after 0.9s"),
            Lost(stall=0.25, starved=0.25, elapsed=0.9),
            False,
        ),
        (Observation.connect_error(A, "(2003, 'Connection refused')"), Lost(5.0, 5.0, 5.0), False),
        (
            Observation(Outcome.REQUEST, "Slave Error: Slave SQL is not running"),
            Lost(5.0, 5.0, 5.0),
            False,
        ),
        (Observation.healthy(), Lost(5.0, 5.0, 5.0), False),
    ],
    ids=[
        "hard-bound",
        "connect-timeout",
        "cpu-wait",
        "slot-and-cpu",
        "short-stall",
        "same-time-twice",
        "refused",
        "request-error",
        "healthy",
    ],
)
def test_a_timeout_during_a_stall_of_the_poller_is_not_the_nodes(
    observation: Observation, lost: Lost, voided: bool
) -> None:
    assert voids_timeout(observation, lost, BOUNDS) is voided


def test_login_slots_note_a_probe_cut_while_it_waited() -> None:
    slots = LoginSlots(1)
    with slots.slot(A):
        assert not slots._free.acquire(blocking=False)  # the one slot is taken
    with pytest.raises(TimeoutError), slots.slot(B):
        raise TimeoutError  # cut while logging in: holding the slot, not waiting for it
    assert not slots.was_queued(B)
    taken = slots._free.acquire()
    assert taken

    class Cut(BaseException):
        pass

    def cut(*_args: object, **_kwargs: object) -> bool:
        raise Cut

    slots._free.acquire = cut  # type: ignore[method-assign]
    with pytest.raises(Cut), slots.slot(B):
        pass
    assert slots.was_queued(B) and not slots.was_queued(B)  # asked once
    with pytest.raises(Cut), slots.slot(B):
        pass
    del slots._free.acquire  # the semaphore's own again
    slots._free.release()  # the slot taken above
    with slots.slot(B):  # a later probe's wait replaces what the cut one left
        pass
    assert not slots.was_queued(B)
    with pytest.raises(ValueError, match=">= 1"):
        LoginSlots(0)


@pytest.mark.parametrize(
    ("lost", "text"),
    [
        (Lost(stall=0.53), "its event loop stalled 0.53s while the probe timed out (x)"),
        (
            Lost(slot=0.62),
            "the login waited 0.62s for a free login slot (--max-logins 50) before the "
            "probe timed out (x)",
        ),
        (
            Lost(slot=0.3, stall=0.2),
            "the login waited 0.3s for a free login slot (--max-logins 50) and its "
            "event loop stalled 0.2s before the probe timed out (x)",
        ),
        (
            Lost(starved=0.41),
            "it waited 0.41s for a CPU (its host's CPUs were busy) while the probe timed out (x)",
        ),
        (
            Lost(stall=0.05, starved=0.41),
            "its event loop stalled 0.05s and it waited 0.41s for a CPU (its host's CPUs "
            "were busy) while the probe timed out (x)",
        ),
        (
            Lost(slot=0.2, starved=0.15),
            "the login waited 0.2s for a free login slot (--max-logins 50) and it waited "
            "0.15s for a CPU (its host's CPUs were busy) before the probe timed out (x)",
        ),
    ],
    ids=["stall", "wait", "both", "cpu", "stall-and-cpu", "wait-and-cpu"],
)
def test_the_overload_abstention_says_where_the_time_went(lost: Lost, text: str) -> None:
    assert overload_text("x", lost, 50) == f"this poller is overloaded: {text}"


def test_login_slots_say_how_long_a_login_waited_once() -> None:
    slots = LoginSlots(1)
    assert slots.waited(A) is None  # never logged in
    before = time.monotonic()
    with slots.slot(A):
        pass
    found = slots.waited(A)
    assert found is not None
    waited, got = found
    assert 0.0 <= waited < 0.1 and before <= got <= time.monotonic()
    assert slots.waited(A) is None  # asked once
