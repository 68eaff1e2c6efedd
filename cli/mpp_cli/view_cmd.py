"""Read-only commands: ``list``, ``report``, ``is-active``, ``history``, ``pollers``.

Each reads plain data from the store and renders it once (render.py): MPP's text for people,
one JSON document with ``--json``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer

from mpp_agent.model import NodeId, PoolState
from mpp_agent.rounds import under_observed
from mpp_agent.routing import NodeRoute, route
from mpp_agent.store import EVENTS_MAXLEN, BadKey, PollerInfo, Store
from mpp_cli.admin_cmd import parse_duration
from mpp_cli.errors import CliError, ExitCode, UnknownNode, cli_errors, report_unusable
from mpp_cli.haproxy_config import (
    DEFAULT_CHECK_USER,
    AgentAddress,
    Role,
    check_bind,
    check_user_name,
    haproxy_time,
    section,
    server_lines,
)
from mpp_cli.render import (
    history_json,
    history_line,
    iso_time,
    lag_of,
    listing,
    listing_json,
    member_json,
    override_text,
    poller_json,
    pollers_text,
    report_line,
    route_json,
    routing_note,
    to_json,
    to_json_line,
    under_observed_text,
)
from mpp_cli.seen import check_versions
from mpp_cli.session import (
    NodeArg,
    PoolOpt,
    Session,
    locate,
    note_if_no_pools,
    parse_node,
    readable_pools,
    session_of,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
FOLLOW_POLL_SECONDS = 0.5


@cli_errors("list")
def list_(
    ctx: typer.Context,
    pool: Annotated[
        str | None, typer.Option("--pool", "-p", help="Only this pool.", show_default=False)
    ] = None,
    json_output: JsonOpt = False,
    wide: Annotated[
        bool,
        typer.Option(
            "--wide", "-w", help="Add replication columns: read_only, lag, caught up, behind."
        ),
    ] = False,
) -> None:
    """MPP's listing of every node.

    Every pool (or only --pool), nodes in priority order, overrides on an 'O' line, why the
    monitor could not judge a node on an 'M' line, a '!' line under a pool whose state
    went backwards (Redis has a lower version than mpp-admin saw before: a Redis failover
    lost commits) and a 'D' line under a pool with no failover candidate. --json adds each
    node's replication lag, read_only, caught_up and behind; --wide shows them as columns.
    """
    session = session_of(ctx)
    store = session.store
    pools, unusable = readable_pools(store, pool)
    note_if_no_pools(store, len(pools) + len(unusable), "list")
    now = store.server_time()
    if json_output:
        typer.echo(to_json(pools_document(session, pools, now, "list")))
    else:
        backwards = check_versions(session.redacted_url, session.namespace, pools)
        typer.echo(listing(pools, now, backwards, wide), nl=False)
    report_unusable("list", unusable)


def pools_document(session: Session, pools: list[PoolState], now: float, command: str) -> Any:
    """The JSON document of ``list --json`` and ``pools --json``, with each node's lag from its
    pool's probe metrics (an unusable metrics hash only makes its pool's lags null) and each
    pool's ``went_backwards`` (null, or what went backwards)."""
    store = session.store
    metrics = store.read_metrics([p.name for p in pools])
    readable = {n: m for n, m in metrics.items() if not isinstance(m, BadKey)}
    report_unusable(command, [m for m in metrics.values() if isinstance(m, BadKey)], fatal=False)
    backwards = check_versions(session.redacted_url, session.namespace, pools)
    return listing_json(pools, now, readable, backwards)


@cli_errors("report")
def report(
    ctx: typer.Context, node: NodeArg, pool: PoolOpt = None, json_output: JsonOpt = False
) -> None:
    """MPP's report line for a node.

    E.g. 'OK/ACTIVE (PRIMARY)'; an override, if any, is printed on the next line, and what
    the node answers when that differs from its state (the writer pinned to another node).
    """
    store = session_of(ctx).store
    found, member = locate(store, parse_node(node), pool)
    now = store.server_time()
    decided = node_route(found, member.node, now)
    if json_output:
        metrics = store.read_metrics([found.name])[found.name]
        lag = None if isinstance(metrics, BadKey) else lag_of(metrics.get(str(member.node), {}))
        document = member_json(found, member, decided, lag)
        typer.echo(to_json({"pool": found.name, **document}))
        return
    typer.echo(report_line(found, member))
    if member.override is not None:
        typer.echo(override_text(member.override))
    if routing_note(member, decided, now):
        typer.echo(routing_note(member, decided, now))


