"""JSON forms of the domain values: the pool document kept in Redis, events, observations.

Pure functions between model values and plain dicts. The pool document holds everything of a
PoolState except ``version`` and ``last_round``, which the store keeps beside it so that Lua can
compare them without decoding JSON; beside it too the document's head (``head_text``: interval
and observers), which a poller reads instead of the documents of the pools it does not observe.

Reading is strict: a document is the pool its key names, every setting is within the bounds
that ``mpp-admin pool`` enforces, every number is finite and every time and count plausible.
Anything else is a DocumentError, which every reader treats as an unreadable pool (logged and
skipped), so a hand-edited or corrupted document can neither crash a daemon nor be served as
another pool. Writing refuses non-finite numbers, so ``Infinity`` never reaches Redis.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import fields
from typing import Any

from mpp_agent.config import PoolConfig, PoolConfigError, settings_of
from mpp_agent.model import (
    DEFAULT_CATCHUP_TIMEOUT,
    DEFAULT_KEEP_CONNECTIONS,
    DEFAULT_MAX_FAILOVER_LAG,
    DEFAULT_MAX_LAG,
    DEFAULT_OBSERVERS,
    Event,
    EventKind,
    Failback,
    Fence,
    NodeId,
    NodeState,
    NodeType,
    Observation,
    Outcome,
    Override,
    Pause,
    PoolHead,
    PoolState,
    PoolStatus,
    Replication,
    StaleWriter,
    State,
    Status,
    Switchover,
)

SCHEMA = 1
# Plausible bounds for numbers read back: Redis server time in seconds (no earlier than the
# epoch, no later than year 5000), counters, and versions/rounds that Lua's doubles hold exactly.
MAX_TIME = 1e11
MAX_COUNT = 10**9
MAX_SEQUENCE = 2**53
# Empty for pools stored before incarnations existed.
INCARNATION_RE = re.compile(r"[0-9a-f]{0,32}")


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
        **({"catchup_until": node.catchup_until} if node.catchup_until is not None else {}),
        **({"synced_at": node.synced_at} if node.synced_at is not None else {}),
        **({"replication": replication_to_dict(node.replication)} if node.replication else {}),
        **({"replicas_view": node.replicas_view} if node.replicas_view is not None else {}),
    }


def replication_to_dict(details: Replication) -> dict[str, Any]:
    return flat_dict(details)


def flat_dict(value: Any) -> dict[str, Any]:
    """A dataclass of plain values (no nested dataclasses) as a dict: ``asdict`` without its
    deep copy, which costs a poller more than the rest of a node's record."""
    return dict(vars(value))


_REPLICATION_FIELDS = frozenset(f.name for f in fields(Replication))
_REPLICATION_TEXTS = ("source", "io_running", "sql_running", "received", "applied", "binlog")
_REPLICATION_WHOLES = ("source_server_id", "server_id", "unapplied", "lag")


