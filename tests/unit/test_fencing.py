"""Table tests of read_only fencing (the pool setting ``fence`` = ``read_only``):

* the plan: which nodes the committing poller sets read_only ON or OFF, from the committed
  state, the round's observations and now (every node that takes no writes by the routing
  decision ON, the writer OFF; only nodes that answered, only where the observation differs);
* routing rule 12: the writer takes writes only once it reports (or was set) read_only=OFF;
* the tick: an ACTIVE that the fencing holds read_only is not failing for it, one the fencing
  had opened and that reports read_only again is (rule B-ro);
* what is recorded (stored read_only, events) and counted.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_agent.fencing import (
    FenceAction,
    FencingCounter,
    Step,
    observed_read_only,
    plan,
    recorded,
    step_event,
)
from mpp_agent.model import (
    EventKind,
    Fence,
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
)
from mpp_agent.probe import read_only_statements
from mpp_agent.routing import AWAITS_FENCE, route
from mpp_agent.state import MSG_READ_ONLY, tick
from mpp_cli.maintenance_cmd import awaits_fence

A, B, C = NodeId("10.0.0.1"), NodeId("10.0.0.2"), NodeId("10.0.0.3")
NOW = 1000.0


def node(
    n: NodeId,
    state: State,
    read_only: bool | None = None,
    kind: NodeType = NodeType.SECONDARY,
    **kw: object,
) -> NodeState:
    details = None if read_only is None else Replication(read_only=read_only)
    return NodeState(n, kind, state, Status.OK, 0, replication=details, **kw)  # type: ignore[arg-type]


def pool(*nodes: NodeState, fence: Fence = Fence.READ_ONLY, **kw: object) -> PoolState:
    first = replace(nodes[0], type=NodeType.PRIMARY)
    return PoolState("p", (first, *nodes[1:]), fence=fence, interval=1.0, **kw)  # type: ignore[arg-type]


def seen(read_only: bool | None, outcome: Outcome = Outcome.HEALTHY) -> Observation:
    details = None if read_only is None else Replication(read_only=read_only)
    return Observation(outcome, "" if outcome is Outcome.HEALTHY else "x", replication=details)


def steps(p: PoolState, observations: dict[NodeId, Observation]) -> dict[NodeId, bool]:
    return {s.node: s.read_only for s in plan(p, observations, NOW)}


PINNED_TO_B = Override(State.ACTIVE, None, "maintenance", set_at=NOW - 10)
TO_STANDBY = Override(State.STANDBY, None, "drain it", set_at=NOW - 10)

# (id, pool, observations, expected {node: read_only to set})
PLANS = [
    (
        "steady: nothing to do",
        pool(node(A, State.ACTIVE, False), node(B, State.STANDBY, True)),
        {A: seen(False), B: seen(True)},
        {},
    ),
    (
        "fence off: never touched",
        pool(node(A, State.ACTIVE, True), node(B, State.STANDBY, False), fence=Fence.OFF),
        {A: seen(True), B: seen(False)},
        {},
    ),
    (
        "a writable standby is fenced",
        pool(node(A, State.ACTIVE, False), node(B, State.STANDBY, False)),
        {A: seen(False), B: seen(False)},
        {B: True},
    ),
    (
        "a new ACTIVE (caught up) is opened",
        pool(node(A, State.FAILED_OFFLINE), node(B, State.ACTIVE, True)),
        {A: seen(None, Outcome.CONNECT), B: seen(True)},
        {B: False},
    ),
    (
        "an ACTIVE held by its catch-up gate stays fenced",
        pool(
            node(A, State.FAILED_OFFLINE),
            node(B, State.ACTIVE, True, catchup_until=NOW + 5),
        ),
        {A: seen(None, Outcome.CONNECT), B: seen(True)},
        {},
    ),
    (
        "an ACTIVE held by its catch-up gate that is writable is fenced",
        pool(node(A, State.STANDBY, True), node(B, State.ACTIVE, False, catchup_until=NOW + 5)),
        {A: seen(True), B: seen(False)},
        {B: True},
    ),
    (
        "the catch-up timeout passed: opened",
        pool(node(A, State.FAILED_OFFLINE), node(B, State.ACTIVE, True, catchup_until=NOW - 1)),
        {A: seen(None, Outcome.CONNECT), B: seen(True)},
        {B: False},
    ),
    (
        "the old ACTIVE answering again is fenced in its first round",
        pool(node(A, State.FAILED_OFFLINE, None), node(B, State.ACTIVE, False)),
        {A: seen(False), B: seen(False)},
        {A: True},
    ),
    (
        "a FAILED_ONLINE node with a replication error is fenced",
        pool(node(A, State.ACTIVE, False), node(B, State.FAILED_ONLINE, False)),
        {A: seen(False), B: seen(False, Outcome.REQUEST)},
        {B: True},
    ),
    (
        "an unreachable node is not tried",
        pool(node(A, State.ACTIVE, False), node(B, State.FAILED_OFFLINE, False)),
        {A: seen(False), B: seen(None, Outcome.CONNECT)},
        {},
    ),
    (
        "a node nobody observed is not tried",
        pool(node(A, State.ACTIVE, False), node(B, State.STANDBY, False)),
        {A: seen(False)},
        {},
    ),
    (
        "no observation at all: nothing",
        pool(node(A, State.ACTIVE, True), node(B, State.STANDBY, False)),
        {},
        {},
    ),
    (
        "an abstained node (read_only unknown) is fenced anyway",
        pool(node(A, State.ACTIVE, False), node(B, State.STANDBY, None)),
        {A: seen(False), B: Observation.abstain("access denied")},
        {B: True},
    ),
    (
        "read_only unknown on the writer: opened",
        pool(node(A, State.ACTIVE, None), node(B, State.STANDBY, True)),
        {A: seen(None), B: seen(True)},
        {A: False},
    ),
    (
        "writes pinned to the standby by override: the ACTIVE is fenced, the pinned one opened",
        pool(node(A, State.ACTIVE, False), node(B, State.STANDBY, True, override=PINNED_TO_B)),
        {A: seen(False), B: seen(True)},
        {A: True, B: False},
    ),
    (
        "the ACTIVE overridden to STANDBY: nobody writes, everyone fenced",
        pool(node(A, State.ACTIVE, False, override=TO_STANDBY), node(B, State.STANDBY, False)),
        {A: seen(False), B: seen(False)},
        {A: True, B: True},
    ),
    (
        "an expired override counts for nothing",
        pool(
            node(A, State.ACTIVE, True, override=replace(TO_STANDBY, expires_at=NOW - 1)),
            node(B, State.STANDBY, True),
        ),
        {A: seen(True), B: seen(True)},
        {A: False},
    ),
    (
        "a new pool (all UNKNOWN): everyone fenced",
        pool(node(A, State.UNKNOWN), node(B, State.UNKNOWN), node(C, State.UNKNOWN)),
        {A: seen(False), B: seen(False), C: seen(True)},
        {A: True, B: True},
    ),
    (
        "pool FAIL (no ACTIVE): everyone fenced",
        pool(node(A, State.STANDBY, False), node(B, State.STANDBY, False), status=PoolStatus.FAIL),
        {A: seen(False), B: seen(False)},
        {A: True, B: True},
    ),
]


@pytest.mark.parametrize(
    ("p", "observations", "expected"), [row[1:] for row in PLANS], ids=[row[0] for row in PLANS]
)
def test_plan(
    p: PoolState, observations: dict[NodeId, Observation], expected: dict[NodeId, bool]
) -> None:
    assert steps(p, observations) == expected


@pytest.mark.parametrize(
    ("p", "observations", "_"), [row[1:] for row in PLANS], ids=[r[0] for r in PLANS]
)
def test_plan_done_and_observed_leaves_nothing_to_do(
    p: PoolState, observations: dict[NodeId, Observation], _: object
) -> None:
    """Idempotent: once the plan is done (and the next round observes it), nothing is left."""
    done = plan(p, observations, NOW)
    after = {
        n: replace(o, replication=replace(o.replication or Replication(), read_only=s.read_only))
        for n, o in observations.items()
        for s in [next((s for s in done if s.node == n), None)]
        if s is not None
    }
    again = recorded(p, done)
    assert plan(again, {**observations, **after}, NOW) == ()


def test_the_writer_never_gets_read_only_on_and_the_others_never_off() -> None:
    """Whatever the plan does, at most one node is left writable: the routing's writer."""
    for _, p, observations, _ in PLANS:
        target = route(p, NOW).write_target
        for s in plan(p, observations, NOW):
            assert s.read_only is (s.node != target)


