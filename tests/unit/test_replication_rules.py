"""Table and property tests of the tick's replication rules (deliberate divergences from MPP):

* a standby whose IO thread cannot reach its source is excused only when that source is a pool
  node connect-failing in the same round; cut off from a living source it is failing;
* an ACTIVE that says it is read_only is failing ("ACTIVE node is read_only"), so writes move
  after M ticks when a standby can take over, and it stays put when none can.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpp_agent.model import (
    NodeId,
    NodeState,
    NodeType,
    Observation,
    Outcome,
    PoolState,
    PoolStatus,
    Replication,
    State,
    Status,
)
from mpp_agent.routing import route
from mpp_agent.state import (
    MSG_READ_ONLY,
    AdminRefused,
    activate_primary,
    excuse_cut_links,
    failover_to,
    tick,
)

A, B = NodeId("10.0.0.1"), NodeId("10.0.0.2")
IO_ERROR = "Slave Error: Slave IO is not running, Slave_IO_Running=Connecting."


def pool(a_state: State = State.ACTIVE, b_state: State = State.STANDBY, r: int = 0) -> PoolState:
    return PoolState(
        "p",
        (
            NodeState(A, NodeType.PRIMARY, a_state, Status.OK, r),
            NodeState(B, NodeType.SECONDARY, b_state, Status.OK, r),
        ),
        max_requests=4,
    )


def cut(source: str = str(A), source_server_id: int | None = None) -> Observation:
    details = Replication(
        source=source,
        source_server_id=source_server_id,
        io_running="Connecting",
        sql_running="Yes",
        source_unreachable=True,
    )
    return Observation(Outcome.REQUEST, IO_ERROR, replication=details)


def source(word: str, server_id: int = 1) -> Observation:
    details = Replication(server_id=server_id, io_running="Yes", sql_running="Yes")
    if word == "conn":
        return Observation.connect_error(A, "Can't connect")
    if word == "req":
        return Observation(Outcome.REQUEST, "Slave Error: x", replication=details)
    return Observation(Outcome.HEALTHY, replication=details)


def test_cut_from_a_living_source_is_failing() -> None:
    seen = excuse_cut_links(pool(), {A: source("ok"), B: cut()})
    assert seen[B].outcome is Outcome.REQUEST
    assert seen[B].message == IO_ERROR


def test_cut_from_a_dead_source_is_excused() -> None:
    seen = excuse_cut_links(pool(), {A: source("conn"), B: cut()})
    assert seen[B].is_healthy
    assert seen[B].replication is not None  # the positions travel on


def test_source_with_replication_errors_is_not_down() -> None:
    # Both links of a master-master pair cut: each node still answers; neither is excused.
    seen = excuse_cut_links(pool(), {A: source("req"), B: cut()})
    assert seen[B].outcome is Outcome.REQUEST


def test_source_outside_the_pool_or_not_observed_excuses_nothing() -> None:
    assert excuse_cut_links(pool(), {A: source("conn"), B: cut("10.9.9.9:3306")})[B].outcome is (
        Outcome.REQUEST
    )
    assert excuse_cut_links(pool(), {B: cut()})[B].outcome is Outcome.REQUEST


def test_source_found_by_server_id_when_named_otherwise() -> None:
    # The link goes through another address (a proxy, a DNS name): the server_id says who.
    seen = excuse_cut_links(pool(), {A: source("ok"), B: cut("proxy:3306", source_server_id=1)})
    assert seen[B].outcome is Outcome.REQUEST
    prior = pool()
    prior = PoolState(
        "p",
        (
            NodeState(A, NodeType.PRIMARY, State.ACTIVE, replication=Replication(server_id=1)),
            prior.nodes[1],
        ),
    )
    seen = excuse_cut_links(prior, {A: source("conn"), B: cut("proxy:3306", source_server_id=1)})
    assert seen[B].is_healthy


def test_cut_standby_fails_after_m_ticks_and_is_not_promoted() -> None:
    current = pool()
    for _ in range(4):
        current = tick(current, {A: source("ok"), B: cut()}, 1.0).pool
    assert current.nodes[1].state is State.FAILED_ONLINE
    # The primary dies now: nobody can take over, it stays ACTIVE (last node standing).
    for _ in range(4):
        current = tick(current, {A: source("conn"), B: cut()}, 2.0).pool
    assert current.nodes[0].state is State.ACTIVE
    assert current.nodes[1].state is State.FAILED_ONLINE


def test_primary_death_in_master_master_still_fails_over() -> None:
    current = pool()
    for _ in range(4):
        current = tick(current, {A: source("conn"), B: cut()}, 1.0).pool
    assert [n.state for n in current.nodes] == [State.FAILED_OFFLINE, State.ACTIVE]


def read_only(flag: bool = True) -> Observation:
    return Observation(Outcome.HEALTHY, replication=Replication(read_only=flag))


def test_read_only_active_moves_writes_after_m_ticks() -> None:
    current = pool()
    for count in range(1, 5):
        result = tick(current, {A: read_only(), B: source("ok")}, float(count))
        current = result.pool
        if count < 4:
            assert current.nodes[0].state is State.ACTIVE
            assert current.nodes[0].message == MSG_READ_ONLY
            assert current.nodes[0].requests == count
    assert [n.state for n in current.nodes] == [State.FAILED_ONLINE, State.ACTIVE]
    assert current.nodes[0].message == MSG_READ_ONLY


def test_read_only_active_stays_when_nobody_can_take_over() -> None:
    current = pool(b_state=State.FAILED_OFFLINE)
    for _ in range(6):
        current = tick(current, {A: read_only(), B: Observation.connect_error(B, "x")}, 1.0).pool
    assert current.nodes[0].state is State.ACTIVE
    assert current.nodes[0].status is Status.OK_WARN
    assert current.nodes[0].message is not None
    assert current.nodes[0].message.startswith(MSG_READ_ONLY)


def test_read_only_standby_is_healthy() -> None:
    current = tick(pool(), {A: source("ok"), B: read_only()}, 1.0).pool
    assert current.nodes[1].status is Status.OK and current.nodes[1].requests == 0


def test_tick_keeps_the_last_replication_values() -> None:
    current = tick(pool(), {A: read_only(False), B: source("ok")}, 1.0).pool
    assert current.nodes[0].replication == Replication(read_only=False)
    # A round without replication values (a connect error) keeps the last known ones.
    current = tick(current, {A: Observation.connect_error(A, "x"), B: source("ok")}, 2.0).pool
    assert current.nodes[0].replication == Replication(read_only=False)


@given(
    source_word=st.sampled_from(["ok", "req", "abs", None]),
    states=st.sampled_from([State.ACTIVE, State.STANDBY, State.FAILED_ONLINE, State.UNKNOWN]),
    r=st.integers(0, 6),
)
def test_cut_standby_with_a_living_source_is_never_healthy(
    source_word: str | None, states: State, r: int
) -> None:
    """Whatever the states and counters, a node cut from a source that answers (or is not
    observed) is never evaluated as healthy: its R counts and it never takes over."""
    observations = {B: cut()}
    if source_word == "abs":
        observations[A] = Observation.abstain("no password")
    elif source_word is not None:
        observations[A] = source(source_word)
    before = pool(a_state=states, b_state=State.STANDBY, r=r)
    assert excuse_cut_links(before, observations)[B].outcome is Outcome.REQUEST
    after = tick(before, observations, 1.0)
    assert after.exits[B] != "OK"
    assert after.pool.nodes[1].state is not State.ACTIVE


# ---------------------------------------------------------------------------------------------
# the catch-up gate (tick side)


def behind(n: int | None) -> Observation:
    return Observation(Outcome.HEALTHY, replication=Replication(unapplied=n, server_id=2))


def failover(unapplied: int, timeout: float = 30.0) -> tuple[PoolState, list[str]]:
    """The primary dies; B takes over on the 4th tick with ``unapplied`` transactions."""
    current = replace(pool(), catchup_timeout=timeout)
    kinds: list[str] = []
    for t in range(1, 5):
        result = tick(current, {A: source("conn"), B: behind(unapplied)}, float(t))
        current = result.pool
        kinds += [e.kind for e in result.events]
    return current, kinds


def test_a_caught_up_standby_takes_over_without_gate() -> None:
    current, kinds = failover(0)
    assert current.nodes[1].state is State.ACTIVE
    assert current.nodes[1].catchup_until is None
    assert "catch-up" not in kinds


def test_a_standby_with_unapplied_transactions_is_gated_until_it_caught_up() -> None:
    current, _ = failover(7)
    assert current.nodes[1].state is State.ACTIVE
    assert current.nodes[1].catchup_until == 4.0 + 30.0
    result = tick(current, {A: source("conn"), B: behind(2)}, 5.0)
    assert result.pool.nodes[1].catchup_until == 34.0
    assert not [e for e in result.events if e.kind == "catch-up"]
    result = tick(result.pool, {A: source("conn"), B: behind(0)}, 6.0)
    assert result.pool.nodes[1].catchup_until is None
    [event] = [e for e in result.events if e.kind == "catch-up"]
    assert event.message == "caught up: writes open" and event.extra["level"] == "INFO"


def test_the_catch_up_timeout_opens_writes_with_a_warning() -> None:
    current, _ = failover(7, timeout=3.0)
    result = tick(current, {A: source("conn"), B: behind(7)}, 7.0)
    assert result.pool.nodes[1].catchup_until is None
    [event] = [e for e in result.events if e.kind == "catch-up"]
    assert event.extra["level"] == "WARNING"
    assert "catch-up timeout (3s) passed with 7 behind" in event.message


def test_gate_event_at_takeover_says_how_far_behind() -> None:
    current = pool()
    events = []
    for t in range(1, 5):
        result = tick(current, {A: source("conn"), B: behind(7)}, float(t))
        current = result.pool
        events += [e for e in result.events if e.kind == "catch-up"]
    [event] = events
    assert event.message.startswith("catching up (7 behind)")


# ---------------------------------------------------------------------------------------------
# the lag gate and failover by hand


def positioned(binlog: str, lag: int | None = 0, sid: int = 2) -> Observation:
    details = Replication(binlog=binlog, applied=binlog, received=binlog, lag=lag, server_id=sid)
    return Observation(Outcome.HEALTHY, replication=details)


def steady(max_failover_lag: float, b_binlog: str, rounds: int = 3) -> PoolState:
    """Rounds 1..rounds: the ACTIVE A writes (1-1-10 .. ); B holds ``b_binlog`` throughout."""
    current = replace(pool(), max_failover_lag=max_failover_lag)
    for t in range(1, rounds + 1):
        observed = {A: positioned(f"1-1-{10 * t}", sid=1), B: positioned(b_binlog)}
        current = tick(current, observed, float(t)).pool
    return current


def kill_a(current: PoolState, start: float) -> tuple[PoolState, list[str]]:
    kinds: list[str] = []
    for t in range(4):
        # A is gone; B's IO thread is cut from a dead source: excused, its positions frozen.
        b = Observation(
            Outcome.REQUEST,
            IO_ERROR,
            replication=replace(
                current.nodes[1].replication or Replication(),
                source=str(A),
                source_unreachable=True,
                io_running="Connecting",
                lag=None,
            ),
        )
        result = tick(current, {A: source("conn"), B: b}, start + t)
        current = result.pool
        kinds += [e.kind for e in result.events]
    return current, kinds


def test_a_standby_in_sync_takes_over_with_the_gate_on() -> None:
    current = steady(2.0, "1-1-30")
    # B holds A's position of the round before each tick: in sync.
    assert current.nodes[1].synced_at == 3.0
    current, _ = kill_a(current, 4.0)
    assert [n.state for n in current.nodes] == [State.FAILED_OFFLINE, State.ACTIVE]


def test_a_standby_lacking_transactions_is_held_and_says_what_to_run() -> None:
    current = steady(2.0, "1-1-5")  # B stopped receiving long ago (never in sync here)
    prior = current.nodes[1]
    current = replace(
        current, nodes=(current.nodes[0], replace(prior, synced_at=0.5))
    )  # last in sync at 0.5 s
    current, kinds = kill_a(current, 4.0)
    held = current.nodes[1]
    assert [n.state for n in current.nodes] == [State.FAILED_OFFLINE, State.STANDBY]
    assert held.status is Status.OK_WARN
    assert held.message is not None and "Not taking over:" in held.message
    assert f"mpp-admin failover p --to {B}" in held.message
    assert kinds.count("held") == 1
    # the gate off: the same standby takes over
    off, _ = kill_a(replace(current, max_failover_lag=0.0), 8.0)
    assert off.nodes[1].state is State.ACTIVE


def test_lag_seconds_hold_too() -> None:
    current = replace(pool(), max_failover_lag=2.0)
    current = tick(current, {A: positioned("1-1-10", sid=1), B: positioned("1-1-10", 9)}, 1.0).pool
    for t in range(2, 6):
        current = tick(current, {A: source("conn"), B: positioned("1-1-10", 9)}, float(t)).pool
    assert current.nodes[1].state is State.STANDBY
    assert "9.0s behind" in (current.nodes[1].message or "")


def test_failover_by_hand_promotes_a_held_standby_and_says_what_it_lacks() -> None:
    current = steady(2.0, "1-1-5")
    current = replace(current, nodes=(current.nodes[0], replace(current.nodes[1], synced_at=0.5)))
    current, _ = kill_a(current, 4.0)
    result = failover_to(current, B, 9.0)
    assert [n.state for n in result.pool.nodes] == [State.FAILED_OFFLINE, State.ACTIVE]
    assert "It lacks 25 transaction(s) of 10.0.0.1:3306's last known position (1-1-30)" in (
        result.output
    )
    assert [e.kind for e in result.events] == ["failover"]


def test_failover_by_hand_refusals_and_force() -> None:
    current = pool(b_state=State.FAILED_ONLINE)
    with pytest.raises(AdminRefused, match="use --force"):
        failover_to(current, B, 1.0)
    with pytest.raises(AdminRefused, match="already ACTIVE"):
        failover_to(current, A, 1.0)
    with pytest.raises(AdminRefused, match="recover the pool first"):
        failover_to(replace(pool(), status=PoolStatus.FAIL), B, 1.0)
    forced = failover_to(current, B, 1.0, force=True).pool
    # never two ACTIVE: the old one steps down in the same change
    assert [n.state for n in forced.nodes] == [State.STANDBY, State.ACTIVE]


def test_failover_by_hand_to_a_node_with_unapplied_transactions_is_gated() -> None:
    current = pool()
    lagging = replace(current.nodes[1], replication=Replication(unapplied=4))
    result = failover_to(replace(current, nodes=(current.nodes[0], lagging)), B, 10.0)
    assert result.pool.nodes[1].catchup_until == 40.0
    assert "4 behind" in result.output


def test_activate_primary_gates_a_primary_with_unapplied_transactions() -> None:
    # The hand-back by hand is a change of writer like any other: the primary takes writes
    # only once it has applied what it received from the secondary (routing reads the gate).
    current = pool(State.STANDBY, State.ACTIVE)
    lagging = replace(current.nodes[0], replication=Replication(unapplied=3))
    result = activate_primary(replace(current, nodes=(lagging, current.nodes[1])), 10.0)
    assert [n.state for n in result.pool.nodes] == [State.ACTIVE, State.STANDBY]
    assert result.pool.nodes[0].catchup_until == 40.0
    assert route(result.pool, 11.0).writer is None
    assert route(result.pool, 41.0).writer is not None