@cli_errors("is-active")
def is_active(
    ctx: typer.Context, node: NodeArg, pool: PoolOpt = None, json_output: JsonOpt = False
) -> None:
    """Print OK (exit 0) if the node takes writes, else NO (exit 1).

    The answer is the agent's: OK exactly when mpp-agent tells HAProxy 'up ready' for the
    node on the rw backend (overrides and writer pinning applied). Unknown nodes answer NO.
    Usable as a keepalived or LVS check script.
    """
    store = session_of(ctx).store
    target = parse_node(node)
    try:
        found, _ = locate(store, target, pool)
    except UnknownNode:
        found = None
    decided = None if found is None else node_route(found, target, store.server_time())
    active = decided is not None and decided.takes_writes
    if json_output:
        document = {
            "node": str(target),
            "pool": None if found is None else found.name,
            "active": active,
            "route": None if decided is None else route_json(decided),
        }
        typer.echo(to_json(document))
    else:
        typer.echo("OK" if active else "NO")
    if not active:
        raise typer.Exit(ExitCode.NO)


def node_route(pool: PoolState, node: NodeId, now: float) -> NodeRoute:
    """The routing decision for a member of ``pool`` (the agent's, at Redis time ``now``)."""
    decided = route(pool, now).find(node)
    assert decided is not None  # locate() found it in this pool
    return decided


