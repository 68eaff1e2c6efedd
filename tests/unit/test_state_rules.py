"""Table tests of MPP's per-node rules A to E and its commit steps, with the deliberate
divergences from MPP.

Each row is one tick of one pool: the nodes before (TYPE, R, STATUS, STATE, message), what each
probe found, and every node's (R, STATUS, STATE, message) afterwards plus the rule that decided
it. Nodes are named a, b, c, d in priority order (a is the PRIMARY when the first letter is P).
"""

from __future__ import annotations

from typing import Any

import pytest

from mpp_agent.model import (
    NodeId,
    NodeState,
    NodeType,
    Observation,
    Outcome,
    PoolState,
    PoolStatus,
    State,
    Status,
)
from mpp_agent.state import Exit, tick

NAMES = "abcd"
# (TYPE letter, R, STATUS, STATE, message) before the tick
Spec = tuple[str, int | None, str, str, str | None]
# (R, STATUS, STATE, message) after the tick
After = tuple[int | None, str, str, str | None]

SQL_ERR = "Slave Error: Slave SQL is not running, Slave_SQL_Running=No."

INSTATED = "PRIMARY instatement to ACTIVE complete."
WAITING = "Waiting for SECONDARY to stand down before instatement to ACTIVE."
FAILED_PRI = "FAILED PRIMARY server is reporting recovery. Manual intervention required."
RELINQUISHING = "Relinquishing ACTIVE state to PRIMARY."
READY = "Ready to relinquish ACTIVE state to PRIMARY."
FAILOVER = "FAILOVER: Taking over ACTIVE state."
FAILED_SEC = "FAILED server is reporting recovery. Manual intervention required."
MANUAL = "Manual Recovery Initiated."
NOT_FAILING = "; Not failing from ACTIVE state because no other server is on standby"
NOT_ALLOWED = " (Server not allowed to be active wile POOL has FAIL status.)"
REC = "(recovering) "


def conn(name: str) -> str:
    """The connect-error message MPP's probe writes."""
    return f"Could not connect to mysql host {name}:3306: Too many connections"


def make_pool(specs: tuple[Spec, ...], status: str = "OK", m: int = 4) -> PoolState:
    nodes = tuple(
        NodeState(
            NodeId(NAMES[i]),
            NodeType.PRIMARY if kind == "P" else NodeType.SECONDARY,
            State(state),
            Status(stat),
            r,
            msg,
        )
        for i, (kind, r, stat, state, msg) in enumerate(specs)
    )
    return PoolState("pool1", nodes, PoolStatus(status), max_requests=m)


def observations(pool: PoolState, outcomes: str) -> dict[NodeId, Observation]:
    """``outcomes`` is one word per node: ok, conn, req, or - (not probed this tick)."""
    result = {}
    for node, word in zip(pool.nodes, outcomes.split(), strict=True):
        if word == "ok":
            result[node.node] = Observation.healthy()
        elif word == "conn":
            result[node.node] = Observation.connect_error(node.node, "Too many connections")
        elif word == "req":
            result[node.node] = Observation(Outcome.REQUEST, SQL_ERR)
    return result


def tuples(pool: PoolState) -> list[After]:
    return [(n.requests, n.status, n.state, n.message) for n in pool.nodes]


def row(
    before: tuple[Spec, ...],
    outcomes: str,
    after: list[After],
    rules: str,
    *,
    id: str,
    **kwargs: Any,
) -> Any:
    return pytest.param(before, outcomes, after, rules.split(), kwargs, id=id)


P_ACTIVE: Spec = ("P", 0, "OK", "ACTIVE", None)
S_STANDBY: Spec = ("S", 0, "OK", "STANDBY", None)

