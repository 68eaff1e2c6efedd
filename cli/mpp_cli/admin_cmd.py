"""Commands that change a pool's state: ``recover``, ``activate-primary``, ``failover``,
``delete``, ``override``, ``release``.

Each is one pure transition of ``mpp_agent.state`` applied through the store's compare-and-set
(atomic against concurrent poller ticks), and prints MPP's text for it. A refusal changes
nothing and exits 4; the event recorded names the actor ``admin:<user>``.
"""

from __future__ import annotations

import re
from typing import Annotated

import typer

from mpp_agent.model import Override, State, Status
from mpp_agent.state import (
    activate_primary,
    delete_node,
    failover_to,
    recover_node,
    recover_pool,
    release_override,
    set_override,
)
from mpp_cli.errors import CliError, cli_errors
from mpp_cli.session import NodeArg, PoolOpt, locate, parse_node, run_admin, session_of

DURATION_RE = re.compile(r"^(\d{1,12}(?:\.\d{1,9})?)([smhd]?)$")
DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_OVERRIDE_SECONDS = 366 * 86400  # --for: at most a year (and a day)


@cli_errors("recover")
def recover(
    ctx: typer.Context,
    node: Annotated[
        str | None,
        typer.Argument(
            help="The node to recover; without it, --pool resets the pool status.",
            show_default=False,
        ),
    ] = None,
    pool: PoolOpt = None,
) -> None:
    """Recover a node, or reset a pool's status.

    A node goes back to UNKNOWN/OK_WARN with R=0 and re-enters on the next ticks; with only
    --pool, the pool status goes from FAIL back to OK.

    Examples: mpp-admin recover 10.0.0.1 | mpp-admin recover --pool pool1
    """
    session = session_of(ctx)
    store = session.store
    if node is None:
        if pool is None:
            raise CliError("give a NODE to recover, or --pool NAME to reset a pool's status")
        result = run_admin(store, pool, recover_pool, session.actor)
    else:
        node_id = parse_node(node)
        found, _ = locate(store, node_id, pool)
        result = run_admin(store, found.name, lambda p: recover_node(p, node_id), session.actor)
    typer.echo(result.output)


@cli_errors("activate-primary")
def activate_primary_cmd(
    ctx: typer.Context, pool: Annotated[str, typer.Argument(help="The pool.")]
) -> None:
    """Make the pool's STANDBY primary ACTIVE now.

    An ACTIVE secondary steps down to STANDBY in the same change: never two ACTIVE nodes.
    """
    session = session_of(ctx)
    now = session.store.server_time()  # the catch-up gate of the new ACTIVE counts from here
    result = run_admin(session.store, pool, lambda p: activate_primary(p, now), session.actor)
    typer.echo(result.output)


@cli_errors("failover")
def failover_cmd(
    ctx: typer.Context,
    pool: Annotated[str, typer.Argument(help="The pool.")],
    to: Annotated[str, typer.Option("--to", help="The node to promote.", show_default=False)],
    force: Annotated[
        bool,
        typer.Option("--force", help="Promote a node that is not STANDBY (e.g. FAILED_ONLINE)."),
    ] = False,
) -> None:
    """Promote a chosen node of a pool to ACTIVE by hand.

    The node must be STANDBY (--force: also UNKNOWN or FAILED_*). The ACTIVE node, if any,
    steps down to STANDBY in the same atomic change. Prints what the node lacks of every
    other node's last known position; it takes writes once it has applied what it had
    received (at the latest after the pool's catch-up timeout).

    Example: mpp-admin failover pool1 --to 10.0.0.2
    """
    session = session_of(ctx)
    node_id = parse_node(to)
    now = session.store.server_time()
    result = run_admin(
        session.store, pool, lambda p: failover_to(p, node_id, now, force=force), session.actor
    )
    typer.echo(result.output)


@cli_errors("delete")
def delete(ctx: typer.Context, node: NodeArg, pool: PoolOpt = None) -> None:
    """Delete a node from its pool.

    Its state and its place in the configuration both go.
    """
    session = session_of(ctx)
    node_id = parse_node(node)
    found, _ = locate(session.store, node_id, pool)
    result = run_admin(session.store, found.name, lambda p: delete_node(p, node_id), session.actor)
    typer.echo(result.output)


def parse_duration(text: str) -> float:
    """``30s``, ``10m``, ``2h``, ``1d`` or plain seconds: more than 0, at most 366 days."""
    match = DURATION_RE.match(text.strip())
    if match is None:
        raise CliError(f"bad duration {text!r}: use e.g. 30s, 10m, 2h or 1d")
    seconds = float(match.group(1)) * DURATION_UNITS[match.group(2)]
    if not 0 < seconds <= MAX_OVERRIDE_SECONDS:
        raise CliError(f"duration {text!r} out of range: more than 0 and at most 366d")
    return seconds


@cli_errors("override")
def override(
    ctx: typer.Context,
    node: NodeArg,
    state: Annotated[
        State, typer.Option("--state", case_sensitive=False, help="The state to answer with.")
    ],
    reason: Annotated[str, typer.Option("--reason", help="Why (shown by list, report, agent).")],
    status: Annotated[
        Status | None,
        typer.Option(
            "--status", case_sensitive=False, help="The status to answer with.", show_default=False
        ),
    ] = None,
    for_: Annotated[
        str | None,
        typer.Option(
            "--for",
            help="Expire after this long: 30s, 10m, 2h, 1d (at most 366d).",
            show_default=False,
        ),
    ] = None,
    pool: PoolOpt = None,
) -> None:
    """Override a node's state for the agent.

    Like MPP's proxy admin --set, with a reason and an optional expiry; the state machine keeps
    running underneath. Undo with 'release'.

    Example: mpp-admin override 10.0.0.2 --state STANDBY --reason "kernel upgrade" --for 2h
    """
    if not reason.strip():
        raise CliError("--reason must say why")
    duration = parse_duration(for_) if for_ is not None else None
    session = session_of(ctx)
    store = session.store
    node_id = parse_node(node)
    found, _ = locate(store, node_id, pool)
    now = store.server_time()
    pinned = Override(
        state=state,
        status=status,
        reason=reason.strip(),
        set_by=session.actor,
        set_at=now,
        expires_at=None if duration is None else now + duration,
    )
    result = run_admin(store, found.name, lambda p: set_override(p, node_id, pinned), session.actor)
    typer.echo(result.output)


@cli_errors("release")
def release(ctx: typer.Context, node: NodeArg, pool: PoolOpt = None) -> None:
    """Release a node's override.

    The agent answers from the state machine again.
    """
    session = session_of(ctx)
    node_id = parse_node(node)
    found, _ = locate(session.store, node_id, pool)
    result = run_admin(
        session.store, found.name, lambda p: release_override(p, node_id), session.actor
    )
    typer.echo(result.output)
