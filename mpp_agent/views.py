"""The JSON documents of pools, nodes and overrides: the one renderer that ``mpp-admin list
--json`` and the agent's ``GET /v1/pools`` share, so the two can never disagree.

Pure: plain data in (pools, Redis server time, the pools' last probe metrics), JSON-ready dicts
out; every routing field comes from ``routing.route``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from mpp_agent.model import NodeState, Override, PoolState, State, request_level
from mpp_agent.positions import lacks
from mpp_agent.routing import NodeRoute, route


def iso_time(epoch: float | None) -> str | None:
    """Epoch seconds as JSON shows every time: ISO 8601 in UTC, e.g. 2026-12-01T18:45:54.120Z."""
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


# A pool's last probe metrics: node ("host:port") -> what its probe reported.
NodeMetrics = Mapping[str, Mapping[str, Any]]


def listing_json(
    pools: Iterable[PoolState],
    now: float,
    metrics: Mapping[str, NodeMetrics] | None = None,
    backwards: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    metrics = metrics or {}
    backwards = backwards or {}
    return {
        "pools": [pool_json(p, now, metrics.get(p.name, {}), backwards.get(p.name)) for p in pools]
    }


def pool_json(
    pool: PoolState, now: float, metrics: NodeMetrics, went_backwards: str | None = None
) -> dict[str, Any]:
    """The one JSON schema of a pool (``list --json``, ``pools --json``, ``GET /v1/pools``);
    ``went_backwards`` says when the state in Redis is older than one already seen."""
    decision = route(pool, now)
    writer = decision.writer
    return {
        "name": pool.name,
        "status": pool.status.value,
        "interval": pool.interval,
        "max_requests": pool.max_requests,
        "max_lag": pool.max_lag,
        "stale_writer": pool.stale_writer.value,
        "incarnation": pool.incarnation,
        "catchup_timeout": pool.catchup_timeout,
        "max_failover_lag": pool.max_failover_lag,
        "fence": pool.fence.value,
        "observers": pool.observers,
        "keep_connections": pool.keep_connections,
        "version": pool.version,
        "active": None if writer is None else str(writer.node),  # the node taking writes
        "degraded": decision.degraded,  # why no node could take over now, or null
        "failback": pool.failback.value,
        "paused": pause_json(pool, now),
        "switchover": switchover_json(pool),
        "nodes": [
            member_json(pool, n, r, lag_of(metrics.get(str(n.node), {})))
            for n, r in zip(pool.nodes, decision.nodes, strict=True)
        ],
        "went_backwards": went_backwards,
    }


def pause_json(pool: PoolState, now: float) -> dict[str, Any] | None:
    """The pool's pause while it holds, or None."""
    pause = pool.pause
    if pause is None or not pool.is_paused(now):
        return None
    return {
        "reason": pause.reason,
        "set_by": pause.set_by,
        "set_at": iso_time(pause.set_at),
        "until": iso_time(pause.until),
        "would": pause.would,
    }


def switchover_json(pool: PoolState) -> dict[str, Any] | None:
    """The switchover in progress, or None."""
    record = pool.switchover
    if record is None:
        return None
    return {
        "source": str(record.source),
        "target": str(record.target),
        "started_at": iso_time(record.started_at),
        "deadline": iso_time(record.deadline),
        "position": record.position,
        "requested_by": record.requested_by,
    }


def operator_notes(pool: PoolState, now: float) -> list[str]:
    """The pool's pause and switchover in progress, one line each, as listings show them."""
    notes = []
    if pool.pause is not None and pool.is_paused(now):
        would = f"; {pool.pause.would}" if pool.pause.would else ""
        notes.append(f"P PAUSED by {pool.pause.set_by}: {pool.pause.reason}{would}")
    if pool.switchover is not None:
        record = pool.switchover
        at = "" if record.position is None else f"; drained at {record.position or '(empty)'}"
        notes.append(f"W SWITCHOVER from {record.source} to {record.target}{at}")
    return notes


def member_json(
    pool: PoolState, node: NodeState, decided: NodeRoute, lag: float | None
) -> dict[str, Any]:
    """A node's document with its replication fields (``list``, ``pools``, ``report``)."""
    return {
        **node_json(node, pool.max_requests, decided, None),
        **replication_json(pool, node, lag),
    }


def replication_json(pool: PoolState, node: NodeState, lag: float | None) -> dict[str, Any]:
    """A node's replication as its last judged round saw it: ``read_only``, ``lag`` (the
    probe metrics' when given, else the stored one), ``caught_up`` (everything it received is
    applied) and ``behind`` (transactions it lacks of the ACTIVE's last known position);
    each null when unknown."""
    details = node.replication
    active = next((n.replication for n in pool.active_nodes if n.replication), None)
    behind = None
    if details is not None and active is not None:
        if node.state is State.ACTIVE:
            behind = 0
        else:
            behind = lacks(active.binlog, details.binlog, details.applied, details.received)
    return {
        "read_only": None if details is None else details.read_only,
        "lag": lag if lag is not None or details is None else details.lag,
        "caught_up": None if details is None else details.caught_up,
        "behind": behind,
    }


def node_json(
    node: NodeState, max_requests: int, decided: NodeRoute, lag: float | None
) -> dict[str, Any]:
    """The one JSON schema of a node: its stored state and the routing decision for it."""
    return {
        "node": str(node.node),
        "type": node.type.value,
        "requests": node.requests,
        "level": request_level(node.requests, max_requests),
        "status": node.status.value,
        "state": node.state.value,
        "message": node.message,
        "last_request_time": iso_time(node.last_request_time),
        "override": override_json(node.override) if node.override else None,
        "lag": lag,
        "monitor_note": node.monitor_note,
        # Set while the pollers cannot reach this ACTIVE but its replicas still receive from
        # it (no failover meanwhile), naming those replicas; else null.
        "replicas_view": node.replicas_view,
        "route": route_json(decided),
    }


def override_json(override: Override) -> dict[str, Any]:
    """The one JSON schema of an override; ``actor`` as in events."""
    return {
        "state": override.state.value,
        "status": override.status.value if override.status else None,
        "reason": override.reason,
        "actor": override.set_by,
        "set_at": iso_time(override.set_at),
        "expires_at": iso_time(override.expires_at),
    }


def route_json(decided: NodeRoute) -> dict[str, Any]:
    """What the node answers (the agent's decision): state, writes, reads, weight, reason."""
    return {
        "state": decided.state.value,
        "takes_writes": decided.takes_writes,
        "takes_reads": decided.takes_reads,
        "weight": decided.weight if decided.takes_reads else 0,
        "reason": decided.reason,
    }


def lag_of(metrics: Mapping[str, Any]) -> float | None:
    """Replication lag in seconds from a node's last probe metrics (``lag``, else the older
    ``seconds_behind``); None when unknown (not a replica, NULL, or not probed lately)."""
    for key in ("lag", "seconds_behind"):
        value = metrics.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value
    return None