RULE_ROWS = [
    # ---- A: the pre-step (ACTIVE secondary while the PRIMARY is ACTIVE) -------------------
    row(
        (P_ACTIVE, ("S", 0, "OK", "ACTIVE", None)),
        "ok ok",
        [(0, "OK", "ACTIVE", None), (1, "OK_WARN", "STANDBY", RELINQUISHING)],
        "D1 E1",
        id="A-then-E1-relinquish-healthy",
    ),
    row(
        (P_ACTIVE, ("S", 0, "OK", "ACTIVE", None)),
        "ok conn",
        [(0, "OK", "ACTIVE", None), (1, "OK_WARN", "STANDBY", conn("b"))],
        "D1 A+B2",
        id="A-state-survives-B2",
    ),
    row(
        (P_ACTIVE, ("S", 0, "OK", "ACTIVE", None)),
        "ok req",
        [(0, "OK", "ACTIVE", None), (1, "OK_WARN", "STANDBY", SQL_ERR)],
        "D1 A+C3",
        id="A-state-survives-C3",
    ),
    row(
        (P_ACTIVE, ("S", 3, "OK_WARN", "ACTIVE", SQL_ERR)),
        "ok req",
        [(0, "OK", "ACTIVE", None), (4, "OK_WARN", "STANDBY", SQL_ERR)],
        "D1 A+C1",
        id="A-state-survives-C1",
    ),
    row(
        (P_ACTIVE, ("S", 3, "OK_WARN", "ACTIVE", conn("b"))),
        "ok conn",
        [(0, "OK", "ACTIVE", None), (4, "FAIL", "FAILED_OFFLINE", conn("b"))],
        "D1 B1",
        id="A-overridden-by-B1",
    ),
    # ---- B: connect errors -----------------------------------------------------------------
    row(
        (P_ACTIVE, S_STANDBY),
        "conn ok",
        [(1, "OK_WARN", "ACTIVE", conn("a")), (0, "OK", "STANDBY", None)],
        "B2 E5",
        id="B2-first-failed-poll-of-active-primary",
    ),
    row(
        (("P", 2, "OK_WARN", "ACTIVE", conn("a")), S_STANDBY),
        "conn ok",
        [(3, "OK_WARN", "ACTIVE", conn("a")), (0, "OK", "STANDBY", None)],
        "B2 E5",
        id="B2-third-failed-poll",
    ),
    row(
        (P_ACTIVE, ("S", 1, "OK_WARN", "STANDBY", conn("b"))),
        "ok conn",
        [(0, "OK", "ACTIVE", None), (2, "OK_WARN", "STANDBY", conn("b"))],
        "D1 B2",
        id="B2-standby-secondary",
    ),
    row(
        (("P", None, "OK", "UNKNOWN", None), ("S", None, "OK", "UNKNOWN", None)),
        "conn ok",
        [(1, "OK_WARN", "UNKNOWN", conn("a")), (0, "OK", "STANDBY", None)],
        "B2 E7",
        id="B2-unknown-primary-at-bootstrap",
    ),
    row(
        (("P", 3, "OK_WARN", "ACTIVE", conn("a")), S_STANDBY),
        "conn ok",
        [(4, "FAIL", "FAILED_OFFLINE", conn("a")), (1, "OK_WARN", "ACTIVE", FAILOVER)],
        "B1 E6",
        id="B1-active-primary-fails-on-4th-poll-secondary-takes-over",
    ),
    row(
        (P_ACTIVE, ("S", 3, "OK_WARN", "STANDBY", conn("b"))),
        "ok conn",
        [(0, "OK", "ACTIVE", None), (4, "FAIL", "FAILED_OFFLINE", conn("b"))],
        "D1 B1",
        id="B1-standby-secondary",
    ),
    row(
        (P_ACTIVE, ("S", 44, "FAIL", "FAILED_OFFLINE", conn("b"))),
        "ok conn",
        [(0, "OK", "ACTIVE", None), (45, "FAIL", "FAILED_OFFLINE", conn("b"))],
        "D1 B1",
        id="B1-failed-node-keeps-counting-illustration-12",
    ),
    row(
        (P_ACTIVE, ("S", 5, "FAIL", "FAILED_ONLINE", SQL_ERR)),
        "ok conn",
        [(0, "OK", "ACTIVE", None), (6, "FAIL", "FAILED_OFFLINE", conn("b"))],
        "D1 B1",
        id="B1-failed-online-becomes-failed-offline",
    ),
    row(
        (("P", 1, "OK_WARN", "ACTIVE", conn("a")), S_STANDBY),
        "conn ok",
        [(2, "FAIL", "FAILED_OFFLINE", conn("a")), (1, "OK_WARN", "ACTIVE", FAILOVER)],
        "B1 E6",
        id="B1-threshold-follows-max-requests-2",
        m=2,
    ),
    # ---- C: request (replication) errors ---------------------------------------------------
    row(
        (P_ACTIVE, S_STANDBY),
        "req ok",
        [(1, "OK_WARN", "ACTIVE", SQL_ERR), (0, "OK", "STANDBY", None)],
        "C3 E5",
        id="C3-active-primary",
    ),
    row(
        (P_ACTIVE, ("S", 2, "OK_WARN", "STANDBY", SQL_ERR)),
        "ok req",
        [(0, "OK", "ACTIVE", None), (3, "OK_WARN", "STANDBY", SQL_ERR)],
        "D1 C3",
        id="C3-standby-secondary",
    ),
    row(
        (("P", 3, "OK_WARN", "ACTIVE", SQL_ERR), S_STANDBY),
        "req ok",
        [(4, "OK_WARN", "ACTIVE", SQL_ERR), (0, "OK", "STANDBY", None)],
        "C1 E5",
        id="C1-active-never-fails-for-replication-errors",
    ),
    row(
        (("P", 45, "OK_WARN", "ACTIVE", SQL_ERR), S_STANDBY),
        "req ok",
        [(46, "OK_WARN", "ACTIVE", SQL_ERR), (0, "OK", "STANDBY", None)],
        "C1 E5",
        id="C1-active-r-grows-without-bound",
    ),
    row(
        (P_ACTIVE, ("S", 3, "OK_WARN", "STANDBY", SQL_ERR)),
        "ok req",
        [(0, "OK", "ACTIVE", None), (4, "FAIL", "FAILED_ONLINE", SQL_ERR)],
        "D1 C2",
        id="C2-standby-fails-online",
    ),
    row(
        (P_ACTIVE, ("S", 3, "FAIL", "FAILED_OFFLINE", conn("b"))),
        "ok req",
        [(0, "OK", "ACTIVE", None), (4, "FAIL", "FAILED_ONLINE", SQL_ERR)],
        "D1 C2",
        id="C2-failed-offline-becomes-failed-online",
    ),
    row(
        (P_ACTIVE, ("S", 0, "OK", "FAILED_OFFLINE", FAILED_SEC)),
        "ok req",
        [(0, "OK", "ACTIVE", None), (1, "OK_WARN", "FAILED_OFFLINE", SQL_ERR)],
        "D1 C3",
        id="C3-failed-node-stays-failed",
    ),
    # ---- D: healthy PRIMARY -----------------------------------------------------------------
    row(
        (P_ACTIVE, S_STANDBY),
        "ok ok",
        [(0, "OK", "ACTIVE", None), (0, "OK", "STANDBY", None)],
        "D1 E5",
        id="D1-steady",
    ),
    row(
        (("P", 2, "OK_WARN", "ACTIVE", conn("a")), S_STANDBY),
        "ok ok",
        [(0, "OK", "ACTIVE", REC + conn("a")), (0, "OK", "STANDBY", None)],
        "D1 E5",
        id="D1-first-good-poll-after-trouble-is-recovering",
    ),
    row(
        (("P", 0, "OK", "STANDBY", None), S_STANDBY),
        "ok ok",
        [(1, "OK_WARN", "ACTIVE", INSTATED), (0, "OK", "STANDBY", None)],
        "D2 E5",
        id="D2-instatement",
    ),
    row(
        (("P", 1, "OK_WARN", "STANDBY", SQL_ERR), S_STANDBY),
        "ok ok",
        [(2, "OK_WARN", "ACTIVE", INSTATED), (0, "OK", "STANDBY", None)],
        "D2 E5",
        id="D2-promotion-does-not-need-r-0-S19",
    ),
    row(
        (("P", 0, "OK", "STANDBY", MANUAL), ("S", 1, "OK_WARN", "ACTIVE", READY)),
        "ok ok",
        [(0, "OK_WARN", "STANDBY", WAITING), (0, "OK_WARN", "STANDBY", REC + RELINQUISHING)],
        "D3 E2",
        id="D3-waits-for-active-secondary-E2-steps-down",
    ),
    row(
        (("P", None, "OK", "UNKNOWN", None), ("S", None, "OK", "UNKNOWN", None)),
        "ok ok",
        [(0, "OK", "STANDBY", None), (0, "OK", "STANDBY", None)],
        "D4 E7",
        id="D4-E7-bootstrap-cycle-1",
    ),
    row(
        (("P", 0, "OK_WARN", "UNKNOWN", MANUAL), ("S", 0, "OK", "ACTIVE", None)),
        "ok ok",
        [(0, "OK", "STANDBY", MANUAL), (1, "OK_WARN", "ACTIVE", READY)],
        "D4 E3",
        id="D4-keeps-message-E3-ready-to-relinquish",
    ),
    row(
        (("P", 4, "FAIL", "FAILED_OFFLINE", conn("a")), ("S", 1, "OK_WARN", "ACTIVE", FAILOVER)),
        "ok ok",
        [
            (0, "OK_WARN", "FAILED_OFFLINE", REC + FAILED_PRI),
            (0, "OK", "ACTIVE", REC + FAILOVER),
        ],
        "D5 E4",
        id="D5-failed-primary-answers-E4-secondary-stays",
    ),
    row(
        (("P", 0, "OK_WARN", "FAILED_OFFLINE", REC + FAILED_PRI), ("S", 0, "OK", "ACTIVE", None)),
        "ok ok",
        [(0, "OK_WARN", "FAILED_OFFLINE", FAILED_PRI), (0, "OK", "ACTIVE", None)],
        "D5 E4",
        id="D5-second-good-poll-drops-recovering",
    ),
    # ---- E: healthy SECONDARY ------------------------------------------------------------------
    row(
        (("P", 0, "OK", "STANDBY", None), ("S", 1, "OK_WARN", "ACTIVE", FAILOVER)),
        "- ok",
        [(0, "OK", "STANDBY", None), (0, "OK_WARN", "STANDBY", REC + RELINQUISHING)],
        "E2",
        id="E2-secondary-with-r-1-steps-down-at-once",
    ),
    row(
        (("P", 0, "OK", "STANDBY", None), ("S", 0, "OK", "ACTIVE", None)),
        "- ok",
        [(0, "OK", "STANDBY", None), (1, "OK_WARN", "ACTIVE", READY)],
        "E3",
        id="E3-secondary-with-r-0-gets-ready",
    ),
    row(
        (("S", 0, "OK", "ACTIVE", None), S_STANDBY),
        "ok ok",
        [(0, "OK", "ACTIVE", None), (0, "OK", "STANDBY", None)],
        "E4 E5",
        id="E4-no-primary-at-all",
    ),
    row(
        (("P", 1, "OK_WARN", "ACTIVE", conn("a")), S_STANDBY),
        "conn ok",
        [(2, "OK_WARN", "ACTIVE", conn("a")), (0, "OK", "STANDBY", None)],
        "B2 E5",
        id="E5-degraded-higher-node-blocks",
    ),
    row(
        (
            ("P", 4, "FAIL", "FAILED_OFFLINE", conn("a")),
            ("S", 0, "OK", "STANDBY", None),
            ("S", 0, "OK", "STANDBY", None),
        ),
        "conn conn ok",
        [
            (5, "FAIL", "FAILED_OFFLINE", conn("a")),
            (1, "OK_WARN", "STANDBY", conn("b")),
            (0, "OK", "STANDBY", None),
        ],
        "B1 B2 E5",
        id="E5-degraded-higher-secondary-blocks-lower-one",
    ),
    row(
        (("P", 4, "FAIL", "FAILED_OFFLINE", conn("a")), S_STANDBY),
        "conn ok",
        [(5, "FAIL", "FAILED_OFFLINE", conn("a")), (1, "OK_WARN", "ACTIVE", FAILOVER)],
        "B1 E6",
        id="E6-takeover-when-higher-is-fail",
    ),
    row(
        (("S", 0, "OK", "STANDBY", None), S_STANDBY),
        "ok ok",
        [(1, "OK_WARN", "ACTIVE", FAILOVER), (0, "OK", "STANDBY", None)],
        "E6 E5",
        id="E6-first-secondary-without-higher-nodes",
    ),
    row(
        (
            ("P", 9, "FAIL", "FAILED_OFFLINE", conn("a")),
            ("S", 9, "FAIL", "FAILED_OFFLINE", conn("b")),
            S_STANDBY,
        ),
        "conn conn ok",
        [
            (10, "FAIL", "FAILED_OFFLINE", conn("a")),
            (10, "FAIL", "FAILED_OFFLINE", conn("b")),
            (1, "OK_WARN", "ACTIVE", FAILOVER),
        ],
        "B1 B1 E6",
        id="E6-third-node-takes-over-when-both-higher-fail",
    ),
    row(
        (("P", None, "OK", "UNKNOWN", None), ("S", 0, "OK_WARN", "UNKNOWN", MANUAL)),
        "- ok",
        [(None, "OK", "UNKNOWN", None), (0, "OK", "STANDBY", MANUAL)],
        "E7",
        id="E7-unknown-to-standby-keeps-message",
    ),
    row(
        (P_ACTIVE, ("S", 45, "FAIL", "FAILED_OFFLINE", conn("b"))),
        "ok ok",
        [(0, "OK", "ACTIVE", None), (0, "OK", "FAILED_OFFLINE", REC + FAILED_SEC)],
        "D1 E8",
        id="E8-failed-secondary-answers-illustration-13",
    ),
    row(
        (P_ACTIVE, ("S", 0, "OK", "FAILED_ONLINE", REC + FAILED_SEC)),
        "ok ok",
        [(0, "OK", "ACTIVE", None), (0, "OK", "FAILED_ONLINE", FAILED_SEC)],
        "D1 E8",
        id="E8-stays-failed-until-recover",
    ),
]


