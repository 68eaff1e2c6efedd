"""What every mpp daemon shares: exit codes, logging set-up, and the stop flag signals set.

Daemon loops have one shape (house style rule 6): a fixed cadence, one summary line per cycle,
any exception in a cycle logged with its traceback while the loop goes on, and signal handlers
that only set a flag so the loop stops at a safe point.
"""

from __future__ import annotations

import enum
import logging
import signal
import sys
import threading
from types import FrameType

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1  # an unexpected failure
    USAGE = 2  # bad options or configuration
    UNAVAILABLE = 6  # Redis could not be reached when it had to be


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), format=LOG_FORMAT, stream=sys.stderr
    )


class StopFlag:
    """Set by SIGTERM or SIGINT; the daemon's loop checks it and waits on it between cycles."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name = ""

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self._event.set()

    def set(self) -> None:
        self._event.set()

    @property
    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True if a stop was asked for meanwhile."""
        return self._event.wait(max(0.0, seconds))
