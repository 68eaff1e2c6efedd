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


def test_probe_timeout_not_below_the_deadline_is_refused_at_start_up(
    redis_url, mariadb_cluster, tmp_path
):
    store = Store.from_url(redis_url)
    create_pool(store, mariadb_cluster, interval=1.0)
    before = dump(store)
    result = run_poller(redis_url, tmp_path, "--once", "--probe-timeout", "0.6")
    assert result.returncode == 2
    assert "probe timeout 0.6s is not shorter than its deadline 0.5s" in result.stderr
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
    assert "Access denied for user 'monitor'" in (pool.nodes[0].message or "")
    assert secret not in result.stderr + result.stdout
    assert secret not in repr(dump(store))


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
