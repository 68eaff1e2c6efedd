"""The probe against real MariaDB nodes: every failure an operator meets, as MPP words it."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from mpp_agent.model import NodeId, NodeState, NodeType, Observation, Outcome, PoolState, State
from mpp_agent.positions import missing
from mpp_agent.probe import ProbeResult, ProbeSettings, probe_node
from mpp_agent.state import excuse_cut_links
from tests.servers import (
    APP_PASSWORD,
    APP_USER,
    MONITOR_PASSWORD,
    MONITOR_USER,
    MariaDBCluster,
    MariaDBNode,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.integration

SETTINGS = ProbeSettings(MONITOR_USER, MONITOR_PASSWORD, connect_timeout=1.0, read_timeout=1.0)


def probe(node: MariaDBNode, settings: ProbeSettings = SETTINGS) -> ProbeResult:
    return probe_node(NodeId.parse(node.node_id), settings)


def test_healthy_node(mariadb_cluster: MariaDBCluster) -> None:
    for node in mariadb_cluster.nodes:
        result = probe(node)
        assert result.observation.outcome is Outcome.HEALTHY, result.observation.message
        assert result.observation.message == ""
        assert result.node == NodeId("127.0.0.1", node.port)
        metrics = result.metrics
        assert metrics.read_only is False
        assert metrics.max_connections == 50
        assert metrics.threads_connected is not None and metrics.threads_connected >= 1
        assert metrics.lag == 0
        assert metrics.server_version is not None and "MariaDB" in metrics.server_version
        assert 0 < result.latency < 1.0


def test_a_node_named_by_its_address_logs_in_without_a_name_lookup(
    mariadb_cluster: MariaDBCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No resolver is asked for 127.0.0.1 (gevent's would hand it to a thread and back); a
    node named by a host name still is looked up, and a lookup that fails says so."""

    def no_lookup(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "lookups refused by the test")

    monkeypatch.setattr(socket, "getaddrinfo", no_lookup)
    node = mariadb_cluster.node1
    by_address = probe(node)
    assert by_address.observation.is_healthy, by_address.observation.message
    by_name = probe_node(NodeId("localhost", node.port), SETTINGS)
    assert by_name.observation.outcome is Outcome.CONNECT
    assert "lookups refused by the test" in by_name.observation.message
    monkeypatch.undo()
    assert probe_node(NodeId("localhost", node.port), SETTINGS).observation.is_healthy


def test_a_login_asks_its_statements_in_one_round_trip(mariadb_cluster: MariaDBCluster) -> None:
    """The server's general log: after the login, one query carries the probe's statements
    (Threads_connected with them), not one query each, and PyMySQL's SET NAMES in front of
    them rather than in a round trip of its own."""
    node = mariadb_cluster.node3
    node.sql("TRUNCATE mysql.general_log; SET GLOBAL log_output='TABLE'; SET GLOBAL general_log=ON")
    try:
        result = probe(node)
    finally:
        node.sql("SET GLOBAL general_log=OFF")
    assert result.observation.is_healthy, result.observation.message
    assert result.metrics.threads_connected is not None and result.metrics.threads_connected >= 1
    queries = [
        text.decode() if isinstance(text, bytes) else text
        for (text,) in node.sql(
            "SELECT argument FROM mysql.general_log WHERE command_type = 'Query' "
            f"AND user_host LIKE '{MONITOR_USER}[%' ORDER BY event_time"
        )
    ]
    (query,) = queries
    statements = query.split(";")
    assert statements[:3] == ["SET NAMES utf8mb4", "SHOW TABLES", "SHOW SLAVE STATUS"]
    assert statements[3].startswith("SELECT @@global.read_only")
    assert statements[4:] == ["SHOW GLOBAL STATUS LIKE 'Threads_connected'"]


def test_read_only_is_a_metric_not_an_error(mariadb_cluster: MariaDBCluster) -> None:
    mariadb_cluster.node2.sql("SET GLOBAL read_only=ON")
    result = probe(mariadb_cluster.node2)
    assert result.observation.is_healthy  # MPP does not check read_only (3.3)
    assert result.metrics.read_only is True


