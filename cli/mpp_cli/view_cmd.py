"""Read-only commands: ``list``, ``report``, ``is-active``, ``history``, ``pollers``.

Each reads plain data from the store and renders it once (render.py): MPP's text for people,
one JSON document with ``--json``.
"""

from __future__ import annotations

import re
import time
from enum import StrEnum
from typing import Annotated, Any

import typer

from mpp_agent.model import NodeState, State
from mpp_agent.store import EVENTS_MAXLEN, Store
from mpp_cli.errors import CliError, ExitCode, UnknownNode, cli_errors
from mpp_cli.render import (
    haproxy_server_lines,
    history_json,
    history_line,
    listing,
    listing_json,
    override_text,
    pollers_text,
    report_line,
    to_json,
    to_json_line,
)
from mpp_cli.session import (
    NodeArg,
    PoolOpt,
    locate,
    note_if_no_pools,
    parse_node,
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
) -> None:
    """MPP's listing of every node.

    Every pool (or only --pool), nodes in priority order, overrides on an 'O' line.
    """
    store = session_of(ctx).store
    pools = [store.load_pool(pool)] if pool is not None else store.load_pools()
    note_if_no_pools(store, len(pools), "list")
    typer.echo(to_json(listing_json(pools)) if json_output else listing(pools), nl=json_output)


@cli_errors("report")
def report(ctx: typer.Context, node: NodeArg, pool: PoolOpt = None) -> None:
    """MPP's report line for a node.

    E.g. 'OK/ACTIVE (PRIMARY)'; an override, if any, is printed on the next line.
    """
    found, member = locate(session_of(ctx).store, parse_node(node), pool)
    typer.echo(report_line(found, member))
    if member.override is not None:
        typer.echo(override_text(member.override))


@cli_errors("is-active")
def is_active(ctx: typer.Context, node: NodeArg, pool: PoolOpt = None) -> None:
    """Print OK (exit 0) if the node is ACTIVE, else NO (exit 1).

    Unknown nodes answer NO too.
    An unexpired override counts: the answer is what the agent tells HAProxy. Usable as a
    keepalived or LVS check script.
    """
    store = session_of(ctx).store
    try:
        _, member = locate(store, parse_node(node), pool)
    except UnknownNode:
        member = None
    if member is not None and effective_state(member, store.server_time()) is State.ACTIVE:
        typer.echo("OK")
        return
    typer.echo("NO")
    raise typer.Exit(ExitCode.NO)


def effective_state(node: NodeState, now: float) -> State:
    override = node.override
    if override is not None and not override.is_expired(now):
        return override.state
    return node.state


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
) -> None:
    """Show transitions and admin actions, oldest first.

    Time, pool, kind, node, from -> to, actor (a poller id or admin:<user>) and message.
    """
    store = session_of(ctx).store
    names = [store.load_pool(pool).name] if pool is not None else store.pool_names()
    note_if_no_pools(store, len(names), "history")
    newest = {name: store.last_events(name, limit) for name in names}
    events = sorted(
        ((name, i, e) for name, rows in newest.items() for i, e in rows),
        key=time_order,
    )[-limit:]
    if json_output and not follow:
        typer.echo(to_json({"events": [history_json(i, e) for _, i, e in events]}))
        return
    for _, event_id, event in events:
        print_event(event_id, event, json_output)
    if follow:
        # Follow from what was read, not from a second read: nothing committed between is lost.
        last = {name: rows[-1][0] if rows else "0-0" for name, rows in newest.items()}
        try:
            follow_events(store, pool, last, json_output)
        except KeyboardInterrupt:
            return


def stream_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


def time_order(row: tuple[str, str, dict[str, Any]]) -> tuple[float, int, int]:
    """Events of several pools in time order: by Redis time, then stream id (ties in one ms)."""
    _, event_id, event = row
    return (float(event.get("at") or 0.0), *stream_key(event_id))


def follow_events(store: Store, pool: str | None, last: dict[str, str], as_json: bool) -> None:
    while True:
        time.sleep(FOLLOW_POLL_SECONDS)
        names = [pool] if pool is not None else store.pool_names()
        fresh = [
            (name, i, e)
            for name in names
            for i, e in store.events(name, 1000, last.get(name, "0-0"))
        ]
        fresh.sort(key=time_order)
        for name, event_id, event in fresh:
            last[name] = event_id
            print_event(event_id, event, as_json)


def print_event(event_id: str, event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(to_json_line(history_json(event_id, event)))
    else:
        typer.echo(history_line(event))


@cli_errors("pollers")
def pollers(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """Show the pollers, their liveness and last cycle."""
    store = session_of(ctx).store
    now = store.server_time()
    found = sorted(store.pollers(), key=lambda p: p.poller_id)
    if json_output:
        rows = [{"poller_id": p.poller_id, "alive": p.alive, "info": p.info} for p in found]
        typer.echo(to_json({"now": now, "pollers": rows}))
    else:
        typer.echo(pollers_text([(p.poller_id, p.alive, p.info) for p in found], now), nl=False)


class Role(StrEnum):
    RW = "rw"
    RO = "ro"


AGENT_INTER_RE = re.compile(r"^\d+(us|ms|s|m|h|d)?$")


@cli_errors("haproxy-config")
def haproxy_config(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument(help="The pool.")],
    role: Annotated[
        Role, typer.Option("--role", help="rw: only the ACTIVE node is up; ro: the STANDBYs.")
    ] = Role.RW,
    agent_port: Annotated[
        int, typer.Option("--agent-port", min=1, max=65535, help="mpp-agent's port.")
    ] = 9777,
    agent_addr: Annotated[str, typer.Option("--agent-addr", help="mpp-agent's address.")] = (
        "127.0.0.1"
    ),
    agent_inter: Annotated[
        str, typer.Option("--agent-inter", help="HAProxy agent-check interval (1s, 500ms).")
    ] = "1s",
) -> None:
    """Print HAProxy server lines for a pool.

    Each line carries the agent-check that asks mpp-agent about the node, ready to paste into
    a backend section.
    """
    if not AGENT_INTER_RE.match(agent_inter):
        raise CliError(f"bad --agent-inter {agent_inter!r}: use HAProxy time, e.g. 1s or 500ms")
    if not agent_addr or any(c.isspace() or c in "\"'#\\" for c in agent_addr):
        raise CliError(f"bad --agent-addr {agent_addr!r}")
    found = session_of(ctx).store.load_pool(pool)
    text = haproxy_server_lines(found, role.value, agent_addr, agent_port, agent_inter)
    typer.echo(text, nl=False)
