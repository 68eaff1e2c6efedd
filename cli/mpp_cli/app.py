"""The mpp-admin typer application."""

import typer

from mpp_cli.simulate_cmd import simulate

app = typer.Typer(
    name="mpp-admin",
    help="Operate MPP failover pools: list, report, recover, activate-primary, overrides.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def root() -> None:
    """Operate MPP failover pools."""


app.command("simulate")(simulate)


def main() -> None:
    app()
