"""The deliberate divergences from MPP that live in the tick, as tables and as short tick
sequences. (activate-primary, delete and re-configure are in test_state_admin.)"""

from __future__ import annotations

import pytest

from mpp_agent.model import (
    NodeId,
    NodeState,
    NodeType,
    Observation,
    Outcome,
    PoolState,
    State,
    Status,
)
from mpp_agent.state import TickResult, recover_node, tick

NOT_FAILING = "; Not failing from ACTIVE state because no other server is on standby"
FAILOVER = "FAILOVER: Taking over ACTIVE state."
INSTATED = "PRIMARY instatement to ACTIVE complete."
MANUAL = "Manual Recovery Initiated."
FAILED_PRI = "FAILED PRIMARY server is reporting recovery. Manual intervention required."
FAILED_SEC = "FAILED server is reporting recovery. Manual intervention required."
REC = "(recovering) "

Tup = tuple[int | None, str, str, str | None]


def conn(name: str) -> str:
    return f"Could not connect to mysql host {name}:3306: gone"


def node(
    name: str, kind: str, r: int | None, status: str, state: str, msg: str | None
) -> NodeState:
    t = NodeType.PRIMARY if kind == "P" else NodeType.SECONDARY
    return NodeState(NodeId(name), t, State(state), Status(status), r, msg)


def pool_of(*nodes: NodeState) -> PoolState:
    return PoolState("pool1", nodes)


def run(pool: PoolState, down: tuple[str, ...] = ()) -> PoolState:
    """One tick: nodes in ``down`` get a connect error, the others answer."""
    return run_result(pool, down).pool


def run_result(
    pool: PoolState, down: tuple[str, ...] = (), *, only: tuple[str, ...] = ()
) -> TickResult:
    """Like ``run``; ``only`` limits which nodes are probed at all."""
    obs = {}
    for n in pool.nodes:
        if only and n.node.host not in only:
            continue
        if n.node.host in down:
            obs[n.node] = Observation.connect_error(n.node, "gone")
        else:
            obs[n.node] = Observation.healthy()
    return tick(pool, obs, now=1.0)


def tuples(pool: PoolState) -> list[Tup]:
    return [(n.requests, n.status, n.state, n.message) for n in pool.nodes]