@cli_errors("history")
def history(
    ctx: typer.Context,
    pool: Annotated[
        str | None, typer.Option("--pool", "-p", help="Only this pool.", show_default=False)
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events until Ctrl-C.")
    ] = False,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="One JSON document (with --follow: one JSON line per event)."),
    ] = False,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=EVENTS_MAXLEN, help="Events to show.")
    ] = 50,
    node: Annotated[
        str | None,
        typer.Option("--node", help="Only events of this node, host[:port].", show_default=False),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only events since a time: ISO 8601 (2026-12-01T18:00:00Z; no zone: local "
            "time) or a duration ago (30m, 2h, 1d).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show transitions and admin actions, oldest first.

    Time, pool, kind, node, from -> to, actor (a poller id or admin:<user>) and message.
    """
    store = session_of(ctx).store
    only = EventFilter(
        None if node is None else str(parse_node(node)),
        None if since is None else since_time(since, store.server_time()),
    )
    names = [store.load_pool(pool).name] if pool is not None else store.pool_names()
    note_if_no_pools(store, len(names), "history")
    newest, unusable = newest_events(store, names, limit, only)
    events = sorted(
        ((name, i, e) for name, rows in newest.items() for i, e in rows),
        key=time_order,
    )[-limit:]
    if json_output and not follow:
        typer.echo(to_json({"events": [history_json(i, e) for _, i, e in events]}))
        report_unusable("history", list(unusable.values()))
        return
    for _, event_id, event in events:
        print_event(event_id, event, json_output)
    if not follow:
        report_unusable("history", list(unusable.values()))
        return
    report_unusable("history", list(unusable.values()), fatal=False)
    # Follow from what was read, not from a second read: nothing committed between is lost.
    last = {name: rows[-1][0] if rows else "0-0" for name, rows in newest.items()}
    try:
        follow_events(store, pool, last, json_output, only, set(unusable))
    except KeyboardInterrupt:
        return


Rows = list[tuple[str, dict[str, Any]]]


def newest_events(
    store: Store, names: list[str], limit: int, only: EventFilter
) -> tuple[dict[str, Rows], dict[str, BadKey]]:
    """The newest ``limit`` events of each pool, and the pools whose stream is unusable."""
    newest: dict[str, Rows] = {}
    unusable: dict[str, BadKey] = {}
    for name in names:
        try:
            newest[name] = only.read(store, name, limit)
        except BadKey as exc:
            unusable[name] = exc
    return newest, unusable


def stream_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def time_order(row: tuple[str, str, dict[str, Any]]) -> tuple[float, int, int]:
    """Events of several pools in time order: by Redis time, then stream id (ties in one ms)."""
    _, event_id, event = row
    return (float(event.get("at") or 0.0), *stream_key(event_id))


def follow_events(
    store: Store,
    pool: str | None,
    last: dict[str, str],
    as_json: bool,
    only: EventFilter,
    unusable: set[str],
) -> None:
    """Print new events as they come; a pool whose stream is unusable is reported once (when
    it becomes so) and followed again once it is readable."""
    while True:
        time.sleep(FOLLOW_POLL_SECONDS)
        names = [pool] if pool is not None else store.pool_names()
        fresh = []
        for name in names:
            try:
                rows = store.events(name, 1000, last.get(name, "0-0"))
            except BadKey as exc:
                if name not in unusable:
                    report_unusable("history", [exc], fatal=False)
                unusable.add(name)
                continue
            unusable.discard(name)
            fresh += [(name, i, e) for i, e in rows]
        fresh.sort(key=time_order)
        for name, event_id, event in fresh:
            last[name] = event_id
            if only.matches(event):
                print_event(event_id, event, as_json)


# Events read per pool when filtering (the streams are capped well below this).
FILTER_SCAN_LIMIT = 100_000


@dataclass(frozen=True)
class EventFilter:
    """``history --node`` and ``--since``: which events to show."""

    node: str | None = None
    since: float | None = None  # Redis time, epoch seconds

    def matches(self, event: dict[str, Any]) -> bool:
        if self.node is not None and event.get("node") != self.node:
            return False
        at = event.get("at")
        return self.since is None or (isinstance(at, int | float) and at >= self.since)

    def read(self, store: Store, pool: str, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """The newest ``limit`` matching events of a pool, oldest first."""
        if self.node is None and self.since is None:
            return store.last_events(pool, limit)
        # Stream ids are Redis time in ms: start just before --since.
        after = "-" if self.since is None else f"{max(0, int(self.since * 1000) - 1)}-0"
        rows = store.events(pool, FILTER_SCAN_LIMIT, after)
        return [(i, e) for i, e in rows if self.matches(e)][-limit:]


def since_time(text: str, now: float) -> float:
    """``--since``: an ISO 8601 time (local time when it has no zone) or a duration ago."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            return now - parse_duration(text)
        except CliError:
            raise CliError(
                f"bad --since {text!a}: an ISO 8601 time (2026-12-01T18:00:00Z) or a "
                f"duration ago (30m, 2h, 1d)"
            ) from None
    return moment.timestamp()  # a naive time is local time, as the text output shows


def print_event(event_id: str, event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(to_json_line(history_json(event_id, event)))
    else:
        typer.echo(history_line(event))


@cli_errors("pollers")
def pollers(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """Show the pollers: liveness, last cycle, the pools each observes, what each abstains on
    and does not serve; then the pools observed by fewer live pollers than their K."""
    store = session_of(ctx).store
    now = store.server_time()
    found = sorted(store.pollers(), key=lambda p: p.poller_id)
    lacking = lacking_observers(store.load_pools(), found)
    if json_output:
        doc = {
            "now": iso_time(now),
            "pollers": [poller_json(p) for p in found],
            "under_observed": [
                {"pool": name, "observers": seen, "wanted": wanted}
                for name, (seen, wanted) in lacking.items()
            ],
        }
        typer.echo(to_json(doc))
    else:
        typer.echo(pollers_text(found, now) + under_observed_text(lacking), nl=False)


def lacking_observers(
    pools: Sequence[PoolState], found: Sequence[PollerInfo]
) -> dict[str, tuple[int, int]]:
    """The pools observed (by the live pollers' heartbeats) by fewer pollers than their K."""
    live = [p for p in found if p.alive]
    observed = Counter(name for p in live for name in p.info.get("pools", []) or [])
    sharing = sum(1 for p in live if not p.info.get("pinned"))
    return under_observed({p.name: p.observers for p in pools}, observed, sharing)


@cli_errors("haproxy-config")
def haproxy_config(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument(help="The pool.")],
    role: Annotated[
        Role,
        typer.Option(
            "--role",
            case_sensitive=False,
            help="rw: only the node taking writes is up; ro: the readers, by weight.",
        ),
    ] = Role.RW,
    agent_port: Annotated[
        int, typer.Option("--agent-port", min=1, max=65535, help="mpp-agent's port.")
    ] = 9777,
    agent_addr: Annotated[str, typer.Option("--agent-addr", help="mpp-agent's address.")] = (
        "127.0.0.1"
    ),
    agent_inter: Annotated[
        str,
        typer.Option(
            "--agent-inter",
            help="Agent-check interval: 1s, 500ms; a bare number is seconds (100ms to 1h).",
        ),
    ] = "1s",
    bind: Annotated[
        str | None,
        typer.Option(
            "--bind",
            help="Print a 'listen' section bound here (e.g. 0.0.0.0:6446), not a 'backend'.",
            show_default=False,
        ),
    ] = None,
    check_user: Annotated[
        str,
        typer.Option(
            "--check-user",
            help="MySQL user of HAProxy's 'option mysql-check' ('' for a TCP check only).",
        ),
    ] = DEFAULT_CHECK_USER,
    servers_only: Annotated[
        bool,
        typer.Option("--servers-only", help="Only the server lines, each with every option."),
    ] = False,
) -> None:
    """Print the pool's HAProxy section, with the server options of haproxy/haproxy.cfg.

    Checks, 'on-marked-down shutdown-sessions', 'option mysql-check', the ro weights and an
    agent-check per server asking mpp-agent about it.
    """
    agent = AgentAddress(agent_addr, agent_port, haproxy_time(agent_inter))
    if bind is not None:
        check_bind(bind)
    check_user_name(check_user)
    found = session_of(ctx).store.load_pool(pool)
    if servers_only:
        text = server_lines(found, role, agent)
    else:
        text = section(found, role, agent, bind=bind, check_user=check_user)
    typer.echo(text, nl=False)
