"""MPP's slave-status checks and the probe's pure helpers, one row per case."""

from __future__ import annotations

from typing import Any

import pytest

from mpp_agent.probe import (
    NodeMetrics,
    ProbeResult,
    ProbeSettings,
    error_text,
    normalize_slave_status,
    server_version,
    slave_status_errors,
    uses_replica_syntax,
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
        row(Slave_IO_Running="Connecting", Last_IO_Errno=2003),
        [],
        id="io-connecting-source-down-is-not-this-nodes-error",
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
    pytest.param(
        row(Read_Master_Log_Pos=1500, Seconds_Behind_Master=7),
        [
            "Slave Error: Replication out of sync by 266 positions, Read=1500, Execute=1234.",
            "Slave Error: Seconds Behind Master: 7",
        ],
        id="out-of-sync-and-behind",
    ),
    pytest.param(
        row(Read_Master_Log_Pos="1500", Seconds_Behind_Master=None),
        ["Slave Error: Replication out of sync by 266 positions, Read=1500, Execute=1234."],
        id="out-of-sync-lag-null-counts-as-zero",
    ),
    pytest.param(
        row(Read_Master_Log_Pos=100, Exec_Master_Log_Pos=400),
        ["Slave Error: Replication out of sync by -300 positions, Read=100, Execute=400."],
        id="negative-difference-other-file",
    ),
    pytest.param(row(Seconds_Behind_Master=30), [], id="lag-ignored-when-positions-agree"),
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
    with pytest.raises(AttributeError):
        metrics.read_only = True  # type: ignore[misc]
    assert ProbeResult.__dataclass_params__.frozen  # type: ignore[attr-defined]
