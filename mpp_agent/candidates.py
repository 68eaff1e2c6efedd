"""Who could take over if the ACTIVE failed now: the lag gate and the degraded pool.

Pure (no I/O, no clock). The state machine asks ``held_back`` before a takeover (the lag gate);
the routing decision and every view ask ``degraded`` whether the pool has lost its failover
candidate, so the pool is never left without one silently.
"""

from __future__ import annotations

from mpp_agent.model import NodeState, PoolState, PoolStatus, State

MSG_HELD = "Not taking over:"


def failover_lag(node: NodeState, now: float) -> float | None:
    """How far behind the ACTIVE the node is, by its last observations: its replication lag
    in seconds, or how long since it last held everything of the ACTIVE's position; None
    when neither is known."""
    lag = node.replication.lag if node.replication is not None else None
    gap = now - node.synced_at if node.synced_at is not None else None
    known = [x for x in (lag, gap) if x is not None]
    return max(known) if known else None


def held_back(pool: PoolState, node: NodeState, now: float) -> str | None:
    """Why the lag gate keeps ``node`` from taking over by itself, or None (gate off, or it
    lagged no more than ``max_failover_lag``; an unknown lag does not hold it)."""
    if pool.max_failover_lag <= 0:
        return None
    behind = failover_lag(node, now)
    if behind is None or behind <= pool.max_failover_lag:
        return None
    return (
        f"{MSG_HELD} {behind:.1f}s behind the ACTIVE's last known position "
        f"(max_failover_lag {pool.max_failover_lag:g}s); to promote it anyway: "
        f"mpp-admin failover {pool.name} --to {node.node}"
    )


def candidate_problem(pool: PoolState, node: NodeState, now: float) -> str | None:
    """Why ``node`` could not take over if the ACTIVE failed now, or None if it could."""
    if node.state is not State.STANDBY:
        return f"{node.node} is {node.state}"
    if not node.status.is_ok:
        return f"{node.node} is STANDBY/{node.status}"
    if held_back(pool, node, now) is not None:
        lag = failover_lag(node, now) or 0.0
        return f"{node.node} lags {lag:.0f}s (max_failover_lag {pool.max_failover_lag:g}s)"
    return None


def degraded(pool: PoolState, now: float) -> str | None:
    """``no failover candidate: <why, per node>`` when the pool has an ACTIVE and no other
    node could take over if it failed now (every standby failed, lagging beyond the gate, or
    there is none); None otherwise (also without an ACTIVE, or when the pool status is FAIL:
    those say more already)."""
    if pool.status is not PoolStatus.OK:
        return None
    active = next((n for n in pool.nodes if n.state is State.ACTIVE), None)
    if active is None:
        return None
    problems = []
    for n in pool.nodes:
        if n is active:
            continue
        problem = candidate_problem(pool, n, now)
        if problem is None:
            return None
        problems.append(problem)
    return "no failover candidate: " + ("; ".join(problems) or "no other node in the pool")
