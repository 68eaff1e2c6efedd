"""``mpp-agent --haproxy-socket``: a changed answer reaches a live HAProxy through its runtime API
at once, long before the next agent-check (agent-inter 60 s here), on every server carrying it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mpp_agent.model import State, Status
from tests.integration.test_agent_server import (
    AgentProcess,
    metric,
    set_nodes,
    start_agent,
)
from tests.integration.test_haproxy_httpchk import banner_server, served_by, web_pool
from tests.servers import HAProxy, free_ports, wait_until

pytestmark = pytest.mark.integration
_ = start_agent  # the fixture, imported for this module's tests


def config(rw: int, ro: int, node1: str, node2: str, agent_port: int) -> str:
    """haproxy/haproxy.cfg's two listeners, without the MySQL check and with an agent-check so
    rare that only a push can explain a change within seconds."""
    default = (
        f"default-server check inter 60s agent-check agent-addr 127.0.0.1 "
        f"agent-port {agent_port} agent-inter 60s"
    )
    return f"""
defaults
    mode tcp
    timeout connect 1s
    timeout client 10s
    timeout server 10s

listen mysql_rw
    bind 127.0.0.1:{rw}
    balance first
    {default}
    server db1 {node1} agent-send "web {node1} rw\\n"
    server db2 {node2} agent-send "web {node2} rw\\n"

listen mysql_ro
    bind 127.0.0.1:{ro}
    balance leastconn
    {default} weight 100
    server db1 {node1} agent-send "web {node1} ro\\n"
    server db2 {node2} agent-send "web {node2} ro\\n"

listen other_backend
    bind 127.0.0.1:{free_ports(1)[0]}
    {default}
    server db1 {node1} agent-send "web {node1} rw\\n"
"""


def status(proxy: HAProxy, backend: str, server: str) -> tuple[str, str]:
    """The server's state (``UP``, ``DRAIN``, ``DOWN``, without HAProxy's ``1/3`` or
    ``(agent)``) and its effective weight, from ``show stat``."""
    row = proxy.server(backend, server)
    return row["status"].split()[0], row["weight"]


def test_changed_answers_are_pushed_at_once(
    redis_url: str,
    short_tmp: Path,
    start_agent: Callable[..., AgentProcess],
    haproxy_factory: Callable[[str], HAProxy],
) -> None:
    db1, db2, rw, ro = free_ports(4)
    node1, node2 = f"127.0.0.1:{db1}", f"127.0.0.1:{db2}"
    store = web_pool(redis_url, node1, node2, interval=60.0)
    socket_path = short_tmp / "h0" / "admin.sock"  # where haproxy_factory puts the first one
    agent = start_agent(redis_url, "--haproxy-socket", str(socket_path))
    with banner_server(db1), banner_server(db2):
        proxy = haproxy_factory(config(rw, ro, node1, node2, agent.port))
        assert proxy.admin_socket == socket_path
        wait_until(lambda: status(proxy, "mysql_rw", "db1")[0] == "UP", 10, "HAProxy up")

        # failover: node1 FAILED, node2 ACTIVE: pushed to mysql_rw and mysql_ro, not elsewhere
        failed = {"state": State.FAILED_OFFLINE, "status": Status.FAIL, "requests": 4}
        set_nodes(store, "web", {node1: failed, node2: {"state": State.ACTIVE}})
        took = wait_until(
            lambda: (
                status(proxy, "mysql_rw", "db1")[0] == "DOWN"
                and status(proxy, "mysql_ro", "db1")[0] == "DOWN"
            ),
            10,
            "the push: node1 down",
            interval=0.02,
        )
        assert took < 5  # well before the next agent-check, 60 s away
        assert {served_by(rw) for _ in range(5)} == {db2}

        # hand-back, with node2 a STANDBY at request level OK INFO: drained on rw, 75% on ro
        back = {"state": State.STANDBY, "status": Status.OK, "requests": 1}
        set_nodes(store, "web", {node1: {"state": State.ACTIVE, "status": Status.OK}, node2: back})
        wait_until(
            lambda: (
                status(proxy, "mysql_rw", "db2")[0] == "DRAIN"
                and status(proxy, "mysql_rw", "db1")[0] == "UP"
                and status(proxy, "mysql_ro", "db2") == ("UP", "75")
            ),
            10,
            "the push: hand-back",
            interval=0.02,
        )
        assert status(proxy, "mysql_ro", "db1")[0] == "DRAIN"
        assert {served_by(rw) for _ in range(5)} == {db1}
    text = agent.log.read_text()
    assert f"pushed to HAProxy at {socket_path}: mysql_rw/db1 down (web {node1} rw)" in text
    assert f"mysql_ro/db2 up ready 75% (web {node2} ro)" in text
    assert "other_backend" not in text  # no role in its name: left to its agent-check


def test_a_lost_push_is_logged_once_and_the_agent_check_still_answers(
    redis_url: str, tmp_path: Path, start_agent: Callable[..., AgentProcess]
) -> None:
    node1, node2 = "127.0.0.1:3306", "127.0.0.1:3307"
    store = web_pool(redis_url, node1, node2)
    gone = tmp_path / "no-haproxy.sock"
    agent = start_agent(redis_url, "--haproxy-socket", str(gone))
    for i in range(2):
        writer, other = (node2, node1) if i == 0 else (node1, node2)
        set_nodes(store, "web", {writer: {"state": State.ACTIVE}, other: {"state": State.STANDBY}})
        agent.wait_reply(f"web {writer} rw", lambda r: r.startswith("up ready"))
        wait_until(
            lambda n=i + 1: (
                metric(agent.metrics_port, "mpp_agent_haproxy_push_failures_total") >= n
            ),
            5,
            "the failed push",
        )
    text = agent.log.read_text()
    assert text.count(f"pushing to HAProxy at {gone} failed") == 1  # once, not per push
    assert "its agent-checks will correct it" in text
    assert metric(agent.metrics_port, "mpp_agent_haproxy_pushes_total") == 0
