"""Long loops of one greenlet that let the event loop run now and then.

A poller walks thousands of nodes and pools a cycle in a few long loops (sending the kept
connections' queries, reading their replies, ticking and encoding the pools). Each loop is
quick per item, but held in one go it would stall the event loop for hundreds of milliseconds
on a busy machine: the logins under way (five or six round trips each, every one waiting for
the loop) would then run out of their bound, and the replies and timers wait as long. So such
a loop hands the event loop a turn whenever it has held it for ``SLICE`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import gevent

T = TypeVar("T")

SLICE = 0.01  # seconds a loop may hold the event loop before it lets the others run


def paced(items: Iterable[T], slice_s: float = SLICE) -> Iterator[T]:
    """``items``, one by one; between two of them the event loop runs once (other greenlets,
    readable sockets, timers) whenever ``slice_s`` seconds have passed since it last did."""
    began = time.monotonic()
    for item in items:
        yield item
        if time.monotonic() - began >= slice_s:
            gevent.sleep(0)
            began = time.monotonic()
