"""Pure renderers: plain data in, text (or JSON-ready dicts) out. No Redis, no clock.

MPP's own formats are reproduced exactly: the listing of mpp-behaviour.md 4.2 (column widths 1,
30, 3, 20, 7, 14, 19, each followed by two spaces, values left-aligned and never truncated) and
the report line of 4.3. Two choices of ours: nodes are listed in priority order (the order that
decides failover) rather than MPP's lexical order, and a never-polled node shows a blank time
rather than MPP's "current time" quirk. An override is shown on its own line under its node
(``O``), and so is why the monitor could not judge a node in its last round (``M``); the pool's
settings follow its ``status=``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mpp_agent.config import config_of, render_failoverpool
from mpp_agent.model import NodeState, Override, PoolState, State, request_level
from mpp_agent.positions import lacks
from mpp_agent.routing import NodeRoute, route

if TYPE_CHECKING:
    from mpp_agent.store import PollerInfo

LIST_WIDTHS = (1, 30, 3, 20, 7, 14, 19)
LIST_HEADER = (
    "T",
    "Server Name",
    "req",
    "Time of Last Request",
    "Status",
    "State",
    "Last Status Message",
)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def local_time(epoch: float | None) -> str:
    """Epoch seconds as MPP prints them: local time, ``YYYY-MM-DD HH:MM:SS``."""
    return "" if epoch is None else time.strftime(TIME_FORMAT, time.localtime(epoch))


def zoned_time(epoch: float | None) -> str:
    """A time in text outside MPP's listing columns: local time with its zone."""
    return "" if epoch is None else time.strftime(f"{TIME_FORMAT} %Z", time.localtime(epoch))


def iso_time(epoch: float | None) -> str | None:
    """Epoch seconds as JSON shows every time: ISO 8601 in UTC, e.g. 2026-12-01T18:45:54.120Z."""
    if epoch is None:
        return None
    moment = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return moment.replace("+00:00", "Z")


def to_json(document: Any) -> str:
    return json.dumps(document, indent=2)


