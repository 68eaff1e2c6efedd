"""What every mpp daemon shares: exit codes, logging set-up, signals, and quiet error logging.

Daemon loops have one shape: a fixed cadence, one summary line per cycle, any exception in a
cycle logged while the loop goes on, and signal handlers that only set a flag so the loop stops
at a safe point.

Signals, the same for mpp-poller and mpp-agent: SIGTERM and SIGINT stop gracefully (exit 0);
SIGHUP never stops a daemon: each logs one line saying what it did with it (both log to
stderr, so there is no log file to reopen).

A problem that repeats (Redis down, a bad document, hostile clients) is logged once and then
only when it changes (``OnChange``) or at most once a minute per kind (``RateLimited``), so a
flood of bad input cannot flood the log.
"""

from __future__ import annotations

import argparse
import enum
import logging
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mpp_agent.store import Store

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MAX_SECONDS = 3600.0  # the longest timeout or period a daemon option takes
MAX_COUNT = 1_000_000  # the largest connection count a daemon option takes


class ExitCode(enum.IntEnum):
    """The exit codes of mpp-poller and mpp-agent (README "Exit codes and signals")."""

    OK = 0  # stopped by SIGTERM/SIGINT, or --once done
    FAILURE = 1  # an unexpected failure (a bug)
    USAGE = 2  # bad options, configuration, Redis URL or password file
    UNAVAILABLE = 6  # Redis refused us at start-up (password, db, not Redis), or --once: down


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), format=LOG_FORMAT, stream=sys.stderr
    )


def seconds(text: str) -> float:
    """An option in seconds: more than 0, at most MAX_SECONDS (never inf or nan)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= MAX_SECONDS:
        raise argparse.ArgumentTypeError(f"must be > 0 and <= {MAX_SECONDS:g}, got {text!r}")
    return value


def count(text: str) -> int:
    """An option that counts: an integer from 1 to MAX_COUNT."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_COUNT:
        raise argparse.ArgumentTypeError(f"must be an integer from 1 to {MAX_COUNT}, got {text!r}")
    return int(text)


class StopFlag:
    """Set by SIGTERM or SIGINT; the daemon's loop checks it and waits on it between cycles.

    SIGHUP is counted and handed to ``on_hangup`` (which must only log or set a flag)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name = ""
        self.hangups = 0

    def install(self, on_hangup: Callable[[], None] | None = None) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)
        self._on_hangup = on_hangup
        signal.signal(signal.SIGHUP, self._hangup)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self._event.set()

    def _hangup(self, _signum: int, _frame: FrameType | None) -> None:
        self.hangups += 1
        if self._on_hangup is not None:
            self._on_hangup()

    def set(self) -> None:
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if a stop was asked for meanwhile."""
        return self._event.wait(max(0.0, seconds))


class OnChange:
    """Log a repeating problem once, then only when its text changes; ``ok()`` when it ends."""

    def __init__(self, logger: logging.Logger, recovered: str) -> None:
        self.logger = logger
        self.recovered = recovered
        self.last = ""

    def problem(self, text: str, level: int = logging.WARNING) -> None:
        if text != self.last:
            self.logger.log(level, "%s", text)
            self.last = text

    def ok(self) -> None:
        if self.last:
            self.logger.info("%s", self.recovered)
            self.last = ""


class RateLimited:
    """At most one line per kind per ``period`` seconds, saying how many were left out."""

    def __init__(
        self,
        logger: logging.Logger,
        period: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.period = period
        self.clock = clock
        self._next: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def note(self, kind: str, text: str, level: int = logging.WARNING) -> bool:
        """Log ``text`` unless a line of this kind was logged less than a period ago."""
        now = self.clock()
        if now < self._next.get(kind, -1.0):
            self._left_out[kind] = self._left_out.get(kind, 0) + 1
            return False
        left_out = self._left_out.pop(kind, 0)
        more = f" ({left_out} more since the last such line)" if left_out else ""
        self.logger.log(level, "%s: %s%s", kind, text, more)
        self._next[kind] = now + self.period
        return True


def redis_refuses(store: Store, url: str, logger: logging.Logger) -> bool:
    """Check Redis once at start-up. True (after one ERROR line saying what to fix) when Redis
    refuses us: a wrong password, no such database, not a Redis server, Sentinels that are
    plain Redis. Redis merely unreachable is a WARNING and False: the daemon keeps retrying."""
    from mpp_agent.store import REDIS_ERRORS, is_redis_down, redis_problem

    try:
        store.check()
    except REDIS_ERRORS as exc:
        if is_redis_down(exc):
            logger.warning("%s; will keep retrying", redis_problem(exc, url))
            return False
        logger.error("%s", redis_problem(exc, url))
        return True
    return False


# Descriptors kept back from the open-file limit: Redis connections, listeners, stdio.
RESERVED_FDS = 64


def raise_nofile_limit() -> int:
    """Every held connection is a descriptor: lift the soft limit to the hard one; the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError):
            return soft
        return target
    return soft