# --------------------------------------------------------------------------- routing rule 12

ROUTES = [
    ("read_only OFF: writes", Fence.READ_ONLY, False, True, False),
    ("read_only ON: no writes until opened", Fence.READ_ONLY, True, False, True),
    ("read_only unknown: no writes", Fence.READ_ONLY, None, False, True),
    ("fence off: read_only does not matter to routing", Fence.OFF, True, True, False),
]


@pytest.mark.parametrize(
    ("fence", "read_only", "writes", "awaits"), [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES]
)
def test_routing_rule_10(fence: Fence, read_only: bool | None, writes: bool, awaits: bool) -> None:
    p = pool(node(A, State.ACTIVE, read_only), node(B, State.STANDBY, True), fence=fence)
    decided = route(p, NOW)
    writer = decided.nodes[0]
    assert (writer.takes_writes, writer.awaits_fence) == (writes, awaits)
    assert decided.write_target == A
    if awaits:
        assert writer.why[0] == AWAITS_FENCE
        assert writer.takes_reads  # reads as a STANDBY would
        assert decided.writer is None


def test_a_gated_writer_is_not_a_write_target() -> None:
    p = pool(node(A, State.ACTIVE, True, catchup_until=NOW + 5), node(B, State.STANDBY, True))
    decided = route(p, NOW)
    assert decided.write_target is None
    assert not decided.nodes[0].awaits_fence


