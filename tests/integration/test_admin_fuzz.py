"""mpp-admin under hostile arguments, in-process (typer's CliRunner) against a real Redis.

The fuzzer throws arguments at every command and asserts what an operator relies on: never a
traceback, always an exit code of the documented table (cli/mpp_cli/errors.py), and when the
command refuses (any non-zero code) nothing in Redis changed. Plus the bounds that used to
break the listing for everyone: ``--for`` and ``--limit``, and a garbage history entry.
"""

from __future__ import annotations

import json

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpp_agent.store import Store
from tests.integration.admin_support import (
    bootstrap,
    client_for,
    create,
    dump,
    mpp_admin,
    store_for,
)

pytestmark = pytest.mark.integration

DOCUMENTED = {0, 1, 2, 3, 4, 5, 6, 7}
# --follow is left out: it runs until Ctrl-C by design.
COMMANDS = [
    ["pools"],
    ["list"],
    ["report"],
    ["is-active"],
    ["recover"],
    ["activate-primary"],
    ["delete"],
    ["override"],
    ["release"],
    ["history"],
    ["pollers"],
    ["haproxy-config"],
    ["simulate"],
    ["pool", "create"],
    ["pool", "apply"],
    ["pool", "remove"],
    ["pool", "show"],
    ["pool", "list"],
]
TOKENS = [
    # nodes and pools, good and bad
    "10.0.0.1", "10.0.0.2:3306", "10.0.0.3:3307", "10.0.0.9", "[::1]:3306", "10.0.0.1:0",
    "10.0.0.1:65536", "db1;x", "pool1", "pool2", "nope", "", " ", "a" * 300, "pool1\n",
    "127.0.0.9\x1b]0;pwned\x07:26399", "name:pool1;primary:10.0.0.1;secondary:10.0.0.2",
    "name:pool3;primary:10.0.0.7", "-",
    # options
    "--pool", "-p", "--state", "--status", "--reason", "--for", "--json", "--limit", "-n",
    "--yes", "--force", "--role", "--agent-port", "--agent-inter", "--agent-addr",
    "--primary", "--secondary", "--interval", "--max-requests", "--max-lag", "--failoverpool",
    "--help",
    # values
    "STANDBY", "ACTIVE", "active", "FAILED_OFFLINE", "UNKNOWN", "OK", "OK_WARN", "FAIL",
    "30s", "2h", "366d", "367d", "0", "-1", "1", "3", "0.01", "1e309", "nan", "inf", "-inf",
    "9223372036854775808", "99999999999999999999d", "9" * 400, "rw", "ro", "RO", "1s", "1",
    "65535", "65536",
]  # fmt: skip
TOKEN = st.one_of(st.sampled_from(TOKENS), st.text(max_size=12))


@pytest.fixture
def fuzz_url(redis_url: str) -> str:
    return redis_url


def set_up(client: redis.Redis, url: str) -> Store:
    """pool1 bootstrapped (10.0.0.1 ACTIVE), pool2 sharing 10.0.0.2 (so it needs --pool)."""
    client.flushall()
    store = store_for(url)
    bootstrap(store)
    create(store, "name:pool2;primary:10.0.0.5;secondary:10.0.0.2")
    return store


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(command=st.sampled_from(COMMANDS), args=st.lists(TOKEN, max_size=6))
def test_fuzzed_arguments_never_traceback_nor_change_state_when_refused(
    fuzz_url: str, command: list[str], args: list[str]
) -> None:
    client = client_for(fuzz_url)
    set_up(client, fuzz_url)
    before = dump(client)
    result = mpp_admin(fuzz_url, *command, *args)
    argv = [*command, *args]
    if result.exception is not None:
        assert isinstance(result.exception, SystemExit), (argv, result.exception)
    assert "Traceback" not in result.output, (argv, result.output)
    assert result.exit_code in DOCUMENTED, (argv, result.exit_code, result.output)
    if result.exit_code == 1:
        assert command == ["is-active"], (argv, result.output)
    if result.exit_code != 0:
        assert dump(client) == before, (argv, result.output)
        assert result.stdout.strip() in ("", "NO"), (argv, result.stdout)


# ------------------------------------------------------------------------------ --for, --limit


