"""MPP's slave-status checks and the probe's pure helpers, one row per case."""

from __future__ import annotations

import socket
from typing import Any

import pymysql
import pytest

from mpp_agent import probe
from mpp_agent.model import NodeId, Observation, Outcome
from mpp_agent.probe import (
    Checkpoint,
    CheckpointError,
    NodeMetrics,
    ProbeResult,
    ProbeSettings,
    checkpoints_down,
    error_text,
    failure_text,
    is_unreachable,
    normalize_slave_status,
    replication_lag,
    replication_of,
    server_version,
    slave_status_errors,
    uses_replica_syntax,
    with_max_lag,
)

HEALTHY: dict[str, Any] = {
    "Slave_IO_Running": "Yes",
    "Slave_SQL_Running": "Yes",
    "Read_Master_Log_Pos": 1234,
    "Exec_Master_Log_Pos": 1234,
    "Seconds_Behind_Master": 0,
    "Last_Error": "",
}


def row(**changes: Any) -> dict[str, Any]:
    return {**HEALTHY, **changes}


CASES = [
    pytest.param(row(), [], id="healthy"),
    pytest.param(row(Slave_IO_Running="YES", Slave_SQL_Running="yes"), [], id="yes-any-case"),
    pytest.param(
        row(Slave_SQL_Running="No"),
        ["Slave Error: Slave SQL is not running, Slave_SQL_Running=No."],
        id="sql-stopped",
    ),
    pytest.param(
        # Whether a source it cannot reach is down (excused) is the tick's decision.
        row(Slave_IO_Running="Connecting", Last_IO_Errno=2003),
        ["Slave Error: Slave IO is not running, Slave_IO_Running=Connecting."],
        id="io-connecting-source-unreachable-is-reported",
    ),
    pytest.param(
        row(Slave_IO_Running="Connecting", Last_IO_Errno=1045),
        ["Slave Error: Slave IO is not running, Slave_IO_Running=Connecting."],
        id="io-connecting-access-denied-is-this-nodes-error",
    ),
    pytest.param(
        row(Slave_IO_Running="No", Slave_SQL_Running="No"),
        ["Slave Error: Slave SQL is not running, Slave_SQL_Running=No."],
        id="only-one-thread-error-sql-first",
    ),
    pytest.param(
        row(Slave_SQL_Running=None),
        ["Slave Error: Slave SQL is not running, Slave_SQL_Running=."],
        id="null-is-empty-text",
    ),
    # DIVERGENCE: positions that differ (a busy standby) are no error; lag is judged per pool.
    pytest.param(
        row(Read_Master_Log_Pos=1500, Seconds_Behind_Master=7), [], id="out-of-sync-is-no-error"
    ),
    pytest.param(row(Read_Master_Log_Pos=100, Exec_Master_Log_Pos=400), [], id="other-binlog-file"),
    pytest.param(row(Seconds_Behind_Master=3000), [], id="lag-is-not-judged-here"),
    pytest.param(
        row(Slave_SQL_Running="No", Last_Error="Error 'Duplicate entry' on query"),
        [
            "Slave Error: Slave SQL is not running, Slave_SQL_Running=No.",
            "Last_Error: Error 'Duplicate entry' on query",
        ],
        id="sql-stopped-with-last-error",
    ),
    pytest.param(row(Last_Error="  ... "), [], id="last-error-without-word-char"),
    pytest.param(
        {
            "Replica_IO_Running": "Yes",
            "Replica_SQL_Running": "No",
            "Read_Source_Log_Pos": 10,
            "Exec_Source_Log_Pos": 10,
            "Seconds_Behind_Source": None,
            "Last_Error": "",
        },
        ["Slave Error: Slave SQL is not running, Slave_SQL_Running=No."],
        id="mysql-8-replica-columns",
    ),
]


@pytest.mark.parametrize(("status", "errors"), CASES)
def test_slave_status_errors(status: dict[str, Any], errors: list[str]) -> None:
    assert slave_status_errors(status) == errors


def test_normalize_maps_replica_names_and_keeps_others() -> None:
    assert normalize_slave_status({"Replica_IO_Running": "Yes", "Master_Host": "h"}) == {
        "Slave_IO_Running": "Yes",
        "Master_Host": "h",
    }