def to_json_line(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"))


# --------------------------------------------------------------------------- list


# ``list --wide``: replication columns between MPP's State and its message.
WIDE_HEADER = ("RO", "Lag", "Caught up", "Behind")
WIDE_WIDTHS = (3, 5, 9, 6)


def listing_row(values: Sequence[str], wide: Sequence[str] = ()) -> str:
    """A row of MPP's columns; with ``wide`` the replication columns go before the message."""
    if not wide:
        return _row(values, LIST_WIDTHS)
    widths = (*LIST_WIDTHS[:-1], *WIDE_WIDTHS, LIST_WIDTHS[-1])
    return _row([*values[:-1], *wide, values[-1]], widths)


def _row(values: Sequence[str], widths: Sequence[int]) -> str:
    return "".join(v.ljust(w) + "  " for v, w in zip(values, widths, strict=True))


def listing(pools: Iterable[PoolState], now: float, wide: bool = False) -> str:
    """MPP's ``--list-cached-pools`` table: header once, then per pool its line and nodes.

    Under a node: its override on an 'O' line, and on an 'R' line what it answers when that
    is neither its state nor its override's (the writer pinned elsewhere). ``wide`` adds each
    node's read_only, lag, whether it has applied what it received, and what it lacks of the
    ACTIVE's last known position."""
    header = WIDE_HEADER if wide else ()
    dashes = tuple("-" * w for w in WIDE_WIDTHS) if wide else ()
    lines = [
        listing_row(LIST_HEADER, header),
        listing_row(["-" * w for w in LIST_WIDTHS], dashes),
    ]
    for pool in pools:
        lines.append(f"*  [ {pool.name} ] status={pool.status}  {pool_settings(pool)}")
        decision = route(pool, now)
        if decision.degraded:
            lines.append(f"  D degraded: {decision.degraded}")
        for node, decided in zip(pool.nodes, decision.nodes, strict=True):
            extra = wide_columns(replication_json(pool, node, None)) if wide else ()
            lines.append(listing_row(node_columns(node), extra))
            if node.override is not None:
                lines.append(f"  O {override_text(node.override)}")
            if routing_note(node, decided, now):
                lines.append(f"  R {routing_note(node, decided, now)}")
            if node.monitor_note:
                lines.append(f"  M {node.monitor_note}")
    return "\n".join(lines) + "\n"


def pool_settings(pool: PoolState) -> str:
    """The pool's settings, after MPP's ``status=`` on its line (so ``status=(\\S+)`` still
    parses): ``interval=2s max_requests=4 max_lag=30s catchup_timeout=30s max_failover_lag=off``."""
    return (
        f"interval={pool.interval:g}s max_requests={pool.max_requests} max_lag={pool.max_lag:g}s"
        f" catchup_timeout={pool.catchup_timeout:g}s"
        f" max_failover_lag={failover_lag_text(pool.max_failover_lag)}"
    )


def failover_lag_text(seconds: float) -> str:
    return f"{seconds:g}s" if seconds > 0 else "off"


def routing_note(node: NodeState, decided: NodeRoute, now: float) -> str:
    """What the node answers, when its state (or its live override) does not already say it."""
    shown = node.state
    if node.override is not None and not node.override.is_expired(now):
        shown = node.override.state
    if decided.state is State.ACTIVE and not decided.takes_writes:
        return f"no writes: {decided.why[0]}"  # the catch-up gate holds
    if decided.state is shown:
        return ""
    return f"answers {decided.state}: {decided.why[-1]}"


def node_columns(node: NodeState) -> list[str]:
    return [
        "P" if node.is_primary else "S",
        str(node.node),
        "" if node.requests is None else str(node.requests),
        local_time(node.last_request_time),
        node.status.value,
        node.state.value,
        node.message or "",
    ]


def wide_columns(values: Mapping[str, Any]) -> tuple[str, ...]:
    def shown(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        return f"{value:g}" if isinstance(value, float) else str(value)

    return tuple(shown(values[key]) for key in ("read_only", "lag", "caught_up", "behind"))


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


def override_text(override: Override) -> str:
    """``override STANDBY/OK by admin:alice at <time> until <time>: <reason>``."""
    status = f"/{override.status}" if override.status is not None else ""
    until = f" until {zoned_time(override.expires_at)}" if override.expires_at else ""
    return (
        f"override {override.state}{status} by {override.set_by} at {zoned_time(override.set_at)}"
        f"{until}: {override.reason}"
    )


# A pool's last probe metrics: node ("host:port") -> what its probe reported.
NodeMetrics = Mapping[str, Mapping[str, Any]]


def listing_json(
    pools: Iterable[PoolState], now: float, metrics: Mapping[str, NodeMetrics] | None = None
) -> dict[str, Any]:
    metrics = metrics or {}
    return {"pools": [pool_json(p, now, metrics.get(p.name, {})) for p in pools]}


def pool_json(pool: PoolState, now: float, metrics: NodeMetrics) -> dict[str, Any]:
    """The one JSON schema of a pool (``list --json``, ``pools --json``)."""
    decision = route(pool, now)
    writer = decision.writer
    return {
        "name": pool.name,
        "status": pool.status.value,
        "interval": pool.interval,
        "max_requests": pool.max_requests,
        "max_lag": pool.max_lag,
        "catchup_timeout": pool.catchup_timeout,
        "max_failover_lag": pool.max_failover_lag,
        "active": None if writer is None else str(writer.node),  # the node taking writes
        "degraded": decision.degraded,  # why no node could take over now, or null
        "nodes": [
            member_json(pool, n, r, lag_of(metrics.get(str(n.node), {})))
            for n, r in zip(pool.nodes, decision.nodes, strict=True)
        ],
    }


def member_json(
    pool: PoolState, node: NodeState, decided: NodeRoute, lag: float | None
) -> dict[str, Any]:
    """A node's document with its replication fields (``list``, ``pools``, ``report``)."""
    return {
        **node_json(node, pool.max_requests, decided, None),
        **replication_json(pool, node, lag),
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


# --------------------------------------------------------------------------- report


def report_line(pool: PoolState, node: NodeState) -> str:
    """MPP's ``--report`` line (mpp-behaviour 4.3): with a message (even an empty one)
    ``<STATUS>/<STATE> (<TYPE>) : (<STATUS>/<R>) <message>``, else ``<label>/<STATE> (<TYPE>)``."""
    if node.message is not None:
        r = "" if node.requests is None else str(node.requests)
        return f"{node.status}/{node.state} ({node.type}) : ({node.status}/{r}) {node.message}"
    return f"{request_level(node.requests, pool.max_requests)}/{node.state} ({node.type})"


# --------------------------------------------------------------------------- pools


def pools_table(pools: Iterable[PoolState], now: float) -> str:
    """One row per pool; ACTIVE is the node that takes writes (overrides applied)."""
    rows = [
        ("POOL", "STATUS", "ACTIVE", "NODES", "INTERVAL", "M", "MAX_LAG", "CATCHUP", "FAILOVER_LAG")
    ]
    for pool in pools:
        writer = route(pool, now).writer
        active = "-" if writer is None else str(writer.node)
        rows.append(
            (
                pool.name,
                pool.status.value,
                active,
                str(len(pool.nodes)),
                f"{pool.interval:g}s",
                str(pool.max_requests),
                f"{pool.max_lag:g}s",
                f"{pool.catchup_timeout:g}s",
                failover_lag_text(pool.max_failover_lag),
            )
        )
    return table(rows)


def pool_config_json(pool: PoolState) -> dict[str, Any]:
    config = config_of(pool)
    return {
        "name": config.name,
        "interval": config.interval,
        "max_requests": config.max_requests,
        "max_lag": config.max_lag,
        "catchup_timeout": config.catchup_timeout,
        "max_failover_lag": config.max_failover_lag,
        "members": [{"node": str(n), "type": t.value} for n, t in config.members],
        "failoverpool": render_failoverpool(config),
    }


def pool_config_text(pool: PoolState) -> str:
    data = pool_config_json(pool)
    lines = [
        f"pool          {data['name']}",
        f"interval      {data['interval']:g}s",
        f"max_requests  {data['max_requests']}",
        f"max_lag       {data['max_lag']:g}s",
        f"catchup       {data['catchup_timeout']:g}s",
        f"failover_lag  {failover_lag_text(data['max_failover_lag'])}",
        "members       (priority order)",
    ]
    lines += [f"  {i}. {m['type']:<9}  {m['node']}" for i, m in enumerate(data["members"], 1)]
    lines.append(f"failoverpool  {data['failoverpool']}")
    return "\n".join(lines) + "\n"


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces (the last one not padded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- history


def event_change(event: dict[str, Any]) -> str:
    """``FROM_STATE/FROM_STATUS -> TO_STATE/TO_STATUS`` (either side may be absent)."""
    before = "/".join(x for x in (event.get("from_state"), event.get("from_status")) if x)
    after = "/".join(x for x in (event.get("to_state"), event.get("to_status")) if x)
    if before or after:
        return f"{before or '-'} -> {after or '-'}"
    return ""


def history_line(event: dict[str, Any]) -> str:
    """One event: time, pool, kind, node, change, actor, message (fixed layout, streamable)."""
    return (
        f"{zoned_time(event.get('at'))}  {event.get('pool', ''):<16}  {event.get('kind', ''):<16}  "
        f"{event.get('node') or '-':<21}  {event_change(event):<34}  "
        f"{event.get('actor', ''):<16}  {event.get('message', '')}"
    ).rstrip()


def history_json(event_id: str, event: dict[str, Any]) -> dict[str, Any]:
    """The one JSON schema of an event: times in ISO 8601 UTC, no message as null."""
    document = {"id": event_id, **event}
    if isinstance(document.get("at"), int | float):
        document["at"] = iso_time(document["at"])
    document["message"] = document.get("message") or None
    return document


# --------------------------------------------------------------------------- pollers


def poller_value(key: str, value: Any, now: float) -> str:
    """A heartbeat value, rendered by the shape of its key: ``*_at`` are times, ``*seconds``,
    ``*interval`` and ``lag`` durations, lists are joined; anything else as JSON."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if key.endswith("_at") and is_number:
        return f"{zoned_time(value)} ({age(now - value)} ago)"
    if (key.endswith(("seconds", "interval")) or key == "lag") and is_number:
        return f"{value:.3f}s"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict) and not value:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def pollers_text(pollers: Sequence[PollerInfo], now: float) -> str:
    """Each poller and its heartbeat, one value a line; a non-empty mapping (``abstentions``:
    ``pool/node`` -> why it cannot judge the node, ``unserved``: pool -> why it does not poll
    it) one entry a line under its key."""
    if not pollers:
        return "No pollers have reported.\n"
    lines = []
    for poller in pollers:
        lines.append(f"{poller.poller_id}  {'alive' if poller.alive else 'EXPIRED'}")
        if poller.problem:
            lines.append(f"  unreadable heartbeat: {poller.problem}")
        info = poller.info
        keys = [k for k in info if k != "poller_id"]
        width = max((len(k) for k in keys), default=0)
        for k in keys:
            value = info[k]
            if isinstance(value, dict) and value:
                lines.append(f"  {k}")
                lines += [f"    {item}  {poller_value('', v, now)}" for item, v in value.items()]
            else:
                lines.append(f"  {k:<{width}}  {poller_value(k, value, now)}")
    return "\n".join(lines) + "\n"


def poller_json(poller: PollerInfo) -> dict[str, Any]:
    """A poller for ``--json``: its heartbeat as it is, and what it abstains on and does not
    serve (empty when it reports none)."""
    info = poller.info
    return {
        "poller_id": poller.poller_id,
        "alive": poller.alive,
        "info": info,
        "abstentions": mapping_of(info.get("abstentions")),
        "unserved": mapping_of(info.get("unserved")),
        "problem": poller.problem or None,
    }


def mapping_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
