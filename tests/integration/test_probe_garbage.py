"""A server that answers garbage: the probe never raises, the poller never logs a traceback.

The fake server (tests/fake_mysql.py) greets like MySQL and accepts the login, then answers
queries with broken packets; real Redis and the real mpp-poller do the rest.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.model import NodeId, Outcome, State
from mpp_agent.probe import ProbeSettings, probe_node
from mpp_agent.store import Store
from tests.daemons import PollerProcess, watch_ticks
from tests.fake_mysql import OK, FakeMySQL, fake_mysql, packet, result_set

pytestmark = pytest.mark.integration

SETTINGS = ProbeSettings("monitor", "pw", connect_timeout=0.5, read_timeout=0.5)
# PyMySQL may SET NAMES while connecting; the monitoring database has a table.
LOGIN = {b"SET": packet(1, OK)}
TABLES = {**LOGIN, b"SHOW TABLES": result_set("Tables_in_mppmon", ["t"])}

# What a broken server can say, and the start of what the observation then says.
GARBAGE = [
    pytest.param(
        packet(1, b"\xfe\x00"), TABLES, "Malformed reply to SHOW SLAVE STATUS", id="short-eof"
    ),
    pytest.param(
        packet(1, b"\xff\x01"),
        TABLES,
        "Malformed reply to",
        id="short-error-packet-to-slave-status",
    ),
    pytest.param(packet(1, b"\xfbfile"), TABLES, "probe failed: RuntimeError", id="load-local"),
    pytest.param(packet(9, b"\x00"), TABLES, "Packet sequence number wrong", id="bad-sequence"),
    pytest.param(b"", TABLES, "Lost connection to MySQL server", id="hang-up"),
    pytest.param(packet(1, b"\xfe\x00"), LOGIN, "Malformed reply to SHOW TABLES", id="tables"),
    pytest.param(packet(1, b"\xff\x01"), {}, "Bad handshake, not a MySQL server?", id="set-names"),
]


@pytest.mark.parametrize(("reply", "replies", "text"), GARBAGE)
def test_garbage_is_a_failing_observation(
    reply: bytes, replies: dict[bytes, bytes], text: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="mpp.probe")
    with fake_mysql(reply, replies=replies) as server:
        node = NodeId("127.0.0.1", server.port)
        first = probe_node(node, SETTINGS)  # never raises
        second = probe_node(node, SETTINGS)
    for result in (first, second):
        assert result.observation.outcome is Outcome.CONNECT
        assert text in result.observation.message, result.observation.message
        assert "\n" not in result.observation.message
    # An unexpected failure's traceback is logged at DEBUG, once however often it happens.
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert all(r.levelno == logging.DEBUG for r in caplog.records)
    assert len(tracebacks) == (1 if "probe failed" in text else 0)


def test_garbage_in_the_login_is_a_failing_observation() -> None:
    with fake_mysql(auth_reply=packet(2, b"\xff")) as server:
        result = probe_node(NodeId("127.0.0.1", server.port), SETTINGS)
    assert result.observation.outcome is Outcome.CONNECT
    assert "Bad handshake, not a MySQL server? (struct.error" in result.observation.message


def test_a_refused_set_names_fails_the_login_in_pymysql_s_words() -> None:
    """The login's SET NAMES goes in front of the probe's statements; a server that refuses it
    is logged in to again, PyMySQL's own SET NAMES words the refusal, and the node fails."""
    code = (1115).to_bytes(2, "little")
    refusal = packet(1, b"\xff" + code + b"#42000Unknown character set: 'utf8mb4'")
    with fake_mysql(replies={b"SET NAMES": refusal}) as server:
        result = probe_node(NodeId("127.0.0.1", server.port), SETTINGS)
        logins = server.connections
    assert result.observation.outcome is Outcome.CONNECT
    assert result.observation.message == (
        f"Could not connect to mysql host 127.0.0.1:{server.port}: Unknown character set: 'utf8mb4'"
    )
    assert logins == 2


@pytest.fixture
def garbage_servers() -> Iterator[tuple[FakeMySQL, FakeMySQL]]:
    with (
        fake_mysql(packet(1, b"\xfbfile"), replies=TABLES) as unexpected,
        fake_mysql(packet(1, b"\xfe\x00"), replies=TABLES) as malformed,
    ):
        yield unexpected, malformed


def test_poller_fails_a_garbage_node_without_a_traceback(redis_url, garbage_servers):
    unexpected, malformed = garbage_servers
    store = Store.from_url(redis_url, "mpp")
    text = f"name:g1;primary:127.0.0.1:{unexpected.port};secondary:127.0.0.1:{malformed.port}"
    store.create_pool(parse_failoverpool(text, interval=0.5, max_requests=2))
    info = PollerProcess(redis_url, "p-info", probe_options=[])
    debug = PollerProcess(redis_url, "p-debug", probe_options=[], extra=["--log-level", "debug"])
    try:
        info.start()
        debug.start()
        ticks = watch_ticks(store, "g1", lambda s: all(n.state.is_failed for n in s[-1].nodes), 15)
        time.sleep(2)  # a few more rounds of the same garbage
        assert info.is_running and debug.is_running
    finally:
        info.stop()
        debug.stop()
    final = ticks[-1]
    assert [n.state for n in final.nodes] == [State.FAILED_OFFLINE, State.FAILED_OFFLINE]
    assert final.nodes[0].message == (
        f"Could not connect to mysql host 127.0.0.1:{unexpected.port}: probe failed: RuntimeError"
    )
    assert "Malformed reply to SHOW SLAVE STATUS" in (final.nodes[1].message or "")
    assert "Traceback" not in info.output()
    assert "ERROR" not in info.output()
    # At DEBUG the unexpected one is explained once, with its traceback.
    assert debug.output().count("Traceback") == 1
    assert "RuntimeError: **WARN**: Received LOAD_LOCAL packet" in debug.output()
    info.cleanup()
    debug.cleanup()
