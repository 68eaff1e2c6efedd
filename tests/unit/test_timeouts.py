"""Probe timeouts fitted to each pool's interval: one row per case."""

from __future__ import annotations

import pytest

from mpp_agent.config import new_pool, parse_failoverpool
from mpp_agent.model import NodeId
from mpp_agent.poller import node_timeouts
from mpp_agent.rounds import deadline
from mpp_agent.timeouts import (
    Timeouts,
    fit,
    limits,
    min_interval,
    unserved_reason,
)

DEFAULTS = limits()


def approx(t: Timeouts) -> tuple[float, float, float]:
    return (round(t.connect, 4), round(t.read, 4), round(t.probe, 4))


@pytest.mark.parametrize(
    ("interval", "bounds", "expected"),
    [
        pytest.param(30.0, DEFAULTS, (2.0, 2.0, 4.5), id="30s-the-bounds"),
        pytest.param(10.0, DEFAULTS, (2.0, 2.0, 4.5), id="10s-the-bounds"),
        pytest.param(2.0, DEFAULTS, (0.6, 0.6, 0.9), id="2s-quick-start"),
        pytest.param(1.0, DEFAULTS, (0.3, 0.3, 0.45), id="1s"),
        pytest.param(0.5, DEFAULTS, (0.15, 0.15, 0.225), id="half-second"),
        pytest.param(10.0, limits(0.5, 1.0), (0.5, 1.0, 2.0), id="explicit-bounds-win"),
        pytest.param(1.0, limits(5.0, 5.0, 8.0), (0.3, 0.3, 0.45), id="bounds-never-raise"),
        pytest.param(0.2, limits(0.05, 0.05, 0.09), (0.05, 0.05, 0.09), id="tight-explicit-bounds"),
    ],
)
def test_fit(interval: float, bounds: Timeouts, expected: tuple[float, float, float]) -> None:
    fitted = fit(interval, bounds)
    assert approx(fitted) == expected
    # Whatever the bounds: the probe ends inside the deadline, and no socket wait is longer
    # than the whole probe may take.
    assert fitted.probe < deadline(interval)
    assert max(fitted.connect, fitted.read) <= fitted.probe
    assert fitted.connect <= bounds.connect and fitted.read <= bounds.read
    assert fitted.probe <= bounds.probe


@pytest.mark.parametrize(
    ("interval", "bounds", "served"),
    [
        pytest.param(0.5, DEFAULTS, True, id="half-second"),
        pytest.param(0.17, DEFAULTS, True, id="just-above-the-shortest"),
        pytest.param(0.16, DEFAULTS, False, id="just-below-the-shortest"),
        pytest.param(0.1, DEFAULTS, False, id="the-shortest-pool-config-allows"),
        # An operator who bounds the sockets below the floor gets what they asked for.
        pytest.param(0.1, limits(0.02, 0.02, 0.04), True, id="explicit-tiny-bounds"),
    ],
)
def test_unserved_reason(interval: float, bounds: Timeouts, served: bool) -> None:
    reason = unserved_reason(interval, bounds)
    assert (reason is None) is served
    if reason is not None:
        assert f"interval {interval:g}s is shorter than" in reason


def test_min_interval_is_the_boundary() -> None:
    shortest = min_interval(DEFAULTS)
    assert shortest == pytest.approx(1 / 6)
    assert unserved_reason(shortest, DEFAULTS) is None
    assert unserved_reason(shortest * 0.99, DEFAULTS) is not None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param((None, None, None), (2.0, 2.0, 4.5), id="defaults"),
        pytest.param((1.0, None, None), (1.0, 2.0, 3.5), id="probe-follows-connect"),
        pytest.param((None, None, 9.0), (2.0, 2.0, 9.0), id="probe-explicit"),
    ],
)
def test_limits(
    args: tuple[float | None, float | None, float | None], expected: tuple[float, ...]
) -> None:
    assert approx(limits(*args)) == expected


@pytest.mark.parametrize(
    "args",
    [(0.0, None, None), (None, -1.0, None), (None, None, 0.0), (None, None, 1e9), (1.0, 1.0, 0.05)],
    ids=["zero-connect", "negative-read", "zero-probe", "huge-probe", "probe-shorter-than-floor"],
)
def test_limits_refuse_nonsense(args: tuple[float | None, float | None, float | None]) -> None:
    with pytest.raises(ValueError, match="timeout"):
        limits(*args)


def test_a_node_in_several_pools_gets_the_tightest() -> None:
    fast = new_pool(parse_failoverpool("name:fast;primary:a;secondary:b", interval=1.0))
    slow = new_pool(parse_failoverpool("name:slow;primary:b;secondary:c", interval=30.0))
    timeouts = node_timeouts([slow, fast], DEFAULTS)
    assert approx(timeouts[NodeId("a")]) == (0.3, 0.3, 0.45)
    assert approx(timeouts[NodeId("b")]) == (0.3, 0.3, 0.45)
    assert approx(timeouts[NodeId("c")]) == (2.0, 2.0, 4.5)
