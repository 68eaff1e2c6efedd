"""Entry point of ``mpp-agent``: options, logging, signals; the work is in ``agent_server``.

gevent's monkey-patching is the first thing ``main()`` does (house style rule 7). This module
imports nothing at import time that opens sockets or starts threads, so tests can import it (for
``build_parser``) without patching the pytest process; everything else is imported after the
patch.

Each option is declared once (``OPTIONS``): flag, environment variable, default, parser, help.
The Redis password is never an option's value: it comes in the URL, a file
(``--redis-password-file``) or ``MPP_REDIS_PASSWORD``, and the URL is redacted in every log line.
"""

from __future__ import annotations

import argparse
import resource
import signal
import sys
from collections.abc import Sequence

from mpp_agent import __version__
from mpp_agent.settings import CONNECTION, LOG_LEVEL, Setting, add_arguments


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) for a listening socket."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


Option = Setting  # the shared settings' declaration (mpp_agent/settings.py)

OPTIONS = (
    *CONNECTION,
    Option("--listen", "MPP_AGENT_LISTEN", "127.0.0.1:9777", parse_address,
           "HOST:PORT for HAProxy agent-checks"),
    Option("--metrics-listen", "MPP_AGENT_METRICS_LISTEN", None, parse_address,
           "HOST:PORT for HTTP /metrics (Prometheus) and /healthz"),
    Option("--stale-after", "MPP_AGENT_STALE_AFTER", "5", positive_float,
           "seconds without a successful refresh from Redis before answers are marked stale"),
    Option("--refresh-interval", "MPP_AGENT_REFRESH_INTERVAL", "1", positive_float,
           "seconds between full reloads of every pool (notifications reload sooner)"),
    Option("--read-timeout", "MPP_AGENT_READ_TIMEOUT", "1", positive_float,
           "seconds a client has to send its request line"),
    Option("--max-connections", "MPP_AGENT_MAX_CONNECTIONS", "4096", positive_int,
           "connections handled at once; more wait in the listen backlog"),
    LOG_LEVEL,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpp-agent",
        description="Answer HAProxy agent-check probes from the MPP pool state in Redis.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_arguments(parser, OPTIONS)
    return parser


def raise_nofile_limit() -> None:
    """Every held connection is a descriptor: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(argv: Sequence[str]) -> int:
    """Run the agent until SIGTERM or SIGINT; the exit code."""
    import logging  # imported after the gevent patch, like all below

    import gevent
    import gevent.event

    from mpp_agent.agent_server import Agent, AgentSettings
    from mpp_agent.daemon import ExitCode, setup_logging
    from mpp_agent.store import Store, StoreError, read_password, redact_url

    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    log = logging.getLogger("mpp.agent")
    raise_nofile_limit()
    try:
        password = read_password(args.redis_password_file)
        store = Store.from_url(args.redis_url, namespace=args.namespace, password=password)
    except (OSError, StoreError) as exc:
        log.error("%s", exc)
        return ExitCode.USAGE
    settings = AgentSettings(
        listen=args.listen,
        metrics_listen=args.metrics_listen,
        stale_after=args.stale_after,
        refresh_interval=args.refresh_interval,
        read_timeout=args.read_timeout,
        max_connections=args.max_connections,
    )
    agent = Agent(store, settings)
    try:
        agent.start()
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return ExitCode.USAGE
    stop = gevent.event.Event()
    stopped_by: list[str] = []

    def on_signal(name: str) -> None:  # only sets the flag (house style rule 6)
        stopped_by.append(name)
        stop.set()

    # gevent's handlers run in the hub, so the Event wakes the main greenlet at once.
    gevent.signal_handler(signal.SIGTERM, on_signal, "SIGTERM")
    gevent.signal_handler(signal.SIGINT, on_signal, "SIGINT")
    log.info(
        "mpp-agent listening on %s:%d (metrics %s), Redis %s, namespace %s, stale after %gs",
        *agent.address,
        "{}:{}".format(*settings.metrics_listen) if settings.metrics_listen else "off",
        redact_url(args.redis_url),
        args.namespace,
        settings.stale_after,
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
