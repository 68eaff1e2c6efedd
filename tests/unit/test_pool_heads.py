"""A pool's head (interval and observers, stored beside its document) as a poller reads it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mpp_agent.codec import head_of, head_text
from mpp_agent.config import new_pool, parse_failoverpool
from mpp_agent.model import PoolHead


def test_a_head_is_the_interval_and_observers_of_its_document() -> None:
    pool = new_pool(parse_failoverpool("name:p1;primary:10.0.0.1", interval=2.5), "a" * 32)
    pool = replace(pool, observers=0, version=7)
    assert head_text(pool) == "2.5 0 " + "a" * 32
    assert PoolHead.of(pool) == PoolHead("p1", 2.5, 0, "a" * 32, 7)
    # The scripts store it after the version they write.
    assert head_of("p1", b"7", b"7 " + head_text(pool).encode()) == PoolHead.of(pool)
    # A pool without an incarnation (created before pools had one) has a head of three parts.
    assert head_of("p1", b"7", b"7 2.5 0 ") == PoolHead("p1", 2.5, 0, "", 7)


@pytest.mark.parametrize(
    ("version", "head"),
    [
        pytest.param(b"7", None, id="missing: written by a writer that keeps no head"),
        pytest.param(None, b"7 2.0 2", id="no version: the pool is gone"),
        pytest.param(b"8", b"7 2.0 2", id="stale: written for another version"),
        pytest.param(b"7", b"7 2.0", id="too few parts"),
        pytest.param(b"7", b"7 2.0 2 ab 9", id="too many parts"),
        pytest.param(b"7", b"7 2.0 2 XYZ", id="incarnation not an id"),
        pytest.param(b"7", b"7 2.0 2 " + b"a" * 33, id="incarnation too long"),
        pytest.param(b"x", b"x 2.0 2", id="version not a number"),
        pytest.param(b"-1", b"-1 2.0 2", id="version out of range"),
        pytest.param(b"7", b"7 two 2", id="not a number"),
        pytest.param(b"7", b"7 2.0 2.5", id="observers not whole"),
        pytest.param(b"7", b"7 nan 2", id="not finite"),
        pytest.param(b"7", b"7 inf 2", id="infinite"),
        pytest.param(b"7", b"7 0 2", id="interval out of bounds"),
        pytest.param(b"7", b"7 1e-300 2", id="interval too small"),
        pytest.param(b"7", b"7 2.0 -1", id="observers out of bounds"),
        pytest.param(b"7", b"7 2.0 100000", id="too many observers"),
    ],
)
def test_a_head_that_cannot_stand_for_its_document_is_none(
    version: bytes | None, head: bytes | None
) -> None:
    # None: the poller reads the whole document instead, which decides.
    assert head_of("p1", version, head) is None


def test_every_accepted_interval_and_observers_survive_the_head() -> None:
    for interval in (0.1, 0.3, 1.0, 2.0, 1 / 3, 86400.0):
        for observers in (0, 1, 3, 64):
            pool = replace(
                new_pool(parse_failoverpool("name:p1;primary:10.0.0.1"), "a" * 32),
                interval=interval,
                observers=observers,
            )
            text = b"3 " + head_text(pool).encode()
            assert head_of("p1", b"3", text) == PoolHead("p1", interval, observers, "a" * 32, 3)
