"""Table tests of the replicas' view before failing an unreachable ACTIVE (holistic detection):
while the pollers cannot reach the ACTIVE at all, a standby whose IO thread still receives from
it holds its failover (the round does not count, R stays, it stays ACTIVE/OK_WARN); a 1040, a
query error, a standby that lost it (Connecting, IO No, the link reported cut) or replicates
from another node leave the usual rules, so the failover comes within the usual budget.
Also: the flag survives the pollers' merge and the stored round records, and the poller's
WARNING lines are told once, from the committed change."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from mpp_agent.codec import observations_from_json, observations_to_json
from mpp_agent.model import (
    NodeId,
    NodeState,
    NodeType,
    Observation,
    Outcome,
    PoolState,
    Replication,
    State,
    Status,
)
from mpp_agent.poller import merge_node, replicas_view_news
from mpp_agent.state import (
    MSG_NOT_FAILING_ALIVE,
    MSG_REPLICAS_RECEIVE,
    Exit,
    TickResult,
    receives_from,
    tick,
)

A, B, C = NodeId("10.0.0.1"), NodeId("10.0.0.2"), NodeId("10.0.0.3")
M = 4
A_ID, B_ID = 1, 2  # server_ids
REFUSED = "Can't connect to MySQL server on '10.0.0.1' ([Errno 111] Connection refused)"


def pool(r: int = 0, *, standbys: int = 1, a_id: int | None = A_ID) -> PoolState:
    """A ACTIVE (its last observation said server_id ``a_id``), B (and C) STANDBY."""
    a = NodeState(A, NodeType.PRIMARY, State.ACTIVE, Status.OK, r, replication=Replication(
        server_id=a_id, binlog="0-1-10"
    ))  # fmt: skip
    others = tuple(
        NodeState(n, NodeType.SECONDARY, State.STANDBY, Status.OK, 0) for n in (B, C)[:standbys]
    )
    return PoolState("p", (a, *others), max_requests=M)


def unreachable() -> Observation:
    return Observation.connect_error(A, REFUSED, unreachable=True)


def replica(
    io: str = "Yes",
    *,
    source: NodeId | str = A,
    source_id: int | None = A_ID,
    cut: bool = False,
    outcome: Outcome = Outcome.HEALTHY,
) -> Observation:
    details = Replication(
        source=str(source),
        source_server_id=source_id,
        server_id=B_ID,
        io_running=io,
        sql_running="Yes",
        source_unreachable=cut,
    )
    message = "" if outcome is Outcome.HEALTHY else "Slave Error: x"
    return Observation(outcome, message, replication=details)


def run(current: PoolState, seen: Mapping[NodeId, Observation]) -> TickResult:
    return tick(current, seen, 10.0)


HOLDS = [
    pytest.param({B: replica()}, id="standby-receiving"),
    pytest.param({B: replica(source="192.168.9.9:3306")}, id="by-server-id-other-address"),
    pytest.param({B: replica(source_id=None)}, id="by-address-without-server-id"),
    pytest.param({B: replica(outcome=Outcome.REQUEST)}, id="sql-error-but-io-receiving"),
    pytest.param({B: replica(" yes ")}, id="io-yes-any-case"),
]


@pytest.mark.parametrize("others", HOLDS)
@pytest.mark.parametrize("r", [0, 1, M - 1], ids=["r0", "r1", "r-at-m-minus-1"])
def test_an_unreachable_active_its_standby_receives_from_is_not_counted(
    others: dict[NodeId, Observation], r: int
) -> None:
    result = run(pool(r), {A: unreachable(), **others})
    a = result.pool.nodes[0]
    assert result.exits[A] is Exit.HOLD
    assert (a.state, a.status, a.requests) == (State.ACTIVE, Status.OK_WARN, r)
    assert a.message == f"Could not connect to mysql host {A}: {REFUSED}; {MSG_NOT_FAILING_ALIVE}"
    assert a.replicas_view == f"{MSG_REPLICAS_RECEIVE}: {B}"
    assert result.pool.nodes[1].state is State.STANDBY


COUNTS = [
    pytest.param({A: unreachable(), B: replica("Connecting")}, id="standby-connecting"),
    pytest.param({A: unreachable(), B: replica("No")}, id="standby-io-no"),
    pytest.param({A: unreachable(), B: replica("Preparing")}, id="standby-io-preparing"),
    pytest.param({A: unreachable(), B: replica(cut=True)}, id="standby-link-reported-cut"),
    pytest.param(
        {A: unreachable(), B: replica(source=C, source_id=3)}, id="standby-replicates-another"
    ),
    pytest.param(
        {A: unreachable(), B: replica(source="10.0.0.1:3307", source_id=None)},
        id="same-host-other-port",
    ),
    pytest.param(
        {A: unreachable(), B: replica(source=A, source_id=9)}, id="address-matches-id-differs"
    ),
    pytest.param(
        {A: Observation.connect_error(A, "Too many connections"), B: replica()}, id="1040"
    ),
    pytest.param(
        {A: Observation.connect_error(A, "Lost connection to MySQL server"), B: replica()},
        id="hung-server-not-unreachable",
    ),
    pytest.param({A: Observation(Outcome.REQUEST, "Slave Error: y"), B: replica()}, id="query"),
    pytest.param({A: unreachable(), B: Observation.connect_error(B, "x")}, id="standby-unseen"),
    pytest.param(
        {A: unreachable(), B: Observation.abstain("Access denied")}, id="standby-abstained"
    ),
    pytest.param({A: unreachable()}, id="standby-not-observed"),
    pytest.param({A: unreachable(), B: Observation.healthy()}, id="standby-no-replication"),
]


@pytest.mark.parametrize("seen", COUNTS)
def test_without_a_standby_receiving_from_it_the_round_counts(
    seen: dict[NodeId, Observation],
) -> None:
    result = run(pool(1), seen)
    a = result.pool.nodes[0]
    assert result.exits[A] is not Exit.HOLD
    assert a.replicas_view is None
    if seen[A].outcome is Outcome.CONNECT:
        assert a.requests == 2  # counted
        assert MSG_NOT_FAILING_ALIVE not in (a.message or "")


def test_the_active_server_id_unknown_matches_by_address() -> None:
    assert receives_from(pool(a_id=None).nodes[0], replica(source=A, source_id=7))
    assert not receives_from(pool(a_id=None).nodes[0], replica(source="proxy:3306", source_id=7))


def test_several_standbys_any_receiving_holds_and_all_are_named() -> None:
    current = pool(standbys=2)
    one = run(current, {A: unreachable(), B: replica("Connecting", cut=True), C: replica()})
    assert one.exits[A] is Exit.HOLD
    assert one.pool.nodes[0].replicas_view == f"{MSG_REPLICAS_RECEIVE}: {C}"
    both = run(current, {A: unreachable(), B: replica(), C: replica()})
    assert both.pool.nodes[0].replicas_view == f"{MSG_REPLICAS_RECEIVE}: {B}, {C}"
    none = run(current, {A: unreachable(), B: replica("No"), C: replica("Connecting")})
    assert none.exits[A] is Exit.WARN


def test_no_failover_while_receiving_even_past_m_rounds() -> None:
    current = pool(M - 1)  # the M-th failing round is next
    for _ in range(3 * M):
        current = run(current, {A: unreachable(), B: replica()}).pool
    a, b = current.nodes
    assert (a.state, a.requests, b.state) == (State.ACTIVE, M - 1, State.STANDBY)


def test_the_link_cut_too_fails_over_within_the_usual_budget() -> None:
    current = run(pool(), {A: unreachable(), B: replica()}).pool
    for i in range(1, M + 1):
        # The standby's IO thread lost A too: excused (A is connect-failing), so it can take over.
        current = run(current, {A: unreachable(), B: replica("Connecting", cut=True)}).pool
        if i < M:
            assert current.nodes[0].state is State.ACTIVE
    a, b = current.nodes
    assert (a.state, b.state) == (State.FAILED_OFFLINE, State.ACTIVE)
    assert a.replicas_view is None


def test_reachable_again_clears_the_view_without_recovering_prefix() -> None:
    held = run(pool(), {A: unreachable(), B: replica()}).pool
    back = run(held, {A: Observation.healthy(), B: replica()}).pool.nodes[0]
    assert (back.state, back.status, back.requests, back.message) == (
        State.ACTIVE, Status.OK, 0, None,
    )  # fmt: skip
    assert back.replicas_view is None


def test_only_the_active_is_vouched_for() -> None:
    standby_down = pool()
    seen = {
        A: replica(source=B, source_id=B_ID),
        B: Observation.connect_error(B, "x", unreachable=True),
    }
    result = run(standby_down, seen)
    assert result.exits[B] is Exit.WARN and result.pool.nodes[1].replicas_view is None


# --------------------------------------------------------------------------- merge and records

DOWN = Observation.connect_error(A, REFUSED, unreachable=True)
BUSY = Observation.connect_error(A, "Too many connections")


@pytest.mark.parametrize(
    ("seen", "flag"),
    [
        pytest.param([DOWN, DOWN], True, id="all-unreachable"),
        pytest.param([DOWN, DOWN, Observation.healthy()], True, id="majority-unreachable"),
        pytest.param([DOWN, BUSY], False, id="one-got-1040"),
        pytest.param([DOWN, Observation(Outcome.REQUEST, "q")], False, id="one-got-an-answer"),
        pytest.param([DOWN, Observation.abstain("denied")], True, id="abstention-is-no-vote"),
        pytest.param([BUSY, BUSY], False, id="all-1040"),
    ],
)
def test_the_merged_verdict_is_unreachable_only_when_no_poller_got_an_answer(
    seen: list[Observation], flag: bool
) -> None:
    merged = merge_node(seen)
    assert merged.outcome is Outcome.CONNECT
    assert merged.unreachable is flag


def test_the_flag_survives_the_round_record() -> None:
    seen = {A: DOWN, B: replica(), C: Observation.connect_error(C, "x")}
    back = observations_from_json(observations_to_json(seen))
    assert back == seen
    assert back[A].unreachable and not back[C].unreachable
    assert back[B].replication == seen[B].replication
    # A record written before the flag existed still reads.
    old = observations_from_json('{"10.0.0.1:3306": ["connect", "x"]}')[A]
    assert old == Observation(Outcome.CONNECT, "x") and not old.unreachable


def test_unreachable_is_part_of_the_verdict() -> None:
    assert Observation.connect_error(A, REFUSED) != DOWN


def test_the_warning_is_told_once_when_it_starts_and_once_when_it_ends() -> None:
    before = pool()
    held = run(before, {A: unreachable(), B: replica()}).pool
    started = replicas_view_news(before, held)
    assert started == [f"pool p: {A} {MSG_REPLICAS_RECEIVE}: {B}; not failing it over (R stays 0)"]
    again = run(held, {A: unreachable(), B: replica()}).pool
    assert replicas_view_news(held, again) == []  # not every round
    cut = run(again, {A: unreachable(), B: replica("Connecting", cut=True)}).pool
    (ended,) = replicas_view_news(again, cut)
    assert ended.startswith(f"pool p: {A}: the replicas' view no longer holds its failover")
    assert ended.endswith("now ACTIVE/OK_WARN R=1")
