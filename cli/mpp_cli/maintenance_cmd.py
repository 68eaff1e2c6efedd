"""Planned maintenance: ``switchover``, ``pause`` and ``resume``.

``switchover`` stores the switchover (a pure transition of ``mpp_agent.state``) and then
follows it: the pollers carry it out round by round, and every step they record in the pool's
history is printed as it happens. It exits 0 once the target takes writes, 9 when the
switchover was abandoned (the source takes writes again); refusals exit 4 and change nothing.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from mpp_agent.model import DEFAULT_SWITCHOVER_TIMEOUT, EventKind, NodeId, PoolState, Switchover
from mpp_agent.routing import route
from mpp_agent.state import abandon_switchover, pause_pool, resume_pool, start_switchover
from mpp_agent.store import Store
from mpp_cli.admin_cmd import parse_duration
from mpp_cli.errors import CliError, ExitCode, cli_errors
from mpp_cli.session import parse_node, run_admin, session_of

PoolArg = Annotated[str, typer.Argument(help="The pool.")]
# How long past its deadline the command waits for a poller to finish or abandon it.
GRACE_ROUNDS = 2


@cli_errors("switchover")
def switchover_cmd(
    ctx: typer.Context,
    pool: PoolArg,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="The STANDBY to move writes to (default: the first healthy one in priority "
            "order).",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=0.1,
            max=86400,
            help="Abandon the switchover if the target has not taken writes after this many "
            "seconds.",
        ),
    ] = DEFAULT_SWITCHOVER_TIMEOUT,
) -> None:
    """Move writes from the ACTIVE node to a healthy STANDBY, with no write lost.

    The ACTIVE node stops taking writes first (the agent answers rw 'down #switchover to
    <node>', so HAProxy closes its sessions); once its position has held for a round and the
    target has applied it, the target becomes ACTIVE and the old one STANDBY in one change.
    Prints each step; exits 0 when the target takes writes, 9 if the switchover is abandoned
    (the target failed, a position could not be read, or --timeout passed: the old ACTIVE
    takes writes again), 4 if it cannot start.

    Example: mpp-admin switchover pool1 --to 10.0.0.2
    """
    session = session_of(ctx)
    store = session.store
    target = None if to is None else parse_node(to)
    after = last_event_id(store, pool)
    now = store.server_time()
    result = run_admin(
        store,
        pool,
        lambda p: start_switchover(p, target, now, timeout, session.actor),
        session.actor,
    )
    typer.echo(result.output)
    record = result.pool.switchover
    assert record is not None
    follow(store, pool, record, after, session.actor)


def last_event_id(store: Store, pool: str) -> str:
    newest = store.last_events(pool, 1)
    return newest[-1][0] if newest else "-"


def follow(store: Store, name: str, record: Switchover, after: str, actor: str) -> None:
    """Print the switchover's steps until it is finished (exit 0) or abandoned (exit 9)."""
    interval = store.load_pool(name).interval
    give_up = record.deadline + GRACE_ROUNDS * interval + 1
    while True:
        time.sleep(min(0.2, interval / 4))
        after = print_steps(store, name, after)
        pool = store.load_pool(name)
        now = store.server_time()
        if pool.switchover is None or pool.switchover.started_at != record.started_at:
            if awaits_fence(pool, record.target, now) and now < give_up:
                continue  # ACTIVE, read_only until the pollers open its writes: a round or so
            # The commit that ended it may have come after the steps were read: its events
            # are written with it, so reading them now misses none.
            print_steps(store, name, after)
            finish(pool, record.target, now)
            return
        if now >= give_up:
            give_back(store, name, after, actor)


def give_back(store: Store, name: str, after: str, actor: str) -> None:
    """No poller ticked the pool past the deadline: give the source its writes back."""
    now = store.server_time()
    result = run_admin(store, name, lambda p: abandon_switchover(p, now), actor)
    print_steps(store, name, after)
    raise CliError(result.output, ExitCode.ABANDONED)


def print_steps(store: Store, name: str, after: str) -> str:
    """Print the switchover events after stream id ``after``; the last id printed."""
    for event_id, event in store.events(name, after=after):
        after = event_id
        if event.get("kind") == EventKind.SWITCHOVER.value:
            stamp = time.strftime("%H:%M:%S", time.localtime(float(event.get("at") or 0)))
            node = event.get("node", "")
            typer.echo(f"{stamp} {node}: {event.get('message', '')}")
    return after


def awaits_fence(pool: PoolState, target: NodeId, now: float) -> bool:
    """Whether ``target`` is the pool's writer but for its fence: ACTIVE under ``--fence
    read_only``, not yet reported read_only=OFF (the pollers set it after the commit that
    made it ACTIVE, and it takes writes at the next one)."""
    routed = route(pool, now)
    return routed.writer is None and routed.write_target == target


def finish(pool: PoolState, target: NodeId, now: float) -> None:
    writer = route(pool, now).writer
    if writer is not None and writer.node == target:
        typer.echo(f"OK: {target} takes writes in pool {pool.name}.")
        return
    found = pool.find(target)
    state = found.state if found is not None else "removed"
    shown = writer.node if writer is not None else "no node"
    raise CliError(
        f"the switchover of pool {pool.name} was abandoned: {target} is {state}, "
        f"{shown} takes writes",
        ExitCode.ABANDONED,
    )


@cli_errors("pause")
def pause_cmd(
    ctx: typer.Context,
    pool: PoolArg,
    reason: Annotated[
        str, typer.Option("--reason", help="Why (shown by list and in the agent's reasons).")
    ] = "maintenance",
    for_: Annotated[
        str | None,
        typer.Option(
            "--for",
            help="Resume by itself after this long: 30s, 10m, 2h, 1d (at most 366d).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Pause a pool: the pollers keep probing, but no state change is committed.

    No failover, no hand-back, no counting: the agent keeps answering the held state with
    '#paused: <reason>', and 'list' shows what the state machine would have done ("would fail
    10.0.0.1:3306 over"). 'resume' (or --for running out) continues from the live observations.

    Example: mpp-admin pause pool1 --reason "network maintenance" --for 30m
    """
    if not reason.strip():
        raise CliError("--reason must say why")
    duration = parse_duration(for_) if for_ is not None else None
    session = session_of(ctx)
    now = session.store.server_time()
    until = None if duration is None else now + duration
    result = run_admin(
        session.store,
        pool,
        lambda p: pause_pool(p, reason.strip(), session.actor, now, until),
        session.actor,
    )
    typer.echo(result.output)


@cli_errors("resume")
def resume_cmd(ctx: typer.Context, pool: PoolArg) -> None:
    """Resume a paused pool: the state machine continues from the held state.

    Example: mpp-admin resume pool1
    """
    session = session_of(ctx)
    result = run_admin(session.store, pool, resume_pool, session.actor)
    typer.echo(result.output)
