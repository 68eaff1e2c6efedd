"""The routing decision (mpp_agent/routing.py): rule tables, the case of two views that used to
disagree, and hypothesis properties over random schedules of ticks, overrides, expiries and
releases:

* at most one node of a pool takes writes, whatever the overrides, their expiries and the state;
* ``mpp-admin is-active`` says OK exactly when the agent answers ``up ready`` on ``rw``;
* ``pools`` names as ACTIVE the node the agent sends writes to;
* a node never takes writes while its catch-up gate holds (it became ACTIVE with received
  transactions not applied, and neither caught up nor timed out), unless an override pins it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_agent.agent_protocol import Role, decide, decide_pool
from mpp_agent.config import PoolConfig, new_pool
from mpp_agent.model import (
    NodeId,
    NodeState,
    NodeType,
    Observation,
    Outcome,
    Override,
    PoolState,
    Replication,
    State,
    Status,
)
from mpp_agent.routing import route
from mpp_agent.state import AdminRefused, expire_overrides, release_override, set_override, tick
from mpp_cli.render import pools_table
from mpp_cli.view_cmd import node_route

A, B, C = NodeId("10.0.0.1"), NodeId("10.0.0.2"), NodeId("10.0.0.3")
NOW = 1_000_000.0


def pool_of(*nodes: NodeState) -> PoolState:
    return PoolState("p1", nodes)


def node(
    node_id: NodeId, state: State, status: Status = Status.OK, override: Override | None = None
) -> NodeState:
    kind = NodeType.PRIMARY if node_id == A else NodeType.SECONDARY
    return NodeState(node_id, kind, state, status, requests=0, override=override)


def pin(set_at: float = NOW - 10, expires_at: float | None = None) -> Override:
    return Override(State.ACTIVE, None, "drill", "admin:ops", set_at, expires_at)


def writers(pool: PoolState, now: float = NOW) -> list[str]:
    return [str(n.node) for n in route(pool, now).nodes if n.takes_writes]


# ---------------------------------------------------------------------------------------------
# the rules, one row per case


@pytest.mark.parametrize(
    ("pool", "writer"),
    [
        pytest.param(pool_of(node(A, State.ACTIVE), node(B, State.STANDBY)), [str(A)],
                     id="the-active-node"),
        pytest.param(pool_of(node(A, State.FAILED_OFFLINE, Status.FAIL), node(B, State.STANDBY)),
                     [], id="no-active-no-writer"),
        pytest.param(pool_of(node(A, State.ACTIVE), node(B, State.STANDBY, override=pin())),
                     [str(B)], id="an-active-override-pins-the-writer"),
        pytest.param(pool_of(node(A, State.ACTIVE, override=pin(expires_at=NOW - 1)),
                             node(B, State.ACTIVE)),
                     [str(A)], id="expired-override-ignored-first-active-in-priority"),
        pytest.param(pool_of(node(A, State.STANDBY, override=pin(set_at=NOW - 5)),
                             node(B, State.STANDBY, override=pin(set_at=NOW - 50))),
                     [str(B)], id="two-active-overrides-the-oldest-wins"),
        pytest.param(pool_of(node(A, State.ACTIVE),
                             node(B, State.ACTIVE, override=Override(State.STANDBY, None, "x"))),
                     [str(A)], id="standby-override-removes-a-writer"),
        pytest.param(pool_of(node(A, State.ACTIVE, Status.OK_WARN), node(B, State.STANDBY)),
                     [str(A)], id="last-node-standing-writes"),
    ],
)  # fmt: skip
def test_the_writer(pool: PoolState, writer: list[str]) -> None:
    assert writers(pool) == writer


def test_the_issue_case_an_expired_standby_override_does_not_make_a_second_writer() -> None:
    """override A --state STANDBY --for 4s; override B --state ACTIVE; A's override expires."""
    pool = pool_of(node(A, State.ACTIVE), node(B, State.STANDBY))
    pool = set_override(pool, A, Override(State.STANDBY, None, "x", "admin:t", NOW, NOW + 4)).pool
    pool = set_override(pool, B, Override(State.ACTIVE, None, "y", "admin:t", NOW + 1)).pool
    later = NOW + 5
    for p in (pool, expire_overrides(pool, later)):  # before and after a writer drops it
        assert writers(p, later) == [str(B)]
        assert not node_route(p, A, later).takes_writes  # is-active A: NO
        assert node_route(p, B, later).takes_writes  # is-active B: OK
        assert decide(p, A, Role.RW, later).words == "up drain"
        assert "writes pinned to 10.0.0.2:3306 by override" in decide(p, A, Role.RW, later).reason
        assert decide(p, B, Role.RW, later).words == "up ready"
        assert pools_table([p], later).splitlines()[1].split()[2] == str(B)