LAST_ACTIVE_ROWS = [
    pytest.param(
        pool_of(
            node("a", "P", 3, "OK_WARN", "ACTIVE", conn("a")),
            node("b", "S", 7, "FAIL", "FAILED_OFFLINE", conn("b")),
        ),
        ("a", "b"),
        [
            (4, "OK_WARN", "ACTIVE", conn("a") + NOT_FAILING),
            (8, "FAIL", "FAILED_OFFLINE", conn("b")),
        ],
        id="last-active-primary-stays-active-other-node-failed",
    ),
    pytest.param(
        pool_of(
            node("a", "P", 20, "OK_WARN", "ACTIVE", conn("a") + NOT_FAILING),
            node("b", "S", 7, "FAIL", "FAILED_OFFLINE", conn("b")),
        ),
        ("a", "b"),
        [
            (21, "OK_WARN", "ACTIVE", conn("a") + NOT_FAILING),
            (8, "FAIL", "FAILED_OFFLINE", conn("b")),
        ],
        id="last-active-keeps-counting",
    ),
    pytest.param(
        pool_of(node("a", "P", 3, "OK_WARN", "ACTIVE", conn("a"))),
        ("a",),
        [(4, "OK_WARN", "ACTIVE", conn("a") + NOT_FAILING)],
        id="only-a-primary-stays-active",
    ),
    pytest.param(
        pool_of(
            node("a", "P", 3, "OK_WARN", "ACTIVE", conn("a")),
            node("b", "S", 0, "OK_WARN", "UNKNOWN", MANUAL),
        ),
        ("a",),
        # b only reaches STANDBY in this tick, after a was decided: a is still the last one.
        [(4, "OK_WARN", "ACTIVE", conn("a") + NOT_FAILING), (0, "OK", "STANDBY", MANUAL)],
        id="unknown-node-does-not-count-as-standby",
    ),
    pytest.param(
        pool_of(
            node("a", "P", 4, "OK_WARN", "ACTIVE", conn("a") + NOT_FAILING),
            node("b", "S", 0, "OK", "STANDBY", MANUAL),
        ),
        ("a",),
        [(5, "FAIL", "FAILED_OFFLINE", conn("a")), (1, "OK_WARN", "ACTIVE", FAILOVER)],
        id="fails-as-soon-as-a-lower-node-is-standby",
    ),
    pytest.param(
        pool_of(
            node("a", "P", 0, "OK_WARN", "UNKNOWN", MANUAL),
            node("b", "S", 9, "OK_WARN", "ACTIVE", conn("b") + NOT_FAILING),
        ),
        ("b",),
        # The recovered primary reaches STANDBY first in this tick (priority order), so the
        # dead secondary is no longer the last one that could serve: MPP bug #2 fixed.
        [(0, "OK", "STANDBY", MANUAL), (10, "FAIL", "FAILED_OFFLINE", conn("b"))],
        id="fails-as-soon-as-a-higher-node-is-standby",
    ),
    pytest.param(
        pool_of(
            node("a", "P", 9, "FAIL", "FAILED_OFFLINE", conn("a")),
            node("b", "S", 0, "OK", "STANDBY", MANUAL),
            node("c", "S", 3, "OK_WARN", "ACTIVE", conn("c")),
        ),
        ("a", "c"),
        [
            (10, "FAIL", "FAILED_OFFLINE", conn("a")),
            (0, "OK", "STANDBY", None),
            (4, "FAIL", "FAILED_OFFLINE", conn("c")),
        ],
        id="higher-standby-secondary-lets-lower-active-fail",
    ),
]


ALL_FAIL_ROWS = [
    pytest.param(
        pool_of(
            node("a", "P", 3, "OK_WARN", "ACTIVE", conn("a")),
            node("b", "S", 3, "OK_WARN", "STANDBY", conn("b")),
        ),
        ("a", "b"),
        # b is STANDBY but failing in this very round: it cannot take over, so a stays.
        [
            (4, "OK_WARN", "ACTIVE", conn("a") + NOT_FAILING),
            (4, "FAIL", "FAILED_OFFLINE", conn("b")),
        ],
        (),
        id="every-node-fails-at-once-active-stays",
    ),
    pytest.param(
        pool_of(
            node("a", "P", 3, "OK_WARN", "ACTIVE", conn("a")),
            node("b", "S", 0, "OK", "STANDBY", None),
        ),
        ("a",),
        # b is STANDBY but nobody observed it this round (not probed): it does not count.
        [(4, "OK_WARN", "ACTIVE", conn("a") + NOT_FAILING), (0, "OK", "STANDBY", None)],
        ("a",),
        id="unobserved-standby-does-not-count",
    ),
    pytest.param(
        pool_of(
            node("a", "P", 3, "OK_WARN", "ACTIVE", conn("a")),
            node("b", "S", 0, "OK", "STANDBY", None),
        ),
        ("a",),
        [(4, "FAIL", "FAILED_OFFLINE", conn("a")), (1, "OK_WARN", "ACTIVE", FAILOVER)],
        (),
        id="healthy-standby-takes-over-as-before",
    ),
]


@pytest.mark.parametrize(("pool", "down", "after", "only"), ALL_FAIL_ROWS)
def test_active_stays_while_no_node_can_take_over_this_tick(
    pool: PoolState, down: tuple[str, ...], after: list[Tup], only: tuple[str, ...]
) -> None:
    assert tuples(run_result(pool, down, only=only).pool) == after


