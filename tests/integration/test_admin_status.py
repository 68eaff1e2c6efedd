"""``mpp-admin status``: real MariaDB, Redis, two real pollers, the agent and a live HAProxy.

The view must say what each of them really says: the pool's state from Redis, replication as
the probes read it, which pollers observed each node, and what HAProxy's runtime API reports of
every server carrying a node (status, agent status, current sessions). A socket that cannot be
used is said on stderr, with exit 8, after the rest was shown.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.store import Store
from mpp_cli.errors import ExitCode
from tests.daemons import PollerProcess, watch_ticks
from tests.integration.admin_support import mpp_admin
from tests.integration.test_agent_server import AgentProcess, start_agent
from tests.integration.test_poller_abstain import pollers
from tests.servers import APP_PASSWORD, APP_USER, HAProxy, MariaDBCluster, free_ports, wait_until

pytestmark = pytest.mark.integration
_ = (pollers, start_agent)  # the fixtures, imported for this module's tests

INTERVAL = 0.5


def haproxy_config(cluster: MariaDBCluster, agent_port: int, rw: int, ro: int, user: Path) -> str:
    """haproxy/haproxy.cfg's two listeners over the cluster, plus a level user socket."""
    default = (
        f"default-server check inter 500ms agent-check agent-addr 127.0.0.1 "
        f"agent-port {agent_port} agent-inter 300ms"
    )
    servers = {
        role: "\n".join(
            f'    server db{i} {n.node_id} agent-send "st {n.node_id} {role}\\n"'
            for i, n in enumerate(cluster.nodes, 1)
        )
        for role in ("rw", "ro")
    }
    return f"""
global
    stats socket {user} mode 600 level user

defaults
    mode tcp
    timeout connect 1s
    timeout client 30s
    timeout server 30s

listen st_rw
    bind 127.0.0.1:{rw}
    balance first
    {default}
{servers["rw"]}

listen st_ro
    bind 127.0.0.1:{ro}
    balance leastconn
    {default} weight 100
{servers["ro"]}
"""


def make_pool(store: Store, cluster: MariaDBCluster) -> None:
    n1, n2, n3 = (n.node_id for n in cluster.nodes)
    text = f"name:st;primary:{n1};secondary:{n2};secondary:{n3}"
    store.create_pool(parse_failoverpool(text, interval=INTERVAL, max_requests=4))


def status_json(redis_url: str, *args: str) -> tuple[int, dict[str, Any], str]:
    result = mpp_admin(redis_url, "status", *args, "--json")
    return result.exit_code, json.loads(result.stdout), result.stderr


def by_node(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["node"]: n for n in document["pools"][0]["nodes"]}


