"""Shared fixtures: the real servers of ``tests/servers.py``, started once per session.

``mariadb_cluster`` is restored to healthy after every test that used it (``cluster.restore()``),
so a test may kill, freeze or misconfigure nodes without cleaning up after itself.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.servers import (
    HAProxy,
    MariaDBCluster,
    RedisClusterServers,
    RedisServer,
    require_binary,
    short_tempdir,
    wait_until,
)

# Tests start the console scripts by name (mpp-poller, mpp-agent, mpp-admin): those of the
# interpreter running pytest come first, since `make test` runs `.venv/bin/python -m pytest`
# without activating the venv (a fresh CI machine has them nowhere else on PATH).
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the whole session; tests get it flushed through ``redis_url``."""
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session Redis, FLUSHALLed first (restarted if a test left it dead)."""
    if not redis_server.is_running:
        redis_server.start()
    with redis_server.client() as client:
        client.flushall()
        client.script_flush()
    return redis_server.url


@pytest.fixture
def redis_master_and_replica() -> Iterator[tuple[RedisServer, RedisServer]]:
    """A redis-server and its replica, in sync, of this test's own (free to SIGSTOP or kill:
    stopping a server SIGCONTs it first)."""
    master = RedisServer().start()
    replica = RedisServer().start()
    try:
        replica.client().replicaof("127.0.0.1", master.port)
        wait_until(
            lambda: replica.client().info("replication")["master_link_status"] == "up",
            15,
            "the replica in sync",
        )
        yield master, replica
    finally:
        replica.cleanup()
        master.cleanup()


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own, free to stop and restart."""
    server = RedisServer()
    try:
        yield server.start()
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A Redis Cluster of 3 masters and 3 replicas for one test module (fails under CI
    without redis-server / redis-cli)."""
    cluster = RedisClusterServers()
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def mariadb_cluster() -> Iterator[MariaDBCluster]:
    """node1 <-> node2 master-master, node3 replica of node1, replication running."""
    cluster = MariaDBCluster(3)
    try:
        yield cluster.start()
    finally:
        cluster.cleanup()


@pytest.fixture(autouse=True)
def _restore_cluster_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "mariadb_cluster" in request.fixturenames:
        cluster: MariaDBCluster = request.getfixturevalue("mariadb_cluster")
        cluster.restore()


@pytest.fixture(scope="session")
def haproxy_bin() -> str:
    return require_binary("haproxy")


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory under /tmp (for unix sockets), removed after the test."""
    path = short_tempdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def haproxy_factory(short_tmp: Path, haproxy_bin: str) -> Iterator[Callable[[str], HAProxy]]:
    """``haproxy_factory(cfg_text)`` -> a started HAProxy, stopped after the test."""
    started: list[HAProxy] = []

    def make(cfg_text: str) -> HAProxy:
        proxy = HAProxy(cfg_text, short_tmp / f"h{len(started)}")
        started.append(proxy)
        return proxy.start()

    try:
        yield make
    finally:
        for proxy in started:
            proxy.stop()