@pytest.mark.parametrize(("before", "outcomes", "after", "rules", "kwargs"), RULE_ROWS)
def test_rule(
    before: tuple[Spec, ...],
    outcomes: str,
    after: list[After],
    rules: list[str],
    kwargs: dict[str, Any],
) -> None:
    pool = make_pool(before, m=kwargs.get("m", 4))
    result = tick(pool, observations(pool, outcomes), now=7.0)
    assert tuples(result.pool) == after
    assert list(result.rules.values()) == rules
    assert result.pool.status is PoolStatus.OK


# ---- commit steps: C1 pool override, R update, "(recovering)", message write/delete --------

NOT_ALLOWED_ROWS = [
    row(
        (P_ACTIVE, S_STANDBY),
        "ok ok",
        [(0, "OK", "STANDBY", "--" + NOT_ALLOWED), (0, "OK", "STANDBY", None)],
        "D1 E5",
        id="C1-override-keeps-the-literal-dash-dash",
    ),
    row(
        (("P", 2, "OK_WARN", "ACTIVE", SQL_ERR), S_STANDBY),
        "ok ok",
        [(0, "OK", "STANDBY", REC + "--" + NOT_ALLOWED), (0, "OK", "STANDBY", None)],
        "D1 E5",
        id="C1-override-then-recovering-rule",
    ),
    row(
        (("P", 0, "OK", "STANDBY", None), S_STANDBY),
        "ok ok",
        [(1, "OK_WARN", "STANDBY", INSTATED + NOT_ALLOWED), (0, "OK", "STANDBY", None)],
        "D2 E5",
        id="C1-instatement-forced-back-to-standby-exit-warn",
    ),
    row(
        (("P", 4, "FAIL", "FAILED_OFFLINE", conn("a")), S_STANDBY),
        "conn ok",
        [
            (5, "FAIL", "FAILED_OFFLINE", conn("a")),
            (1, "OK_WARN", "STANDBY", FAILOVER + NOT_ALLOWED),
        ],
        "B1 E6",
        id="C1-takeover-forced-back-to-standby",
    ),
    row(
        (P_ACTIVE, S_STANDBY),
        "conn ok",
        [(1, "OK_WARN", "STANDBY", conn("a") + NOT_ALLOWED), (0, "OK", "STANDBY", None)],
        "B2 E5",
        id="C1-applies-on-warn-exit-too",
    ),
    row(
        (("P", 0, "OK", "STANDBY", None), S_STANDBY),
        "conn ok",
        [(1, "OK_WARN", "STANDBY", conn("a")), (0, "OK", "STANDBY", None)],
        "B2 E5",
        id="C1-leaves-non-active-nodes-alone",
    ),
]