def servers_of(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{s['backend']}/{s['server']}": s for s in node["haproxy"]}


def test_status_shows_the_pool_the_pollers_and_what_haproxy_says(
    redis_url: str,
    mariadb_cluster: MariaDBCluster,
    pollers: list[PollerProcess],
    start_agent: Callable[..., AgentProcess],
    haproxy_factory: Callable[[str], HAProxy],
    short_tmp: Path,
) -> None:
    store = Store.from_url(redis_url, "mpp")
    make_pool(store, mariadb_cluster)
    n1, n2, n3 = (n.node_id for n in mariadb_cluster.nodes)
    for name in ("ps-a", "ps-b"):
        pollers.append(PollerProcess(redis_url, name).start())
    watch_ticks(store, "st", lambda seen: seen[-1].nodes[0].state == "ACTIVE", 15)
    agent = start_agent(redis_url)
    rw, ro = free_ports(2)
    user_socket = short_tmp / "user.sock"
    proxy = haproxy_factory(haproxy_config(mariadb_cluster, agent.port, rw, ro, user_socket))
    admin_socket = str(proxy.admin_socket)
    wait_until(
        lambda: (
            proxy.server("st_rw", "db1")["status"] == "UP"
            and proxy.server("st_rw", "db2")["status"].startswith("DRAIN")
        ),
        15,
        "HAProxy following the agent",
    )
    # A client session through HAProxy's rw port: HAProxy counts it on the writer's server.
    session = pymysql.connect(
        host="127.0.0.1", port=rw, user=APP_USER, password=APP_PASSWORD, connect_timeout=5
    )
    try:
        wait_until(
            lambda: (
                all(
                    o["poller"] in ("ps-a", "ps-b")
                    for o in status_json(redis_url, "st")[1]["pools"][0]["observers"]
                )
                and len(status_json(redis_url, "st")[1]["pools"][0]["observers"]) == 2
            ),
            10,
            "both pollers in the last round",
        )
        code, document, stderr = status_json(redis_url, "st", "--haproxy-socket", admin_socket)
        assert code == 0, stderr
        assert document["haproxy"] == [
            {"socket": admin_socket, "level": "admin", "error": None, "servers": 6}
        ]
        pool = document["pools"][0]
        assert pool["name"] == "st" and pool["active"] == n1 and pool["status"] == "OK"
        assert [o["poller"] for o in pool["observers"]] == ["ps-a", "ps-b"]
        assert all(o["alive"] for o in pool["observers"])
        nodes = by_node(document)
        assert [nodes[n]["state"] for n in (n1, n2, n3)] == ["ACTIVE", "STANDBY", "STANDBY"]
        for node in (n1, n2, n3):
            shown = nodes[node]
            assert shown["probe"]["poller"] in ("ps-a", "ps-b")
            assert 0 < shown["probe"]["latency"] < 1
            assert shown["probe"]["outcome"] == "healthy" and shown["probe"]["error"] is None
            assert [(o["poller"], o["outcome"]) for o in shown["observers"]] == [
                ("ps-a", "healthy"),
                ("ps-b", "healthy"),
            ]
            assert shown["read_only"] is False
            assert shown["replication"]["io_running"] == "Yes"
            assert shown["replication"]["sql_running"] == "Yes"
            assert shown["replication"]["received"] and shown["replication"]["applied"]
        writer = servers_of(nodes[n1])
        assert set(writer) == {"st_rw/db1", "st_ro/db1"}
        assert (
            writer["st_rw/db1"]["status"].startswith("UP") and writer["st_rw/db1"]["role"] == "rw"
        )
        assert writer["st_rw/db1"]["agent_status"] == "L7OK"
        assert writer["st_rw/db1"]["sessions"] == 1  # the client above
        assert writer["st_rw/db1"]["agent_description"] == "Layer7 check passed"
        assert "ACTIVE" in writer["st_rw/db1"]["agent_reply"]
        standby = servers_of(nodes[n2])
        assert (
            standby["st_rw/db2"]["status"] == "DRAIN (agent)"
            and standby["st_rw/db2"]["sessions"] == 0
        )
        assert (
            standby["st_ro/db2"]["status"].startswith("UP") and standby["st_ro/db2"]["role"] == "ro"
        )

        # The text: one line per pool, aligned node rows, the HAProxy servers under them.
        text = mpp_admin(redis_url, "status", "--haproxy-socket", admin_socket)
        assert text.exit_code == 0, text.stderr
        lines = text.stdout.splitlines()
        assert lines[0].startswith(f"st  status OK  writer {n1}  round ")
        assert lines[0].endswith("observed by ps-a, ps-b")
        header = next(line for line in lines if line.lstrip().startswith("NODE"))
        rows = [line for line in lines if line.lstrip().startswith(tuple((n1, n2, n3)))]
        assert [r.split()[1] for r in rows[:3]] == ["ACTIVE", "STANDBY", "STANDBY"]
        # Aligned: each value starts under its column's name.
        state, observed = header.index("STATE"), header.index("OBSERVED BY")
        assert [r[state:].split()[0] for r in rows[:3]] == ["ACTIVE", "STANDBY", "STANDBY"]
        assert [r[observed:] for r in rows[:3]] == ["ps-a ok, ps-b ok"] * 3
        assert "ps-a ok, ps-b ok" in rows[0]
        assert "Yes/Yes" in rows[1]
        served = next(line for line in lines if "st_rw/db1" in line)
        # HAProxy's words as it says them ("UP", or "UP 1/3" while a check fails)
        assert served.split()[:5] == [admin_socket, "st_rw/db1", "rw", n1, "UP"]
        assert re.search(r"\bUP\b.*\s1\s+1\s+L\w+\s+L7OK\s+via agent : up \(ACTIVE", served)

        # A stopped replica: its threads and the pollers' error are shown.
        mariadb_cluster.node3.sql("STOP SLAVE SQL_THREAD")
        wait_until(
            lambda: by_node(status_json(redis_url, "st")[1])[n3]["probe"]["error"] is not None,
            10,
            "the probe's error",
        )
        shown = by_node(status_json(redis_url, "st")[1])[n3]
        assert "Slave SQL is not running" in shown["probe"]["error"]
        wait_until(
            lambda: (
                (by_node(status_json(redis_url, "st")[1])[n3]["replication"] or {}).get(
                    "sql_running"
                )
                == "No"
            ),
            10,
            "SQL thread No",
        )
        text = mpp_admin(redis_url, "status", "st").stdout
        assert "Yes/No" in text
        assert "      ps-a, ps-b: Slave Error: Slave SQL is not running" in text  # said once
    finally:
        session.close()

    # A level user socket is refused, the rest still shown; exit 8.
    code, document, stderr = status_json(
        redis_url, "st", "--haproxy-socket", admin_socket, "--haproxy-socket", str(user_socket)
    )
    assert code == ExitCode.HAPROXY
    assert document["haproxy"][1]["level"] == "user"
    assert document["haproxy"][1]["error"] == stderr.splitlines()[-1].split(": ", 1)[1]
    assert "is a level user socket: give HAProxy's stats socket at level admin" in stderr
    assert len(servers_of(by_node(document)[n1])) == 2  # the admin socket's, once


@pytest.fixture
def not_haproxy(short_tmp: Path) -> Iterator[Path]:
    """A unix socket whose server answers like no HAProxy."""
    path = short_tmp / "other.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(100)
                conn.sendall(b"+OK hello\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join(5)
    server.close()


def test_status_errors(redis_url: str, short_tmp: Path, not_haproxy: Path) -> None:
    store = Store.from_url(redis_url, "mpp")
    store.create_pool(parse_failoverpool("name:st;primary:10.0.0.1;secondary:10.0.0.2"))
    missing = mpp_admin(redis_url, "status", "nope")
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert missing.stderr.startswith("mpp-admin status: ")
    assert missing.stdout == ""

    refused = short_tmp / "refused.sock"
    bound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    bound.bind(str(refused))  # bound, never listening: connections are refused
    try:
        cases = {
            str(short_tmp / "absent.sock"): "no such socket",
            str(refused): "connection refused (is HAProxy running?)",
            str(not_haproxy): "not HAProxy's runtime API (show cli level answered '+OK hello')",
        }
        for path, why in cases.items():
            result = mpp_admin(redis_url, "status", "--haproxy-socket", path)
            assert result.exit_code == ExitCode.HAPROXY, result.output
            assert result.stderr.startswith(f"mpp-admin status: {path}")
            assert why in result.stderr
            assert result.stdout.startswith("st  status OK  writer -  never ticked")
            assert "10.0.0.1:3306" in result.stdout
    finally:
        bound.close()
    code, document, _ = status_json(redis_url, "--haproxy-socket", str(short_tmp / "absent.sock"))
    assert code == ExitCode.HAPROXY
    assert document["haproxy"][0]["error"].endswith(
        "no such socket (see the 'stats socket' line of HAProxy's global section)"
    )
    nodes = by_node(document)
    assert nodes["10.0.0.1:3306"]["probe"] is None
    assert nodes["10.0.0.1:3306"]["observers"] == [] and nodes["10.0.0.1:3306"]["haproxy"] == []
