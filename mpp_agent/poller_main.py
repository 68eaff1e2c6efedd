"""Entry point of mpp-poller: options, gevent patching, signals, then the poller's loop."""

from gevent import monkey

monkey.patch_all()  # first thing: PyMySQL and redis-py sockets become cooperative

import argparse  # noqa: E402
import gc  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
from dataclasses import replace  # noqa: E402

from mpp_agent import __version__  # noqa: E402
from mpp_agent.agent_main import parse_address  # noqa: E402
from mpp_agent.daemon import (  # noqa: E402
    RESERVED_FDS,
    ExitCode,
    RateLimited,
    StopFlag,
    count,
    raise_nofile_limit,
    redis_refuses,
    seconds,
    setup_logging,
)
from mpp_agent.http_server import start_http  # noqa: E402
from mpp_agent.poller import DEFAULT_LOGINS, Poller, PollerSettings  # noqa: E402
from mpp_agent.probe import (  # noqa: E402
    DEFAULT_MONITOR_DATABASE,
    NO_PASSWORD,
    Checkpoint,
    CheckpointError,
    FenceAccount,
    ProbeSettings,
)
from mpp_agent.secret_file import read_secret  # noqa: E402
from mpp_agent.settings import CONNECTION, FENCING, LOG_LEVEL, add_arguments  # noqa: E402
from mpp_agent.store import (  # noqa: E402
    REDIS_DOWN_ERRORS,
    Store,
    StoreError,
    read_password,
    redact_url,
)
from mpp_agent.timeouts import (  # noqa: E402
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    limits,
    min_interval,
)

log = logging.getLogger("mpp.poller")

EPILOG = """\
The MySQL password is read from --mysql-password-file or the MPP_MYSQL_PASSWORD environment
variable, the Redis password from the URL, MPP_REDIS_PASSWORD or --redis-password-file; never
from the command line; the fencing account's (--fence-user) from --fence-password-file or
MPP_FENCE_PASSWORD likewise. Pools, their interval and max_requests live in Redis
(mpp-admin pool ...).

Each pool's probe timeouts are derived from its interval (a probe ends within half of it); the
timeout options only set upper bounds. A pool whose interval is too short to serve is logged
as a WARNING and listed as "unserved" in the poller's heartbeat (mpp-admin pollers).
"""


def build_parser() -> argparse.ArgumentParser:
    """Every option once: default, environment variable and help text together."""
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="mpp-poller",
        description="Probe MySQL/MariaDB nodes and advance each pool's MPP state in Redis.",
        epilog=EPILOG,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_arguments(p, CONNECTION)
    p.add_argument(
        "--mysql-user",
        default=env("MPP_MYSQL_USER", "monitor"),
        help="MySQL monitoring user (env MPP_MYSQL_USER; default %(default)s)",
    )
    p.add_argument(
        "--mysql-password-file",
        default=env("MPP_MYSQL_PASSWORD_FILE"),
        help="file whose first line is the MySQL password (env MPP_MYSQL_PASSWORD_FILE; "
        "else the password itself from env MPP_MYSQL_PASSWORD)",
    )
    p.add_argument(
        "--database",
        default=env("MPP_DATABASE", DEFAULT_MONITOR_DATABASE),
        help="monitoring database; must hold at least one table (env MPP_DATABASE; "
        "default %(default)s)",
    )
    p.add_argument(
        "--poller-id",
        default=env("MPP_POLLER_ID", f"{socket.gethostname()}:{os.getpid()}"),
        help="this poller's name in Redis (env MPP_POLLER_ID; default host:pid)",
    )
    p.add_argument(
        "--pool",
        action="append",
        default=[],
        metavar="NAME",
        help="poll only this pool (repeatable; default every pool)",
    )
    p.add_argument("--once", action="store_true", help="one cycle then exit (MPP's cron mode)")
    p.add_argument(
        "--checkpoint",
        action="append",
        default=None,
        metavar="HOST:PORT",
        help="reached by TCP every cycle (repeatable; env MPP_CHECKPOINTS, comma-separated); "
        "when every checkpoint fails this poller abstains on every node instead of failing them",
    )
    p.add_argument(
        "--connect-timeout",
        type=seconds,
        default=None,
        help="upper bound on the MySQL connect timeout in seconds (default "
        f"{DEFAULT_CONNECT_TIMEOUT:g}; each pool's is derived from its interval)",
    )
    p.add_argument(
        "--read-timeout",
        type=seconds,
        default=None,
        help="upper bound on the MySQL read/write timeout per query in seconds (default "
        f"{DEFAULT_READ_TIMEOUT:g}; derived per pool likewise)",
    )
    p.add_argument(
        "--probe-timeout",
        type=seconds,
        default=None,
        help="upper bound on one whole probe in seconds (default: connect + read timeout + "
        "0.5); each pool's probe also ends within half its interval",
    )
    p.add_argument(
        "--max-logins",
        type=count,
        default=env("MPP_MAX_LOGINS", str(DEFAULT_LOGINS)),  # a string: checked by count
        metavar="N",
        help="logins to nodes under way at once; more wait for one of these slots, and a "
        "probe that times out after waiting abstains instead of failing its node (env "
        "MPP_MAX_LOGINS; default %(default)s)",
    )
    p.add_argument(
        "--http-listen",
        type=parse_address,
        default=env("MPP_POLLER_HTTP_LISTEN"),
        metavar="HOST:PORT",
        help="serve /metrics (Prometheus) and /healthz here (env MPP_POLLER_HTTP_LISTEN; "
        "default off; not with --once)",
    )
    add_arguments(p, FENCING)
    add_arguments(p, (LOG_LEVEL,))
    return p


