"""``mpp-admin simulate FILE``: run the pure state machine over a script (see docs/simulate.md).

A thin shell over ``mpp_agent.simulate``: read the script, parse it, run it, print it. A
malformed script exits 2 with the line on stderr and prints nothing else.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from mpp_agent.simulate import ScriptError, parse_script, render_json_lines, render_text, run_steps
from mpp_cli.errors import ExitCode

EXIT_BAD_SCRIPT = ExitCode.USAGE  # 2: a malformed or unreadable script; nothing ran


def simulate(
    file: Annotated[str, typer.Argument(help="Script to run, or - for standard input.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per step, one per line.")
    ] = False,
) -> None:
    """Run MPP's failover rules over a scripted sequence of probe outcomes and admin steps,
    with no Redis and no MySQL, printing the pools after every step."""
    text = read_script(file)
    try:
        steps = parse_script(text)
    except ScriptError as exc:
        typer.echo(f"mpp-admin simulate: {file}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_SCRIPT) from None
    results = run_steps(steps)
    typer.echo(render_json_lines(results) if json_output else render_text(results), nl=False)


def read_script(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"mpp-admin simulate: cannot read {file}: {exc}", err=True)
        raise typer.Exit(EXIT_BAD_SCRIPT) from None
