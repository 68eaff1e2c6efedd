"""Pure renderers: plain data in, text (or JSON-ready dicts) out. No Redis, no clock.

MPP's own formats are reproduced exactly: the ``--list`` listing (column widths 1, 30, 3, 20, 7,
14, 19, each followed by two spaces, values left-aligned and never truncated) and the
``--report`` line. Two choices of ours: nodes are listed in priority order (the order that
decides failover) rather than MPP's lexical order, and a never-polled node shows a blank time
rather than MPP's "current time" quirk. An override is shown on its own line under its node
(``O``), and so is why the monitor could not judge a node in its last round (``M``); the pool's
settings follow its ``status=``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mpp_agent.config import config_of, render_failoverpool
from mpp_agent.model import NodeState, Override, PoolState, State, request_level
from mpp_agent.routing import NodeRoute, route

# The JSON documents of pools live with the agent, which serves them too (GET /v1/pools).
from mpp_agent.views import (
    iso_time,
    lag_of,
    listing_json,
    member_json,
    node_json,
    operator_notes,
    override_json,
    pool_json,
    replication_json,
    route_json,
)

__all__ = [
    "iso_time",
    "lag_of",
    "listing_json",
    "member_json",
    "node_json",
    "override_json",
    "pool_json",
    "route_json",
]

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


def listing(
    pools: Iterable[PoolState],
    now: float,
    backwards: Mapping[str, str] | None = None,
    wide: bool = False,
) -> str:
    """MPP's ``--list-cached-pools`` table: header once, then per pool its line and nodes.

    Under a node: its override on an 'O' line, and on an 'R' line what it answers when that
    is neither its state nor its override's (the writer pinned elsewhere); on an 'M' line why
    the monitor could not judge it, and on a '!' line that the pollers cannot reach it while
    its replicas still receive from it (no failover meanwhile). ``wide`` adds each
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
        lines.extend(f"  {note}" for note in operator_notes(pool, now))
        if backwards and pool.name in backwards:
            lines.append(f"  ! {backwards[pool.name]}")
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
            if node.replicas_view:
                lines.append(f"  ! {node.replicas_view}")
    return "\n".join(lines) + "\n"


def pool_settings(pool: PoolState) -> str:
    """The pool's settings, after MPP's ``status=`` on its line (so ``status=(\\S+)`` still
    parses): ``interval=2s max_requests=4 max_lag=30s stale_writer=keep catchup_timeout=30s
    max_failover_lag=off failback=auto fence=off observers=3 keep_connections=off``."""
    return (
        f"interval={pool.interval:g}s max_requests={pool.max_requests} max_lag={pool.max_lag:g}s"
        f" stale_writer={pool.stale_writer} catchup_timeout={pool.catchup_timeout:g}s"
        f" max_failover_lag={failover_lag_text(pool.max_failover_lag)} failback={pool.failback}"
        f" fence={pool.fence} observers={observers_text(pool.observers)}"
        f" keep_connections={failover_lag_text(pool.keep_connections)}"
    )


def failover_lag_text(seconds: float) -> str:
    """A duration setting where 0 means off (max_failover_lag, keep_connections)."""
    return f"{seconds:g}s" if seconds > 0 else "off"


def observers_text(k: int) -> str:
    return str(k) if k > 0 else "all"


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


def override_text(override: Override) -> str:
    """``override STANDBY/OK by admin:alice at <time> until <time>: <reason>``."""
    status = f"/{override.status}" if override.status is not None else ""
    until = f" until {zoned_time(override.expires_at)}" if override.expires_at else ""
    return (
        f"override {override.state}{status} by {override.set_by} at {zoned_time(override.set_at)}"
        f"{until}: {override.reason}"
    )


# --------------------------------------------------------------------------- report


def report_line(pool: PoolState, node: NodeState) -> str:
    """MPP's ``--report`` line: with a message (even an empty one)
    ``<STATUS>/<STATE> (<TYPE>) : (<STATUS>/<R>) <message>``, else ``<label>/<STATE> (<TYPE>)``."""
    if node.message is not None:
        r = "" if node.requests is None else str(node.requests)
        return f"{node.status}/{node.state} ({node.type}) : ({node.status}/{r}) {node.message}"
    return f"{request_level(node.requests, pool.max_requests)}/{node.state} ({node.type})"


# --------------------------------------------------------------------------- pools


