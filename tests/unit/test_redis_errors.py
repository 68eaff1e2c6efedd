"""Which Redis errors a daemon waits out (Redis down) and which it exits on (a mistake to fix),
whatever form the installed redis-py gives them."""

from __future__ import annotations

import pytest
import redis
import redis.sentinel

from mpp_agent.store import is_redis_down, redis_problem

URL = "redis+sentinel://127.0.0.1:26379/mymaster/0"
NOT_A_SENTINEL = "unknown command 'SENTINEL', with args beginning with: 'MASTERS'"

CASES = {
    "refused connection": (redis.ConnectionError("Error 111 connecting"), True),
    "timeout": (redis.TimeoutError("Timeout reading from socket"), True),
    "no master yet": (redis.sentinel.MasterNotFoundError("No master found for 'mymaster'"), True),
    "wrong password": (redis.AuthenticationError("invalid password"), False),
    # A plain Redis named as a Sentinel: redis-py before 8.2 raises the server's reply...
    "plain Redis, reply": (redis.ResponseError(NOT_A_SENTINEL), False),
    # ... 8.2 and later fold it into "no master found", a ConnectionError.
    "plain Redis, no master": (
        redis.sentinel.MasterNotFoundError(
            f"No master found for 'mymaster' : Redis<127.0.0.1:26379> - ResponseError: "
            f"{NOT_A_SENTINEL}"
        ),
        False,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_only_an_unreachable_redis_is_waited_out(name: str) -> None:
    exc, down = CASES[name]
    assert is_redis_down(exc) is down


@pytest.mark.parametrize("name", ["plain Redis, reply", "plain Redis, no master"])
def test_a_plain_redis_named_as_a_sentinel_is_said_so(name: str) -> None:
    text = redis_problem(CASES[name][0], URL)
    assert text.startswith(f"{URL} names a plain Redis where Sentinels were expected"), text