def test_killed_node_is_a_connect_error(mariadb_cluster: MariaDBCluster) -> None:
    node = mariadb_cluster.node2
    node.kill9()
    result = probe(node)
    assert result.observation.outcome is Outcome.CONNECT
    assert result.observation.message.startswith(
        f"Could not connect to mysql host {node.node_id}: Can't connect to MySQL server"
    )
    assert result.observation.unreachable  # refused: nothing listens
    assert result.latency < SETTINGS.connect_timeout


def test_frozen_node_is_a_connect_error_within_the_timeout(
    mariadb_cluster: MariaDBCluster,
) -> None:
    node = mariadb_cluster.node2
    node.sigstop()
    started = time.monotonic()
    result = probe(node)
    elapsed = time.monotonic() - started
    assert result.observation.outcome is Outcome.CONNECT
    assert result.observation.message.startswith(f"Could not connect to mysql host {node.node_id}:")
    assert not result.observation.unreachable  # TCP accepted: reachable, but hung
    assert elapsed < SETTINGS.connect_timeout + 1.0


@contextlib.contextmanager
def connections_exhausted(node: MariaDBNode) -> Iterator[None]:
    """max_connections=2 (clamped to 10) and app sessions held until the server refuses one."""
    node.sql("SET GLOBAL max_connections=2")
    held: list[Any] = []
    try:
        for _ in range(20):
            try:
                held.append(node.connect_tcp(APP_USER, APP_PASSWORD))
            except pymysql.err.OperationalError as exc:
                assert exc.args[0] == 1040 or "Too many connections" in str(exc)
                break
        else:
            pytest.fail("the server never refused a connection")
        yield
    finally:
        for conn in held:
            with contextlib.suppress(pymysql.err.MySQLError, OSError):
                conn.close()


def test_too_many_connections_is_a_connect_error(mariadb_cluster: MariaDBCluster) -> None:
    node = mariadb_cluster.node2
    with connections_exhausted(node):
        result = probe(node)
    assert result.observation.outcome is Outcome.CONNECT
    assert result.observation.message == (
        f"Could not connect to mysql host {node.node_id}: Too many connections"
    )
    assert not result.observation.unreachable  # the server answered: clients see it too


def test_stopped_replication_is_a_request_error(mariadb_cluster: MariaDBCluster) -> None:
    node = mariadb_cluster.node2
    node.sql("STOP SLAVE")
    result = probe(node)
    assert result.observation.outcome is Outcome.REQUEST
    assert (
        result.observation.message == "Slave Error: Slave SQL is not running, Slave_SQL_Running=No."
    )
    assert result.metrics.lag is None  # NULL while stopped: unknown


def test_stopped_io_thread_is_a_request_error(mariadb_cluster: MariaDBCluster) -> None:
    node = mariadb_cluster.node3
    node.sql("STOP SLAVE IO_THREAD")
    result = probe(node)
    assert result.observation.outcome is Outcome.REQUEST
    assert (
        result.observation.message == "Slave Error: Slave IO is not running, Slave_IO_Running=No."
    )


def test_io_thread_reconnecting_to_a_dead_source_is_excused_by_the_tick(
    mariadb_cluster: MariaDBCluster,
) -> None:
    # node3 replicates from node1: with node1 gone its IO thread keeps "Connecting" (2003).
    # The probe reports it with the source; the tick, which sees node1 down, excuses it.
    source, node = mariadb_cluster.node1, mariadb_cluster.node3
    source.kill9()
    wait_until(lambda: (node.slave_status() or {}).get("Last_IO_Errno") in (2003, 2013), 15, "IO")
    result = probe(node)
    assert result.observation.outcome is Outcome.REQUEST
    details = result.observation.replication
    assert details is not None
    assert details.source_unreachable and details.source == source.node_id
    pool = PoolState(
        "p",
        (
            NodeState(NodeId.parse(source.node_id), NodeType.PRIMARY, State.ACTIVE),
            NodeState(NodeId.parse(node.node_id), NodeType.SECONDARY, State.STANDBY),
        ),
    )
    seen = {pool.nodes[0].node: probe(source).observation, pool.nodes[1].node: result.observation}
    assert excuse_cut_links(pool, seen)[pool.nodes[1].node].is_healthy