@pytest.mark.parametrize(("before", "outcomes", "after", "rules", "kwargs"), NOT_ALLOWED_ROWS)
def test_commit_pool_override(
    before: tuple[Spec, ...],
    outcomes: str,
    after: list[After],
    rules: list[str],
    kwargs: dict[str, Any],
) -> None:
    # Pool FAIL detected this very cycle: the override applies in the same cycle (2.7).
    pool = make_pool(before)
    result = tick(pool, observations(pool, outcomes), now=1.0, pool_failed=True)
    assert result.pool.status is PoolStatus.FAIL
    assert tuples(result.pool) == after
    assert list(result.rules.values()) == rules
    assert result.pool.active_nodes == ()


def test_pool_fail_is_sticky_and_promotion_retries_with_r_growing() -> None:
    pool = make_pool((("P", 0, "OK", "STANDBY", None), S_STANDBY), status="FAIL")
    for r in (1, 2, 3):
        pool = tick(pool, observations(pool, "ok ok"), now=float(r)).pool
        assert pool.status is PoolStatus.FAIL
        assert tuples(pool)[0] == (r, "OK_WARN", "STANDBY", INSTATED + NOT_ALLOWED)


R_ROWS = [
    pytest.param("ok", Exit.OK, 0, id="ok-exit-resets-r"),
    pytest.param("conn", Exit.WARN, 3, id="warn-exit-counts"),
    pytest.param("req", Exit.WARN, 3, id="warn-exit-counts-request-errors"),
]