# --------------------------------------------------------------------------- the tick (B-ro)


def ro_tick(p: PoolState, a_read_only: bool) -> tuple[PoolState, str]:
    result = tick(p, {A: seen(a_read_only), B: seen(True)}, NOW)
    return result.pool, result.rules[A]


TICKS = [
    # (id, pool, A's read_only in this round, A's R after the tick)
    (
        "fence off: a read_only ACTIVE is failing",
        pool(node(A, State.ACTIVE, False), node(B, State.STANDBY, True), fence=Fence.OFF),
        True,
        1,
    ),
    (
        "held by its catch-up gate: not failing",
        pool(node(A, State.ACTIVE, True, catchup_until=NOW + 5), node(B, State.STANDBY, True)),
        True,
        0,
    ),
    (
        "just promoted, not opened yet: not failing",
        pool(node(A, State.ACTIVE, True), node(B, State.STANDBY, True)),
        True,
        0,
    ),
    (
        "writes pinned to the standby: the fenced ACTIVE is not failing",
        pool(node(A, State.ACTIVE, False), node(B, State.STANDBY, True, override=PINNED_TO_B)),
        True,
        0,
    ),
    (
        "opened, then read_only again (set by hand): failing",
        pool(node(A, State.ACTIVE, False), node(B, State.STANDBY, True)),
        True,
        1,
    ),
    (
        "opened and writable: healthy",
        pool(node(A, State.ACTIVE, False), node(B, State.STANDBY, True)),
        False,
        0,
    ),
]


@pytest.mark.parametrize(
    ("p", "read_only", "requests"), [r[1:] for r in TICKS], ids=[r[0] for r in TICKS]
)
def test_read_only_active_under_fencing(p: PoolState, read_only: bool, requests: int) -> None:
    after, rule = ro_tick(p, read_only)
    a = after.nodes[0]
    assert a.state is State.ACTIVE
    assert a.r == requests, (rule, a.message)
    assert (a.message == MSG_READ_ONLY) is (requests == 1)


def test_a_held_active_opens_after_the_gate_without_failing() -> None:
    """Catching up for rounds while fenced, then caught up: no round counts against it, and
    the plan opens it once the gate has opened."""
    behind = Replication(read_only=True, unapplied=3)
    p = pool(
        node(A, State.FAILED_OFFLINE),
        replace(node(B, State.ACTIVE, True), replication=behind, catchup_until=NOW + 30),
    )
    for i in range(6):
        obs = {A: seen(None, Outcome.CONNECT), B: Observation(Outcome.HEALTHY, replication=behind)}
        p = tick(p, obs, NOW + i).pool
        assert p.nodes[1].r == 0 and p.nodes[1].state is State.ACTIVE
        assert plan(p, obs, NOW + i) == ()
    done = Replication(read_only=True, unapplied=0)
    obs = {A: seen(None, Outcome.CONNECT), B: Observation(Outcome.HEALTHY, replication=done)}
    p = tick(p, obs, NOW + 6).pool
    assert p.nodes[1].catchup_until is None and p.nodes[1].r == 0
    assert steps(p, obs) == {B: False}


# --------------------------------------------------------------------------- records


def test_recorded_read_only_opens_writes_at_once() -> None:
    p = pool(node(A, State.FAILED_OFFLINE), node(B, State.ACTIVE, True))
    obs = {A: seen(None, Outcome.CONNECT), B: seen(True)}
    done = plan(p, obs, NOW)
    assert route(p, NOW).writer is None
    assert route(recorded(p, done), NOW).writer is not None
    assert recorded(p, ()) is p


def test_step_events() -> None:
    p = pool(node(A, State.FAILED_OFFLINE), node(B, State.ACTIVE, True))
    on = step_event(p, Step(A, True, False, "FAILED_OFFLINE: takes no writes"), "poller-a")
    off = step_event(p, Step(B, False, None, "ACTIVE: takes writes"), "poller-a")
    assert (on.kind, on.kind.value, on.node, on.to_state) == (
        EventKind.FENCED,
        "fenced",
        str(A),
        "",
    )
    assert on.message == (
        "read_only=ON (was OFF) by poller poller-a: FAILED_OFFLINE: takes no writes"
    )
    assert (off.kind.value, off.extra["read_only"]) == ("unfenced", "OFF")
    assert "was unknown" in off.message


