"""``mpp-admin pool create|apply|remove|show|list`` and ``mpp-admin pools``: pool configuration.

A pool is configured either from options (``NAME --primary H[:P] --secondary H[:P] ...``) or
from MPP's failoverpool string (``--failoverpool "name:..;primary:..;secondary:.."``). ``apply``
replaces an existing pool's configuration in one compare-and-set: nodes that stay keep their
state, new ones start UNKNOWN, and removing the ACTIVE node is refused unless ``--force``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

import typer

from mpp_agent.config import (
    PoolConfig,
    PoolConfigError,
    apply_config,
    parse_failoverpool,
    render_failoverpool,
)
from mpp_agent.model import (
    DEFAULT_INTERVAL,
    DEFAULT_MAX_REQUESTS,
    Event,
    EventKind,
    NodeId,
    NodeType,
    PoolState,
)
from mpp_agent.state import AdminRefused, AdminResult
from mpp_cli.errors import CliError, NotConfirmed, cli_errors
from mpp_cli.render import pool_config_json, pool_config_text, pools_json, pools_table, to_json
from mpp_cli.session import note_if_no_pools, run_admin, session_of

pool_app = typer.Typer(
    help="Create, replace, remove and show pool configurations.", no_args_is_help=True
)

NameArg = Annotated[
    str | None,
    typer.Argument(help="Pool name (not needed with --failoverpool).", show_default=False),
]
PrimaryOpt = Annotated[
    str | None, typer.Option("--primary", help="The PRIMARY node, host[:port].", show_default=False)
]
SecondaryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--secondary",
        help="A SECONDARY node, host[:port]; repeat in priority order.",
        show_default=False,
    ),
]
FailoverpoolOpt = Annotated[
    str | None,
    typer.Option(
        "--failoverpool",
        help="MPP's pool string: name:<pool>;primary:<h>[:<p>];secondary:<h>[:<p>];...",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def build_config(
    name: str | None,
    primary: str | None,
    secondaries: list[str] | None,
    failoverpool: str | None,
    interval: float,
    max_requests: int,
) -> PoolConfig:
    """The PoolConfig the options describe (PoolConfigError / CliError: exit 2)."""
    if failoverpool is not None:
        if primary is not None or secondaries:
            raise CliError("give either --failoverpool or --primary/--secondary, not both")
        config = parse_failoverpool(failoverpool, max_requests=max_requests, interval=interval)
        if name is not None and name != config.name:
            raise CliError(f"pool name {name!r} differs from name:{config.name} in --failoverpool")
        return config
    if name is None:
        raise CliError("give a pool NAME with --primary/--secondary, or --failoverpool")
    members = [(NodeId.parse(primary), NodeType.PRIMARY)] if primary is not None else []
    members += [(NodeId.parse(s), NodeType.SECONDARY) for s in secondaries or []]
    return PoolConfig(name, tuple(members), max_requests=max_requests, interval=interval)


@pool_app.command("create")
@cli_errors("pool create")
def create(
    ctx: typer.Context,
    name: NameArg = None,
    primary: PrimaryOpt = None,
    secondary: SecondaryOpt = None,
    failoverpool: FailoverpoolOpt = None,
    interval: Annotated[
        float, typer.Option(help="Seconds between ticks (rounds) of this pool.")
    ] = DEFAULT_INTERVAL,
    max_requests: Annotated[
        int, typer.Option(help="M: a node fails on its M-th consecutive failing tick.")
    ] = DEFAULT_MAX_REQUESTS,
) -> None:
    """Create a pool.

    Every node starts UNKNOWN/OK, never polled; the first ACTIVE appears on the 2nd tick.

    Example: mpp-admin pool create pool1 --primary 10.0.0.1 --secondary 10.0.0.2:3307
    """
    config = build_config(name, primary, secondary, failoverpool, interval, max_requests)
    session = session_of(ctx)
    pool = session.store.create_pool(config, actor=session.actor)
    typer.echo(f"OK: Pool {pool.name} created: {render_failoverpool(config)}")


@pool_app.command("apply")
@cli_errors("pool apply")
def apply(
    ctx: typer.Context,
    name: NameArg = None,
    primary: PrimaryOpt = None,
    secondary: SecondaryOpt = None,
    failoverpool: FailoverpoolOpt = None,
    interval: Annotated[
        float | None,
        typer.Option(help="Seconds between ticks; default: keep the pool's.", show_default=False),
    ] = None,
    max_requests: Annotated[
        int | None,
        typer.Option(help="M; default: keep the pool's.", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Allow removing the ACTIVE node.")] = False,
) -> None:
    """Replace a pool's configuration.

    Members, priority order and settings are replaced in one atomic change.

    Nodes that stay keep their state, status, R and message; new nodes start UNKNOWN; removed
    nodes leave the pool. Removing the ACTIVE node is refused unless --force.
    """
    parsed = build_config(
        name,
        primary,
        secondary,
        failoverpool,
        DEFAULT_INTERVAL if interval is None else interval,
        DEFAULT_MAX_REQUESTS if max_requests is None else max_requests,
    )
    session = session_of(ctx)

    def change(pool: PoolState) -> AdminResult:
        config = replace(
            parsed,
            interval=pool.interval if interval is None else interval,
            max_requests=pool.max_requests if max_requests is None else max_requests,
        )
        try:
            after = apply_config(pool, config, force=force)
        except PoolConfigError as exc:  # removing the ACTIVE node: MPP-style refusal
            raise AdminRefused(str(exc)) from None
        text = render_failoverpool(config)
        event = Event(EventKind.CONFIGURE, pool.name, message=f"configuration applied: {text}")
        return AdminResult(after, f"OK: Pool {pool.name} configured: {text}", (event,))

    result = run_admin(session.store, parsed.name, change, session.actor)
    typer.echo(result.output)


@pool_app.command("remove")
@cli_errors("pool remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Pool to remove.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove a pool with its state and history.

    Asks for confirmation unless --yes.
    """
    store = session_of(ctx).store
    pool = store.load_pool(name)
    if not yes:
        active = ", ".join(str(n.node) for n in pool.active_nodes) or "none"
        question = f"Remove pool {name} ({len(pool.nodes)} nodes, ACTIVE: {active})?"
        try:
            confirmed = typer.confirm(question, default=False, err=True)
        except typer.Abort:
            confirmed = False
        if not confirmed:
            raise NotConfirmed(f"pool {name} not removed (not confirmed; use --yes)")
    store.remove_pool(name)
    typer.echo(f"OK: Pool {name} removed.")


@pool_app.command("show")
@cli_errors("pool show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Pool to show.")],
    json_output: JsonOpt = False,
) -> None:
    """Show a pool's configuration.

    Members in priority order, settings, and the failoverpool string that recreates it.
    """
    pool = session_of(ctx).store.load_pool(name)
    typer.echo(
        to_json(pool_config_json(pool)) if json_output else pool_config_text(pool), nl=json_output
    )


@pool_app.command("list")
@cli_errors("pools")
def list_pools(ctx: typer.Context, json_output: JsonOpt = False) -> None:
    """List pools with their status and ACTIVE node.

    Same as 'mpp-admin pools'.
    """
    pools = session_of(ctx).store.load_pools()
    note_if_no_pools(session_of(ctx).store, len(pools), "pools")
    if json_output:
        typer.echo(to_json(pools_json(pools)))
    elif pools:
        typer.echo(pools_table(pools), nl=False)
    else:
        typer.echo("No pools.")