@pytest.mark.parametrize(("outcome", "exit", "r_after"), R_ROWS)
def test_commit_r_update(outcome: str, exit: Exit, r_after: int) -> None:
    pool = make_pool((("P", 2, "OK_WARN", "ACTIVE", SQL_ERR), S_STANDBY))
    result = tick(pool, observations(pool, f"{outcome} -"), now=1.0)
    assert result.exits == {NodeId("a"): exit}
    assert result.pool.nodes[0].requests == r_after


def test_commit_fail_exit_counts() -> None:
    pool = make_pool((P_ACTIVE, ("S", 3, "OK_WARN", "STANDBY", conn("b"))))
    result = tick(pool, observations(pool, "- conn"), now=1.0)
    assert result.exits == {NodeId("b"): Exit.FAIL}
    assert tuples(result.pool)[1] == (4, "FAIL", "FAILED_OFFLINE", conn("b"))


MESSAGE_ROWS = [
    # D1 writes "--": the stored message is deleted.
    row(
        (("P", 0, "OK", "ACTIVE", "old"),),
        "ok",
        [(0, "OK", "ACTIVE", None)],
        "D1",
        id="dash-dash-deletes-message",
    ),
    # D4 sets no message: the stored one is left untouched.
    row(
        (("P", 0, "OK_WARN", "UNKNOWN", MANUAL),),
        "ok",
        [(0, "OK", "STANDBY", MANUAL)],
        "D4",
        id="no-message-leaves-stored-one",
    ),
    # An OK exit after trouble: "(recovering) " + the new message when one is set ...
    row(
        (("P", 1, "OK_WARN", "STANDBY", conn("a")), ("S", 0, "OK", "ACTIVE", None)),
        "ok -",
        [(0, "OK_WARN", "STANDBY", REC + WAITING), (0, "OK", "ACTIVE", None)],
        "D3",
        id="recovering-prefixes-new-message",
    ),
    # ... or + the previously stored one when the rule wrote "--" or nothing.
    row(
        (("P", 1, "OK_WARN", "ACTIVE", INSTATED),),
        "ok",
        [(0, "OK", "ACTIVE", REC + INSTATED)],
        "D1",
        id="recovering-prefixes-stored-message-on-dash-dash",
    ),
    row(
        (("P", 2, "OK_WARN", "UNKNOWN", conn("a")),),
        "ok",
        [(0, "OK", "STANDBY", REC + conn("a"))],
        "D4",
        id="recovering-prefixes-stored-message-when-none-set",
    ),
]