@pytest.mark.parametrize(
    ("version", "replica"),
    [
        ("5.5.5-10.11.18-MariaDB-0+deb12u1-log", False),
        ("11.4.2-MariaDB", False),
        ("5.7.44-log", False),
        ("8.0.21", False),
        ("8.0.22", True),
        ("8.4.0", True),
        ("9.1.0-commercial", True),
        ("garbage", False),
    ],
)
def test_replica_syntax_from_version(version: str, replica: bool) -> None:
    assert uses_replica_syntax(version) is replica


def test_server_version_drops_mariadbs_handshake_prefix() -> None:
    assert server_version("5.5.5-10.11.18-MariaDB-log") == "10.11.18-MariaDB-log"
    assert server_version("5.5.5-whatever") == "5.5.5-whatever"
    assert server_version("8.0.36") == "8.0.36"


def test_error_text_is_the_message_without_the_code() -> None:
    assert error_text(Exception(1040, "Too many connections")) == "Too many connections"
    assert error_text(OSError("boom")) == "boom"
    assert error_text(TimeoutError()) == "TimeoutError"


def test_password_is_not_in_the_repr() -> None:
    settings = ProbeSettings("monitor", "hunter2-secret")
    assert "hunter2-secret" not in repr(settings)
    assert "hunter2-secret" not in str(settings)
    assert "monitor" in repr(settings)


@pytest.mark.parametrize(
    "kwargs",
    [{"user": ""}, {"database": ""}, {"connect_timeout": 0}, {"read_timeout": -1.0}],
    ids=["no-user", "no-database", "zero-connect-timeout", "negative-read-timeout"],
)
def test_settings_refuse_nonsense(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"user": "monitor", "password": "pw", **kwargs}
    with pytest.raises(ValueError):
        ProbeSettings(**args)


def test_results_are_frozen_values() -> None:
    metrics = NodeMetrics()
    assert metrics == NodeMetrics(None, None, None, None, None)
    assert metrics.lag is None
    with pytest.raises(AttributeError):
        metrics.read_only = True  # type: ignore[misc]
    assert ProbeResult.__dataclass_params__.frozen  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("status", "lag"),
    [
        pytest.param(row(Seconds_Behind_Master=0), 0, id="in-sync"),
        pytest.param(row(Seconds_Behind_Master=42), 42, id="mariadb-behind"),
        pytest.param(row(Seconds_Behind_Master="17"), 17, id="text-number"),
        pytest.param(row(Seconds_Behind_Master=None), None, id="null-is-unknown"),
        pytest.param(
            {"Replica_IO_Running": "Yes", "Seconds_Behind_Source": 9}, 9, id="mysql-8-source"
        ),
        pytest.param({"Slave_IO_Running": "Yes"}, None, id="no-column"),
    ],
)
def test_replication_lag(status: dict[str, Any], lag: int | None) -> None:
    assert replication_lag(status) == lag


NODE = NodeId("10.0.0.1")
BEHIND_7 = "Slave Error: Seconds Behind Master: 7"
SQL_STOPPED = "Slave Error: Slave SQL is not running, Slave_SQL_Running=No."


@pytest.mark.parametrize(
    ("observation", "lag", "max_lag", "expected"),
    [
        pytest.param(Observation.healthy(), 7, 30.0, Observation.healthy(), id="below-max-lag"),
        pytest.param(Observation.healthy(), 30, 30.0, Observation.healthy(), id="at-max-lag"),
        pytest.param(
            Observation.healthy(), 7, 6.0, Observation(Outcome.REQUEST, BEHIND_7), id="above"
        ),
        pytest.param(
            Observation.healthy(),
            1,
            0.0,
            Observation(Outcome.REQUEST, "Slave Error: Seconds Behind Master: 1"),
            id="max-lag-zero-any-lag",
        ),
        pytest.param(Observation.healthy(), 0, 0.0, Observation.healthy(), id="zero-lag-zero-max"),
        pytest.param(Observation.healthy(), None, 0.0, Observation.healthy(), id="unknown-lag"),
        pytest.param(
            Observation(Outcome.REQUEST, SQL_STOPPED),
            7,
            3.0,
            Observation(Outcome.REQUEST, f"{SQL_STOPPED}, {BEHIND_7}"),
            id="appended-to-request-errors",
        ),
        pytest.param(
            Observation(Outcome.REQUEST, SQL_STOPPED),
            None,
            3.0,
            Observation(Outcome.REQUEST, SQL_STOPPED),
            id="stopped-thread-stays-an-error",
        ),
        pytest.param(
            Observation.connect_error(NODE, "refused"),
            99,
            3.0,
            Observation.connect_error(NODE, "refused"),
            id="connect-error-unchanged",
        ),
        pytest.param(
            Observation.abstain("Access denied"),
            99,
            3.0,
            Observation.abstain("Access denied"),
            id="abstention-unchanged",
        ),
    ],
)
def test_max_lag_per_pool(
    observation: Observation, lag: int | None, max_lag: float, expected: Observation
) -> None:
    assert with_max_lag(observation, lag, max_lag) == expected


