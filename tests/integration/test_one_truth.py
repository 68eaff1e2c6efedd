"""Every view tells one truth: the agent's replies, ``is-active``, ``report``, ``list`` and
``pools`` against a real Redis and a real mpp-agent, through overrides and their expiry."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from mpp_agent.model import State
from tests.integration.admin_support import mpp_admin
from tests.integration.test_agent_server import N1, N2, AgentProcess, make_pool, start_agent
from tests.servers import wait_until

pytestmark = pytest.mark.integration
__all__ = ["start_agent"]  # the fixture, imported for this module


def is_active(redis_url: str, node: str) -> str:
    result = mpp_admin(redis_url, "is-active", node)
    assert result.exit_code == (0 if result.stdout == "OK\n" else 1), result.stderr
    return result.stdout.strip()


def test_an_expired_standby_override_leaves_one_writer_in_every_view(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    """override A --state STANDBY --for 2s, override B --state ACTIVE, A's override expires."""
    store = make_pool(redis_url)
    agent = start_agent(redis_url)
    assert is_active(redis_url, N1) == "OK"
    short = mpp_admin(
        redis_url, "override", N1, "--state", "STANDBY", "--reason", "a", "--for", "2s"
    )
    assert short.exit_code == 0, short.stderr
    pinned = mpp_admin(redis_url, "override", N2, "--state", "ACTIVE", "--reason", "move writes")
    assert pinned.exit_code == 0, pinned.stderr
    agent.wait_reply(f"p1 {N2} rw", lambda r: r.startswith("up ready #ACTIVE"))

    expiry = store.load_pool("p1").nodes[0].override
    assert expiry is not None and expiry.expires_at is not None
    wait_until(lambda: store.server_time() > expiry.expires_at + 0.5, 10, "the override to expire")
    # the pollers have not dropped the expired override: every view must still agree
    assert store.load_pool("p1").nodes[0].state is State.ACTIVE
    agent.wait_reply(
        f"p1 {N1} rw",
        lambda r: (
            r.startswith("up drain #STANDBY OK")
            and "writes pinned to 127.0.0.1:3307 by override" in r
        ),
    )
    assert agent.ask(f"p1 {N2} rw").startswith("up ready #ACTIVE")
    assert (is_active(redis_url, N1), is_active(redis_url, N2)) == ("NO", "OK")

    pools = mpp_admin(redis_url, "pools").stdout.splitlines()
    assert pools[1].split()[:3] == ["p1", "OK", N2]
    listed = mpp_admin(redis_url, "list").stdout.splitlines()
    assert any(
        line == "  R answers STANDBY: ACTIVE, writes pinned to 127.0.0.1:3307 by override"
        for line in listed
    ), listed
    report = mpp_admin(redis_url, "report", N1).stdout.splitlines()
    assert report[0].startswith("OK/ACTIVE (PRIMARY)")
    assert report[-1] == "answers STANDBY: ACTIVE, writes pinned to 127.0.0.1:3307 by override"

    doc = json.loads(mpp_admin(redis_url, "is-active", N1, "--json").stdout)
    assert (doc["active"], doc["pool"], doc["route"]["state"]) == (False, "p1", "STANDBY")
    doc = json.loads(mpp_admin(redis_url, "report", N2, "--json").stdout)
    assert doc["pool"] == "p1" and doc["route"]["takes_writes"] is True
    assert doc["override"]["state"] == "ACTIVE" and doc["override"]["reason"] == "move writes"

    # the agent logged the change of answer once (when A's override made it STANDBY; its expiry
    # changed no word), not on every probe
    for _ in range(5):
        agent.ask(f"p1 {N1} rw")
    time.sleep(1.5)  # two more full refreshes
    changes = [
        line
        for line in agent.log.read_text().splitlines()
        if f"p1 {N1} rw: up ready -> up drain" in line
    ]
    assert len(changes) == 1, agent.log.read_text()
    assert "(STANDBY OK level=OK; override: a by admin:" in changes[0]
