"""MPP's admin transitions (recover, recover pool, activate-primary, delete) and the
deliberate divergences from MPP that live in them: activate-primary demotes atomically, delete
and re-configure change the pool's configuration."""

from __future__ import annotations

import pytest

from mpp_agent.config import PoolConfigError, apply_config, config_of, parse_failoverpool
from mpp_agent.model import (
    EventKind,
    NodeId,
    NodeState,
    NodeType,
    Observation,
    PoolState,
    PoolStatus,
    State,
    Status,
)
from mpp_agent.state import (
    AdminRefused,
    activate_primary,
    delete_node,
    recover_node,
    recover_pool,
    tick,
)

A, B, C = NodeId("a"), NodeId("b"), NodeId("c")
Tup = tuple[int | None, str, str, str | None]


def node(
    name: str, kind: str, r: int | None, status: str, state: str, msg: str | None
) -> NodeState:
    t = NodeType.PRIMARY if kind == "P" else NodeType.SECONDARY
    return NodeState(NodeId(name), t, State(state), Status(status), r, msg)


def tuples(pool: PoolState) -> list[Tup]:
    return [(n.requests, n.status, n.state, n.message) for n in pool.nodes]


def healthy_tick(pool: PoolState) -> PoolState:
    return tick(pool, {n.node: Observation.healthy() for n in pool.nodes}, now=1.0).pool


# ---- recover NODE (2.6.1) ---------------------------------------------------------------------

RECOVER_ROWS = [
    pytest.param(
        node("a", "P", 0, "OK_WARN", "FAILED_OFFLINE", "x"),
        "OK: Cached level reset from OK_WARN/0 (FAILED_OFFLINE) to OK_WARN/0 (UNKNOWN) for a:3306",
        id="failed-primary-S06",
    ),
    pytest.param(
        node("a", "P", 45, "FAIL", "FAILED_OFFLINE", "x"),
        "OK: Cached level reset from FAIL/45 (FAILED_OFFLINE) to OK_WARN/0 (UNKNOWN) for a:3306",
        id="still-failing-node",
    ),
    pytest.param(
        node("a", "P", 0, "OK", "ACTIVE", None),
        "OK: Cached level reset from OK/0 (ACTIVE) to OK_WARN/0 (UNKNOWN) for a:3306",
        id="works-on-a-healthy-active-node",
    ),
]


@pytest.mark.parametrize(("before", "output"), RECOVER_ROWS)
def test_recover_node(before: NodeState, output: str) -> None:
    pool = PoolState("pool1", (before, node("b", "S", 0, "OK", "STANDBY", None)))
    result = recover_node(pool, A)
    assert result.output == output
    assert tuples(result.pool) == [
        (0, "OK_WARN", "UNKNOWN", "Manual Recovery Initiated."),
        (0, "OK", "STANDBY", None),
    ]
    assert [e.kind for e in result.events] == [EventKind.RECOVER]


def test_recover_node_never_polled_prints_mpp_text_and_changes_nothing() -> None:
    pool = PoolState("pool1", (node("a", "P", None, "OK", "UNKNOWN", None),))
    result = recover_node(pool, A)
    assert result.output == "Server a:3306 requests number not set."
    assert result.pool == pool


def test_recover_unknown_node_is_refused() -> None:
    pool = PoolState("pool1", (node("a", "P", 0, "OK", "ACTIVE", None),))
    with pytest.raises(AdminRefused, match=r"^Server c:3306 is not a member of pool pool1\.$"):
        recover_node(pool, C)


def test_recovering_the_active_primary_leaves_no_active_for_one_cycle() -> None:
    # 2.6.1: the primary is re-instated on the second cycle.
    pool = PoolState(
        "pool1",
        (node("a", "P", 0, "OK", "ACTIVE", None), node("b", "S", 0, "OK", "STANDBY", None)),
    )
    pool = healthy_tick(recover_node(pool, A).pool)
    assert tuples(pool) == [
        (0, "OK", "STANDBY", "Manual Recovery Initiated."),
        (0, "OK", "STANDBY", None),
    ]
    pool = healthy_tick(pool)
    assert tuples(pool)[0] == (1, "OK_WARN", "ACTIVE", "PRIMARY instatement to ACTIVE complete.")


# ---- recover pool (2.6.2) -----------------------------------------------------------------------


def test_recover_pool_resets_status_and_leaves_nodes() -> None:
    nodes = (node("a", "P", 7, "OK_WARN", "STANDBY", "m"),)
    pool = PoolState("pool1", nodes, PoolStatus.FAIL)
    result = recover_pool(pool)
    assert result.output == "OK: Pool status reset from FAIL to OK"
    assert result.pool.status is PoolStatus.OK
    assert result.pool.nodes == nodes


def test_recovered_pool_promotes_on_next_cycle_with_r_still_counted() -> None:
    # 2.7: after --recover=pool: the attempt succeeds on the next cycle, R still incremented.
    pool = PoolState(
        "pool1",
        (node("a", "P", 3, "OK_WARN", "STANDBY", "m"), node("b", "S", 0, "OK", "STANDBY", None)),
        PoolStatus.FAIL,
    )
    pool = healthy_tick(recover_pool(pool).pool)
    assert tuples(pool)[0] == (4, "OK_WARN", "ACTIVE", "PRIMARY instatement to ACTIVE complete.")


# ---- activate-primary (2.6.3) ---------------------------------------------------------------