def test_writes_resume_by_themselves_after_every_node_failed_together() -> None:
    pool = pool_of(
        node("a", "P", 0, "OK", "ACTIVE", None), node("b", "S", 0, "OK", "STANDBY", None)
    )
    for _ in range(8):  # both down for twice M ticks
        pool = run(pool, ("a", "b"))
    assert [n.state for n in pool.nodes] == [State.ACTIVE, State.FAILED_OFFLINE]
    pool = run(pool)  # both back: a takes writes again with no recover
    assert [(n.state, n.requests) for n in pool.nodes] == [
        (State.ACTIVE, 0),
        (State.FAILED_OFFLINE, 0),
    ]
    assert pool.nodes[0].message is not None and pool.nodes[0].message.startswith(REC)


def test_an_abstained_node_is_not_evaluated() -> None:
    pool = pool_of(
        node("a", "P", 2, "OK_WARN", "ACTIVE", conn("a")), node("b", "S", 0, "OK", "STANDBY", None)
    )
    note = "monitor cannot check: Access denied for user 'monitor'@'127.0.0.1'"
    obs = {
        NodeId("a"): Observation.abstain(note),
        NodeId("b"): Observation(Outcome.HEALTHY, monitor_note="monitor cannot check (1 of 2)"),
    }
    for _ in range(10):
        result = tick(pool, obs, now=1.0)
        assert NodeId("a") not in result.rules
        assert result.events == ()
        pool = result.pool
    a, b = pool.nodes
    assert (a.requests, a.status, a.state, a.message) == (2, "OK_WARN", "ACTIVE", conn("a"))
    assert a.monitor_note == note
    assert b.monitor_note == "monitor cannot check (1 of 2)"
    # The note goes as soon as the node is judged again.
    pool = tick(pool, {NodeId("a"): Observation.healthy()}, now=2.0).pool
    assert pool.nodes[0].monitor_note is None


def test_a_tick_that_changes_neither_state_nor_status_writes_no_event() -> None:
    pool = pool_of(
        node("a", "P", 0, "OK", "ACTIVE", None),
        node("b", "S", 6, "FAIL", "FAILED_ONLINE", "Slave Error: Seconds Behind Master: 40"),
    )
    obs = {
        NodeId("a"): Observation.healthy(),
        NodeId("b"): Observation(Outcome.REQUEST, "Slave Error: Seconds Behind Master: 41"),
    }
    result = tick(pool, obs, now=1.0)
    assert result.pool.nodes[1].message == "Slave Error: Seconds Behind Master: 41"
    assert result.events == ()


@pytest.mark.parametrize(("pool", "down", "after"), LAST_ACTIVE_ROWS)
def test_last_active_node(pool: PoolState, down: tuple[str, ...], after: list[Tup]) -> None:
    assert tuples(run(pool, down)) == after


def test_recovered_primary_takes_over_from_dead_last_active_secondary() -> None:
    # The primary failed earlier, b took over and is now dying with nobody else to serve.
    pool = pool_of(
        node("a", "P", 0, "OK_WARN", "FAILED_OFFLINE", FAILED_PRI),
        node("b", "S", 3, "OK_WARN", "ACTIVE", conn("b")),
    )
    pool = run(pool, ("b",))
    assert tuples(pool) == [
        (0, "OK_WARN", "FAILED_OFFLINE", FAILED_PRI),
        (4, "OK_WARN", "ACTIVE", conn("b") + NOT_FAILING),
    ]
    pool = recover_node(pool, NodeId("a")).pool
    pool = run(pool, ("b",))
    assert tuples(pool) == [
        (0, "OK", "STANDBY", MANUAL),
        (5, "FAIL", "FAILED_OFFLINE", conn("b")),
    ]
    pool = run(pool, ("b",))
    assert tuples(pool) == [
        (1, "OK_WARN", "ACTIVE", INSTATED),
        (6, "FAIL", "FAILED_OFFLINE", conn("b")),
    ]


