"""Hypothesis properties of the pure core over random sequences of probe outcomes and admin
steps on pools of 1 to 4 nodes:

* never two ACTIVE nodes;
* a FAILED_* node leaves FAILED_* only through recover or delete;
* after every evaluation R is 0 exactly when the evaluation exited OK;
* a pool whose status is FAIL has no ACTIVE node, and FAIL is sticky until recover pool;
* STATUS FAIL only ever goes with a FAILED_* state;
* a tick with no observations changes nothing;
* an abstention is never counted as failing: a node every poller abstained on keeps its state,
  status and R;
* a tick in which no node is observed healthy never takes the ACTIVE node away (only a pool
  FAIL does): simultaneous failures of every node never leave the pool without a writer;
* a TRANSITION event always changes the node's state or status;
* every state reads back from its stored document as itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from mpp_agent.codec import pool_from_doc, pool_to_doc
from mpp_agent.config import PoolConfig, new_pool
from mpp_agent.model import (
    EventKind,
    NodeId,
    NodeType,
    Observation,
    Outcome,
    PoolState,
    PoolStatus,
    Replication,
    State,
    Status,
)
from mpp_agent.state import (
    AdminRefused,
    Exit,
    activate_primary,
    delete_node,
    recover_node,
    recover_pool,
    tick,
)

OUTCOMES = ("ok", "conn", "req", "abs", "gone", "recv")


@dataclass(frozen=True)
class Tick:
    outcomes: tuple[str | None, ...]  # per node in priority order; None = not probed
    pool_failed: bool


@dataclass(frozen=True)
class Admin:
    verb: str  # recover, recover-pool, activate-primary, delete
    index: int = 0


Step = Tick | Admin


@st.composite
def pools(draw: st.DrawFn) -> PoolState:
    size = draw(st.integers(1, 4))
    has_primary = draw(st.booleans())
    members = tuple(
        (NodeId(f"n{i}"), NodeType.PRIMARY if i == 0 and has_primary else NodeType.SECONDARY)
        for i in range(size)
    )
    max_requests = draw(st.sampled_from((1, 1, 2, 4)))
    return new_pool(PoolConfig("pool1", members, max_requests=max_requests))


def ticks(size: int) -> st.SearchStrategy[Tick]:
    outcome = st.sampled_from(("ok", "ok", "conn", "req", "abs", "gone", "recv"))
    full = st.tuples(*[outcome] * size).map(lambda o: Tick(o, False))
    judged = st.sampled_from(("ok", "ok", "conn", "req"))
    failed = st.tuples(*[judged] * size).map(lambda o: Tick(o, True))
    partial = st.tuples(*[st.one_of(st.none(), outcome)] * size).map(lambda o: Tick(o, False))
    # A pool FAIL is only ever reported with every node observed and judged (no abstention):
    # the tick cannot demote an ACTIVE node it did not evaluate (a poller probes every node of
    # a pool each round).
    return st.one_of(full, full, full, partial, failed)


@st.composite
def steps(draw: st.DrawFn, size: int) -> list[Step]:
    # A few tick patterns repeated: nodes stay down (or up) for several ticks in a row, so
    # pools bootstrap, fail, fail over, recover and hand back within a short script.
    patterns = draw(st.lists(ticks(size), min_size=1, max_size=3))
    admin = st.builds(
        Admin,
        st.sampled_from(("recover", "recover", "recover-pool", "activate-primary", "delete")),
        st.integers(0, size - 1),
    )
    one = st.one_of(st.sampled_from(patterns), st.sampled_from(patterns), ticks(size), admin)
    return draw(st.lists(one, min_size=1, max_size=40))


def observations(pool: PoolState, outcomes: tuple[str | None, ...]) -> dict[NodeId, Observation]:
    obs = {}
    for n, outcome in zip(pool.nodes, outcomes, strict=False):
        if outcome == "ok":
            obs[n.node] = Observation.healthy()
        elif outcome == "conn":
            obs[n.node] = Observation.connect_error(n.node, "down")
        elif outcome == "req":
            obs[n.node] = Observation(Outcome.REQUEST, "Slave Error: x")
        elif outcome == "abs":
            obs[n.node] = Observation.abstain("monitor cannot check: Access denied")
        elif outcome == "gone":  # the pollers cannot reach it at all
            obs[n.node] = Observation.connect_error(n.node, "refused", unreachable=True)
        elif outcome == "recv":  # healthy, its IO thread receiving from the first node
            details = Replication(source=str(pool.nodes[0].node), io_running="Yes")
            obs[n.node] = Observation(Outcome.HEALTHY, replication=details)
    return obs


def apply_admin(pool: PoolState, step: Admin) -> PoolState:
    if not pool.nodes:
        return pool
    target = pool.nodes[step.index % len(pool.nodes)].node
    try:
        if step.verb == "recover":
            return recover_node(pool, target).pool
        if step.verb == "recover-pool":
            return recover_pool(pool).pool
        if step.verb == "activate-primary":
            return activate_primary(pool, 0.0).pool
        return delete_node(pool, target).pool
    except AdminRefused:
        return pool


def check_always(pool: PoolState) -> None:
    assert len(pool.active_nodes) <= 1, "two ACTIVE nodes"
    if pool.status is PoolStatus.FAIL:
        assert pool.active_nodes == (), "an ACTIVE node while the pool status is FAIL"
    for n in pool.nodes:
        if n.status is Status.FAIL:
            assert n.state.is_failed, f"{n.node} has STATUS FAIL but STATE {n.state}"


def check_tick(before: PoolState, after: PoolState, exits: dict[NodeId, Exit]) -> None:
    for old, new in zip(before.nodes, after.nodes, strict=True):
        if old.state.is_failed:
            assert new.state.is_failed, f"{old.node} left {old.state} in a tick"
        if old.node in exits and exits[old.node] is Exit.HOLD:
            # The replicas' view: the round neither counts nor resets R, the node stays ACTIVE.
            assert (new.requests, new.state) == (old.requests, State.ACTIVE)
        elif old.node in exits:
            assert (new.requests == 0) == (exits[old.node] is Exit.OK)
        else:
            assert replace(new, monitor_note=None) == replace(old, monitor_note=None), (
                "a node that was not evaluated changed"
            )
    if before.status is PoolStatus.FAIL:
        assert after.status is PoolStatus.FAIL, "pool FAIL cleared by a tick"


def check_writer_kept(
    before: PoolState, after: PoolState, obs: dict[NodeId, Observation], pool_failed: bool
) -> None:
    """No node observed healthy this tick: the ACTIVE node (if any) is still ACTIVE."""
    if pool_failed or after.status is PoolStatus.FAIL:
        return
    if any(o.is_healthy for o in obs.values()):
        return
    for old, new in zip(before.nodes, after.nodes, strict=True):
        if old.state is State.ACTIVE:
            assert new.state is State.ACTIVE, f"{old.node} lost ACTIVE with no node to take over"


def check_events(result_events: tuple[object, ...]) -> None:
    for event in result_events:
        kind = getattr(event, "kind", None)
        if kind is EventKind.TRANSITION:
            changed = (event.from_state, event.from_status) != (  # type: ignore[attr-defined]
                event.to_state,  # type: ignore[attr-defined]
                event.to_status,  # type: ignore[attr-defined]
            )
            assert changed, "a TRANSITION event that changed neither state nor status"


def run(pool: PoolState, script: list[Step]) -> None:
    now = 0.0
    for step in script:
        now += 1
        if isinstance(step, Tick):
            obs = observations(pool, step.outcomes)
            result = tick(pool, obs, now, pool_failed=step.pool_failed)
            check_tick(pool, result.pool, dict(result.exits))
            check_writer_kept(pool, result.pool, obs, step.pool_failed)
            check_events(result.events)
            abstained = {n for n, o in obs.items() if o.is_abstained}
            assert abstained.isdisjoint(result.exits), "an abstained node was evaluated"
            pool = result.pool
        else:
            pool = apply_admin(pool, step)
        check_always(pool)
        assert tick(pool, {}, now).pool == pool
        # What a poller keeps of its own commit is what a reader decodes from the document.
        assert pool_from_doc(pool_to_doc(pool), pool.version, pool.last_round, pool.name) == pool


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PoolState, list[Step]]:
    pool = draw(pools())
    return pool, draw(steps(len(pool.nodes)))


def three_nodes(max_requests: int) -> PoolState:
    members = (
        (NodeId("n0"), NodeType.PRIMARY),
        (NodeId("n1"), NodeType.SECONDARY),
        (NodeId("n2"), NodeType.SECONDARY),
    )
    return new_pool(PoolConfig("pool1", members, max_requests=max_requests))


DOWN_UP_UP = Tick(("conn", "conn", "ok"), False)
ALL_UP = Tick(("ok", "ok", "ok"), False)


@settings(max_examples=400, deadline=None)
@given(scenarios())
# Known traps, always tried. A recovered higher secondary must not take over from a lower
# ACTIVE one (the extra divergence in rule E):
@example((three_nodes(1), [DOWN_UP_UP, DOWN_UP_UP, Admin("recover", 1), ALL_UP, ALL_UP]))
# activate-primary while a secondary is ACTIVE (MPP left two ACTIVE nodes):
@example(
    (
        three_nodes(1),
        [Tick(("conn", "ok", "ok"), False)] * 3
        + [Admin("recover", 0), ALL_UP]
        + [Admin("activate-primary")],
    )
)
# pool FAIL reported in the very tick a primary would be instated (commit step C1):
@example((three_nodes(4), [ALL_UP, Tick(("ok", "ok", "ok"), True)]))
# every node fails at once, for longer than M ticks, then comes back (the ACTIVE must stay):
@example(
    (three_nodes(2), [ALL_UP, ALL_UP] + [Tick(("conn", "conn", "conn"), False)] * 4 + [ALL_UP])
)
# the monitor abstains on every node for longer than M ticks:
@example((three_nodes(1), [ALL_UP, ALL_UP] + [Tick(("abs", "abs", "abs"), False)] * 3))
def test_invariants_hold_over_random_sequences(scenario: tuple[PoolState, list[Step]]) -> None:
    run(*scenario)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_no_observations_change_nothing(scenario: tuple[PoolState, list[Step]]) -> None:
    pool, script = scenario
    now = 0.0
    for step in script:
        now += 1
        if isinstance(step, Tick):
            pool = tick(
                pool, observations(pool, step.outcomes), now, pool_failed=step.pool_failed
            ).pool
        else:
            pool = apply_admin(pool, step)
    result = tick(pool, {}, now + 1)
    assert result.pool == pool
    assert result.events == ()
    assert result.rules == {}


def test_the_checks_catch_violations() -> None:
    # Guard against vacuous properties: a pool breaking each invariant is rejected.
    pool = new_pool(
        PoolConfig("pool1", ((NodeId("n0"), NodeType.PRIMARY), (NodeId("n1"), NodeType.SECONDARY)))
    )
    two_active = replace(pool, nodes=tuple(replace(n, state=State.ACTIVE) for n in pool.nodes))
    with pytest.raises(AssertionError, match="two ACTIVE"):
        check_always(two_active)
    one_active = replace(two_active, nodes=(two_active.nodes[0], pool.nodes[1]))
    with pytest.raises(AssertionError, match="pool status is FAIL"):
        check_always(replace(one_active, status=PoolStatus.FAIL))
    failed = replace(pool, nodes=(replace(pool.nodes[0], state=State.FAILED_ONLINE), pool.nodes[1]))
    with pytest.raises(AssertionError, match="left FAILED_ONLINE"):
        check_tick(failed, pool, {})
