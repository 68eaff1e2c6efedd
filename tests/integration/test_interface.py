"""One interface style: --version and -h on the three commands, and one JSON schema for a node,
an override and an event whatever command prints it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mpp_agent import __version__, settings
from mpp_agent.store import DEFAULT_REDIS_URL
from tests.integration.admin_support import bootstrap, mpp_admin, store_for

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("command", ["mpp-admin", "mpp-poller", "mpp-agent", "mpp-hooks"])
def test_version_and_short_help(command: str) -> None:
    version = subprocess.run(
        [str(BIN / command), "--version"], capture_output=True, text=True, timeout=30
    )
    assert (version.returncode, version.stdout) == (0, f"{command} {__version__}\n")
    short = subprocess.run([str(BIN / command), "-h"], capture_output=True, text=True, timeout=30)
    long = subprocess.run(
        [str(BIN / command), "--help"], capture_output=True, text=True, timeout=30
    )
    assert short.returncode == 0 and short.stdout == long.stdout
    assert "--version" in short.stdout and "Traceback" not in short.stderr


def test_subcommands_take_short_help_too() -> None:
    for args in (["pool", "create"], ["report"], ["history"], ["haproxy-config"], ["hooks"]):
        short = mpp_admin("redis://127.0.0.1:1/0", *args, "-h")
        assert short.exit_code == 0, (args, short.stderr)
        assert short.stdout.startswith(f"Usage: mpp-admin {' '.join(args)} ")


def test_one_json_schema_for_a_node_an_override_and_an_event(redis_url: str) -> None:
    bootstrap(store_for(redis_url))
    set_ = mpp_admin(
        redis_url, "override", "10.0.0.2", "--state", "STANDBY", "--reason", "r", "--for", "1h"
    )
    assert set_.exit_code == 0, set_.stderr

    listed = json.loads(mpp_admin(redis_url, "list", "--json").stdout)["pools"][0]
    pools = json.loads(mpp_admin(redis_url, "pools", "--json").stdout)["pools"][0]
    report = json.loads(mpp_admin(redis_url, "report", "10.0.0.2", "--json").stdout)
    assert listed == pools
    assert isinstance(listed["nodes"], list)  # nodes are always a list of node documents
    node = next(n for n in listed["nodes"] if n["node"] == "10.0.0.2:3306")
    assert report == {"pool": "pool1", **node}
    override = node["override"]
    assert set(override) == {"state", "status", "reason", "actor", "set_at", "expires_at"}
    assert override["set_at"].endswith("Z") and override["expires_at"].endswith("Z")

    events = json.loads(mpp_admin(redis_url, "history", "--json").stdout)["events"]
    overridden = next(e for e in events if e["kind"] == "override")
    assert overridden["actor"] == override["actor"]  # "actor" everywhere, never "set_by"
    assert all("set_by" not in e for e in events)
    assert all(e["message"] is None or e["message"] != "" for e in events)  # none is null


def test_choices_are_case_insensitive_everywhere(redis_url: str) -> None:
    # (subprocesses: importing the daemons' entry points would gevent-patch this process)
    for command in ("mpp-poller", "mpp-agent", "mpp-hooks"):
        for level in ("DEBUG", "debug", "Info"):
            # argparse checks --log-level before it acts on --version, which then exits 0
            argv = [str(BIN / command), "--log-level", level, "--version"]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, (command, level, done.stderr)
        refused = subprocess.run(
            [str(BIN / command), "--log-level", "LOUD"], capture_output=True, text=True, timeout=30
        )
        assert refused.returncode == 2 and "unknown log level 'LOUD'" in refused.stderr
    bootstrap(store_for(redis_url))
    assert mpp_admin(redis_url, "haproxy-config", "pool1", "--role", "RO").exit_code == 0
    done = mpp_admin(redis_url, "override", "10.0.0.2", "--state", "standby", "--status", "ok_warn",
                     "--reason", "r")  # fmt: skip
    assert done.exit_code == 0, done.stderr


def test_shared_settings_are_declared_once_and_named_in_every_help() -> None:
    """--redis-url, --redis-password-file, --namespace: one declaration (mpp_agent/settings.py)
    read by argparse and typer, so the three commands spell, default and document them alike."""
    assert settings.DEFAULT_REDIS_URL == DEFAULT_REDIS_URL
    helps = {
        command: subprocess.run(
            [str(BIN / command), "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "COLUMNS": "200"},
        ).stdout
        for command in ("mpp-admin", "mpp-poller", "mpp-agent", "mpp-hooks")
    }
    for setting in settings.CONNECTION:
        for command, text in helps.items():
            flat = " ".join(text.split()).lower()  # help is wrapped differently by each
            assert setting.flag in text and setting.env in text, (command, setting.flag)
            assert setting.help.lower() in flat, (command, setting.flag)
    for command in ("mpp-poller", "mpp-agent", "mpp-hooks"):
        assert "MPP_LOG_LEVEL" in helps[command]


def test_a_bad_environment_value_is_a_usage_error() -> None:
    for command in ("mpp-poller", "mpp-agent", "mpp-hooks"):
        # argparse reads the defaults after the command line: this stops before any connection
        done = subprocess.run(
            [str(BIN / command)],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "MPP_LOG_LEVEL": "chatty"},
        )
        assert done.returncode == 2, done.stderr
        assert "--log-level" in done.stderr and "Traceback" not in done.stderr