def pools_table(pools: Iterable[PoolState], now: float) -> str:
    """One row per pool; ACTIVE is the node that takes writes (overrides applied)."""
    rows = [
        (
            "POOL", "STATUS", "ACTIVE", "NODES", "INTERVAL", "M", "MAX_LAG", "STALE_WRITER",
            "CATCHUP", "FAILOVER_LAG", "FAILBACK", "FENCE", "OBSERVERS", "KEEP_CONNS",
        )
    ]  # fmt: skip
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
                pool.stale_writer.value,
                f"{pool.catchup_timeout:g}s",
                failover_lag_text(pool.max_failover_lag),
                pool.failback.value,
                pool.fence.value,
                observers_text(pool.observers),
                failover_lag_text(pool.keep_connections),
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
        "stale_writer": config.stale_writer.value,
        "incarnation": pool.incarnation,
        "catchup_timeout": config.catchup_timeout,
        "max_failover_lag": config.max_failover_lag,
        "failback": config.failback.value,
        "fence": config.fence.value,
        "observers": config.observers,
        "keep_connections": config.keep_connections,
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
        f"stale_writer  {data['stale_writer']}",
        f"incarnation   {data['incarnation'] or '-'}",
        f"catchup       {data['catchup_timeout']:g}s",
        f"failover_lag  {failover_lag_text(data['max_failover_lag'])}",
        f"failback      {data['failback']}",
        f"fence         {data['fence']}",
        f"observers     {observers_text(data['observers'])}",
        f"keep_conns    {failover_lag_text(data['keep_connections'])}",
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


def under_observed_text(lacking: Mapping[str, tuple[int, int]]) -> str:
    """The pools with fewer observers than their K (nothing when there are none)."""
    if not lacking:
        return ""
    lines = ["pools with fewer observers than K:"]
    lines += [f"  {name}  {seen} of {wanted}" for name, (seen, wanted) in lacking.items()]
    return "\n".join(lines) + "\n"


def poller_json(poller: PollerInfo) -> dict[str, Any]:
    """A poller for ``--json``: its heartbeat as it is, and what it abstains on and does not
    serve (empty when it reports none)."""
    info = {
        key: iso_time(value) if key.endswith("_at") and is_epoch(value) else value
        for key, value in poller.info.items()
    }
    return {
        "poller_id": poller.poller_id,
        "alive": poller.alive,
        "pools": list(info.get("pools", []) or []),  # the pools it observes
        "info": info,
        "abstentions": mapping_of(info.get("abstentions")),
        "unserved": mapping_of(info.get("unserved")),
        "fencing": mapping_of(info.get("fencing")),
        "problem": poller.problem or None,
    }


def is_epoch(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e11


def mapping_of(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------- hooks


def hooks_text(
    groups: Mapping[str, Sequence[Mapping[str, Any]]],
    dead: Sequence[tuple[str, Mapping[str, Any]]],
    total: int,
) -> str:
    """The consumer groups of each pool, then the dead letters (time, pool/id, kinds, error)."""
    rows: list[tuple[str, ...]] = [("POOL", "GROUP", "CONSUMERS", "PENDING", "LAST DELIVERED")]
    for pool, found in groups.items():
        for g in found:
            fields = ("group", "consumers", "pending", "last_delivered")
            rows.append((pool, *(str(g[f]) for f in fields)))
    lines = [table(rows).rstrip("\n") if len(rows) > 1 else "No mpp-hooks group reads any pool."]
    shown = f" (the last {len(dead)})" if total > len(dead) else ""
    lines.append(f"Dead letters: {total}{shown}")
    lines += [dead_letter_line(record) for _, record in dead]
    return "\n".join(lines) + "\n"


def dead_letter_line(record: Mapping[str, Any]) -> str:
    event = record.get("event")
    kinds = ",".join(event.get("kinds", ())) if isinstance(event, Mapping) else ""
    at = record.get("at")
    when = zoned_time(at) if isinstance(at, int | float) else "-"
    return (
        f"  {when}  {record.get('pool', '?')}/{record.get('id', '?')}  {kinds}"
        f"  after {record.get('attempts', '?')} attempts: {record.get('error', '')}"
    )


def hooks_json(
    groups: Mapping[str, Sequence[Mapping[str, Any]]],
    dead: Sequence[tuple[str, Mapping[str, Any]]],
    total: int,
) -> dict[str, Any]:
    return {
        "groups": [{"pool": pool, **g} for pool, found in groups.items() for g in found],
        "dead_letters_total": total,
        "dead_letters": [
            {
                "dead_letter_id": rid,
                **record,
                "at": iso_time(record["at"]) if isinstance(record.get("at"), int | float) else None,
            }
            for rid, record in dead
        ],
    }
