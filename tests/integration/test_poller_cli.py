"""mpp-poller as an operator runs it: cron mode, start-up checks, exit codes, secrets, SIGTERM."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import State
from mpp_agent.store import Store
from tests.daemons import FAST_PROBE, PollerProcess, watch_ticks
from tests.servers import MariaDBCluster, free_port

pytestmark = pytest.mark.integration


def create_pool(store: Store, cluster: MariaDBCluster, interval: float = 1.0) -> None:
    text = f"name:p1;primary:{cluster.node1.node_id};secondary:{cluster.node2.node_id}"
    store.create_pool(parse_failoverpool(text, interval=interval))


def run_poller(
    url: str, tmp: Path, *args: str, password: str = "monpass"
) -> subprocess.CompletedProcess[str]:
    secret = tmp / "pw"
    secret.write_text(password + "\n")
    argv = ["mpp-poller", "--redis-url", url, "--mysql-password-file", str(secret), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def dump(store: Store) -> dict[str, object]:
    """Every key of Redis with its value, to compare before/after or to search for secrets."""
    out: dict[str, object] = {}
    for key in store.client.scan_iter("*"):
        kind = store.client.type(key).decode()
        if kind == "hash":
            out[key.decode()] = store.client.hgetall(key)
        elif kind == "string":
            out[key.decode()] = store.client.get(key)
        elif kind == "stream":
            out[key.decode()] = store.client.xrange(key)
        elif kind == "zset":
            out[key.decode()] = store.client.zrange(key, 0, -1)
        elif kind == "set":
            out[key.decode()] = sorted(store.client.smembers(key))
    return out


def test_once_is_mpps_cron_mode(redis_url, mariadb_cluster, tmp_path):
    store = Store.from_url(redis_url)
    create_pool(store, mariadb_cluster)
    first = run_poller(redis_url, tmp_path, "--once", *FAST_PROBE)
    assert first.returncode == 0, first.stderr
    pool = store.load_pool("p1")
    assert [n.state for n in pool.nodes] == [State.STANDBY, State.STANDBY]
    time.sleep(1.0)  # the next round
    second = run_poller(redis_url, tmp_path, "--once", *FAST_PROBE)
    assert second.returncode == 0, second.stderr
    pool = store.load_pool("p1")
    assert [n.state for n in pool.nodes] == [State.ACTIVE, State.STANDBY]
    assert "committed p1 status OK, ACTIVE: " in second.stderr


def test_a_probe_timeout_above_the_deadline_is_only_an_upper_bound(
    redis_url, mariadb_cluster, tmp_path
):
    store = Store.from_url(redis_url)
    create_pool(store, mariadb_cluster, interval=1.0)
    result = run_poller(redis_url, tmp_path, "--once", "--probe-timeout", "30")
    assert result.returncode == 0, result.stderr
    assert "committed p1" in result.stderr
    assert [n.state for n in store.load_pool("p1").nodes] == [State.STANDBY, State.STANDBY]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        pytest.param(
            ["--probe-timeout", "0"], "--probe-timeout: must be > 0 and <= 3600", id="zero-probe"
        ),
        pytest.param(
            ["--connect-timeout", "-1"], "--connect-timeout: must be > 0 and <= 3600", id="negative"
        ),
        pytest.param(
            ["--probe-timeout", "0.01"], "--probe-timeout 0.01s is too short", id="too-short"
        ),
        pytest.param(["--checkpoint", "10.0.0.1"], "not a checkpoint (HOST:PORT)", id="no-port"),
        pytest.param(["--checkpoint", "gw:99999"], "bad port in checkpoint", id="bad-port"),
    ],
)
def test_bad_options_are_refused_at_start_up(redis_url, mariadb_cluster, tmp_path, args, text):
    store = Store.from_url(redis_url)
    create_pool(store, mariadb_cluster, interval=1.0)
    before = dump(store)
    result = run_poller(redis_url, tmp_path, "--once", *args)
    assert result.returncode == 2
    assert text in result.stderr
    assert "Traceback" not in result.stderr
    assert dump(store) == before


@pytest.mark.parametrize(
    ("url", "code", "text"),
    [
        pytest.param("http://127.0.0.1:1/0", 2, "Unsupported Redis URL scheme", id="bad-scheme"),
        pytest.param("redis://127.0.0.1:{port}/0", 6, "Redis unreachable", id="redis-down"),
    ],
)
def test_bad_redis_is_a_clear_error(tmp_path, url, code, text):
    result = run_poller(url.format(port=free_port()), tmp_path, "--once")
    assert result.returncode == code, result.stderr
    assert text in result.stderr
    assert "Traceback" not in result.stderr


def test_mysql_password_appears_nowhere(redis_url, mariadb_cluster, tmp_path):
    store = Store.from_url(redis_url)
    create_pool(store, mariadb_cluster)
    secret = "S3cret-never-shown"
    result = run_poller(redis_url, tmp_path, "--once", *FAST_PROBE, password=secret)
    assert result.returncode == 0
    pool = store.load_pool("p1")
    # A wrong password is the poller's fault: it abstains, the nodes are not judged.
    assert [(n.state, n.requests) for n in pool.nodes] == [(State.UNKNOWN, None)] * 2
    assert (pool.nodes[0].monitor_note or "").startswith(
        "monitor cannot check: Access denied for user 'monitor'"
    )
    assert secret not in result.stderr + result.stdout
    assert secret not in repr(dump(store))


def test_no_mysql_password_abstains_loudly(redis_url, mariadb_cluster, tmp_path):
    store = Store.from_url(redis_url)
    create_pool(store, mariadb_cluster)
    result = run_poller(redis_url, tmp_path, "--once", password="")
    assert result.returncode == 0, result.stderr
    no_password = "no MySQL password configured (--mysql-password-file or MPP_MYSQL_PASSWORD)"
    assert f"WARNING mpp.poller: {no_password}: this poller abstains on every node" in result.stderr
    said = [line for line in result.stderr.splitlines() if "WARNING mpp.poller: abstaining" in line]
    assert len(said) == 1, result.stderr  # one line for every node with the same reason
    for node in (mariadb_cluster.node1, mariadb_cluster.node2):
        assert f"p1/{node.node_id}" in said[0]
    assert said[0].endswith(no_password)
    pool = store.load_pool("p1")
    assert [(n.state, n.requests) for n in pool.nodes] == [(State.UNKNOWN, None)] * 2
    assert pool.nodes[1].monitor_note == f"monitor cannot check: {no_password}"


def test_sigterm_stops_gracefully_and_leaves(redis_url, mariadb_cluster):
    store = Store.from_url(redis_url)
    create_pool(store, mariadb_cluster)
    poller = PollerProcess(redis_url, "p-term").start()
    try:
        watch_ticks(store, "p1", lambda s: len(s) >= 3, 10)
        assert [p.poller_id for p in store.pollers() if p.alive] == ["p-term"]
        assert poller.stop() == 0
        assert store.pollers() == []
        assert "stopped (SIGTERM)" in poller.output()
    finally:
        poller.cleanup()


def test_pool_option_polls_only_the_named_pools(redis_url, mariadb_cluster, tmp_path):
    store = Store.from_url(redis_url)
    create_pool(store, mariadb_cluster)
    text = f"name:p2;primary:{mariadb_cluster.node3.node_id}"
    store.create_pool(parse_failoverpool(text, interval=1.0))
    untouched = store.load_pool("p2")
    result = run_poller(redis_url, tmp_path, "--once", "--pool", "p1", *FAST_PROBE)
    assert result.returncode == 0, result.stderr
    assert store.load_pool("p1").last_round >= 0
    assert store.load_pool("p2") == untouched


def test_the_readmes_quick_start_interval_works_with_default_options(
    redis_url, mariadb_cluster, tmp_path
):
    store = Store.from_url(redis_url)
    create_pool(store, mariadb_cluster, interval=2.0)  # as the README's quick start
    result = run_poller(redis_url, tmp_path, "--once")  # no timeout options
    assert result.returncode == 0, result.stderr
    assert "shortest interval served 0.167s" in result.stderr
    assert [n.state for n in store.load_pool("p1").nodes] == [State.STANDBY, State.STANDBY]