def replication_from_dict(data: Any) -> Replication | None:
    """Replication values as stored; fields this version does not know are ignored, missing
    ones take their defaults (a document of an older or newer version still reads)."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise TypeError(f"replication is not an object: {data!r}")
    values = {key: data[key] for key in _REPLICATION_FIELDS.intersection(data)}
    for key in _REPLICATION_TEXTS:
        if not isinstance(values.get(key, ""), str):
            raise TypeError(f"replication {key} is not text")
    for key in _REPLICATION_WHOLES:
        value = values.get(key)
        if value is not None and type(value) is not int:
            raise TypeError(f"replication {key} is not a whole number")
    return Replication(**values)


# Enum members by their stored value: a dict lookup (a bad value is a KeyError, unreadable
# like any other) instead of the Enum call, which every node of every pool read would pay.
_NODE_TYPES = {t.value: t for t in NodeType}
_STATES = {s.value: s for s in State}
_STATUSES = {s.value: s for s in Status}


def node_from_dict(data: dict[str, Any]) -> NodeState:
    override = data.get("override")
    return NodeState(
        node=NodeId.parse(data["node"]),
        type=_NODE_TYPES[data["type"]],
        state=_STATES[data["state"]],
        status=_STATUSES[data["status"]],
        requests=data.get("requests"),
        message=data.get("message"),
        last_request_time=data.get("last_request_time"),
        override=override_from_dict(override) if override else None,
        monitor_note=data.get("monitor_note"),
        replication=replication_from_dict(data.get("replication")),
        catchup_until=data.get("catchup_until"),
        synced_at=data.get("synced_at"),
        replicas_view=data.get("replicas_view"),
    )


def switchover_to_dict(record: Switchover) -> dict[str, Any]:
    return {
        "source": str(record.source),
        "target": str(record.target),
        "started_at": record.started_at,
        "deadline": record.deadline,
        "first_round": record.first_round,
        "position": record.position,
        "requested_by": record.requested_by,
    }


def switchover_from_dict(data: Any) -> Switchover | None:
    if data is None:
        return None
    position = data.get("position")
    if position is not None and not isinstance(position, str):
        raise TypeError("switchover position is not text")
    first_round = data["first_round"]
    if type(first_round) is not int:
        raise TypeError("switchover first_round is not a whole number")
    return Switchover(
        source=NodeId.parse(data["source"]),
        target=NodeId.parse(data["target"]),
        started_at=float(data["started_at"]),
        deadline=float(data["deadline"]),
        first_round=first_round,
        position=position,
        requested_by=str(data.get("requested_by", "")),
    )


def pause_to_dict(pause: Pause) -> dict[str, Any]:
    return {
        "reason": pause.reason,
        "set_by": pause.set_by,
        "set_at": pause.set_at,
        "until": pause.until,
        "would": pause.would,
        "shadow": [node_to_dict(n) for n in pause.shadow],
    }


def pause_from_dict(data: Any) -> Pause | None:
    if data is None:
        return None
    return Pause(
        reason=str(data["reason"]),
        set_by=str(data.get("set_by", "admin")),
        set_at=float(data.get("set_at", 0.0)),
        until=None if data.get("until") is None else float(data["until"]),
        shadow=tuple(node_from_dict(n) for n in data.get("shadow", ())),
        would=str(data.get("would", "")),
    )


def pool_to_doc(pool: PoolState) -> str:
    """The JSON document of a pool; DocumentError for a number that is not finite."""
    try:
        return _pool_json(pool)
    except ValueError as exc:  # allow_nan=False: Infinity and NaN are not JSON
        raise DocumentError(f"refusing to store pool {pool.name}: {exc}") from None


def _pool_json(pool: PoolState) -> str:
    return json.dumps(
        {
            "schema": SCHEMA,
            "name": pool.name,
            "status": pool.status.value,
            "max_requests": pool.max_requests,
            "interval": pool.interval,
            "max_lag": pool.max_lag,
            "stale_writer": pool.stale_writer.value,
            "incarnation": pool.incarnation,
            "catchup_timeout": pool.catchup_timeout,
            "max_failover_lag": pool.max_failover_lag,
            "failback": pool.failback.value,
            **({"switchover": switchover_to_dict(pool.switchover)} if pool.switchover else {}),
            **({"pause": pause_to_dict(pool.pause)} if pool.pause else {}),
            "fence": pool.fence.value,
            "observers": pool.observers,
            "keep_connections": pool.keep_connections,
            "nodes": [node_to_dict(n) for n in pool.nodes],
        },
        separators=(",", ":"),
        allow_nan=False,
    )


@functools.lru_cache(maxsize=4096)  # a poller reads each pool twice a cycle (pools, round)
def pool_from_doc(doc: str | bytes, version: int, last_round: int, name: str) -> PoolState:
    """The pool stored under the key of pool ``name``; DocumentError if it is not readable,
    out of bounds, or names another pool. Pure, so memoised: the same stored pool is one
    (frozen) PoolState."""
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
            catchup_timeout=float(data.get("catchup_timeout", DEFAULT_CATCHUP_TIMEOUT)),
            max_failover_lag=float(data.get("max_failover_lag", DEFAULT_MAX_FAILOVER_LAG)),
            version=version,
            last_round=last_round,
            stale_writer=StaleWriter(data.get("stale_writer", StaleWriter.KEEP.value)),
            incarnation=str(data.get("incarnation", "")),
            failback=Failback(data.get("failback", Failback.AUTO.value)),
            switchover=switchover_from_dict(data.get("switchover")),
            pause=pause_from_dict(data.get("pause")),
            fence=Fence(data.get("fence", Fence.OFF.value)),
            observers=int(data.get("observers", DEFAULT_OBSERVERS)),
            keep_connections=float(data.get("keep_connections", DEFAULT_KEEP_CONNECTIONS)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DocumentError(f"unreadable pool document: {exc!r}") from None
    if pool.name != name:
        # Served under its key's name it would hijack that pool; under its own, the other one.
        raise DocumentError(
            f"unreadable pool document under the key of pool {name!r}: it names pool {pool.name!r}"
        )
    problem = pool_problem(pool)
    if problem:
        raise DocumentError(f"unreadable pool document of {pool.name!r}: {problem}")
    return pool


def head_text(pool: PoolState) -> str:
    """The head of the pool's document as the scripts take it: "<interval> <observers>
    <incarnation>" (they store it after the version they write)."""
    return f"{pool.interval!r} {pool.observers} {pool.incarnation}"


