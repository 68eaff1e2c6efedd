"""Pool strings and settings through mpp-admin against a real Redis: IPv6 nodes, one node per
option, what a name or node may contain, MPP's primary rule, ``pool apply`` with settings
alone, and a typo'd pool name."""

from __future__ import annotations

import json

import pytest

from mpp_cli.errors import ExitCode
from tests.integration.admin_support import (
    bootstrap,
    client_for,
    dump,
    mpp_admin,
    nodes_by_name,
    store_for,
)

pytestmark = pytest.mark.integration


def test_ipv6_nodes_in_brackets(redis_url: str) -> None:
    created = mpp_admin(
        redis_url, "pool", "create", "p6", "--primary", "[::1]:3306", "--secondary", "[fd00::2]"
    )
    assert created.exit_code == 0, created.stderr
    assert created.stdout == (
        "OK: Pool p6 created: name:p6;primary:[::1]:3306;secondary:[fd00::2]:3306\n"
    )
    shown = json.loads(mpp_admin(redis_url, "pool", "show", "p6", "--json").stdout)
    assert [m["node"] for m in shown["members"]] == ["[::1]:3306", "[fd00::2]:3306"]
    assert mpp_admin(redis_url, "report", "[::1]").stdout == "OK/UNKNOWN (PRIMARY)\n"
    config = mpp_admin(redis_url, "haproxy-config", "p6").stdout
    assert " [::1]:3306 agent-send" in config and 'agent-send "p6 [::1]:3306 rw\\n"' in config
    # the failoverpool form, written back as shown
    again = mpp_admin(redis_url, "pool", "apply", "--failoverpool", shown["failoverpool"])
    assert again.exit_code == 0, again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--primary", "10.0.0.1", "--secondary", "10.0.0.6,10.0.0.7"],
                     "--secondary takes one node, not '10.0.0.6,10.0.0.7': repeat --secondary "
                     "for each node (e.g. --secondary 10.0.0.6 --secondary 10.0.0.7)",
                     id="comma-in-secondary"),
        pytest.param(["--primary", "10.0.0.1 10.0.0.2"], "repeat --primary for each node",
                     id="space-in-primary"),
        pytest.param(["--primary", "a", "--primary", "b:3307"],
                     'Cannot designate host "b:3307" as primary, because host "" is already '
                     "defined as primary!", id="second-primary-mpp-text"),
        pytest.param(["--primary", "127.0.0.9\x1b]0;pwned\x07:26399"],
                     "'127.0.0.9\\x1b]0;pwned\\x07:26399' has control or non-ASCII characters",
                     id="control-characters-escaped"),
        pytest.param(["--primary", "h\u00f4te"], "non-ASCII", id="non-ascii-node"),
        pytest.param(["--primary", "::1"], "write IPv6 nodes in brackets, e.g. [::1]:3306",
                     id="bare-ipv6"),
    ],
)  # fmt: skip
def test_bad_nodes_are_refused_with_a_clear_line(
    redis_url: str, args: list[str], message: str
) -> None:
    before = dump(client_for(redis_url))
    result = mpp_admin(redis_url, "pool", "create", "p1", *args)
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert result.stderr.isascii() and "\x1b" not in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert dump(client_for(redis_url)) == before


@pytest.mark.parametrize("name", ["pool1\n", "pool 1", "p\u00f6\u00f6l"])
def test_bad_pool_names_are_refused(redis_url: str, name: str) -> None:
    before = dump(client_for(redis_url))
    result = mpp_admin(redis_url, "pool", "create", name, "--primary", "a")
    assert result.exit_code == ExitCode.USAGE
    assert "Bad pool name" in result.stderr and result.stderr.count("\n") == 1
    assert dump(client_for(redis_url)) == before


def test_apply_with_settings_alone_keeps_the_members(redis_url: str) -> None:
    store = store_for(redis_url)
    pool = bootstrap(store)
    result = mpp_admin(redis_url, "pool", "apply", "pool1", "--interval", "3")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("OK: Pool pool1 configured: name:pool1;primary:10.0.0.1:3306")
    after = store.load_pool("pool1")
    assert after.interval == 3.0 and after.max_requests == pool.max_requests
    assert nodes_by_name(after) == nodes_by_name(pool)  # same members, same states
    again = mpp_admin(redis_url, "pool", "apply", "pool1", "--max-requests", "2")
    assert again.exit_code == 0, again.stderr
    assert (store.load_pool("pool1").interval, store.load_pool("pool1").max_requests) == (3.0, 2)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["pool", "apply", "poool1", "--interval", "3"], ExitCode.NOT_FOUND,
                     "mpp-admin pool apply: No pool named 'poool1'.\n", id="apply-typo"),
        pytest.param(["pool", "apply", "poool1", "--primary", "10.0.0.1"], ExitCode.NOT_FOUND,
                     "mpp-admin pool apply: No pool named 'poool1'.\n", id="apply-typo-members"),
        pytest.param(["pool", "apply", "pool 1", "--interval", "3"], ExitCode.USAGE,
                     "Bad pool name", id="apply-bad-name"),
        pytest.param(["pool", "apply", "--interval", "3"], ExitCode.USAGE,
                     "give a pool NAME", id="apply-no-name"),
        pytest.param(["pool", "apply", "pool1", "--interval", "0"], ExitCode.USAGE,
                     "interval must be between", id="apply-bad-interval"),
        pytest.param(["pool", "show", "poool1"], ExitCode.NOT_FOUND, "No pool named 'poool1'",
                     id="show-typo"),
        pytest.param(["pool", "remove", "poool1", "--yes"], ExitCode.NOT_FOUND,
                     "No pool named 'poool1'", id="remove-typo"),
    ],
)  # fmt: skip
def test_apply_errors_change_nothing(
    redis_url: str, args: list[str], code: ExitCode, message: str
) -> None:
    bootstrap(store_for(redis_url))
    before = dump(client_for(redis_url))
    result = mpp_admin(redis_url, *args)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert dump(client_for(redis_url)) == before
