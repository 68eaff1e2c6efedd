"""The pure part of the push to HAProxy: reading ``show servers state``, which servers carry
which (pool, node, role), and the runtime commands that do what a reply does."""

from __future__ import annotations

import pytest

from mpp_agent.haproxy_push import (
    Server,
    commands,
    parse_servers_state,
    pool_of,
    role_of,
    servers_for,
)

# As HAProxy 2.6 prints it (two backends, one server checked by another agent, one IPv6).
HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health "
    "srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord "
    "srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port"
)
STATE = f"""1
{HEADER}
2 mysql_rw 1 db1 10.0.0.1 2 0 1 1 1 1 0 2 0 22 0 0 - 3306 - 0 0 - 127.0.0.1 9777
2 mysql_rw 2 db2 10.0.0.2 2 0 1 1 1 1 0 2 0 22 0 0 - 3306 - 0 0 - 127.0.0.1 9777
3 app_pool_ro 1 db1 10.0.0.1 2 0 1 1 1 1 0 2 0 22 0 0 - 3306 - 0 0 - 127.0.0.1 9777
3 app_pool_ro 2 other 10.0.0.3 2 0 1 1 1 1 0 2 0 22 0 0 - 3306 - 0 0 - 127.0.0.1 9999
4 web 1 v6 fd00::1 2 0 1 1 1 1 0 2 0 22 0 0 - 3307 - 0 0 - 127.0.0.1 9777
"""


def test_parse_servers_state() -> None:
    servers = parse_servers_state(STATE)
    assert servers[0] == Server("mysql_rw", "db1", "10.0.0.1:3306", 9777)
    assert servers[3] == Server("app_pool_ro", "other", "10.0.0.3:3306", 9999)
    assert servers[4] == Server("web", "v6", "[fd00::1]:3307", 9777)
    assert parse_servers_state("") == []
    assert parse_servers_state("1\n# be_name srv_name\nx y\n") == []  # columns missing


@pytest.mark.parametrize(
    ("backend", "role"),
    [("mysql_rw", "rw"), ("app_pool_ro", "ro"), ("APP-RO", "ro"), ("web", None), ("rwx", None)],
)
def test_role_of(backend: str, role: str | None) -> None:
    assert role_of(backend) == role


@pytest.mark.parametrize(
    ("backend", "node", "pools", "pool"),
    [
        ("mysql_rw", "n1", {"n1": ["app_pool"]}, "app_pool"),  # the node's only pool
        ("a_rw", "n1", {"n1": ["a", "b"]}, "a"),  # named by the backend
        ("ab_rw", "n1", {"n1": ["a", "ab"]}, "ab"),  # the longest name that fits
        ("mysql_rw", "n1", {"n1": ["a", "b"]}, None),  # ambiguous: left to the agent-check
        ("mysql_rw", "n9", {"n1": ["a"]}, None),  # not a node of any pool
    ],
)
def test_pool_of(backend: str, node: str, pools: dict[str, list[str]], pool: str | None) -> None:
    assert pool_of(backend, node, pools) == pool


def test_servers_for_keeps_this_agents_servers_of_rw_and_ro_backends() -> None:
    found = servers_for(parse_servers_state(STATE), 9777, {"10.0.0.1:3306": ["app_pool"]})
    assert found == {
        ("app_pool", "10.0.0.1:3306", "rw"): [Server("mysql_rw", "db1", "10.0.0.1:3306", 9777)],
        ("app_pool", "10.0.0.1:3306", "ro"): [Server("app_pool_ro", "db1", "10.0.0.1:3306", 9777)],
    }


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("up ready", ["agent up", "state ready"]),
        ("up ready 75%", ["agent up", "state ready", "weight 75%"]),
        ("up drain", ["agent up", "state drain"]),
        ("down", ["agent down"]),
    ],
)
def test_commands_do_what_the_reply_does(words: str, expected: list[str]) -> None:
    server = Server("mysql_rw", "db1", "10.0.0.1:3306", 9777)
    assert commands(server, words) == [f"set server mysql_rw/db1 {c}" for c in expected]
