"""JSON forms of the domain values: the pool document kept in Redis, events, observations.

Pure functions between model values and plain dicts. The pool document holds everything of a
PoolState except ``version`` and ``last_round``, which the store keeps beside it so that Lua can
compare them without decoding JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from mpp_agent.model import (
    DEFAULT_MAX_LAG,
    Event,
    EventKind,
    NodeId,
    NodeState,
    NodeType,
    Observation,
    Outcome,
    Override,
    PoolState,
    PoolStatus,
    State,
    Status,
)

SCHEMA = 1


class DocumentError(ValueError):
    """A stored document that cannot be read as this version of mpp-agent writes it."""


def override_to_dict(override: Override) -> dict[str, Any]:
    return {
        "state": override.state.value,
        "status": override.status.value if override.status else None,
        "reason": override.reason,
        "set_by": override.set_by,
        "set_at": override.set_at,
        "expires_at": override.expires_at,
    }


def override_from_dict(data: dict[str, Any]) -> Override:
    return Override(
        state=State(data["state"]),
        status=Status(data["status"]) if data.get("status") else None,
        reason=str(data.get("reason", "")),
        set_by=str(data.get("set_by", "admin")),
        set_at=float(data.get("set_at", 0.0)),
        expires_at=None if data.get("expires_at") is None else float(data["expires_at"]),
    )


def node_to_dict(node: NodeState) -> dict[str, Any]:
    return {
        "node": str(node.node),
        "type": node.type.value,
        "state": node.state.value,
        "status": node.status.value,
        "requests": node.requests,
        "message": node.message,
        "last_request_time": node.last_request_time,
        "override": override_to_dict(node.override) if node.override else None,
        "monitor_note": node.monitor_note,
    }


def node_from_dict(data: dict[str, Any]) -> NodeState:
    override = data.get("override")
    return NodeState(
        node=NodeId.parse(data["node"]),
        type=NodeType(data["type"]),
        state=State(data["state"]),
        status=Status(data["status"]),
        requests=data.get("requests"),
        message=data.get("message"),
        last_request_time=data.get("last_request_time"),
        override=override_from_dict(override) if override else None,
        monitor_note=data.get("monitor_note"),
    )


def pool_to_doc(pool: PoolState) -> str:
    return json.dumps(
        {
            "schema": SCHEMA,
            "name": pool.name,
            "status": pool.status.value,
            "max_requests": pool.max_requests,
            "interval": pool.interval,
            "max_lag": pool.max_lag,
            "nodes": [node_to_dict(n) for n in pool.nodes],
        },
        separators=(",", ":"),
    )


def pool_from_doc(doc: str | bytes, version: int, last_round: int) -> PoolState:
    try:
        data = json.loads(doc)
        if data.get("schema") != SCHEMA:
            raise DocumentError(f"unsupported pool document schema {data.get('schema')!r}")
        pool = PoolState(
            name=str(data["name"]),
            nodes=tuple(node_from_dict(n) for n in data["nodes"]),
            status=PoolStatus(data["status"]),
            max_requests=int(data["max_requests"]),
            interval=float(data["interval"]),
            max_lag=float(data.get("max_lag", DEFAULT_MAX_LAG)),
            version=version,
            last_round=last_round,
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DocumentError(f"unreadable pool document: {exc!r}") from None
    problem = pool_problem(pool)
    if problem:
        raise DocumentError(f"unreadable pool document of {pool.name!r}: {problem}")
    return pool


def pool_problem(pool: PoolState) -> str:
    """What makes a decoded pool unusable (every reader divides by the interval, compares R)."""
    if not pool.interval > 0:
        return f"interval {pool.interval!r} is not positive"
    if pool.max_requests < 1:
        return f"max_requests {pool.max_requests!r} is below 1"
    if not pool.max_lag >= 0:
        return f"max_lag {pool.max_lag!r} is not a number of seconds"
    seen: set[NodeId] = set()
    for n in pool.nodes:
        if n.node in seen:  # which of its states would the agent answer?
            return f"node {n.node} is listed twice"
        seen.add(n.node)
        if n.requests is not None and (type(n.requests) is not int or n.requests < 0):
            return f"requests {n.requests!r} of {n.node} is not a count"
        if n.message is not None and not isinstance(n.message, str):
            return f"message of {n.node} is not text"
        if n.monitor_note is not None and not isinstance(n.monitor_note, str):
            return f"monitor_note of {n.node} is not text"
    return ""


def event_to_json(event: Event, actor: str, at: float, round_: int | None = None) -> str:
    data: dict[str, Any] = asdict(event)
    data["kind"] = event.kind.value
    data["actor"] = actor
    data["at"] = at
    if round_ is not None:
        data["round"] = round_
    return json.dumps(data, separators=(",", ":"))


def event_from_json(text: str | bytes) -> dict[str, Any]:
    """Events are read back as plain dicts (the history view renders them as they are)."""
    data: dict[str, Any] = json.loads(text)
    data["kind"] = EventKind(data["kind"]).value
    return data


def observations_to_json(observations: dict[NodeId, Observation]) -> str:
    return json.dumps(
        {str(node): [obs.outcome.value, obs.message] for node, obs in observations.items()},
        separators=(",", ":"),
    )


def observations_from_json(text: str | bytes) -> dict[NodeId, Observation]:
    try:
        data = json.loads(text)
        return {
            NodeId.parse(node): Observation(Outcome(outcome), str(message))
            for node, (outcome, message) in data.items()
        }
    except (TypeError, ValueError, AttributeError) as exc:
        raise DocumentError(f"unreadable observations: {exc!r}") from None