def test_positions_and_read_only_are_read(mariadb_cluster: MariaDBCluster) -> None:
    source, node = mariadb_cluster.node1, mariadb_cluster.node3
    source.sql("CREATE TABLE IF NOT EXISTS mppmon.positions (id INT PRIMARY KEY)")
    source.sql("REPLACE INTO mppmon.positions VALUES (1)")
    mariadb_cluster.wait_replicated(source)
    node.sql("SET GLOBAL read_only=ON")
    details = probe(node).observation.replication
    assert details is not None
    binlog = source.sql("SELECT @@gtid_binlog_pos")[0][0]
    assert details.unapplied == 0 and details.caught_up is True
    assert details.read_only is True
    assert details.io_running == "Yes" and details.sql_running == "Yes"
    assert missing(binlog, details.binlog, details.applied, details.received) == 0
    assert details.server_id == 3


def test_io_thread_refused_by_its_source_is_a_request_error(
    mariadb_cluster: MariaDBCluster,
) -> None:
    node = mariadb_cluster.node3
    try:
        node.sql("STOP SLAVE; CHANGE MASTER TO MASTER_PASSWORD='wrong'; START SLAVE")
        wait_until(lambda: (node.slave_status() or {}).get("Last_IO_Errno") == 1045, 15, "1045")
        result = probe(node)
        assert result.observation.outcome is Outcome.REQUEST
        assert "Slave_IO_Running=Connecting" in result.observation.message
    finally:
        node.sql("STOP SLAVE")
        node.change_master(mariadb_cluster.node1)
        node.sql("START SLAVE")


def test_node_without_replication_is_a_request_error(mariadb_cluster: MariaDBCluster) -> None:
    node = mariadb_cluster.node3
    node.sql("STOP SLAVE; RESET SLAVE ALL")
    result = probe(node)
    assert result.observation.outcome is Outcome.REQUEST
    assert (
        result.observation.message == f"Could not get slave status for mysql host {node.node_id}."
    )


def test_empty_monitoring_database_is_a_connect_error(mariadb_cluster: MariaDBCluster) -> None:
    node = mariadb_cluster.node2
    node.sql(
        "SET sql_log_bin=0; CREATE DATABASE mppempty;"
        f" GRANT SELECT ON mppempty.* TO '{MONITOR_USER}'@'127.0.0.1'"
    )
    try:
        settings = ProbeSettings(MONITOR_USER, MONITOR_PASSWORD, database="mppempty")
        result = probe(node, settings)
    finally:
        node.sql(
            f"SET sql_log_bin=0; REVOKE SELECT ON mppempty.* FROM '{MONITOR_USER}'@'127.0.0.1';"
            " DROP DATABASE mppempty"
        )
    assert result.observation.outcome is Outcome.CONNECT
    assert result.observation.message == (
        f"Query Error: No tables found for database mppempty on server {node.node_id}"
    )


def test_a_database_the_monitor_may_not_use_is_an_abstention(
    mariadb_cluster: MariaDBCluster,
) -> None:
    node = mariadb_cluster.node1
    result = probe(node, ProbeSettings(MONITOR_USER, MONITOR_PASSWORD, database="nosuchdb"))
    assert result.observation == Observation.abstain(
        "Access denied for user 'monitor'@'127.0.0.1' to database 'nosuchdb'"
    )  # 1044


def test_unknown_monitoring_database_is_an_abstention(mariadb_cluster: MariaDBCluster) -> None:
    node = mariadb_cluster.node1
    # With a grant on it, the server admits the database does not exist (1049).
    node.sql(f"SET sql_log_bin=0; GRANT SELECT ON mppgone.* TO '{MONITOR_USER}'@'127.0.0.1'")
    try:
        result = probe(node, ProbeSettings(MONITOR_USER, MONITOR_PASSWORD, database="mppgone"))
    finally:
        node.sql(f"SET sql_log_bin=0; REVOKE SELECT ON mppgone.* FROM '{MONITOR_USER}'@'127.0.0.1'")
    assert result.observation == Observation.abstain("Unknown database 'mppgone'")


