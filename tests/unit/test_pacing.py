"""``paced``: a long loop of one greenlet lets the others run, and walks every item in order."""

from __future__ import annotations

import time

import gevent

from mpp_agent.pacing import paced


def busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_long_loop_lets_another_greenlet_run_before_it_ends() -> None:
    ran: list[int] = []
    seen: list[int] = []
    other = gevent.spawn(lambda: ran.append(len(seen)))
    for item in paced(range(20), slice_s=0.01):
        busy(0.003)  # 60 ms in all: a few slices
        seen.append(item)
    other.join(1)
    assert seen == list(range(20))
    assert ran and 0 < ran[0] < 20  # it ran while the loop went on, not after it


def test_a_short_loop_keeps_the_event_loop_to_itself() -> None:
    ran: list[int] = []
    seen: list[int] = []
    other = gevent.spawn(lambda: ran.append(len(seen)))
    for item in paced(range(20), slice_s=10.0):
        seen.append(item)
    assert ran == []  # no turn was handed over within the slice
    other.join(1)
    assert ran == [20]
