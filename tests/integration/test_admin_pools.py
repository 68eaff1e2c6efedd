"""mpp-admin pool create/apply/remove/show/list and pools, against a real Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mpp_agent.model import NodeId, NodeType, State
from mpp_cli.errors import ExitCode
from tests.integration.admin_support import (
    POOL1,
    S1,
    bootstrap,
    client_for,
    dump,
    failover,
    mpp_admin,
    store_for,
)

pytestmark = pytest.mark.integration


def test_create_from_options(redis_url: str) -> None:
    result = mpp_admin(
        redis_url, "pool", "create", "pool1", "--primary", "10.0.0.1",
        "--secondary", "10.0.0.2", "--secondary", "db3:3307", "--interval", "2",
        "--max-requests", "3",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "OK: Pool pool1 created: "
        "name:pool1;primary:10.0.0.1:3306;secondary:10.0.0.2:3306;secondary:db3:3307\n"
    )
    pool = store_for(redis_url).load_pool("pool1")
    assert [(str(n.node), n.type, n.state, n.requests) for n in pool.nodes] == [
        ("10.0.0.1:3306", NodeType.PRIMARY, State.UNKNOWN, None),
        ("10.0.0.2:3306", NodeType.SECONDARY, State.UNKNOWN, None),
        ("db3:3307", NodeType.SECONDARY, State.UNKNOWN, None),
    ]
    assert (pool.interval, pool.max_requests) == (2.0, 3)


def test_create_from_failoverpool_string(redis_url: str) -> None:
    result = mpp_admin(redis_url, "pool", "create", "--failoverpool", POOL1)
    assert result.exit_code == 0, result.stderr
    assert "name:pool1;primary:10.0.0.1:3306" in result.stdout
    assert store_for(redis_url).pool_names() == ["pool1"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(
            ["--failoverpool", "name:p;primary:a;primary:b"], ExitCode.USAGE,
            'Cannot designate host "b:3306" as primary, because host "" is already defined',
            id="two-primaries",
        ),
        pytest.param(
            ["--failoverpool", "name:p;tertiary:a"], ExitCode.USAGE,
            "Type of tertiary is not recognized for host a:3306.", id="bad-type",
        ),
        pytest.param(
            ["--failoverpool", "primary:a"], ExitCode.USAGE, "No pool name", id="no-name",
        ),
        pytest.param(
            ["p", "--primary", "a:99999"], ExitCode.USAGE, "bad port", id="bad-port",
        ),
        pytest.param(
            ["p", "--primary", "a", "--secondary", "a:3306"], ExitCode.USAGE, "listed twice",
            id="duplicate-node",
        ),
        pytest.param(
            ["other", "--failoverpool", "name:p;primary:a"], ExitCode.USAGE, "differs from",
            id="name-mismatch",
        ),
        pytest.param(["p"], ExitCode.USAGE, "has no servers", id="no-servers"),
        pytest.param(
            ["bad name!", "--primary", "a"], ExitCode.USAGE, "Bad pool name", id="bad-pool-name",
        ),
        pytest.param(
            ["p", "--primary", "a", "--interval", "0.01"], ExitCode.USAGE, "interval",
            id="interval-too-small",
        ),
        pytest.param(
            ["pool1", "--primary", "a"], ExitCode.CONFLICT, "already exists", id="exists",
        ),
    ],
)  # fmt: skip
def test_create_errors_change_nothing(
    redis_url: str, args: list[str], code: ExitCode, message: str
) -> None:
    bootstrap(store_for(redis_url))
    before = dump(client_for(redis_url))
    result = mpp_admin(redis_url, "pool", "create", *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert result.stderr.startswith("mpp-admin pool create: ")
    assert result.stdout == ""
    assert dump(client_for(redis_url)) == before


def test_apply_replaces_members_and_keeps_state(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    new = "name:pool1;primary:10.0.0.1;secondary:10.0.0.4;secondary:10.0.0.2"
    result = mpp_admin(redis_url, "pool", "apply", "--failoverpool", new, "--interval", "5")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "OK: Pool pool1 configured: "
        "name:pool1;primary:10.0.0.1:3306;secondary:10.0.0.4:3306;secondary:10.0.0.2:3306\n"
    )
    pool = store.load_pool("pool1")
    assert [(str(n.node), n.state) for n in pool.nodes] == [
        ("10.0.0.1:3306", State.ACTIVE),
        ("10.0.0.4:3306", State.UNKNOWN),
        ("10.0.0.2:3306", State.STANDBY),
    ]
    assert (pool.interval, pool.max_requests) == (5.0, 4)
    kinds = [e["kind"] for _, e in store.last_events("pool1", 1)]
    assert kinds == ["configure"]


def test_apply_refuses_to_remove_the_active_node_unless_forced(redis_url: str) -> None:
    store = store_for(redis_url)
    failover(store, bootstrap(store).name)
    assert store.load_pool("pool1").find(S1).state is State.ACTIVE  # type: ignore[union-attr]
    before = dump(client_for(redis_url))
    without_s1 = "name:pool1;primary:10.0.0.1;secondary:10.0.0.3:3307"
    refused = mpp_admin(redis_url, "pool", "apply", "--failoverpool", without_s1)
    assert refused.exit_code == ExitCode.REFUSED
    assert "Refusing to remove the ACTIVE server 10.0.0.2:3306 from pool pool1" in refused.stderr
    assert dump(client_for(redis_url)) == before
    forced = mpp_admin(redis_url, "pool", "apply", "--failoverpool", without_s1, "--force")
    assert forced.exit_code == 0, forced.stderr
    assert not store.load_pool("pool1").has_node(S1)


def test_apply_unknown_pool(redis_url: str) -> None:
    result = mpp_admin(redis_url, "pool", "apply", "nope", "--primary", "a")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert result.stderr == "mpp-admin pool apply: No pool named 'nope'.\n"


def test_remove_asks_and_refuses_without_yes(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    before = dump(client_for(redis_url))
    declined = mpp_admin(redis_url, "pool", "remove", "pool1", input="n\n")
    assert declined.exit_code == ExitCode.REFUSED
    assert "Remove pool pool1 (3 nodes, ACTIVE: 10.0.0.1:3306)?" in declined.stderr
    assert "not removed" in declined.stderr
    assert dump(client_for(redis_url)) == before
    confirmed = mpp_admin(redis_url, "pool", "remove", "pool1", input="y\n")
    assert confirmed.exit_code == 0, confirmed.stderr
    # (CliRunner echoes the typed answer onto stdout; a terminal would show it on the prompt.)
    assert confirmed.stdout.endswith("OK: Pool pool1 removed.\n")
    assert store.pool_names() == []
    assert dump(client_for(redis_url)) == {}


def test_remove_with_yes_and_unknown(redis_url: str) -> None:
    bootstrap(store_for(redis_url))
    assert mpp_admin(redis_url, "pool", "remove", "pool1", "--yes").exit_code == 0
    again = mpp_admin(redis_url, "pool", "remove", "pool1", "--yes")
    assert again.exit_code == ExitCode.NOT_FOUND
    assert "No pool named 'pool1'" in again.stderr


def test_show_text_and_json(redis_url: str) -> None:
    bootstrap(store_for(redis_url))
    text = mpp_admin(redis_url, "pool", "show", "pool1")
    assert text.exit_code == 0
    assert text.stdout.splitlines() == [
        "pool          pool1",
        "interval      10s",
        "max_requests  4",
        "max_lag       30s",
        "stale_writer  keep",
        f"incarnation   {store_for(redis_url).load_pool('pool1').incarnation}",
        "catchup       30s",
        "failover_lag  off",
        "failback      auto",
        "fence         off",
        "observers     3",
        "keep_conns    off",
        "members       (priority order)",
        "  1. PRIMARY    10.0.0.1:3306",
        "  2. SECONDARY  10.0.0.2:3306",
        "  3. SECONDARY  10.0.0.3:3307",
        "failoverpool  name:pool1;primary:10.0.0.1:3306;secondary:10.0.0.2:3306;"
        "secondary:10.0.0.3:3307",
    ]
    doc = json.loads(mpp_admin(redis_url, "pool", "show", "pool1", "--json").stdout)
    assert doc["members"][0] == {"node": "10.0.0.1:3306", "type": "PRIMARY"}
    assert doc["failoverpool"].startswith("name:pool1;primary:10.0.0.1:3306;")
    # The failoverpool string recreates the same pool.
    assert mpp_admin(redis_url, "pool", "remove", "pool1", "--yes").exit_code == 0
    again = mpp_admin(redis_url, "pool", "create", "--failoverpool", doc["failoverpool"])
    assert again.exit_code == 0
    assert [NodeId.parse(m["node"]) for m in doc["members"]] == list(
        store_for(redis_url).load_pool("pool1").nodes[i].node for i in range(3)
    )


def test_pools_and_pool_list(redis_url: str) -> None:
    store = store_for(redis_url)
    assert mpp_admin(redis_url, "pools").stdout == "No pools.\n"
    bootstrap(store)
    created = mpp_admin(
        redis_url, *("pool", "create", "pool2", "--primary", "db9", "--interval", "2.5"),
        *("--max-lag", "7.5", "--catchup-timeout", "12", "--max-failover-lag", "5"),
        *("--fence", "read_only", "--keep-connections", "30"),
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    expected = [
        "POOL   STATUS  ACTIVE         NODES  INTERVAL  M  MAX_LAG  STALE_WRITER  CATCHUP"
        "  FAILOVER_LAG  FAILBACK  FENCE      OBSERVERS  KEEP_CONNS",
        "pool1  OK      10.0.0.1:3306  3      10s       4  30s      keep          30s      off"
        "           auto      off        3          off",
        "pool2  OK      -              1      2.5s      4  7.5s     keep          12s      5s"
        "            auto      read_only  3          30s",
    ]
    assert mpp_admin(redis_url, "pools").stdout.splitlines() == expected
    assert mpp_admin(redis_url, "pool", "list").stdout.splitlines() == expected
    doc = json.loads(mpp_admin(redis_url, "pools", "--json").stdout)
    # the same documents as list --json: one schema for a pool and for a node
    assert doc == json.loads(mpp_admin(redis_url, "list", "--json").stdout)
    first = doc["pools"][0]
    stored = store.load_pool("pool1")
    assert {k: v for k, v in first.items() if k != "nodes"} == {
        "name": "pool1", "status": "OK", "active": "10.0.0.1:3306",
        "interval": 10.0, "max_requests": 4, "max_lag": 30.0, "stale_writer": "keep",
        "incarnation": stored.incarnation, "version": stored.version, "went_backwards": None,
        "catchup_timeout": 30.0, "max_failover_lag": 0.0, "degraded": None,
        "failback": "auto", "paused": None, "switchover": None, "fence": "off", "observers": 3,
        "keep_connections": 0.0,
    }  # fmt: skip
    assert len(stored.incarnation) == 32
    members = ["10.0.0.1:3306", "10.0.0.2:3306", "10.0.0.3:3307"]
    assert [n["node"] for n in first["nodes"]] == members
    assert doc["pools"][1]["max_lag"] == 7.5
    assert (doc["pools"][1]["catchup_timeout"], doc["pools"][1]["max_failover_lag"]) == (12, 5)


def test_stale_writer_is_set_kept_and_shown(redis_url: str) -> None:
    created = mpp_admin(
        redis_url, "pool", "create", "p9", "--primary", "db1", "--stale-writer", "drain"
    )
    assert created.exit_code == 0, created.output
    store = store_for(redis_url)
    first = store.load_pool("p9")
    assert first.stale_writer == "drain" and len(first.incarnation) == 32
    # apply without --stale-writer keeps it, and keeps the incarnation
    applied = mpp_admin(redis_url, "pool", "apply", "p9", "--interval", "3")
    assert applied.exit_code == 0, applied.output
    again = store.load_pool("p9")
    assert (again.stale_writer, again.incarnation) == ("drain", first.incarnation)
    shown = mpp_admin(redis_url, "pool", "show", "p9").stdout
    assert "stale_writer  drain" in shown
    assert (
        json.loads(mpp_admin(redis_url, "pool", "show", "p9", "--json").stdout)["stale_writer"]
        == "drain"
    )
    assert "stale_writer=drain" in mpp_admin(redis_url, "list").stdout
    assert mpp_admin(redis_url, "pool", "apply", "p9", "--stale-writer", "keep").exit_code == 0
    assert store.load_pool("p9").stale_writer == "keep"
    # a bad value: usage error, nothing changed
    bad = mpp_admin(redis_url, "pool", "apply", "p9", "--stale-writer", "sometimes")
    assert bad.exit_code == 2
    assert store.load_pool("p9").stale_writer == "keep"
    # removed and created again: a new incarnation
    assert mpp_admin(redis_url, "pool", "remove", "p9", "--yes").exit_code == 0
    assert mpp_admin(redis_url, "pool", "create", "p9", "--primary", "db1").exit_code == 0
    assert store.load_pool("p9").incarnation != first.incarnation


def test_list_says_when_the_state_went_backwards(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    store = store_for(redis_url)
    bootstrap(store)
    pool = store.load_pool("pool1")
    assert "went backwards" not in mpp_admin(redis_url, "list").stdout
    # what a Redis failover that lost commits leaves: the same pool at a lower version
    store.client.hset(store.keys.pool("pool1"), "version", pool.version - 1)
    listed = mpp_admin(redis_url, "list")
    assert listed.exit_code == 0
    assert (
        f"  ! state went backwards: Redis has version {pool.version - 1} of pool pool1, older "
        f"than version {pool.version} already seen" in listed.stdout
    )
    doc = json.loads(mpp_admin(redis_url, "list", "--json").stdout)
    assert "went backwards" in doc["pools"][0]["went_backwards"]
    # newer again: nothing to say
    store.client.hset(store.keys.pool("pool1"), "version", pool.version + 1)
    assert "went backwards" not in mpp_admin(redis_url, "list").stdout


def test_fence_is_set_kept_and_shown(redis_url: str) -> None:
    created = mpp_admin(
        redis_url, "pool", "create", "f1", "--primary", "db1", "--fence", "read_only"
    )
    assert created.exit_code == 0, created.output
    store = store_for(redis_url)
    assert store.load_pool("f1").fence == "read_only"
    # apply without --fence keeps it
    assert mpp_admin(redis_url, "pool", "apply", "f1", "--interval", "3").exit_code == 0
    assert store.load_pool("f1").fence == "read_only"
    assert "fence         read_only" in mpp_admin(redis_url, "pool", "show", "f1").stdout
    shown = json.loads(mpp_admin(redis_url, "pool", "show", "f1", "--json").stdout)
    assert shown["fence"] == "read_only"
    assert "fence=read_only" in mpp_admin(redis_url, "list").stdout
    listed = json.loads(mpp_admin(redis_url, "list", "--json").stdout)
    assert listed["pools"][0]["fence"] == "read_only"
    assert mpp_admin(redis_url, "pool", "apply", "f1", "--fence", "OFF").exit_code == 0
    assert store.load_pool("f1").fence == "off"
    # a bad value: usage error, nothing changed
    before = store.load_pool("f1").version
    bad = mpp_admin(redis_url, "pool", "apply", "f1", "--fence", "super_read_only")
    assert bad.exit_code == 2
    assert "read_only" in bad.output
    assert store.load_pool("f1").version == before
