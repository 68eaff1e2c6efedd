"""``mpp-admin pool create|apply|remove|show|list`` and ``mpp-admin pools``: pool configuration.

A pool is configured either from options (``NAME --primary H[:P] --secondary H[:P] ...``) or
from MPP's failoverpool string (``--failoverpool "name:..;primary:..;secondary:.."``). ``apply``
replaces an existing pool's configuration in one compare-and-set: nodes that stay keep their
state, new ones start UNKNOWN, and removing the ACTIVE node is refused unless ``--force``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Annotated

import typer

from mpp_agent.config import (
    PoolConfig,
    PoolConfigError,
    apply_config,
    config_of,
    parse_failoverpool,
    render_failoverpool,
    second_primary,
    settings_of,
    validate_pool_name,
)
from mpp_agent.model import (
    DEFAULT_CATCHUP_TIMEOUT,
    DEFAULT_INTERVAL,
    DEFAULT_KEEP_CONNECTIONS,
    DEFAULT_MAX_FAILOVER_LAG,
    DEFAULT_MAX_LAG,
    DEFAULT_MAX_REQUESTS,
    DEFAULT_OBSERVERS,
    Event,
    EventKind,
    Failback,
    Fence,
    NodeId,
    NodeType,
    PoolState,
    StaleWriter,
)
from mpp_agent.state import AdminRefused, AdminResult
from mpp_agent.store import BadKey, PollerInfo, Store
from mpp_cli.errors import CliError, NotConfirmed, cli_errors, report_unusable
from mpp_cli.render import pool_config_json, pool_config_text, pools_table, to_json
from mpp_cli.session import note_if_no_pools, readable_pools, run_admin, session_of
from mpp_cli.view_cmd import pools_document

pool_app = typer.Typer(
    help="Create, replace, remove and show pool configurations.", no_args_is_help=True
)

NameArg = Annotated[
    str | None,
    typer.Argument(help="Pool name (not needed with --failoverpool).", show_default=False),
]
PrimaryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--primary",
        help="The PRIMARY node, host[:port] or [ipv6]:port (at most one).",
        show_default=False,
    ),
]
SecondaryOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--secondary",
        help="A SECONDARY node, host[:port] or [ipv6]:port; repeat in priority order.",
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
MAX_LAG_HELP = "Replication lag (seconds) above which a node's probe is a request error."
STALE_WRITER_HELP = (
    "What an agent cut off from this pool's state does with the writer: keep (answer it up "
    "ready: a broken monitor never takes down a healthy database, two writers possible) or "
    "drain (stop its writes from the earliest moment the pollers could have failed it over)."
)
CATCHUP_HELP = (
    "Longest wait (seconds) for a new ACTIVE to apply what it had received before it takes "
    "writes; past it writes open with a WARNING event."
)
FENCE_HELP = (
    "read_only: pollers given a fencing account (mpp-poller --fence-user) keep every node that "
    "takes no writes read_only=ON and set the writer read_only=OFF, which takes writes only "
    "once it reports read_only=OFF; off: read_only is never touched."
)
OBSERVERS_HELP = (
    "K: how many live pollers probe this pool each round (chosen by hashing, so adding "
    "pollers adds capacity); 0 = every live poller."
)
KEEP_CONNECTIONS_HELP = (
    "Seconds a poller may keep its connection to a node for the next probes, logging in afresh "
    "after that or when the connection was lost (less CPU per probe, on the poller and the "
    "node); 0 = a login per probe, which also proves every round that the node accepts new "
    "connections."
)
FAILOVER_LAG_HELP = (
    "A STANDBY that lagged more than this (seconds) when the ACTIVE failed does not take over "
    "by itself (0 = off)."
)


FAILBACK_HELP = (
    "auto: a recovered PRIMARY takes ACTIVE back by itself (MPP's hand-back); manual: it stays "
    "STANDBY until activate-primary or switchover."
)


def build_config(
    name: str | None,
    primaries: list[str] | None,
    secondaries: list[str] | None,
    failoverpool: str | None,
    interval: float,
    max_requests: int,
    max_lag: float,
    stale_writer: StaleWriter = StaleWriter.KEEP,
) -> PoolConfig:
    """The PoolConfig the options describe (PoolConfigError / CliError: exit 2)."""
    if failoverpool is not None:
        if primaries or secondaries:
            raise CliError("give either --failoverpool or --primary/--secondary, not both")
        config = parse_failoverpool(failoverpool, max_requests=max_requests, interval=interval)
        if name is not None and name != config.name:
            raise CliError(f"pool name {name!r} differs from name:{config.name} in --failoverpool")
        return replace(config, max_lag=max_lag, stale_writer=stale_writer)
    if name is None:
        raise CliError("give a pool NAME with --primary/--secondary, or --failoverpool")
    validate_pool_name(name)
    members = [(member("--primary", p), NodeType.PRIMARY) for p in primaries or []]
    if len(members) > 1:
        raise second_primary(members[1][0])
    members += [(member("--secondary", s), NodeType.SECONDARY) for s in secondaries or []]
    return PoolConfig(
        name,
        tuple(members),
        max_requests=max_requests,
        interval=interval,
        max_lag=max_lag,
        stale_writer=stale_writer,
    )


def interval_warnings(interval: float, pollers: Iterable[PollerInfo]) -> list[str]:
    """What to tell an operator whose pool interval is shorter than live pollers can serve
    (each poller's heartbeat says its ``min_interval``): they will not poll the pool."""
    short = {
        p.poller_id: float(p.info["min_interval"])
        for p in pollers
        if p.alive and is_seconds(p.info.get("min_interval"))
    }
    slow = {pid: least for pid, least in short.items() if interval < least}
    if not slow:
        return []
    names = ", ".join(f"{pid} (at least {least:g}s)" for pid, least in sorted(slow.items()))
    text = f"warning: interval {interval:g}s is shorter than live poller(s) {names} can serve"
    if len(slow) == len(short):
        return [f"{text}: no live poller will poll this pool; use a longer --interval"]
    return [f"{text}: they will not poll this pool"]


def is_seconds(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def warn_about_interval(store: Store, interval: float) -> None:
    """Warnings on stderr only: the pool is configured (exit 0) either way."""
    try:
        pollers = store.pollers()
    except BadKey as exc:
        typer.echo(f"warning: cannot tell which intervals the pollers serve: {exc}", err=True)
        return
    for text in interval_warnings(interval, pollers):
        typer.echo(text, err=True)


def member(option: str, text: str) -> NodeId:
    """One node of ``--primary`` / ``--secondary``; a list in one option is refused."""
    if "," in text or " " in text.strip():
        raise CliError(
            f"{option} takes one node, not {text!a}: repeat {option} for each node "
            f"(e.g. {option} 10.0.0.6 {option} 10.0.0.7)"
        )
    return NodeId.parse(text)


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
    max_lag: Annotated[float, typer.Option(help=MAX_LAG_HELP)] = DEFAULT_MAX_LAG,
    stale_writer: Annotated[
        StaleWriter, typer.Option(help=STALE_WRITER_HELP, case_sensitive=False)
    ] = StaleWriter.KEEP,
    catchup_timeout: Annotated[float, typer.Option(help=CATCHUP_HELP)] = DEFAULT_CATCHUP_TIMEOUT,
    max_failover_lag: Annotated[
        float, typer.Option(help=FAILOVER_LAG_HELP)
    ] = DEFAULT_MAX_FAILOVER_LAG,
    failback: Annotated[
        Failback, typer.Option(help=FAILBACK_HELP, case_sensitive=False)
    ] = Failback.AUTO,
    fence: Annotated[Fence, typer.Option(help=FENCE_HELP, case_sensitive=False)] = Fence.OFF,
    observers: Annotated[int, typer.Option(help=OBSERVERS_HELP)] = DEFAULT_OBSERVERS,
    keep_connections: Annotated[
        float, typer.Option(help=KEEP_CONNECTIONS_HELP)
    ] = DEFAULT_KEEP_CONNECTIONS,
) -> None:
    """Create a pool.

    Every node starts UNKNOWN/OK, never polled; the first ACTIVE appears on the 2nd tick.

    Example: mpp-admin pool create pool1 --primary 10.0.0.1 --secondary 10.0.0.2:3307
    """
    config = build_config(
        name, primary, secondary, failoverpool, interval, max_requests, max_lag, stale_writer
    )
    config = replace(
        config,
        catchup_timeout=catchup_timeout,
        max_failover_lag=max_failover_lag,
        failback=failback,
        fence=fence,
        observers=observers,
        keep_connections=keep_connections,
    )
    session = session_of(ctx)
    pool = session.store.create_pool(config, actor=session.actor)
    typer.echo(f"OK: Pool {pool.name} created: {render_failoverpool(config)}")
    warn_about_interval(session.store, pool.interval)


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
    max_lag: Annotated[
        float | None,
        typer.Option(help=f"{MAX_LAG_HELP} Default: keep the pool's.", show_default=False),
    ] = None,
    stale_writer: Annotated[
        StaleWriter | None,
        typer.Option(
            help=f"{STALE_WRITER_HELP} Default: keep the pool's.",
            show_default=False,
            case_sensitive=False,
        ),
    ] = None,
    catchup_timeout: Annotated[
        float | None,
        typer.Option(help=f"{CATCHUP_HELP} Default: keep the pool's.", show_default=False),
    ] = None,
    max_failover_lag: Annotated[
        float | None,
        typer.Option(help=f"{FAILOVER_LAG_HELP} Default: keep the pool's.", show_default=False),
    ] = None,
    failback: Annotated[
        Failback | None,
        typer.Option(
            help=f"{FAILBACK_HELP} Default: keep the pool's.",
            show_default=False,
            case_sensitive=False,
        ),
    ] = None,
    fence: Annotated[
        Fence | None,
        typer.Option(
            help=f"{FENCE_HELP} Default: keep the pool's.",
            show_default=False,
            case_sensitive=False,
        ),
    ] = None,
    observers: Annotated[
        int | None,
        typer.Option(help=f"{OBSERVERS_HELP} Default: keep the pool's.", show_default=False),
    ] = None,
    keep_connections: Annotated[
        float | None,
        typer.Option(help=f"{KEEP_CONNECTIONS_HELP} Default: keep the pool's.", show_default=False),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Allow removing the ACTIVE node.")] = False,
) -> None:
    """Replace a pool's configuration.

    Members, priority order and settings are replaced in one atomic change. Settings not
    given keep their values; with no --primary, --secondary or --failoverpool the members
    are kept too (e.g. 'pool apply pool1 --interval 3').

    Nodes that stay keep their state, status, R and message; new nodes start UNKNOWN; removed
    nodes leave the pool. Removing the ACTIVE node is refused unless --force.
    """
    settings_only = not (primary or secondary or failoverpool is not None)
    if settings_only and name is None:
        raise CliError("give a pool NAME (and the settings to change), or --failoverpool")
    parsed = None
    if not settings_only:
        parsed = build_config(
            name,
            primary,
            secondary,
            failoverpool,
            DEFAULT_INTERVAL if interval is None else interval,
            DEFAULT_MAX_REQUESTS if max_requests is None else max_requests,
            DEFAULT_MAX_LAG if max_lag is None else max_lag,
        )
    pool_name = parsed.name if parsed is not None else validate_pool_name(name or "")
    session = session_of(ctx)

    given = {
        name: value
        for name, value in {
            "interval": interval,
            "max_requests": max_requests,
            "max_lag": max_lag,
            "stale_writer": stale_writer,
            "catchup_timeout": catchup_timeout,
            "max_failover_lag": max_failover_lag,
            "failback": failback,
            "fence": fence,
            "observers": observers,
            "keep_connections": keep_connections,
        }.items()
        if value is not None
    }  # the settings not given keep the pool's

    def change(pool: PoolState) -> AdminResult:
        config = replace(
            config_of(pool) if parsed is None else parsed, **{**settings_of(pool), **given}
        )
        try:
            after = apply_config(pool, config, force=force)
        except PoolConfigError as exc:  # removing the ACTIVE node: MPP-style refusal
            raise AdminRefused(str(exc)) from None
        text = render_failoverpool(config)
        event = Event(EventKind.CONFIGURE, pool.name, message=f"configuration applied: {text}")
        return AdminResult(after, f"OK: Pool {pool.name} configured: {text}", (event,))

    result = run_admin(session.store, pool_name, change, session.actor)
    typer.echo(result.output)
    warn_about_interval(session.store, result.pool.interval)


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
    session = session_of(ctx)
    store = session.store
    pools, unusable = readable_pools(store, None)
    note_if_no_pools(store, len(pools) + len(unusable), "pools")
    if json_output:
        typer.echo(to_json(pools_document(session, pools, store.server_time(), "pools")))
    elif pools:
        typer.echo(pools_table(pools, store.server_time()), nl=False)
    else:
        typer.echo("No pools.")
    report_unusable("pools", unusable)