def test_activate_primary_demotes_the_active_secondary_atomically() -> None:
    pool = PoolState(
        "pool1",
        (
            node("a", "P", 0, "OK", "STANDBY", "Manual Recovery Initiated."),
            node("b", "S", 0, "OK", "ACTIVE", None),
            node("c", "S", 0, "OK", "STANDBY", None),
        ),
    )
    result = activate_primary(pool, 1.0)
    assert result.output == "PRIMARY SERVER a:3306 STATE is now ACTIVE."
    # DIVERGENCE: MPP left both a and b ACTIVE until the next poll.
    assert tuples(result.pool) == [
        (0, "OK", "ACTIVE", "PRIMARY Manually reinstated as ACTIVE."),
        (0, "OK", "STANDBY", "Relinquishing ACTIVE state to PRIMARY."),
        (0, "OK", "STANDBY", None),
    ]
    assert [(e.node, e.to_state) for e in result.events] == [
        ("a:3306", "ACTIVE"),
        ("b:3306", "STANDBY"),
    ]
    # The next poll: the primary clears its message (D1), the secondary stays STANDBY (E5).
    assert tuples(healthy_tick(result.pool)) == [
        (0, "OK", "ACTIVE", None),
        (0, "OK", "STANDBY", None),
        (0, "OK", "STANDBY", None),
    ]


ACTIVATE_REFUSED = [
    pytest.param(
        (node("a", "P", 0, "OK_WARN", "UNKNOWN", None), node("b", "S", 0, "OK", "ACTIVE", None)),
        PoolStatus.OK,
        "PRIMARY SERVER a:3306 IS NOT READY. STATE must be STANDBY for activation.",
        id="primary-not-standby-mpp-text",
    ),
    pytest.param(
        (node("a", "P", 0, "OK", "ACTIVE", None),),
        PoolStatus.OK,
        "PRIMARY SERVER a:3306 IS NOT READY. STATE must be STANDBY for activation.",
        id="primary-already-active",
    ),
    pytest.param(
        (node("a", "P", 2, "OK_WARN", "STANDBY", None),),
        PoolStatus.FAIL,
        "PRIMARY SERVER a:3306 IS NOT READY. POOL status must be OK for activation (it is FAIL).",
        id="pool-fail-forbids-any-active",
    ),
    pytest.param(
        (node("b", "S", 0, "OK", "STANDBY", None),),
        PoolStatus.OK,
        "Pool pool1 has no PRIMARY server to activate.",
        id="no-primary",
    ),
]


@pytest.mark.parametrize(("nodes", "status", "message"), ACTIVATE_REFUSED)
def test_activate_primary_refused(
    nodes: tuple[NodeState, ...], status: PoolStatus, message: str
) -> None:
    with pytest.raises(AdminRefused) as refused:
        activate_primary(PoolState("pool1", nodes, status), 1.0)
    assert str(refused.value) == message


# ---- delete (2.6.4) and re-configure: DIVERGENCE, both change the configuration ------------


def test_delete_removes_node_from_pool_and_configuration() -> None:
    config = parse_failoverpool("name:pool1;primary:a;secondary:b;secondary:c")
    pool = PoolState(
        "pool1",
        (
            node("a", "P", 0, "OK", "ACTIVE", None),
            node("b", "S", 45, "FAIL", "FAILED_OFFLINE", "x"),
            node("c", "S", 0, "OK", "STANDBY", None),
        ),
    )
    result = delete_node(pool, B)
    assert result.output == "OK: Cached server b:3306 with 45 request attempts was deleted."
    assert [str(n.node) for n in result.pool.nodes] == ["a:3306", "c:3306"]
    assert config_of(result.pool).nodes == (A, C)
    assert config.nodes == (A, B, C)
    # MPP's next configure recreated the node; ours re-applies the pool's own configuration.
    again = apply_config(result.pool, config_of(result.pool))
    assert again == result.pool


def test_apply_config_replaces_members_and_types_keeping_state_of_kept_nodes() -> None:
    pool = PoolState(
        "pool1",
        (
            node("a", "P", 0, "OK", "ACTIVE", None),
            node("b", "S", 3, "OK_WARN", "STANDBY", "m"),
            node("c", "S", 0, "OK", "STANDBY", None),
        ),
    )
    config = parse_failoverpool("name:pool1;secondary:a;secondary:b;secondary:d", max_requests=5)
    after = apply_config(pool, config)
    assert [
        (str(n.node), n.type, n.requests, n.status, n.state, n.message) for n in after.nodes
    ] == [
        ("a:3306", "SECONDARY", 0, "OK", "ACTIVE", None),
        ("b:3306", "SECONDARY", 3, "OK_WARN", "STANDBY", "m"),
        ("d:3306", "SECONDARY", None, "OK", "UNKNOWN", None),
    ]
    assert after.max_requests == 5


def test_apply_config_refuses_to_remove_the_active_node_unless_forced() -> None:
    pool = PoolState(
        "pool1",
        (node("a", "P", 0, "OK", "ACTIVE", None), node("b", "S", 0, "OK", "STANDBY", None)),
    )
    config = parse_failoverpool("name:pool1;secondary:b")
    with pytest.raises(PoolConfigError, match=r"ACTIVE server a:3306"):
        apply_config(pool, config)
    forced = apply_config(pool, config, force=True)
    assert tuples(forced) == [(0, "OK", "STANDBY", None)]
