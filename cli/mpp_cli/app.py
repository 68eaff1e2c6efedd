"""The mpp-admin typer application: global options, then one command per operator task.

Commands live in pool_cmd.py (configuration), view_cmd.py (read-only views), status_cmd.py
(the incident view with HAProxy's), hooks_cmd.py and admin_cmd.py (state changes); exit codes
in errors.py; the shared Redis session in session.py.
"""

import logging
from typing import Annotated, Any

import typer

from mpp_agent import __version__
from mpp_agent.keys import DEFAULT_NAMESPACE
from mpp_agent.settings import NAMESPACE, REDIS_PASSWORD_FILE, REDIS_URL, Setting
from mpp_agent.store import DEFAULT_REDIS_URL
from mpp_cli import admin_cmd, hooks_cmd, maintenance_cmd, status_cmd, view_cmd
from mpp_cli.pool_cmd import list_pools, pool_app
from mpp_cli.session import Session
from mpp_cli.simulate_cmd import simulate

EPILOG = """\
\b
Examples:
  mpp-admin pool create pool1 --primary 10.0.0.1 --secondary 10.0.0.2
  mpp-admin pool create --failoverpool "name:pool1;primary:db1;secondary:db2"
  mpp-admin list
  mpp-admin report 10.0.0.1
  mpp-admin is-active 10.0.0.1:3306 || echo "not the ACTIVE node"
  mpp-admin recover 10.0.0.1
  mpp-admin activate-primary pool1
  mpp-admin failover pool1 --to 10.0.0.2
  mpp-admin override 10.0.0.2 --state STANDBY --reason "kernel upgrade" --for 2h
  mpp-admin history --pool pool1 --follow
  mpp-admin status pool1 --haproxy-socket /run/haproxy/admin.sock
  mpp-admin haproxy-config pool1 --role rw

\b
Exit codes: 0 ok, 1 is-active NO, 2 usage, 3 not found, 4 refused,
5 conflict, 6 Redis unavailable, 7 unreadable stored state, 8 an HAProxy socket
unusable (docs/admin.md).
"""

# The library logs for the daemons; a command reports on stderr itself, once per problem.
logging.getLogger("mpp").addHandler(logging.NullHandler())

app = typer.Typer(
    name="mpp-admin",
    help="Operate MPP failover pools: list, report, recover, activate-primary, overrides.",
    epilog=EPILOG,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def typer_option(setting: Setting) -> Any:
    """A shared setting (mpp_agent/settings.py) as a typer option: same flag, environment
    variable, default and help as mpp-poller's and mpp-agent's."""
    return typer.Option(
        setting.flag,
        envvar=setting.env,
        help=setting.help[0].upper() + setting.help[1:] + ".",
        show_default=setting.default is not None,
    )


def print_version(value: bool) -> None:
    if value:
        typer.echo(f"mpp-admin {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    redis_url: Annotated[str, typer_option(REDIS_URL)] = DEFAULT_REDIS_URL,
    namespace: Annotated[str, typer_option(NAMESPACE)] = DEFAULT_NAMESPACE,
    redis_password_file: Annotated[str | None, typer_option(REDIS_PASSWORD_FILE)] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=print_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Operate MPP failover pools kept in Redis by mpp-poller and served by mpp-agent."""
    ctx.obj = Session(redis_url, namespace, redis_password_file)


app.add_typer(pool_app, name="pool")
app.command("pools")(list_pools)
app.command("list")(view_cmd.list_)
app.command("report")(view_cmd.report)
app.command("is-active")(view_cmd.is_active)
app.command("recover")(admin_cmd.recover)
app.command("activate-primary")(admin_cmd.activate_primary_cmd)
app.command("failover")(admin_cmd.failover_cmd)
app.command("switchover")(maintenance_cmd.switchover_cmd)
app.command("pause")(maintenance_cmd.pause_cmd)
app.command("resume")(maintenance_cmd.resume_cmd)
app.command("delete")(admin_cmd.delete)
app.command("override")(admin_cmd.override)
app.command("release")(admin_cmd.release)
app.command("history")(view_cmd.history)
app.command("pollers")(view_cmd.pollers)
app.command("status")(status_cmd.status)
app.command("haproxy-config")(view_cmd.haproxy_config)
app.command("hooks")(hooks_cmd.hooks)
app.command("simulate")(simulate)


def main() -> None:
    app()