@pytest.mark.parametrize(
    ("text", "checkpoint"),
    [
        ("10.0.0.1:53", Checkpoint("10.0.0.1", 53)),
        (" gw.example.com:443 ", Checkpoint("gw.example.com", 443)),
        ("[fd00::1]:80", Checkpoint("fd00::1", 80)),
    ],
)
def test_checkpoint_parse(text: str, checkpoint: Checkpoint) -> None:
    assert Checkpoint.parse(text) == checkpoint
    assert Checkpoint.parse(str(checkpoint)) == checkpoint


@pytest.mark.parametrize(
    "text", ["10.0.0.1", ":53", "h:0", "h:65536", "h:x", "a b:1", "h\x1b:1", ""]
)
def test_checkpoint_parse_refuses(text: str) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint.parse(text)


A, B = Checkpoint("10.0.0.1", 53), Checkpoint("10.0.0.2", 80)


@pytest.mark.parametrize(
    ("failures", "reason"),
    [
        pytest.param({}, None, id="none-configured"),
        pytest.param({A: None, B: "Connection refused"}, None, id="some-fail"),
        pytest.param({A: None}, None, id="all-answer"),
        pytest.param(
            {B: "timed out", A: "Connection refused"},
            "checkpoints unreachable: 10.0.0.1:53 (Connection refused), 10.0.0.2:80 (timed out)",
            id="all-fail",
        ),
    ],
)
def test_checkpoints_down_only_when_all_fail(
    failures: dict[Checkpoint, str | None], reason: str | None
) -> None:
    assert checkpoints_down(failures) == reason


def test_failure_text_names_the_kind_on_one_line() -> None:
    import struct

    assert failure_text(IndexError("x")) == "probe failed: IndexError"
    assert failure_text(struct.error("unpack")) == "probe failed: struct.error"


def test_error_text_is_one_line() -> None:
    assert error_text(Exception(1045, "Access\ndenied  for\tx")) == "Access denied for x"


MARIADB_STATUS = row(
    Master_Host="10.0.0.1",
    Master_Port=3306,
    Master_Server_Id=1,
    Gtid_IO_Pos="1-1-120,2-2-7",
    Master_Log_File="bin.000002",
    Relay_Master_Log_File="bin.000002",
)


@pytest.mark.parametrize(
    ("status", "variables", "expected"),
    [
        pytest.param(
            MARIADB_STATUS,
            {"binlog": "1-1-100,2-2-7", "slave_pos": "1-1-100", "server_id": 2, "read_only": 0},
            {"unapplied": 20, "caught_up": False, "source": "10.0.0.1:3306", "read_only": False},
            id="mariadb-relay-log-not-applied",
        ),
        pytest.param(
            MARIADB_STATUS,
            {"binlog": "1-1-120,2-2-7", "slave_pos": "1-1-120", "server_id": 2, "read_only": 1},
            {"unapplied": 0, "caught_up": True, "source_server_id": 1, "read_only": True},
            id="mariadb-caught-up-own-domain-not-counted",
        ),
        pytest.param(
            row(
                Retrieved_Gtid_Set="3e11fa47-71ca-11e1-9e33-c80aa9429562:1-50",
                Executed_Gtid_Set="3e11fa47-71ca-11e1-9e33-c80aa9429562:1-45",
            ),
            {"read_only": 0, "super_read_only": 1},
            {"unapplied": 5, "read_only": True},
            id="mysql-gtid-sets-and-super-read-only",
        ),
        pytest.param(
            {
                "Replica_IO_Running": "Yes",
                "Replica_SQL_Running": "Yes",
                "Source_Host": "10.0.0.1",
                "Source_Port": 3307,
                "Source_Server_Id": 1,
                "Source_Log_File": "bin.000009",
                "Relay_Source_Log_File": "bin.000009",
                "Read_Source_Log_Pos": 700,
                "Exec_Source_Log_Pos": 700,
            },
            {"server_id": 2},
            {"source": "10.0.0.1:3307", "source_server_id": 1, "caught_up": True},
            id="mysql-8-source-names",
        ),
        pytest.param(
            row(Read_Master_Log_Pos=500, Exec_Master_Log_Pos=400, Master_Log_File="b.1"),
            {},
            {"unapplied": None, "caught_up": False},
            id="no-gtid-file-positions",
        ),
        pytest.param(
            row(Slave_IO_Running="Connecting", Last_IO_Errno=2003),
            {},
            {"source_unreachable": True},
            id="io-cannot-reach-source",
        ),
        pytest.param(
            row(Slave_IO_Running="Connecting", Last_IO_Errno=1045),
            {},
            {"source_unreachable": False},
            id="io-refused-by-source-is-not-a-cut-link",
        ),
    ],
)
def test_replication_values(
    status: dict[str, Any], variables: dict[str, Any], expected: dict[str, Any]
) -> None:
    details = replication_of(normalize_slave_status(status), variables, 3)
    assert details.lag == 3
    for key, value in expected.items():
        assert getattr(details, key) == value, key


