"""Table tests of the planned switchover, the pause and the fail-back setting, all pure:

* a switchover starts only from a writing ACTIVE to a healthy STANDBY, and is refused with a
  reason otherwise;
* while it is in progress the source answers ``rw`` ``down #switchover to <target>``;
* the writer moves only once a round after the drain read the source's position unchanged and
  the target has applied it; the target failing, an unreadable position or the deadline
  abandon it and the source takes writes again;
* a paused pool commits no state change, says what it would have done, and resumes from the
  held state;
* with ``failback manual`` a recovered PRIMARY stays STANDBY.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_agent.agent_protocol import Role, words
from mpp_agent.codec import pool_from_doc, pool_to_doc
from mpp_agent.model import (
    EventKind,
    Failback,
    NodeId,
    NodeState,
    NodeType,
    Observation,
    Outcome,
    Override,
    PoolState,
    PoolStatus,
    Replication,
    State,
    Status,
    Switchover,
)
from mpp_agent.routing import route
from mpp_agent.state import (
    MSG_MANUAL_FAILBACK,
    AdminRefused,
    TickResult,
    pause_pool,
    resume_pool,
    start_switchover,
    tick,
)
from mpp_agent.switchover import Step, progress

A, B = NodeId("10.0.0.1"), NodeId("10.0.0.2")
INTERVAL = 1.0


def pool(
    a_state: State = State.ACTIVE,
    b_state: State = State.STANDBY,
    failback: Failback = Failback.MANUAL,
    last_round: int = 9,
) -> PoolState:
    return PoolState(
        "p",
        (
            NodeState(A, NodeType.PRIMARY, a_state, Status.OK, 0),
            NodeState(B, NodeType.SECONDARY, b_state, Status.OK, 0),
        ),
        interval=INTERVAL,
        max_requests=4,
        last_round=last_round,
        failback=failback,
    )


def seen(binlog: str = "0-1-10", applied: str = "0-1-10", read_only: bool = False) -> Observation:
    return Observation(
        Outcome.HEALTHY,
        replication=Replication(binlog=binlog, applied=applied, unapplied=0, read_only=read_only),
    )


def round_of(p: PoolState, a: Observation, b: Observation, now: float) -> TickResult:
    """Tick the round after ``p.last_round`` (as the store numbers it) at ``now``."""
    result = tick(p, {A: a, B: b}, now)
    return replace(result, pool=replace(result.pool, last_round=p.last_round + 1))


def started(p: PoolState | None = None, to: NodeId | None = B, now: float = 9.5) -> PoolState:
    return start_switchover(p or pool(), to, now, 30.0, "alice").pool


# --------------------------------------------------------------------------- start


@pytest.mark.parametrize(
    ("before", "to", "refusal"),
    [
        (pool(b_state=State.FAILED_OFFLINE), B, "only a healthy STANDBY"),
        (pool(a_state=State.STANDBY), B, "no ACTIVE node taking writes"),
        (pool(), A, "already ACTIVE"),
        (pool(), NodeId("10.0.0.9"), "not a member"),
        (pool(failback=Failback.AUTO), B, "--failback auto"),
        (replace(pool(), status=PoolStatus.FAIL), B, "recover the pool first"),
        (started(), B, "already in progress"),
        (pause_pool(pool(), "upgrade", "bob", 9.0, None).pool, B, "paused"),
        (
            replace(
                pool(),
                nodes=(
                    pool().nodes[0],
                    replace(pool().nodes[1], override=Override(State.STANDBY, None, "x")),
                ),
            ),
            B,
            "overrides in place",
        ),
    ],
)
def test_switchover_refusals_say_why_and_change_nothing(
    before: PoolState, to: NodeId, refusal: str
) -> None:
    with pytest.raises(AdminRefused, match=refusal):
        start_switchover(before, to, 9.5, 30.0)


def test_auto_failback_allows_a_switchover_to_the_primary() -> None:
    before = pool(a_state=State.STANDBY, b_state=State.ACTIVE, failback=Failback.AUTO)
    result = start_switchover(before, None, 9.5, 30.0)  # the first healthy STANDBY: A
    assert result.pool.switchover is not None
    assert result.pool.switchover.target == A


def test_start_stores_the_switchover_and_stops_the_source_writes() -> None:
    result = start_switchover(pool(), B, 9.5, 30.0, "alice")
    record = result.pool.switchover
    assert record == Switchover(A, B, 9.5, 39.5, first_round=10, requested_by="alice")
    assert [e.kind for e in result.events] == [EventKind.SWITCHOVER]
    decided = route(result.pool, 9.6)
    source, target = decided.find(A), decided.find(B)
    assert source is not None and target is not None
    assert decided.writer is None  # nobody writes while it drains
    assert words(source, Role.RW) == "down"
    assert source.reason.startswith(f"switchover to {B}")
    assert words(source, Role.RO).startswith("up ready")
    assert words(target, Role.RW) == "up drain"


# --------------------------------------------------------------------------- the rounds


def test_the_writer_moves_after_a_round_without_writes_on_the_source() -> None:
    p = started(now=9.5)  # round 9 was probed before the drain, round 10 after it
    steps = []
    # the tick of round 10 reads the position, round 11 is still written, round 12 holds
    for a, b in [
        (seen("0-1-10"), seen(applied="0-1-9")),
        (seen("0-1-11"), seen(applied="0-1-11")),
        (seen("0-1-11"), seen(applied="0-1-11")),
    ]:
        result = round_of(p, a, b, p.last_round + 1.2)
        steps.append([e.message for e in result.events if e.kind is EventKind.SWITCHOVER])
        p = result.pool
    assert steps[0] == [f"{A} drained at position 0-1-10"]
    assert "still written" in steps[1][0]
    assert p.switchover is None
    assert [n.state for n in p.nodes] == [State.STANDBY, State.ACTIVE]
    assert route(p, 13.0).writer is not None and route(p, 13.0).writer.node == B  # type: ignore[union-attr]
    assert any("has applied 0-1-11" in m for m in steps[2])


def test_a_round_probed_before_the_drain_does_not_count() -> None:
    p = started(pool(last_round=9), now=10.5)  # first round after the drain: 11
    result = round_of(p, seen(), seen(), 10.9)  # round 10: probed before 10.5
    assert result.pool.switchover is not None
    assert result.pool.switchover.position is None


def test_the_target_must_have_applied_the_position() -> None:
    p = started()
    for _ in range(4):
        p = round_of(p, seen("0-1-20"), seen(applied="0-1-19", binlog="0-1-19"), 12.0).pool
    assert p.switchover is not None and p.switchover.position == "0-1-20"
    assert p.nodes[0].state is State.ACTIVE  # still waiting, nothing moved


@pytest.mark.parametrize(
    ("a", "b", "now", "why"),
    [
        (seen(), Observation.connect_error(B, "refused"), 12.0, "target 10.0.0.2:3306 failed"),
        (Observation(Outcome.REQUEST, "Slave SQL stopped"), seen(), 12.0, "cannot be read"),
        (Observation.connect_error(A, "gone"), seen(), 12.0, "cannot be read"),
        (seen(), seen(), 40.0, "timeout (30s) passed"),
    ],
)
def test_abandoned_gives_the_source_its_writes_back(
    a: Observation, b: Observation, now: float, why: str
) -> None:
    result = round_of(started(), a, b, now)
    assert result.pool.switchover is None
    assert result.pool.nodes[0].state is State.ACTIVE
    texts = [e.message for e in result.events if e.kind is EventKind.SWITCHOVER]
    assert any(why in t and "abandoned" in t for t in texts), texts
    writer = route(result.pool, now).writer
    assert writer is not None and writer.node == A


def test_a_read_only_source_is_not_failing_while_it_drains() -> None:
    p = started()
    for _ in range(6):  # fencing keeps it read_only: not M failing rounds
        p = round_of(p, seen("0-1-10", read_only=True), seen("0-1-9", "0-1-9"), 12.0).pool
    assert p.nodes[0].state is State.ACTIVE and p.nodes[0].r == 0


def test_progress_waits_when_nobody_could_judge_the_source() -> None:
    p = started()
    verdict = progress(p, p, {A: Observation.abstain("no password"), B: seen()}, 12.0)
    assert verdict.step is Step.WAIT and verdict.switchover == p.switchover


def test_the_switchover_survives_the_pool_document() -> None:
    p = started()
    p = round_of(p, seen("0-1-10"), seen(), 10.2).pool
    back = pool_from_doc(pool_to_doc(p), p.version, p.last_round, "p")
    assert back.switchover == p.switchover and back.failback is Failback.MANUAL


# --------------------------------------------------------------------------- pause


def test_a_paused_pool_commits_no_state_change_and_says_what_it_would_do() -> None:
    p = pause_pool(pool(), "db upgrade", "bob", 9.0, None).pool
    down = Observation.connect_error(A, "refused")
    for i in range(8):
        result = round_of(p, down, seen(), 10.0 + i)
        assert result.events == ()
        p = result.pool
    assert [(n.state, n.r) for n in p.nodes] == [(State.ACTIVE, 0), (State.STANDBY, 0)]
    assert p.pause is not None
    assert p.pause.would == f"would fail {A} over; would make {B} ACTIVE"
    a = route(p, 18.0).find(A)
    assert a is not None and a.takes_writes and a.reason.startswith("paused: db upgrade")
    assert pool_from_doc(pool_to_doc(p), 0, p.last_round, "p").pause == p.pause
    # resumed: the state machine goes on from the held state (R=0), M rounds to fail over
    p = resume_pool(p).pool
    states = []
    for i in range(4):
        p = round_of(p, down, seen(), 20.0 + i).pool
        states.append(p.nodes[0].state)
    assert states == [State.ACTIVE] * 3 + [State.FAILED_OFFLINE]
    assert p.nodes[1].state is State.ACTIVE


def test_a_pause_ends_at_its_time() -> None:
    p = pause_pool(pool(), "short", "bob", 9.0, 12.0).pool
    result = round_of(p, Observation.connect_error(A, "refused"), seen(), 12.5)
    assert result.pool.pause is None
    assert result.pool.nodes[0].r == 1  # this round counted
    assert result.events[0].kind is EventKind.RESUME


@pytest.mark.parametrize(
    ("before", "refusal"),
    [
        (pause_pool(pool(), "x", "bob", 9.0, None).pool, "already paused"),
        (started(), "switchover of pool p is in progress"),
    ],
)
def test_pause_refusals(before: PoolState, refusal: str) -> None:
    with pytest.raises(AdminRefused, match=refusal):
        pause_pool(before, "again", "bob", 9.5, None)


def test_resume_of_a_pool_not_paused_is_refused() -> None:
    with pytest.raises(AdminRefused, match="not paused"):
        resume_pool(pool())


# --------------------------------------------------------------------------- fail-back


@pytest.mark.parametrize(
    ("failback", "after"),
    [
        (Failback.AUTO, [State.ACTIVE, State.STANDBY]),
        (Failback.MANUAL, [State.STANDBY, State.ACTIVE]),
    ],
)
def test_a_recovered_primary_takes_writes_back_only_with_auto_failback(
    failback: Failback, after: list[State]
) -> None:
    p = pool(State.STANDBY, State.ACTIVE, failback=failback)
    for i in range(4):
        p = round_of(p, seen(), seen(), 10.0 + i).pool
    assert [n.state for n in p.nodes] == after
    if failback is Failback.MANUAL:
        assert p.nodes[0].message == MSG_MANUAL_FAILBACK and p.nodes[0].status is Status.OK


def test_the_shadow_follows_the_pool_membership() -> None:
    p = pause_pool(pool(), "x", "bob", 9.0, None).pool
    c = NodeId("10.0.0.3")
    p = replace(p, nodes=(*p.nodes, NodeState(c, NodeType.SECONDARY)))
    result = tick(p, {A: seen(), B: seen(), c: seen()}, 10.0)
    assert result.pool.pause is not None
    assert [n.node for n in result.pool.pause.shadow] == [A, B, c]
    assert result.pool.pause.would == f"would make {c} STANDBY"


# --------------------------------------------------------------------------- properties

ROUND = st.tuples(
    st.sampled_from(("ok", "ok", "ok", "conn", "abs")),  # the source
    st.sampled_from(("ok", "ok", "ok", "conn", "req")),  # the target
    st.integers(10, 12),  # the source's binlog seqno this round
    st.integers(8, 12),  # what the target has applied
)


def observed(kind: str, node: NodeId, binlog: str, applied: str) -> Observation:
    if kind == "conn":
        return Observation.connect_error(node, "refused")
    if kind == "req":
        return Observation(Outcome.REQUEST, "Slave SQL stopped")
    if kind == "abs":
        return Observation.abstain("no password")
    return seen(binlog, applied)


@settings(max_examples=300, deadline=None)
@given(st.lists(ROUND, min_size=1, max_size=12), st.floats(0.01, 0.99))
def test_writes_move_only_to_the_target_after_a_confirmed_position(
    rounds: list[tuple[str, str, int, int]], phase: float
) -> None:
    p = started(now=9.0 + phase)
    for i, (a_kind, b_kind, a_seq, b_seq) in enumerate(rounds):
        now = 10.2 + i
        before = p
        a = observed(a_kind, A, f"0-1-{a_seq}", f"0-1-{a_seq}")
        b = observed(b_kind, B, f"0-1-{b_seq}", f"0-1-{b_seq}")
        p = round_of(p, a, b, now).pool
        assert len(p.active_nodes) <= 1
        writer = route(p, now).writer
        record = before.switchover
        if p.switchover is not None:
            assert writer is None  # drained: nobody writes while it is in progress
        elif record is not None and p.nodes[1].state is State.ACTIVE:
            # the flip: this round confirmed the position read in an earlier one, held by B
            assert record.position == f"0-1-{a_seq}"
            assert a_kind == "ok" and b_kind == "ok" and b_seq >= a_seq
            assert writer is not None and writer.node == B
            assert p.nodes[0].state is State.STANDBY
            return
        elif record is not None:
            assert writer is not None and writer.node == A  # abandoned: the source writes again
            return  # from here on the usual rules (e.g. a failover of a dead source)
