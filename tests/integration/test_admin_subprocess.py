"""mpp-admin as an operator runs it: the installed console script, in a subprocess."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.integration.admin_support import bootstrap, store_for

pytestmark = pytest.mark.integration


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["mpp-admin", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_help_lists_every_command_and_examples() -> None:
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for command in (
        "pools", "list", "report", "is-active", "recover", "activate-primary", "delete",
        "override", "release", "history", "pollers", "haproxy-config", "simulate", "pool",
    ):  # fmt: skip
        assert f"\n  {command} " in result.stdout, command
    assert "--redis-url" in result.stdout and "MPP_REDIS_URL" in result.stdout
    assert "mpp-admin recover 10.0.0.1" in result.stdout
    assert "Exit codes: 0 ok, 1 is-active NO, 2 usage, 3 not found, 4 refused," in result.stdout
    assert "Traceback" not in result.stderr


def test_real_commands_with_env_configuration(redis_url: str) -> None:
    bootstrap(store_for(redis_url))
    env = {"MPP_REDIS_URL": redis_url, "MPP_NAMESPACE": "mpp"}
    active = run("is-active", "10.0.0.1", env=env)
    assert (active.returncode, active.stdout, active.stderr) == (0, "OK\n", "")
    standby = run("is-active", "10.0.0.2", env=env)
    assert (standby.returncode, standby.stdout) == (1, "NO\n")
    report = run("report", "10.0.0.2:3306", env=env)
    assert (report.returncode, report.stdout) == (0, "OK/STANDBY (SECONDARY)\n")
    missing = run("report", "10.9.9.9", env=env)
    assert missing.returncode == 3
    assert missing.stderr == "mpp-admin report: Server 10.9.9.9:3306 is not a member of any pool.\n"
