"""haproxy/haproxy.cfg: valid for the installed HAProxy, wired to the agent as documented, and
a real HAProxy applying real agent replies (the words and the reason) to its servers."""

from __future__ import annotations

import math
import re
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import PoolState, State
from mpp_agent.state import AdminResult
from mpp_agent.store import Store
from tests.servers import HAProxy, free_ports, require_binary, spawn, terminate, wait_until

pytestmark = pytest.mark.integration

CONFIG = Path(__file__).resolve().parents[2] / "haproxy" / "haproxy.cfg"


def sections(text: str) -> dict[str, list[str]]:
    """``listen``/``defaults``/``global`` section header -> its lines (comments dropped)."""
    out: dict[str, list[str]] = {}
    current = ""
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("server") else raw
        if not line.strip():
            continue
        if not line[0].isspace():
            current = line.strip()
            out[current] = []
        else:
            out[current].append(line.strip())
    return out


def test_shipped_config_is_valid() -> None:
    result = subprocess.run(
        [require_binary("haproxy"), "-c", "-f", str(CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "[WARNING]" not in output and "[ALERT]" not in output, output


@pytest.mark.parametrize(("backend", "role"), [("mysql_rw", "rw"), ("mysql_ro", "ro")])
def test_every_server_asks_the_agent_about_itself(backend: str, role: str) -> None:
    lines = sections(CONFIG.read_text())[f"listen {backend}"]
    default = next(line for line in lines if line.startswith("default-server"))
    for word in ("agent-check", "agent-addr 127.0.0.1", "agent-port 9777", "agent-inter 1s"):
        assert word in default
    assert "on-marked-down shutdown-sessions" in default
    servers = [line for line in lines if line.startswith("server ")]
    assert len(servers) >= 2
    for line in servers:
        match = re.fullmatch(r'server (\S+) (\S+) agent-send "(\S+) (\S+) (\S+)\\n"', line)
        assert match, line
        _, address, pool, node, asked_role = match.groups()
        assert (node, asked_role) == (address, role)
        assert pool == "app_pool"
    if role == "rw":
        assert "balance first" in lines


# ---------------------------------------------------------------------------------------------
# a real HAProxy, a real agent, a real Redis


@pytest.fixture
def agent_port(redis_url: str, tmp_path: Path) -> Iterator[int]:
    (port,) = free_ports(1)
    argv = ["mpp-agent", "--redis-url", redis_url, "--listen", f"127.0.0.1:{port}"]
    proc = spawn(argv, tmp_path / "agent.log")
    try:
        wait_until(lambda: port_open(port), 15, "mpp-agent to listen")
        yield port
    finally:
        terminate(proc)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def agent_status(proxy: HAProxy, backend: str, server: str, status: str) -> bool:
    return proxy.server(backend, server)["agent_status"] == status


def local_config(agent_port: int) -> tuple[str, list[int]]:
    """The shipped config on free local ports, regular checks off (no MariaDB here: the agent
    alone decides, which is what this test looks at)."""
    text = CONFIG.read_text()
    rw_port, ro_port, db1, db2 = free_ports(4)
    text = text.replace("0.0.0.0:6446", f"127.0.0.1:{rw_port}")
    text = text.replace("0.0.0.0:6447", f"127.0.0.1:{ro_port}")
    text = text.replace("10.0.0.1:3306", f"127.0.0.1:{db1}").replace(
        "10.0.0.2:3306", f"127.0.0.1:{db2}"
    )
    text = text.replace("agent-port 9777", f"agent-port {agent_port}")
    text = text.replace("check inter 2s fall 3 rise 2 ", "")
    return text, [db1, db2]


def set_states(store: Store, states: dict[int, tuple[State, int]]) -> None:
    def change(pool: PoolState) -> AdminResult:
        nodes = tuple(
            replace(n, state=states[n.node.port][0], requests=states[n.node.port][1])
            for n in pool.nodes
        )
        return AdminResult(replace(pool, nodes=nodes), "", ())

    store.admin("app_pool", change)
    pool = store.load_pool("app_pool")
    now = store.server_time()
    store.commit(pool, pool, [], "test", now, math.floor(now / pool.interval))


UP = "no check"  # regular checks are off here: an agent "up ready" server shows this


def wait_status(proxy: HAProxy, expected: dict[tuple[str, str], tuple[str, str]]) -> None:
    """Wait until each (backend, server) shows (status, weight); weight "*" is any."""
    seen: dict[tuple[str, str], tuple[str, str]] = {}

    def reached() -> bool:
        for (backend, server), (_, weight) in expected.items():
            row = proxy.server(backend, server)
            seen[(backend, server)] = (row["status"], "*" if weight == "*" else row["weight"])
        return seen == expected

    try:
        wait_until(reached, 8, "haproxy to apply the agent replies", interval=0.1)
    except TimeoutError:
        raise AssertionError(f"expected {expected}, saw {seen}") from None


def test_haproxy_applies_the_agent_replies(
    redis_url: str, agent_port: int, haproxy_factory: Callable[[str], HAProxy]
) -> None:
    text, (db1, db2) = local_config(agent_port)
    store = Store.from_url(redis_url)
    spec = f"name:app_pool;primary:127.0.0.1:{db1};secondary:127.0.0.1:{db2}"
    store.create_pool(parse_failoverpool(spec, interval=60))
    set_states(store, {db1: (State.ACTIVE, 0), db2: (State.STANDBY, 1)})
    proxy = haproxy_factory(text)

    wait_status(
        proxy,
        {
            ("mysql_rw", "db1"): (UP, "*"),
            ("mysql_rw", "db2"): ("DRAIN (agent)", "*"),
            ("mysql_ro", "db1"): ("DRAIN (agent)", "*"),
            ("mysql_ro", "db2"): (UP, "75"),
        },
    )
    wait_until(lambda: agent_status(proxy, "mysql_rw", "db1", "L7OK"), 5, "agent L7OK")

    # failover: db1 FAILED, db2 ACTIVE and the only one left for reads too
    set_states(store, {db1: (State.FAILED_OFFLINE, 4), db2: (State.ACTIVE, 2)})
    wait_status(
        proxy,
        {
            ("mysql_rw", "db1"): ("DOWN (agent)", "*"),
            ("mysql_rw", "db2"): (UP, "*"),
            ("mysql_ro", "db1"): ("DOWN (agent)", "*"),
            ("mysql_ro", "db2"): (UP, "50"),
        },
    )
    wait_until(lambda: agent_status(proxy, "mysql_rw", "db1", "L7STS"), 5, "agent L7STS")
    row = proxy.server("mysql_rw", "db1")
    # HAProxy shows our reason as the agent's last message
    assert row["last_agt"] == "via agent : down (FAILED_OFFLINE OK level=FAIL_CRITICAL)"