@pytest.mark.parametrize(
    "duration", ["99999999999999999999d", "9" * 400, "367d", "0", "1e309", "inf", "nan"]
)
def test_an_override_duration_out_of_bounds_is_refused(redis_url: str, duration: str) -> None:
    bootstrap(store_for(redis_url))
    client = client_for(redis_url)
    before = dump(client)
    args = ["override", "10.0.0.2", "--state", "STANDBY", "--reason", "r", "--for", duration]
    result = mpp_admin(redis_url, *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("mpp-admin override: "), result.stderr
    assert dump(client) == before


def strict_json(text: str) -> object:
    def refuse(constant: str) -> object:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_the_longest_override_keeps_every_view_working(redis_url: str) -> None:
    bootstrap(store_for(redis_url))
    args = ["override", "10.0.0.2", "--state", "STANDBY", "--reason", "r", "--for", "366d"]
    assert mpp_admin(redis_url, *args).exit_code == 0
    for view in (["list"], ["report", "10.0.0.2"], ["pools"], ["history"]):
        result = mpp_admin(redis_url, *view)
        assert result.exit_code == 0, (view, result.output)
    listing = strict_json(mpp_admin(redis_url, "list", "--json").stdout)
    assert isinstance(listing, dict)
    strict_json(mpp_admin(redis_url, "pools", "--json").stdout)


def test_a_stored_infinity_is_skipped_not_printed(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    create(store, "name:pool2;primary:10.0.0.5")
    key = store.keys.pool("pool1")
    doc = json.loads(store.client.hget(key, "doc"))
    override = {"state": "STANDBY", "reason": "r", "set_at": 1.0, "expires_at": 1e999}
    doc["nodes"][1]["override"] = override  # json.dumps writes it as Infinity
    store.client.hset(key, "doc", json.dumps(doc))
    result = mpp_admin(redis_url, "list", "--json")
    # The readable pool is shown, the unreadable one named in one line, exit 7 (BAD_STATE).
    assert result.exit_code == 7, result.output
    names = [p["name"] for p in strict_json(result.stdout)["pools"]]  # type: ignore[index]
    assert names == ["pool2"]
    assert "Infinity" not in result.stdout
    assert result.stderr.startswith("mpp-admin list: mpp:{pool1}:pool ")
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("limit", ["9223372036854775808", "0", "-1", "10001"])
def test_history_limit_is_bounded(redis_url: str, limit: str) -> None:
    bootstrap(store_for(redis_url))
    result = mpp_admin(redis_url, "history", "--limit", limit)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_a_garbage_history_entry_is_skipped(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    events = store.keys.events("pool1")
    store.client.xadd(events, {"garbage": "1"})
    store.client.xadd(events, {"event": '{"kind": "no such kind"}'})
    store.client.xadd(events, {"event": "\xff not json"})
    result = mpp_admin(redis_url, "history", "--pool", "pool1", "--json")
    assert result.exit_code == 0, result.output
    kinds = [e["kind"] for e in strict_json(result.stdout)["events"]]  # type: ignore[index]
    assert kinds and "no such kind" not in kinds
    assert mpp_admin(redis_url, "history").exit_code == 0


def test_a_garbage_poller_heartbeat_is_shown_not_fatal(redis_url: str) -> None:
    store = store_for(redis_url)
    store.client.zadd(store.keys.pollers(), {"p-bad": 1e15})
    store.client.set(store.keys.poller("p-bad"), b"\xff garbage")
    result = mpp_admin(redis_url, "pollers", "--json")
    assert result.exit_code == 0, result.output
    [row] = strict_json(result.stdout)["pollers"]  # type: ignore[index]
    assert (row["poller_id"], row["alive"], row["info"]) == ("p-bad", True, {})
    assert row["problem"].startswith("mpp:poller:p-bad is not JSON: ")


def test_a_namespace_without_pools_says_where_pools_are(redis_url: str) -> None:
    bootstrap(store_for(redis_url))
    for command in (["list"], ["pools"], ["history"]):
        result = mpp_admin(redis_url, "--namespace", "mp", *command)
        assert result.exit_code == 0, result.output
        assert result.stderr == (
            f"mpp-admin {command[0]}: namespace 'mp' has no pools (namespaces with pools: mpp)\n"
        )