def test_an_active_override_is_refused_while_another_node_takes_writes() -> None:
    pool = pool_of(node(A, State.ACTIVE), node(B, State.STANDBY))
    with pytest.raises(AdminRefused, match=r"while 10\.0\.0\.1:3306 is ACTIVE"):
        set_override(pool, B, Override(State.ACTIVE, None, "y", "admin:t", NOW))
    # once A's STANDBY override has expired, A is the writer again: refused again
    pool = set_override(pool, A, Override(State.STANDBY, None, "x", "admin:t", NOW, NOW + 4)).pool
    assert set_override(pool, B, Override(State.ACTIVE, None, "y", "admin:t", NOW + 1)).pool
    with pytest.raises(AdminRefused):
        set_override(pool, B, Override(State.ACTIVE, None, "y", "admin:t", NOW + 5))


@pytest.mark.parametrize(
    ("standby_status", "active_reads", "standby_reads"),
    [
        pytest.param(Status.OK, False, True, id="healthy-replica-reads"),
        pytest.param(Status.OK_WARN, False, True, id="warn-replica-reads"),
        pytest.param(Status.FAIL, True, False, id="failing-replica-the-writer-reads"),
    ],
)
def test_the_readers(standby_status: Status, active_reads: bool, standby_reads: bool) -> None:
    decision = route(pool_of(node(A, State.ACTIVE), node(B, State.STANDBY, standby_status)), NOW)
    assert [n.takes_reads for n in decision.nodes] == [active_reads, standby_reads]


def test_stale_changes_no_decision() -> None:
    pool = pool_of(node(A, State.ACTIVE), node(B, State.STANDBY))
    fresh, stale = route(pool, NOW), route(pool, NOW, stale=True)
    assert fresh.nodes == stale.nodes and stale.stale and not fresh.stale


# ---------------------------------------------------------------------------------------------
# properties over random schedules


@dataclass(frozen=True)
class Tick:
    healthy: tuple[bool, ...]
    unapplied: tuple[int, ...] = ()  # received, not applied, per node (as its probe read it)


@dataclass(frozen=True)
class SetOverride:
    index: int
    state: State
    status: Status | None
    duration: float | None
    checked: bool  # through state.set_override (refusals apply), or written raw (a race)


@dataclass(frozen=True)
class Release:
    index: int


@dataclass(frozen=True)
class Wait:
    seconds: float


@dataclass(frozen=True)
class Drop:
    """A writer commits: expired overrides are dropped."""


Step = Tick | SetOverride | Release | Wait | Drop


def schedules(size: int) -> st.SearchStrategy[list[Step]]:
    step = st.one_of(
        st.builds(Tick, st.tuples(*[st.booleans()] * size), st.tuples(*[st.integers(0, 2)] * size)),
        st.builds(
            SetOverride,
            st.integers(0, size - 1),
            st.sampled_from(list(State)),
            st.sampled_from([None, *Status]),
            st.sampled_from([None, 1.0, 3.0, 10.0]),
            st.booleans(),
        ),
        st.builds(Release, st.integers(0, size - 1)),
        st.builds(Wait, st.sampled_from([0.5, 1.0, 2.0, 5.0])),
        st.just(Drop()),
    )
    return st.lists(step, min_size=1, max_size=40)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PoolState, list[Step]]:
    size = draw(st.integers(1, 4))
    members = tuple(
        (NodeId(f"10.0.0.{i + 1}"), NodeType.PRIMARY if i == 0 else NodeType.SECONDARY)
        for i in range(size)
    )
    config = PoolConfig("p1", members, max_requests=2, catchup_timeout=3.0)
    return new_pool(config), draw(schedules(size))


