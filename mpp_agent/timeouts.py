"""Probe timeouts that fit each pool's round: pure arithmetic, no I/O.

A round's tick is forced at its deadline, half an interval after the round starts, so every
probe of the round must end before it: a node that does not answer in time is a failing
observation, never a late one. The poller therefore derives each pool's timeouts from its
interval:

* the hard bound on one whole probe is ``PROBE_SHARE`` of the deadline (the rest of the deadline
  records the observation);
* the connect timeout and the per-query read timeout are each ``SOCKET_SHARE`` of that bound,
  so a node that stops answering shows as a timed-out socket (a clear message) before the hard
  bound cuts the probe.

The poller's options (``--connect-timeout``, ``--read-timeout``, ``--probe-timeout``) are upper
bounds on those values, never raised to fit. A node in several pools is probed once per cycle
with the tightest timeouts of its pools. A pool whose interval is so short that the connect or
read timeout would fall below ``MIN_SOCKET_TIMEOUT`` (or below the operator's own bound, if
that is lower) cannot be served: nothing a probe says in that time is worth a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpp_agent.rounds import DEADLINE_FRACTION, deadline

PROBE_SHARE = 0.9  # of the deadline, for the probe; the rest records the observation
SOCKET_SHARE = 2 / 3  # of the probe bound, for each socket operation (connect, one query)
REACH_SHARE = 0.8  # of what a timed-out query leaves of the probe bound, for a TCP connect
MIN_SOCKET_TIMEOUT = 0.05  # below this a connect over anything but loopback is a coin toss
MAX_TIMEOUT = 3600.0

DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_READ_TIMEOUT = 2.0
# A whole probe: one connect, a few queries; the previous fixed default, kept as the bound.
DEFAULT_PROBE_TIMEOUT = DEFAULT_CONNECT_TIMEOUT + DEFAULT_READ_TIMEOUT + 0.5


@dataclass(frozen=True)
class Timeouts:
    """Seconds: connect (each socket read of the handshake), read (each query), probe (all)."""

    connect: float
    read: float
    probe: float

    def tightest(self, other: Timeouts) -> Timeouts:
        return Timeouts(
            min(self.connect, other.connect),
            min(self.read, other.read),
            min(self.probe, other.probe),
        )

    @property
    def reach(self) -> float:
        """The TCP connect that follows a kept connection's timed-out query (is the node
        reachable at all?): within what the query left of the probe bound."""
        return max(MIN_SOCKET_TIMEOUT, min(self.connect, (self.probe - self.read) * REACH_SHARE))

    def __str__(self) -> str:
        return f"connect {self.connect:.3g}s, read {self.read:.3g}s, probe {self.probe:.3g}s"


def limits(
    connect: float | None = None, read: float | None = None, probe: float | None = None
) -> Timeouts:
    """The operator's upper bounds, defaults filled in; ValueError for bounds nothing can use.

    Without ``probe`` the bound is connect + read + 0.5 s, as it always was."""
    connect = DEFAULT_CONNECT_TIMEOUT if connect is None else connect
    read = DEFAULT_READ_TIMEOUT if read is None else read
    probe = connect + read + 0.5 if probe is None else probe
    for name, value in (("connect", connect), ("read", read), ("probe", probe)):
        if not 0 < value <= MAX_TIMEOUT:
            raise ValueError(
                f"--{name}-timeout must be > 0 and <= {MAX_TIMEOUT:g} s, not {value:g}"
            )
    least = socket_floor(Timeouts(connect, read, probe)) / SOCKET_SHARE
    if probe < least:
        raise ValueError(
            f"--probe-timeout {probe:g}s is too short: it must leave each socket operation at "
            f"least {socket_floor(Timeouts(connect, read, probe)):g}s (so at least {least:.3g}s)"
        )
    return Timeouts(connect, read, probe)


def socket_floor(bounds: Timeouts) -> float:
    """The least connect/read timeout worth probing with under these bounds."""
    return min(MIN_SOCKET_TIMEOUT, bounds.connect, bounds.read)


def min_interval(bounds: Timeouts) -> float:
    """The shortest pool interval a poller with these bounds can serve."""
    return socket_floor(bounds) / SOCKET_SHARE / PROBE_SHARE / DEADLINE_FRACTION


def fit(interval: float, bounds: Timeouts) -> Timeouts:
    """A pool's timeouts: a probe of it always ends inside its deadline, within the bounds."""
    probe = min(bounds.probe, PROBE_SHARE * deadline(interval))
    socket = probe * SOCKET_SHARE
    return Timeouts(min(bounds.connect, socket), min(bounds.read, socket), probe)


def unserved_reason(interval: float, bounds: Timeouts) -> str | None:
    """Why a pool with this interval cannot be served, or None when it can."""
    shortest = min_interval(bounds)
    # A hair of tolerance: an interval of exactly the shortest must not fail on rounding.
    if interval >= shortest * (1 - 1e-9):
        return None
    return (
        f"interval {interval:g}s is shorter than {shortest:.3g}s, the shortest this poller can "
        f"serve: its probe must end within half the interval and give each socket operation "
        f"at least {socket_floor(bounds):g}s"
    )