@pytest.mark.parametrize(("before", "outcomes", "after", "rules", "kwargs"), MESSAGE_ROWS)
def test_commit_message(
    before: tuple[Spec, ...],
    outcomes: str,
    after: list[After],
    rules: list[str],
    kwargs: dict[str, Any],
) -> None:
    pool = make_pool(before)
    result = tick(pool, observations(pool, outcomes), now=1.0)
    assert tuples(result.pool) == after
    assert list(result.rules.values()) == rules


def test_tick_sets_last_request_time_of_evaluated_nodes_only() -> None:
    pool = make_pool((P_ACTIVE, S_STANDBY))
    after = tick(pool, observations(pool, "ok -"), now=42.0).pool
    assert [n.last_request_time for n in after.nodes] == [42.0, None]


def test_transition_events_name_the_rule() -> None:
    pool = make_pool((("P", 3, "OK_WARN", "ACTIVE", conn("a")), S_STANDBY))
    events = tick(pool, observations(pool, "conn ok"), now=1.0).events
    assert [(e.node, e.from_state, e.to_state, e.extra["rule"]) for e in events] == [
        ("a:3306", "ACTIVE", "FAILED_OFFLINE", "B1"),
        ("b:3306", "STANDBY", "ACTIVE", "E6"),
    ]