# HTTP connections served at once (scrapers and health checks; more wait in the backlog).
HTTP_MAX_CONNECTIONS = 16


def mysql_password(path: str | None) -> str:
    return read_secret(path, "MPP_MYSQL_PASSWORD", "MySQL password")


def fence_account(user: str | None, path: str | None) -> FenceAccount | None:
    """The fencing account of ``--fence-user``; its password from the file or
    ``MPP_FENCE_PASSWORD`` (never the command line)."""
    if not user:
        if path:
            raise ValueError("--fence-password-file needs --fence-user (or MPP_FENCE_USER)")
        return None
    return FenceAccount(user, read_secret(path, "MPP_FENCE_PASSWORD", "fencing password"))


def settings_from(args: argparse.Namespace) -> PollerSettings:
    bounds = limits(args.connect_timeout, args.read_timeout, args.probe_timeout)
    probe = ProbeSettings(
        user=args.mysql_user,
        password=mysql_password(args.mysql_password_file),
        database=args.database,
        connect_timeout=bounds.connect,
        read_timeout=bounds.read,
    )
    # The options replace the environment's list rather than adding to it.
    texts = args.checkpoint or os.environ.get("MPP_CHECKPOINTS", "").replace(",", " ").split()
    try:
        checkpoints = tuple(dict.fromkeys(Checkpoint.parse(text) for text in texts))
    except CheckpointError as exc:
        raise ValueError(f"--checkpoint: {exc}") from None
    return PollerSettings(
        args.poller_id,
        probe,
        tuple(args.pool),
        probe_timeout=bounds.probe,
        logins=args.max_logins,
        checkpoints=checkpoints,
        fence=fence_account(args.fence_user, args.fence_password_file),
    )


def kept_connection_cap(fd_limit: int, concurrency: int) -> int:
    """How many connections to nodes (pools with keep_connections) may stay open between
    rounds: what the open-file limit leaves after the probes of one round, Redis and logs."""
    return max(0, fd_limit - concurrency - RESERVED_FDS)


# A poller makes a great many short-lived objects each round (a reply, an observation and a record
# per node) and holds many long-lived ones (its kept connections, the pools). With Python's
# default thresholds a full collection ran about once a cycle and the collections took a quarter
# of a busy poller's CPU (bench/README.md). Young collections rarer, full ones by count
# nearly never (most garbage here is freed by reference counting; the rest waits for them).
GC_THRESHOLDS = (10_000, 50, 1_000)


def main() -> None:
    gc.set_threshold(*GC_THRESHOLDS)
    args = build_parser().parse_args()
    setup_logging(args.log_level)
    try:
        settings = settings_from(args)
        store = Store.from_url(
            args.redis_url, args.namespace, read_password(args.redis_password_file)
        )
    except (OSError, ValueError, StoreError) as exc:
        print(f"mpp-poller: {exc}", file=sys.stderr)
        sys.exit(ExitCode.USAGE)
    if redis_refuses(store, args.redis_url, log):
        sys.exit(ExitCode.UNAVAILABLE)
    # A pool with keep_connections holds a connection per node: room for them.
    cap = kept_connection_cap(raise_nofile_limit(), settings.concurrency)
    poller = Poller(store, replace(settings, kept_connections=cap))
    if not settings.probe.password:
        log.warning("%s: this poller abstains on every node", NO_PASSWORD)
    log.info(
        "poller %s starting (redis %s, namespace %s, pools %s, timeouts at most %s, fitted to "
        "each pool's interval: shortest interval served %.3gs; checkpoints %s; fencing "
        "account %s)",
        settings.poller_id,
        redact_url(args.redis_url),
        args.namespace,
        ", ".join(settings.pools) or "all",
        settings.limits,
        min_interval(settings.limits),
        ", ".join(map(str, settings.checkpoints)) or "none",
        settings.fence.user if settings.fence else "none",
    )
    if args.once:
        try:
            poller.run_once()
        except REDIS_DOWN_ERRORS as exc:
            print(f"mpp-poller: Redis unreachable: {exc}", file=sys.stderr)
            sys.exit(ExitCode.UNAVAILABLE)
        sys.exit(ExitCode.OK)
    if args.http_listen is not None:
        where = "{}:{}".format(*args.http_listen)
        try:
            start_http(
                args.http_listen, poller.metrics.http, HTTP_MAX_CONNECTIONS, RateLimited(log)
            )
        except OSError as exc:
            print(f"mpp-poller: cannot listen on {where}: {exc}", file=sys.stderr)
            sys.exit(ExitCode.USAGE)
        log.info("serving /metrics and /healthz on %s", where)
    stop = StopFlag()
    stop.install(lambda: log.info("SIGHUP received: ignored (pools are re-read every cycle)"))
    poller.run(lambda: stop.is_set, stop.wait)
    log.info("poller %s stopped (%s)", settings.poller_id, stop.signal_name or "done")
    sys.exit(ExitCode.OK)