def apply(pool: PoolState, step: Step, now: float) -> PoolState:
    if isinstance(step, Tick):
        behind = step.unapplied or (0,) * len(pool.nodes)
        obs = {
            n.node: Observation(Outcome.HEALTHY, replication=Replication(unapplied=k))
            if ok
            else Observation.connect_error(n.node, "down")
            for n, ok, k in zip(pool.nodes, step.healthy, behind, strict=True)
        }
        return tick(pool, obs, now).pool
    if isinstance(step, SetOverride):
        expires = None if step.duration is None else now + step.duration
        override = Override(step.state, step.status, "r", "admin:t", now, expires)
        target = pool.nodes[step.index]
        if not step.checked:
            nodes = list(pool.nodes)
            nodes[step.index] = replace(target, override=override)
            return replace(pool, nodes=tuple(nodes))
        try:
            return set_override(pool, target.node, override).pool
        except AdminRefused:
            return pool
    if isinstance(step, Release):
        try:
            return release_override(pool, pool.nodes[step.index].node).pool
        except AdminRefused:
            return pool
    if isinstance(step, Drop):
        return expire_overrides(pool, now)
    return pool


def check_views_agree(pool: PoolState, now: float) -> None:
    decision = route(pool, now)
    rw = {n: r.words for (_, n, role), r in decide_pool(decision) if role is Role.RW}
    assert sum(1 for n in decision.nodes if n.takes_writes) <= 1, "two writers"
    assert sum(1 for words in rw.values() if words == "up ready") <= 1, "two rw 'up ready'"
    for n in pool.nodes:
        is_active_ok = node_route(pool, n.node, now).takes_writes
        assert is_active_ok == (rw[str(n.node)] == "up ready"), f"is-active disagrees on {n.node}"
    for n, decided in zip(pool.nodes, decision.nodes, strict=True):
        gated = n.catchup_until is not None and now < n.catchup_until
        pinned = n.override is not None and not n.override.is_expired(now)
        if decided.takes_writes and not pinned:
            assert not gated, f"{n.node} takes writes while catching up"
    writer = decision.writer
    shown = pools_table([pool], now).splitlines()[1].split()[2]
    assert shown == ("-" if writer is None else str(writer.node))


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_one_writer_and_one_truth_over_random_schedules(
    scenario: tuple[PoolState, list[Step]],
) -> None:
    pool, schedule = scenario
    now = NOW
    for step in schedule:
        now += step.seconds if isinstance(step, Wait) else 0.25
        pool = apply(pool, step, now)
        check_views_agree(pool, now)
        # and at the very instant of every override expiry (the boundary is where copies drift)
        for n in pool.nodes:
            if n.override is not None and n.override.expires_at is not None:
                check_views_agree(pool, n.override.expires_at)


# ---------------------------------------------------------------------------------------------
# the catch-up gate


def gated_writer(unapplied: int | None = 3, until: float = NOW + 5) -> PoolState:
    active = replace(
        node(B, State.ACTIVE, Status.OK_WARN),
        replication=Replication(unapplied=unapplied),
        catchup_until=until,
    )
    return pool_of(node(A, State.FAILED_OFFLINE, Status.FAIL), active)


def test_a_writer_catching_up_drains_writes_and_reads_as_a_standby() -> None:
    pool = gated_writer()
    assert writers(pool) == []
    assert decide(pool, B, Role.RW, NOW).encode() == (
        b"up drain #catching up (3 behind); ACTIVE OK_WARN level=OK; "
        b"degraded: no failover candidate\n"
    )
    assert decide(pool, B, Role.RO, NOW).words == "up ready 100%"
    assert route(pool, NOW).next_expiry == NOW + 5


def test_writes_open_at_the_catch_up_deadline() -> None:
    pool = gated_writer()
    assert writers(pool, NOW + 5) == [str(B)]
    assert decide(pool, B, Role.RW, NOW + 5).words == "up ready"


def test_an_active_override_is_not_gated() -> None:
    pool = gated_writer()
    pinned = replace(pool.nodes[1], override=pin())
    assert writers(pool_of(pool.nodes[0], pinned)) == [str(B)]
