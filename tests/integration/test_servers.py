"""The test servers themselves: what other tests rely on when they use these fixtures."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.servers import (
    APP_PASSWORD,
    APP_USER,
    HAProxy,
    MariaDBCluster,
    MariaDBNode,
    RedisServer,
    free_port,
    require_binary,
)

pytestmark = pytest.mark.integration


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def insert_row(node: MariaDBNode) -> str:
    """Write one row as the application user over TCP; return its marker."""
    marker = uuid.uuid4().hex
    conn = node.connect_tcp(APP_USER, APP_PASSWORD, database="app")
    try:
        with conn.cursor() as cur:
            cur.execute("INSERT INTO app.t (origin, v) VALUES (@@server_id, %s)", (marker,))
    finally:
        conn.close()
    return marker


def has_row(node: MariaDBNode, marker: str) -> bool:
    return bool(node.sql(f"SELECT count(*) FROM app.t WHERE v='{marker}'")[0][0] == 1)


def wait_row(cluster: MariaDBCluster, node: MariaDBNode, marker: str) -> None:
    cluster.wait_replicated(cluster.node1)
    cluster.wait_replicated(cluster.node2)
    assert has_row(node, marker), f"row {marker} never reached {node!r}"


def test_redis_answers_ping(redis_url: str, redis_server: RedisServer) -> None:
    assert redis_url == f"redis://127.0.0.1:{redis_server.port}/0"
    with redis_server.client() as client:
        assert client.ping() is True
        assert client.dbsize() == 0  # redis_url flushed it


def test_fresh_redis_restarts_on_the_same_port(fresh_redis: RedisServer) -> None:
    port, pid = fresh_redis.port, fresh_redis.pid
    with fresh_redis.client() as client:
        client.set("k", "v")
    fresh_redis.restart()
    assert (fresh_redis.port, fresh_redis.url.endswith(f":{port}/0")) == (port, True)
    assert fresh_redis.pid != pid and not is_alive(pid)
    with fresh_redis.client() as client:
        assert client.get("k") is None  # no persistence: data lost on restart


def test_stopped_redis_leaves_no_process() -> None:
    server = RedisServer().start()
    pid, workdir = server.pid, server.workdir
    server.cleanup()
    assert not is_alive(pid)
    assert not workdir.exists()


def test_write_on_node1_reaches_node2_and_node3(mariadb_cluster: MariaDBCluster) -> None:
    marker = insert_row(mariadb_cluster.node1)
    wait_row(mariadb_cluster, mariadb_cluster.node2, marker)
    assert has_row(mariadb_cluster.node3, marker)


def test_write_on_node2_reaches_node1(mariadb_cluster: MariaDBCluster) -> None:
    marker = insert_row(mariadb_cluster.node2)
    wait_row(mariadb_cluster, mariadb_cluster.node1, marker)
    assert has_row(mariadb_cluster.node3, marker)  # node3 <- node1 <- node2


def test_every_node_is_a_running_replica(mariadb_cluster: MariaDBCluster) -> None:
    sources = {}
    for node in mariadb_cluster.nodes:
        status = node.slave_status()
        assert status is not None
        assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")
        sources[node.index] = status["Master_Port"]
    c = mariadb_cluster
    assert sources == {1: c.node2.port, 2: c.node1.port, 3: c.node1.port}


def test_kill9_then_start_resumes_replication(mariadb_cluster: MariaDBCluster) -> None:
    node2 = mariadb_cluster.node2
    old_pid = node2.pid
    node2.kill9()
    assert not is_alive(old_pid)
    marker = insert_row(mariadb_cluster.node1)  # written while node2 is dead
    node2.start()
    assert node2.pid != old_pid
    node2.wait_slave()  # the slave threads start by themselves from the datadir
    wait_row(mariadb_cluster, node2, marker)
    mariadb_cluster.node1.wait_slave()  # and node1 reconnected to node2
    wait_row(mariadb_cluster, mariadb_cluster.node1, insert_row(node2))


def test_restore_heals_a_frozen_and_a_reset_node(mariadb_cluster: MariaDBCluster) -> None:
    mariadb_cluster.node3.sql("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=ON")
    mariadb_cluster.node2.sigstop()
    mariadb_cluster.restore()
    assert mariadb_cluster.node2.sql("SELECT 1") == [(1,)]
    assert mariadb_cluster.node3.sql("SELECT @@global.read_only") == [(0,)]
    assert mariadb_cluster.node3.slave_status() is not None
    marker = insert_row(mariadb_cluster.node1)
    wait_row(mariadb_cluster, mariadb_cluster.node3, marker)


TINY_CFG = """
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s

listen db
    bind 127.0.0.1:{bind}
    server s1 127.0.0.1:{target}
"""


def test_haproxy_checks_a_tiny_config(haproxy_bin: str, short_tmp: Path) -> None:
    proxy = HAProxy(TINY_CFG.format(bind=free_port(), target=free_port()), short_tmp)
    assert proxy.check_config().returncode == 0
    broken = short_tmp / "broken.cfg"
    broken.write_text("listen db\n    bind 127.0.0.1:1\n    no-such-keyword here\n")
    done = proxy.check_config(broken)
    assert done.returncode != 0
    assert "no-such-keyword" in done.stdout + done.stderr


def test_haproxy_runtime_api(haproxy_bin: str, short_tmp: Path) -> None:
    proxy = HAProxy(TINY_CFG.format(bind=free_port(), target=free_port()), short_tmp).start()
    try:
        assert "Name: HAProxy" in proxy.admin("show info")
        assert proxy.server("db", "s1")["status"] == "no check"
        proxy.admin("set server db/s1 state maint")
        assert proxy.server("db", "s1")["status"] == "MAINT"
        pid = proxy.pid
    finally:
        proxy.stop()
    assert not is_alive(pid)


def test_require_binary_skips_on_a_laptop_but_fails_in_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert require_binary("sh").endswith("/sh")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require_binary("no-such-binary-mpp")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require_binary("no-such-binary-mpp")