def head_of(name: str, version: bytes | None, head: bytes | None) -> PoolHead | None:
    """The head of pool ``name`` from its hash's ``version`` and ``head`` fields; None when it
    cannot stand for the document: missing, written for another version (by a writer that
    does not keep it), or unreadable or out of bounds (the document decides then)."""
    if version is None or head is None:
        return None
    parts = head.split()
    if len(parts) not in (3, 4) or parts[0] != version:
        return None
    try:
        number, interval, observers = int(version), float(parts[1]), int(parts[2])
        incarnation = parts[3].decode("ascii") if len(parts) == 4 else ""
    except (ValueError, UnicodeDecodeError):
        return None
    settings = (("interval", interval), ("observers", observers))
    if not math.isfinite(interval) or config_problem(name, _PLACEHOLDER, settings):
        return None
    if not 0 <= number < MAX_SEQUENCE or not INCARNATION_RE.fullmatch(incarnation):
        return None
    return PoolHead(name, interval, observers, incarnation, number)


def pool_problem(pool: PoolState) -> str:
    """What makes a decoded pool unusable: settings outside what ``mpp-admin pool`` accepts
    (every reader divides by the interval), and counts, times or sequence numbers that are not
    finite or not plausible."""
    if not 0 <= pool.version < MAX_SEQUENCE or not -1 <= pool.last_round < MAX_SEQUENCE:
        return f"version {pool.version} or round {pool.last_round} out of range"
    if not INCARNATION_RE.fullmatch(pool.incarnation):
        return f"incarnation {pool.incarnation[:40]!a} is not an id"
    settings = (pool.interval, pool.max_lag, pool.catchup_timeout, pool.max_failover_lag)
    if not all(math.isfinite(x) for x in settings):
        return "interval, max_lag, catchup_timeout or max_failover_lag is not a finite number"
    members = tuple((n.node, n.type) for n in pool.nodes) or _PLACEHOLDER
    problem = config_problem(pool.name, members, tuple(settings_of(pool).items()))
    if problem:
        return problem
    for n in pool.nodes:
        problem = node_problem(n)
        if problem:
            return problem
    return switchover_problem(pool) or pause_problem(pool)


def switchover_problem(pool: PoolState) -> str:
    record = pool.switchover
    if record is None:
        return ""
    if not all(0 <= t <= MAX_TIME for t in (record.started_at, record.deadline)):
        return "a time of the switchover is not a plausible Redis time"
    if not 0 <= record.first_round < MAX_SEQUENCE:
        return f"switchover round {record.first_round} out of range"
    return ""


def pause_problem(pool: PoolState) -> str:
    pause = pool.pause
    if pause is None:
        return ""
    if not all(0 <= t <= MAX_TIME for t in (pause.set_at, pause.until or 0.0)):
        return "a time of the pause is not a plausible Redis time"
    for n in pause.shadow:
        problem = node_problem(n)
        if problem:
            return f"pause: {problem}"
    return ""


# A pool whose last node was deleted still has settings to check.
_PLACEHOLDER = ((NodeId("placeholder"), NodeType.PRIMARY),)