class _Reads(dict[str, Any]):
    """A slave-status row that notes every column read of it."""

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__(row)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)


@pytest.mark.parametrize(
    "status",
    [
        {**MARIADB_STATUS, "Slave_IO_Running": "Connecting", "Last_IO_Errno": 2003},
        row(Retrieved_Gtid_Set="a:1-5", Executed_Gtid_Set="a:1-4", Master_Log_File="b.1"),
    ],
    ids=["mariadb", "mysql"],
)
def test_the_rules_read_only_the_columns_a_reply_keeps(status: dict[str, Any]) -> None:
    # A reply read at once keeps only these columns of the slave status (some 60 in all): a
    # rule reading another would see NULL there.
    seen = _Reads(status)
    assert normalize_slave_status(seen) is seen  # the names already MPP's: read in place
    slave_status_errors(seen)
    replication_of(seen, {}, replication_lag(seen))
    assert seen.read and seen.read <= probe._STATUS_COLUMNS, seen.read - probe._STATUS_COLUMNS
    assert set(probe._REPLICA_COLUMNS.values()) <= probe._STATUS_COLUMNS


def test_max_lag_error_is_no_longer_a_cut_link() -> None:
    details = replication_of(row(Slave_IO_Running="Connecting", Last_IO_Errno=2003), {}, None)
    seen = Observation(Outcome.REQUEST, "x", replication=details)
    lagging = with_max_lag(seen, 100, 30)
    assert lagging.replication is not None and not lagging.replication.source_unreachable


@pytest.mark.parametrize(
    ("exc", "unreachable"),
    [
        pytest.param(
            pymysql.err.OperationalError(
                2003, "Can't connect to MySQL server on 'db' ([Errno 111] Connection refused)"
            ),
            True,
            id="refused",
        ),
        pytest.param(
            pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db' (timed out)"),
            True,
            id="connect-timed-out",
        ),
        pytest.param(
            pymysql.err.OperationalError(
                2003, "Can't connect to MySQL server on 'db' ([Errno -2] Name or service not known)"
            ),
            True,
            id="dns",
        ),
        pytest.param(OSError(113, "No route to host"), True, id="no-route"),
        pytest.param(pymysql.err.OperationalError(1040, "Too many connections"), False, id="1040"),
        pytest.param(
            pymysql.err.OperationalError(
                2013, "Lost connection to MySQL server during query (timed out)"
            ),
            False,
            id="hung-after-tcp-accept",
        ),
        pytest.param(
            pymysql.err.OperationalError(1045, "Access denied"), False, id="access-denied"
        ),
        pytest.param(pymysql.err.ProgrammingError(1064, "syntax"), False, id="query-error"),
    ],
)
def test_unreachable_only_when_the_connect_never_reached_the_server(
    exc: BaseException, unreachable: bool
) -> None:
    assert is_unreachable(exc) is unreachable


@pytest.mark.parametrize(
    ("host", "family"),
    [
        ("127.0.0.1", "AF_INET"),
        ("10.1.2.3", "AF_INET"),
        ("::1", "AF_INET6"),
        ("fd00::12", "AF_INET6"),
        ("localhost", None),
        ("db-1.example.com", None),
        ("127.1", None),  # inet_aton would take it; a name lookup decides what it means
        ("", None),
    ],
)
def test_only_a_numeric_address_skips_the_name_lookup(host: str, family: str | None) -> None:
    expected = None if family is None else getattr(socket, family)
    assert probe._address_family(host) == expected