def test_wrong_password_is_an_abstention_that_hides_the_password(
    mariadb_cluster: MariaDBCluster,
) -> None:
    secret = "s3cret-Wr0ng-pw"
    settings = ProbeSettings(MONITOR_USER, secret)
    node = mariadb_cluster.node1
    result = probe(node, settings)
    assert result.observation == Observation.abstain(
        "Access denied for user 'monitor'@'127.0.0.1' (using password: YES)"
    )  # 1045
    for text in (repr(result), str(result), repr(settings), str(settings)):
        assert secret not in text


@contextlib.contextmanager
def monitor_user(cluster: MariaDBCluster, name: str, options: str, grants: str) -> Iterator[str]:
    """A monitoring user of this test's own on every node (not replicated), dropped after."""
    for node in cluster.nodes:
        node.sql(
            f"SET sql_log_bin=0; CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY 'pw{name}'"
            f" {options}; GRANT SELECT ON mppmon.* TO '{name}'@'127.0.0.1'; {grants}"
        )
    try:
        yield f"pw{name}"
    finally:
        for node in cluster.nodes:
            node.sql(f"SET sql_log_bin=0; DROP USER IF EXISTS '{name}'@'127.0.0.1'")


def test_locked_account_is_an_abstention(mariadb_cluster: MariaDBCluster) -> None:
    with monitor_user(mariadb_cluster, "locked", "ACCOUNT LOCK", "") as password:
        result = probe(mariadb_cluster.node2, ProbeSettings("locked", password))
    assert result.observation.is_abstained  # 4151
    assert "locked" in result.observation.message


def test_missing_slave_monitor_privilege_is_an_abstention(mariadb_cluster: MariaDBCluster) -> None:
    # Connects and sees the table, but SHOW SLAVE STATUS is refused (1227).
    with monitor_user(mariadb_cluster, "nopriv", "", "") as password:
        result = probe(mariadb_cluster.node2, ProbeSettings("nopriv", password))
    assert result.observation.is_abstained, result.observation
    assert result.observation.message.startswith("SHOW SLAVE STATUS: Access denied; you need")


def test_no_password_abstains_without_connecting() -> None:
    node = NodeId("127.0.0.1", free_port())  # nothing listens: a connect would be refused
    result = probe_node(node, ProbeSettings(MONITOR_USER, ""))
    assert result.observation == Observation.abstain(
        "no MySQL password configured (--mysql-password-file or MPP_MYSQL_PASSWORD)"
    )


def test_nothing_listening_is_a_connect_error() -> None:
    node = NodeId("127.0.0.1", free_port())
    result = probe_node(node, SETTINGS)
    assert result.observation.outcome is Outcome.CONNECT
    assert result.observation.message.startswith(f"Could not connect to mysql host {node}:")
    assert result.observation.unreachable


def test_a_name_that_does_not_resolve_is_unreachable() -> None:
    node = NodeId("no-such-host.invalid", 3306)
    result = probe_node(node, SETTINGS)
    assert result.observation.outcome is Outcome.CONNECT
    assert result.observation.unreachable


@contextlib.contextmanager
def garbage_server(reply: bytes) -> Iterator[int]:
    """A TCP server that answers every connection with ``reply`` (not a MySQL greeting)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.sendall(reply)
                time.sleep(0.1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        thread.join(5)


@pytest.mark.parametrize(
    "reply",
    [b"HTTP/1.1 400 Bad Request\r\n\r\n", b"\x01\x00\x00\x00\xff", b"\x05\x00\x00\x00\x0a\x35"],
    ids=["http", "error-byte", "short-greeting"],
)
def test_a_server_that_is_not_mysql_is_a_connect_error(reply: bytes) -> None:
    with garbage_server(reply) as port:
        result = probe_node(NodeId("127.0.0.1", port), SETTINGS)
    assert result.observation.outcome is Outcome.CONNECT
    assert result.observation.message.startswith(
        f"Could not connect to mysql host 127.0.0.1:{port}:"
    )