def test_counter() -> None:
    counter = FencingCounter()
    counter.add("p", A, FenceAction.FENCE)
    counter.add("p", A, FenceAction.FENCE)
    counter.add("p", B, FenceAction.FAILED)
    assert counter.samples() == {("p", str(A), "fence"): 2, ("p", str(B), "failed"): 1}
    assert (counter.total(), counter.total(FenceAction.FENCE)) == (3, 2)


def test_a_recheck_retries_a_node_already_as_it_should_be_without_a_change() -> None:
    """After a refusal the shell asks again (the account may have been fixed); such a step
    changes nothing, so it is neither recorded nor an event."""
    p = pool(node(A, State.ACTIVE, False), node(B, State.STANDBY, False))
    obs = {A: seen(False), B: seen(True)}
    assert plan(p, obs, NOW) == ()
    (again,) = plan(p, obs, NOW, recheck=[B])
    assert (again.node, again.read_only, again.is_change) == (B, True, False)
    assert recorded(p, [again]) is p
    assert plan(p, {A: seen(False), B: seen(None, Outcome.CONNECT)}, NOW, recheck=[B]) == ()


@pytest.mark.parametrize(
    ("version", "read_only", "last"),
    [
        ("10.11.19-MariaDB-0+deb12u1", True, "SET GLOBAL read_only = ON"),
        ("10.11.19-MariaDB-0+deb12u1", False, "SET GLOBAL read_only = OFF"),
        ("8.0.36", True, "SET GLOBAL super_read_only = ON"),
        ("8.0.36", False, "SET GLOBAL read_only = OFF"),  # clears super_read_only too
    ],
)
def test_read_only_statements(version: str, read_only: bool, last: str) -> None:
    assert read_only_statements(version, read_only, 2) == (
        "SET SESSION lock_wait_timeout = 2",
        last,
    )


# --------------------------------------------------------------------------- properties

READ_ONLY_VALUES = st.sampled_from([True, False, None])


@st.composite
def fenced_rounds(draw: st.DrawFn) -> tuple[PoolState, dict[NodeId, Observation]]:
    """A fenced pool of 1 to 4 nodes in any states (overrides, gates, pool status) and a
    round's observations of some of them."""
    ids = [NodeId(f"10.0.0.{i + 1}") for i in range(draw(st.integers(1, 4)))]
    nodes = []
    for n in ids:
        override = draw(
            st.none() | st.builds(Override, st.sampled_from([State.ACTIVE, State.STANDBY]),
                                  st.none(), st.just("x"), set_at=st.floats(0, NOW))
        )  # fmt: skip
        nodes.append(
            node(
                n,
                draw(st.sampled_from(list(State))),
                draw(READ_ONLY_VALUES),
                override=override,
                catchup_until=draw(st.none() | st.floats(NOW - 5, NOW + 5)),
            )
        )
    p = pool(*nodes, status=draw(st.sampled_from(list(PoolStatus))))
    observations = {
        n: seen(draw(READ_ONLY_VALUES), draw(st.sampled_from(list(Outcome))))
        for n in ids
        if draw(st.booleans())
    }
    return p, observations


@settings(max_examples=300, deadline=None)
@given(fenced_rounds())
def test_the_plan_leaves_at_most_the_writer_writable_and_is_then_done(
    scenario: tuple[PoolState, dict[NodeId, Observation]],
) -> None:
    p, observations = scenario
    done = plan(p, observations, NOW)
    target = route(p, NOW).write_target
    opened = [s.node for s in done if not s.read_only]
    assert opened in ([], [target])
    # every node that answered ends read_only unless it is the writer
    after = {
        n: next((s.read_only for s in done if s.node == n), observed_read_only(o))
        for n, o in observations.items()
        if o.outcome is not Outcome.CONNECT
    }
    assert all(ro is (n != target) for n, ro in after.items()), (after, target)
    # idempotent: observed as set, nothing is left to do
    observed = {
        n: replace(o, replication=replace(o.replication or Replication(), read_only=after[n]))
        if n in after
        else o
        for n, o in observations.items()
    }
    assert plan(recorded(p, done), observed, NOW) == ()


@pytest.mark.parametrize(
    ("fence", "read_only", "writes", "awaits"), [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES]
)
def test_a_switchover_waits_for_its_target_s_fence_to_open(
    fence: Fence, read_only: bool | None, writes: bool, awaits: bool
) -> None:
    # mpp-admin switchover: a target ACTIVE but still read_only is not an abandoned switchover.
    p = pool(node(A, State.ACTIVE, read_only), node(B, State.STANDBY, True), fence=fence)
    assert awaits_fence(p, A, NOW) is awaits
    assert not awaits_fence(p, B, NOW)