@functools.lru_cache(maxsize=4096)  # a pool's configuration is the same round after round
def config_problem(
    name: str, members: tuple[tuple[NodeId, NodeType], ...], settings: tuple[tuple[str, Any], ...]
) -> str:
    """What the configuration's own validation (one home for the settings' bounds) refuses
    in a stored pool's name, members and settings; "" if nothing."""
    try:
        PoolConfig(name, members, **dict(settings))
    except PoolConfigError as exc:
        return str(exc)
    return ""


def node_problem(n: NodeState) -> str:
    if n.requests is not None and (type(n.requests) is not int or not 0 <= n.requests <= MAX_COUNT):
        return f"requests {n.requests!r} of {n.node} is not a count"
    if n.message is not None and not isinstance(n.message, str):
        return f"message of {n.node} is not text"
    for name in ("monitor_note", "replicas_view"):
        if getattr(n, name) is not None and not isinstance(getattr(n, name), str):
            return f"{name} of {n.node} is not text"
    times = [n.last_request_time, n.catchup_until, n.synced_at]
    if n.override is not None:
        times += [n.override.set_at, n.override.expires_at]
    for t in times:
        if t is not None and not (isinstance(t, int | float) and 0 <= t <= MAX_TIME):
            return f"a time of {n.node} ({t!r}) is not a plausible Redis time"
    return ""


def event_to_json(event: Event, actor: str, round_: int | None = None) -> str:
    """An event as a script takes it: a JSON object without its time, which the script adds
    (``at``: the Redis time of the shard holding the pool, when it writes the event)."""
    data = flat_dict(event)  # its ``extra`` is a dict of text: nothing to copy deeply
    data["kind"] = event.kind.value
    data["actor"] = actor
    if round_ is not None:
        data["round"] = round_
    return json.dumps(data, separators=(",", ":"))


def event_from_json(text: str | bytes) -> dict[str, Any]:
    """Events are read back as plain dicts (the history view renders them as they are);
    DocumentError for one that is not an event of this version."""
    try:
        data: dict[str, Any] = json.loads(text)
        data["kind"] = EventKind(data["kind"]).value
        at = data.get("at")
        if at is not None and not (isinstance(at, int | float) and 0 <= at <= MAX_TIME):
            raise ValueError(f"time {at!r}")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DocumentError(f"unreadable event: {exc!r}") from None
    return data


def observations_to_json(observations: dict[NodeId, Observation]) -> str:
    """``{node: [outcome, message]}``, with the replication values as a third element when
    the probe read them (a reader of the two-element form still reads it), and a fourth, the
    flags ``{"unreachable": true}``, when set (the third is then null if nothing was read)."""
    return json.dumps(
        {str(node): _observation_list(obs) for node, obs in observations.items()},
        separators=(",", ":"),
    )


def as_stored(observations: dict[NodeId, Observation]) -> dict[NodeId, Observation]:
    """The observations as ``observations_from_json`` reads back their JSON: what is not
    stored (``monitor_note``, a merged verdict's) left out."""
    return {
        node: Observation(
            obs.outcome, obs.message, replication=obs.replication, unreachable=obs.unreachable
        )
        if obs.monitor_note
        else obs
        for node, obs in observations.items()
    }


def _observation_list(obs: Observation) -> list[Any]:
    item: list[Any] = [obs.outcome.value, obs.message]
    if obs.replication is not None or obs.unreachable:
        item.append(None if obs.replication is None else replication_to_dict(obs.replication))
    if obs.unreachable:
        item.append({"unreachable": True})
    return item


def _flags(item: list[Any]) -> dict[str, bool]:
    """The flags element of a stored observation ({} when absent)."""
    flags = item[3] if len(item) > 3 else {}
    if not isinstance(flags, dict) or not all(type(v) is bool for v in flags.values()):
        raise TypeError(f"observation flags are not an object of booleans: {flags!r}")
    return flags


def observations_from_json(text: str | bytes) -> dict[NodeId, Observation]:
    try:
        data = json.loads(text)
        return {
            NodeId.parse(node): Observation(
                Outcome(item[0]),
                str(item[1]),
                replication=replication_from_dict(item[2] if len(item) > 2 else None),
                unreachable=_flags(item).get("unreachable", False),
            )
            for node, item in data.items()
        }
    except (TypeError, ValueError, AttributeError, IndexError, KeyError) as exc:
        raise DocumentError(f"unreadable observations: {exc!r}") from None
