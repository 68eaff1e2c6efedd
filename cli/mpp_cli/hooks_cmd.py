"""``mpp-admin hooks``: the mpp-hooks consumer groups of each pool and the dead letters (events
whose hook kept failing), newest last."""

from __future__ import annotations

from typing import Annotated

import typer

from mpp_agent.store import EVENTS_MAXLEN
from mpp_cli.errors import cli_errors
from mpp_cli.render import hooks_json, hooks_text, to_json
from mpp_cli.session import session_of


@cli_errors("hooks")
def hooks(
    ctx: typer.Context,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, max=EVENTS_MAXLEN, help="Dead letters to show.")
    ] = 20,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Show the mpp-hooks groups (consumers, pending events) and the dead letters.

    A dead letter is an event whose hook failed --attempts times: its pool, id, kinds, the last
    error and the event. Re-run one by hand from its JSON (--json) once the cause is fixed.
    """
    store = session_of(ctx).store
    groups = store.hook_groups(store.pool_names())
    dead = store.dead_letters(limit)
    total = store.dead_letter_count()
    if json_output:
        typer.echo(to_json(hooks_json(groups, dead, total)))
    else:
        typer.echo(hooks_text(groups, dead, total), nl=False)