BLOCK_ROWS = [
    pytest.param(
        pool_of(
            node("a", "P", 0, "OK_WARN", "FAILED_OFFLINE", FAILED_PRI),
            node("b", "S", 0, "OK", "STANDBY", None),
        ),
        ("a", "b"),
        [(0, "OK_WARN", "FAILED_OFFLINE", FAILED_PRI), (1, "OK_WARN", "ACTIVE", FAILOVER)],
        ["D5", "E6"],
        # MPP: E5 counts the answering failed primary's OK_WARN as healthy: deadlock (2.7).
        id="answering-failed-primary-does-not-block",
    ),
    pytest.param(
        pool_of(
            node("a", "P", 5, "FAIL", "FAILED_OFFLINE", conn("a")),
            node("b", "S", 0, "OK", "FAILED_OFFLINE", FAILED_SEC),
            node("c", "S", 0, "OK", "STANDBY", None),
        ),
        ("b", "c"),
        [
            (5, "FAIL", "FAILED_OFFLINE", conn("a")),
            (0, "OK", "FAILED_OFFLINE", FAILED_SEC),
            (1, "OK_WARN", "ACTIVE", FAILOVER),
        ],
        ["E8", "E6"],
        # MPP bug #3: a FAILED-but-answering higher secondary (STATUS OK) blocked forever.
        id="answering-failed-secondary-does-not-block-lower-one",
    ),
    pytest.param(
        pool_of(
            node("a", "P", 0, "OK_WARN", "FAILED_ONLINE", FAILED_PRI),
            node("b", "S", 0, "OK", "STANDBY", None),
            node("c", "S", 0, "OK", "STANDBY", None),
        ),
        ("a", "b", "c"),
        [
            (0, "OK_WARN", "FAILED_ONLINE", FAILED_PRI),
            (1, "OK_WARN", "ACTIVE", FAILOVER),
            (0, "OK", "STANDBY", None),
        ],
        ["D5", "E6", "E5"],
        id="failed-online-does-not-block-first-secondary-then-it-blocks-next",
    ),
    pytest.param(
        pool_of(
            node("a", "P", 5, "FAIL", "FAILED_OFFLINE", conn("a")),
            node("b", "S", 0, "OK", "STANDBY", MANUAL),
            node("c", "S", 0, "OK", "ACTIVE", None),
        ),
        ("b", "c"),
        [
            (5, "FAIL", "FAILED_OFFLINE", conn("a")),
            (0, "OK", "STANDBY", None),
            (0, "OK", "ACTIVE", None),
        ],
        ["E5-lower-active", "E4"],
        # Our extra divergence: b does not take over while a lower node is ACTIVE.
        id="standby-secondary-does-not-take-over-from-lower-active",
    ),
]


@pytest.mark.parametrize(("pool", "probed", "after", "rules"), BLOCK_ROWS)
def test_failed_nodes_never_block(
    pool: PoolState, probed: tuple[str, ...], after: list[Tup], rules: list[str]
) -> None:
    result = run_result(pool, only=probed)
    assert tuples(result.pool) == after
    assert list(result.rules.values()) == rules
    assert len(result.pool.active_nodes) == 1


def test_deadlock_of_mpp_2_7_is_resolved() -> None:
    # All nodes failed; the primary answers again but is not recovered; only b is recovered.
    pool = pool_of(
        node("a", "P", 9, "FAIL", "FAILED_OFFLINE", conn("a")),
        node("b", "S", 9, "FAIL", "FAILED_OFFLINE", conn("b")),
    )
    pool = run(pool)
    assert tuples(pool) == [
        (0, "OK_WARN", "FAILED_OFFLINE", REC + FAILED_PRI),
        (0, "OK", "FAILED_OFFLINE", REC + FAILED_SEC),
    ]
    pool = recover_node(pool, NodeId("b")).pool
    pool = run(pool)
    assert tuples(pool)[1] == (0, "OK", "STANDBY", MANUAL)
    pool = run(pool)
    # MPP: b stays STANDBY forever behind the OK_WARN failed primary. Here it takes over.
    assert tuples(pool) == [
        (0, "OK_WARN", "FAILED_OFFLINE", FAILED_PRI),
        (1, "OK_WARN", "ACTIVE", FAILOVER),
    ]
