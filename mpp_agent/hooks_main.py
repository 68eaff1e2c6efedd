"""Entry point of ``mpp-hooks``: run a command or call a webhook for the events of every pool.

Every pool's events stream (``ns:{pool}:events``) is read through one Redis consumer group
(``--group``, default ``mpp-hooks``): several mpp-hooks processes of a group share the work, and
each event is handled by one of them. An event is acknowledged only once its hook succeeded (or
went to the dead letters), so it is handled at least once: if a process dies mid-hook, another
one claims the event once it has been pending for ``--claim-after`` seconds (XAUTOCLAIM) and
runs it again. While a hook runs, its process keeps resetting the event's idle time, so a slow
hook that is still alive is never claimed. A group starts at the events written after it was
created (the first mpp-hooks start); what it already handled is never run again.

A hook that fails (non-zero exit, timeout, a webhook answering other than 2xx) is retried after
``--backoff`` seconds, doubling up to 60 s, ``--attempts`` times in all; then the event goes to
the dead-letter stream (``mpp-admin hooks`` shows it) and is acknowledged.

What a hook receives and which events it is run for: ``mpp_agent/hooks.py`` (the kinds, the
derived kinds such as ``failover``, the JSON on stdin and the ``MPP_EVENT_*`` variables).

Exit codes as the other daemons (``daemon.ExitCode``): 2 bad options, 6 Redis refuses us at
start-up. SIGTERM or SIGINT: the hook running is let finish (at most its timeout), then exit 0;
an event waiting for a retry stays pending and is claimed by another process.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from mpp_agent import __version__
from mpp_agent.agent_main import parse_address
from mpp_agent.daemon import ExitCode, OnChange, count, redis_refuses, seconds, setup_logging
from mpp_agent.hooks import BadKinds, backoff, document, environment, parse_kinds, wanted
from mpp_agent.settings import CONNECTION, LOG_LEVEL, Setting, add_arguments
from mpp_agent.store import (
    REDIS_ERRORS,
    Store,
    StoreError,
    read_password,
    redact_url,
    redis_problem,
)

log = logging.getLogger("mpp.hooks")

BACKOFF_CAP = 60.0
BATCH = 10
OUTPUT_BYTES = 64 * 1024  # of a command's output, the rest is dropped
# Variables never handed to a hook: the secrets of mpp-hooks itself.
SECRET_VARIABLES = ("MPP_REDIS_PASSWORD", "MPP_HOOKS_WEBHOOK")
_PR_SET_PDEATHSIG = 1


def kinds(text: str) -> frozenset[str]:
    try:
        return parse_kinds(text)
    except BadKinds as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


Option = Setting

OPTIONS = (
    *CONNECTION,
    Option("--on", "MPP_HOOKS_ON", None, kinds,
           "event kinds to run the hook for, comma-separated: transition, recover, "
           "recover-pool, activate-primary, delete, configure, override, release, pool-status, "
           "and the derived failover, switchover, failed, writer-lost, any"),
    Option("--exec", "MPP_HOOKS_EXEC", None, str,
           "command to run (split like a shell would, not run by one: use sh -c '...' for "
           "that); the event as JSON on stdin and in MPP_EVENT_* variables"),
    Option("--webhook", "MPP_HOOKS_WEBHOOK", None, str,
           "URL to POST the event to as JSON (a URL holding a token: prefer the environment "
           "variable to the option)"),
    Option("--timeout", "MPP_HOOKS_TIMEOUT", "10", seconds,
           "seconds a command or a webhook call may take; then it is killed and has failed"),
    Option("--attempts", "MPP_HOOKS_ATTEMPTS", "5", count,
           "attempts per event before it goes to the dead letters"),
    Option("--backoff", "MPP_HOOKS_BACKOFF", "1", seconds,
           "seconds before the first retry; doubling, at most 60"),
    Option("--group", "MPP_HOOKS_GROUP", "mpp-hooks", str,
           "Redis consumer group: processes of one group share the events, each event is "
           "handled once per group"),
    Option("--consumer", "MPP_HOOKS_CONSUMER", None, str,
           "this process's name in the group (default: <hostname>-<pid>)"),
    Option("--claim-after", "MPP_HOOKS_CLAIM_AFTER", "30", seconds,
           "seconds an event may stay pending on a consumer that stopped handling it before "
           "another consumer claims it"),
    Option("--poll-interval", "MPP_HOOKS_POLL_INTERVAL", "0.5", seconds,
           "seconds between reads of the events streams when there was nothing to do"),
    Option("--http-listen", "MPP_HOOKS_HTTP_LISTEN", None, parse_address,
           "HOST:PORT for HTTP /metrics (Prometheus) and /healthz"),
    LOG_LEVEL,
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpp-hooks",
        description="Run a command or call a webhook for the events of every MPP pool.",
        epilog="Exit codes: 0 stopped by SIGTERM or SIGINT; 2 bad options, Redis URL or "
        "password file; 6 Redis refused us at start-up.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_arguments(parser, OPTIONS)
    return parser


def redact_webhook(url: str) -> str:
    """A webhook URL for log lines: scheme and host only (its path or query may be a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/..."


def die_with_parent() -> None:
    """In the hook's child before exec: killed if mpp-hooks dies (another one reruns it)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Settings:
    on: frozenset[str]
    command: list[str]
    webhook: str | None
    timeout: float
    attempts: int
    backoff: float
    group: str
    consumer: str
    claim_after: float
    poll_interval: float


@dataclass
class Hooks:
    """The consumer: reads, claims, runs, retries, acknowledges, dead-letters."""

    store: Store
    settings: Settings
    stop: threading.Event = field(default_factory=threading.Event)
    counts: Counter[str] = field(default_factory=Counter)
    joined: set[str] = field(default_factory=set)
    last_ok: float = 0.0
    _redis: OnChange = field(default_factory=lambda: OnChange(log, "Redis works again"))

    @property
    def heartbeat(self) -> float:
        """How often a running hook's event is touched: well within --claim-after."""
        return max(0.05, self.settings.claim_after / 3)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                busy = self.cycle()
                self.last_ok = time.monotonic()
                self._redis.ok()
            except REDIS_ERRORS as exc:
                self._redis.problem(f"{redis_problem(exc, self.store.redacted_url)}; retrying")
                busy = False
            if not busy:
                self.stop.wait(self.settings.poll_interval)

    def cycle(self) -> bool:
        """One pass over every pool: claim the abandoned events, read the new ones, handle
        them. Whether there was anything to handle."""
        s = self.settings
        pools = self.store.pool_names()
        new = [p for p in pools if p not in self.joined]
        if new:
            self.joined |= self.store.join_hook_group(new, s.group)
        self.joined &= set(pools)
        busy = False
        for pool in sorted(self.joined):
            claimed = self.store.claim_hook_events(pool, s.group, s.consumer, s.claim_after, BATCH)
            for event_id, _ in claimed:
                log.info("claimed %s/%s from a consumer that stopped handling it", pool, event_id)
            rows = claimed + self.store.read_hook_events(pool, s.group, s.consumer, BATCH)
            for event_id, event in rows:
                if self.stop.is_set():
                    return True
                busy = True
                self.handle(pool, event_id, event)
        return busy

    def handle(self, pool: str, event_id: str, event: dict[str, Any] | None) -> None:
        s = self.settings
        if event is None or not wanted(event, s.on):
            self.counts["skipped"] += 1
            self.store.ack_hook_event(pool, s.group, event_id)
            return
        doc = document(pool, event_id, event)
        what = f"{pool}/{event_id} ({','.join(doc['kinds'])})"
        error = ""
        for attempt in range(1, s.attempts + 1):
            error = self.attempt(pool, event_id, doc)
            if not error:
                self.counts["ok"] += 1
                self.store.ack_hook_event(pool, s.group, event_id)
                log.info("hook done for %s, attempt %d", what, attempt)
                return
            self.counts["failed_attempts"] += 1
            if attempt == s.attempts:
                break
            delay = backoff(attempt, s.backoff, BACKOFF_CAP)
            log.warning("hook failed for %s (%s); retrying in %gs", what, error, delay)
            if not self.wait(pool, event_id, delay):
                return  # stopping: left pending, another consumer claims it
        self.counts["dead"] += 1
        self.store.dead_letter(
            {
                "pool": pool,
                "id": event_id,
                "group": s.group,
                "consumer": s.consumer,
                "attempts": s.attempts,
                "error": error,
                "at": self.store.server_time(),
                "event": doc,
            }
        )
        self.store.ack_hook_event(pool, s.group, event_id)
        log.error(
            "hook failed %d times for %s (%s): sent to the dead letters", s.attempts, what, error
        )

    def wait(self, pool: str, event_id: str, delay: float) -> bool:
        """Sleep ``delay`` seconds keeping the event ours; False if told to stop meanwhile."""
        deadline = time.monotonic() + delay
        while (left := deadline - time.monotonic()) > 0:
            if self.stop.wait(min(left, self.heartbeat)):
                return False
            self.touch(pool, event_id)
        return True

    def touch(self, pool: str, event_id: str) -> None:
        with contextlib.suppress(*REDIS_ERRORS):
            self.store.touch_hook_event(pool, self.settings.group, self.settings.consumer, event_id)

    def attempt(self, pool: str, event_id: str, doc: dict[str, Any]) -> str:
        """Run the command, then call the webhook; what failed, or "" when both did well."""
        if self.settings.command:
            error = self.run_command(pool, event_id, doc)
            if error:
                return error
        if self.settings.webhook:
            self.touch(pool, event_id)
            return self.call_webhook(self.settings.webhook, doc)
        return ""

    def run_command(self, pool: str, event_id: str, doc: dict[str, Any]) -> str:
        env = {k: v for k, v in os.environ.items() if k not in SECRET_VARIABLES}
        env.update(environment(doc))
        try:
            proc = subprocess.Popen(
                self.settings.command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            return f"cannot run {self.settings.command[0]}: {exc.strerror or exc}"
        deadline = time.monotonic() + self.settings.timeout
        data: bytes | None = json.dumps(doc).encode() + b"\n"
        while True:
            try:
                out, _ = proc.communicate(
                    data, timeout=min(self.heartbeat, max(0.01, deadline - time.monotonic()))
                )
                break
            except subprocess.TimeoutExpired:
                data = None  # already handed over; communicate goes on where it was
                self.touch(pool, event_id)
                if time.monotonic() >= deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.communicate()
                    return f"timed out after {self.settings.timeout:g}s"
        text = out[-OUTPUT_BYTES:].decode(errors="replace").strip()
        if text:
            log.info("hook output for %s/%s: %s", pool, event_id, text[-500:])
        return "" if proc.returncode == 0 else f"exit status {proc.returncode}"

    def call_webhook(self, url: str, doc: dict[str, Any]) -> str:
        request = urllib.request.Request(
            url,
            data=json.dumps(doc).encode(),
            headers={"Content-Type": "application/json", "User-Agent": f"mpp-hooks/{__version__}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout) as resp:
                resp.read(OUTPUT_BYTES)
                return ""
        except urllib.error.HTTPError as exc:
            return f"webhook {redact_webhook(url)} answered {exc.code}"
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"webhook {redact_webhook(url)} failed: {reason}"

    def metrics_text(self) -> str:
        lines = [
            "# HELP mpp_hooks_events_total Events handled, by result (ok: the hook succeeded; "
            "skipped: not wanted by --on; dead: sent to the dead letters).",
            "# TYPE mpp_hooks_events_total counter",
        ]
        for result in ("ok", "skipped", "dead"):
            lines.append(f'mpp_hooks_events_total{{result="{result}"}} {self.counts[result]}')
        lines += [
            "# HELP mpp_hooks_failed_attempts_total Hook attempts that failed (retried or not).",
            "# TYPE mpp_hooks_failed_attempts_total counter",
            f"mpp_hooks_failed_attempts_total {self.counts['failed_attempts']}",
            "# HELP mpp_hooks_dead_letters_total Events this process sent to the dead letters.",
            "# TYPE mpp_hooks_dead_letters_total counter",
            f"mpp_hooks_dead_letters_total {self.counts['dead']}",
        ]
        return "\n".join(lines) + "\n"

    def healthy(self) -> bool:
        return time.monotonic() - self.last_ok < max(5.0, 5 * self.settings.poll_interval)


def serve_http(hooks: Hooks, address: tuple[str, int]) -> ThreadingHTTPServer:
    """/metrics and /healthz on a thread of their own."""

    class Handler(BaseHTTPRequestHandler):
        timeout = 5

        def do_GET(self) -> None:
            if self.path == "/metrics":
                code, body = 200, hooks.metrics_text()
            elif self.path == "/healthz":
                ok = hooks.healthy()
                code, body = (200, "ok\n") if ok else (503, "Redis not read lately\n")
            else:
                code, body = 404, "not found\n"
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(address, Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def settings_of(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    if args.on is None:
        parser.error("--on KIND,... is required (or MPP_HOOKS_ON)")
    if not args.exec and not args.webhook:
        parser.error("give --exec CMD, --webhook URL or both")
    try:
        command = shlex.split(args.exec) if args.exec else []
    except ValueError as exc:
        parser.error(f"--exec: {exc}")
    if args.webhook and urlsplit(args.webhook).scheme not in ("http", "https"):
        parser.error("--webhook: expected an http:// or https:// URL")
    return Settings(
        on=args.on,
        command=command,
        webhook=args.webhook,
        timeout=args.timeout,
        attempts=args.attempts,
        backoff=args.backoff,
        group=args.group,
        consumer=args.consumer or f"{socket.gethostname()}-{os.getpid()}",
        claim_after=args.claim_after,
        poll_interval=args.poll_interval,
    )


def run(argv: Sequence[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_of(args, parser)
    setup_logging(args.log_level)
    try:
        password = read_password(args.redis_password_file)
        store = Store.from_url(args.redis_url, namespace=args.namespace, password=password)
    except StoreError as exc:
        log.error("%s", exc)
        return ExitCode.USAGE
    if redis_refuses(store, args.redis_url, log):
        return ExitCode.UNAVAILABLE
    hooks = Hooks(store, settings)
    server = None
    if args.http_listen is not None:
        try:
            server = serve_http(hooks, args.http_listen)
        except OSError as exc:
            log.error("cannot listen on %s:%d: %s", *args.http_listen, exc)
            return ExitCode.USAGE
    stop_by: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:  # only sets the flag
        stop_by.append(signal.Signals(signum).name)
        hooks.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    targets = [f"exec {shlex.join(settings.command)}"] if settings.command else []
    if settings.webhook:
        targets.append(f"webhook {redact_webhook(settings.webhook)}")
    log.info(
        "mpp-hooks %s in group %s on %s: %s; Redis %s, namespace %s",
        settings.consumer,
        settings.group,
        ",".join(sorted(settings.on)),
        " then ".join(targets),
        redact_url(args.redis_url),
        args.namespace,
    )
    hooks.run()
    log.info("%s received: stopped", stop_by[0] if stop_by else "stop")
    if server is not None:
        server.shutdown()
    return ExitCode.OK


def main() -> None:
    sys.exit(run(sys.argv[1:]))
