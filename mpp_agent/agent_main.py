"""Entry point of ``mpp-agent``: options, logging, signals; the work is in ``agent_server``.

gevent's monkey-patching is the first thing ``main()`` does. This module imports nothing at
import time that opens sockets or starts threads, so tests can import it (for ``build_parser``)
without patching the pytest process; everything else is imported after the patch.

Each option is declared once (``OPTIONS``): flag, environment variable, default, parser, help.
The Redis password is never an option's value: it comes in the URL, a file
(``--redis-password-file``) or ``MPP_REDIS_PASSWORD``, and the URL is redacted in every log line.

Exit codes are ``daemon.ExitCode``: 2 for bad options, URL or password file, 6 when Redis
refuses the agent at start-up (Redis merely down is retried). SIGHUP reloads every pool.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from mpp_agent import __version__
from mpp_agent.daemon import RESERVED_FDS, count, raise_nofile_limit, seconds
from mpp_agent.settings import CONNECTION, LOG_LEVEL, Setting, add_arguments


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) for a listening socket."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


Option = Setting  # the shared settings' declaration (mpp_agent/settings.py)

OPTIONS = (
    *CONNECTION,
    Option("--listen", "MPP_AGENT_LISTEN", "127.0.0.1:9777", parse_address,
           "HOST:PORT for HAProxy agent-checks"),
    Option("--http-listen", "MPP_AGENT_HTTP_LISTEN", None, parse_address,
           "HOST:PORT for HTTP: /metrics (Prometheus), /healthz, /readyz, the API /v1/pools "
           "and the checks /v1/check/<pool>/<node>?role=rw|ro (--metrics-listen: the same)",
           aliases=("--metrics-listen",)),
    Option("--haproxy-socket", "MPP_AGENT_HAPROXY_SOCKETS", None, str,
           "HAProxy stats socket (level admin) to push each changed answer to at once; "
           "repeatable (environment: comma-separated)", repeatable=True),
    Option("--stale-after", "MPP_AGENT_STALE_AFTER", "5", seconds,
           "seconds without a successful refresh from Redis before answers are marked stale"),
    Option("--agent-inter", "MPP_AGENT_AGENT_INTER", "1", seconds,
           "HAProxy's agent-inter for this agent's checks: a stale-writer drain pool's writes "
           "stop this long before the pollers' earliest failover, so HAProxy has heard it"),
    Option("--refresh-interval", "MPP_AGENT_REFRESH_INTERVAL", "1", seconds,
           "seconds between full reloads of every pool (notifications reload sooner)"),
    Option("--read-timeout", "MPP_AGENT_READ_TIMEOUT", "1", seconds,
           "seconds a client has to send its request line"),
    Option("--max-connections", "MPP_AGENT_MAX_CONNECTIONS", "4096", count,
           "agent-check connections handled at once; more wait in the listen backlog "
           "(capped by the open-file limit)"),
    Option("--metrics-max-connections", "MPP_AGENT_METRICS_MAX_CONNECTIONS", "64", count,
           "HTTP connections handled at once, each closed after 5 s "
           "(capped by the open-file limit)"),
    LOG_LEVEL,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpp-agent",
        description="Answer HAProxy agent-check probes from the MPP pool state in Redis.",
        epilog="Exit codes: 0 stopped by SIGTERM or SIGINT; 2 bad options, Redis URL or "
        "password file; 6 Redis refused the agent at start-up (password, db, not Redis). "
        "SIGHUP reloads every pool from Redis. HTTP (--http-listen): /metrics, /healthz "
        "(liveness), /readyz (fresh state for a pool, every loop running), /v1/pools, "
        "/v1/pools/<pool>, /v1/check/<pool>/<node>?role=rw|ro, /v1/openapi.json.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_arguments(parser, OPTIONS)
    return parser


def connection_caps(probe: int, http: int, fd_limit: int) -> tuple[int, int]:
    """Both connection caps within the open-file limit (less RESERVED_FDS): the HTTP port
    keeps at most a tenth of what is left, the agent-check port the rest."""
    budget = max(2, fd_limit - RESERVED_FDS)
    if probe + http <= budget:
        return probe, http
    http = max(1, min(http, budget // 10))
    return max(1, min(probe, budget - http)), http


def run(argv: Sequence[str]) -> int:
    """Run the agent until SIGTERM or SIGINT; the exit code."""
    import logging  # imported after the gevent patch, like all below

    import gevent
    import gevent.event

    from mpp_agent.agent_server import Agent, AgentSettings
    from mpp_agent.daemon import ExitCode, redis_refuses, setup_logging
    from mpp_agent.store import Store, StoreError, read_password, redact_url

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    log = logging.getLogger("mpp.agent")
    fd_limit = raise_nofile_limit()
    try:
        password = read_password(args.redis_password_file)
        store = Store.from_url(args.redis_url, namespace=args.namespace, password=password)
    except StoreError as exc:
        log.error("%s", exc)
        return ExitCode.USAGE
    if redis_refuses(store, args.redis_url, log):
        return ExitCode.UNAVAILABLE
    probe_cap, http_cap = connection_caps(
        args.max_connections, args.metrics_max_connections, fd_limit
    )
    if (probe_cap, http_cap) != (args.max_connections, args.metrics_max_connections):
        log.warning(
            "open-file limit %d: --max-connections %d and --metrics-max-connections %d "
            "lowered to %d and %d (raise the limit, e.g. LimitNOFILE=, to keep them)",
            fd_limit,
            args.max_connections,
            args.metrics_max_connections,
            probe_cap,
            http_cap,
        )
    settings = AgentSettings(
        listen=args.listen,
        http_listen=args.http_listen,
        haproxy_sockets=tuple(args.haproxy_socket),
        stale_after=args.stale_after,
        refresh_interval=args.refresh_interval,
        agent_inter=args.agent_inter,
        read_timeout=args.read_timeout,
        max_connections=probe_cap,
        metrics_max_connections=http_cap,
    )
    agent = Agent(store, settings)
    try:
        agent.start()
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return ExitCode.USAGE
    stop = gevent.event.Event()
    stopped_by: list[str] = []

    def on_signal(name: str) -> None:  # only sets the flag: the loop stops at a safe point
        stopped_by.append(name)
        stop.set()

    def on_hangup() -> None:
        log.info("SIGHUP received: reloading every pool from Redis (options need a restart)")
        agent.reload()

    # gevent's handlers run in the hub, so the Event wakes the main greenlet at once.
    gevent.signal_handler(signal.SIGTERM, on_signal, "SIGTERM")
    gevent.signal_handler(signal.SIGINT, on_signal, "SIGINT")
    gevent.signal_handler(signal.SIGHUP, on_hangup)
    log.info(
        "mpp-agent listening on %s:%d (HTTP %s), Redis %s, namespace %s, stale after %gs%s",
        *agent.address,
        "{}:{}".format(*settings.http_listen) if settings.http_listen else "off",
        redact_url(args.redis_url),
        args.namespace,
        settings.stale_after,
        f", pushing to HAProxy at {', '.join(settings.haproxy_sockets)}"
        if settings.haproxy_sockets
        else "",
    )
    stop.wait()
    log.info("%s received: stopping", stopped_by[0] if stopped_by else "stop")
    agent.stop()
    log.info("stopped")
    return ExitCode.OK


def main() -> None:
    from gevent import monkey  # first thing: patch before anything else runs

    monkey.patch_all()
    sys.exit(run(sys.argv[1:]))
