"""The catch-up and failover-lag pool settings (set, shown, kept by apply, bounds refused) and
``mpp-admin failover POOL --to NODE``."""

from __future__ import annotations

import json

import pytest

from mpp_agent.model import NodeId, Outcome
from mpp_cli.errors import ExitCode
from tests.integration.admin_support import (
    bootstrap,
    client_for,
    create,
    dump,
    mpp_admin,
    store_for,
    tick,
)


def test_failover_settings_are_set_shown_and_kept(redis_url: str) -> None:
    created = mpp_admin(
        redis_url, "pool", "create", "pool1", "--primary", "10.0.0.1", "--secondary",
        "10.0.0.2", "--catchup-timeout", "7", "--max-failover-lag", "2.5",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    store = store_for(redis_url)
    pool = store.load_pool("pool1")
    assert (pool.catchup_timeout, pool.max_failover_lag) == (7.0, 2.5)
    show = mpp_admin(redis_url, "pool", "show", "pool1").stdout.splitlines()
    assert "catchup       7s" in show and "failover_lag  2.5s" in show
    doc = json.loads(mpp_admin(redis_url, "pool", "show", "pool1", "--json").stdout)
    assert (doc["catchup_timeout"], doc["max_failover_lag"]) == (7.0, 2.5)
    assert "catchup_timeout=7s max_failover_lag=2.5s" in mpp_admin(redis_url, "list").stdout
    kept = mpp_admin(redis_url, "pool", "apply", "pool1", "--interval", "5")
    assert kept.exit_code == 0, kept.stderr
    pool = store.load_pool("pool1")
    assert (pool.catchup_timeout, pool.max_failover_lag, pool.interval) == (7.0, 2.5, 5.0)
    changed = mpp_admin(redis_url, "pool", "apply", "pool1", "--max-failover-lag", "0")
    assert changed.exit_code == 0, changed.stderr
    assert store.load_pool("pool1").max_failover_lag == 0.0
    assert "max_failover_lag=off" in mpp_admin(redis_url, "list").stdout


def test_defaults(redis_url: str) -> None:
    assert mpp_admin(redis_url, "pool", "create", "p", "--primary", "db1").exit_code == 0
    pool = store_for(redis_url).load_pool("p")
    assert (pool.catchup_timeout, pool.max_failover_lag) == (30.0, 0.0)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--catchup-timeout", "-1", "catchup_timeout must be between 0 and 86400 s"),
        ("--max-failover-lag", "86401", "max_failover_lag must be between 0 (off) and 86400 s"),
        ("--max-failover-lag", "soon", "Invalid value for '--max-failover-lag'"),
    ],
)
def test_bad_values_are_refused_and_change_nothing(
    redis_url: str, option: str, value: str, message: str
) -> None:
    create(store_for(redis_url))
    before = dump(client_for(redis_url))
    result = mpp_admin(redis_url, "pool", "apply", "pool1", option, value)
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert dump(client_for(redis_url)) == before


# --------------------------------------------------------------------------- failover --to


def test_failover_to_a_standby_through_the_cli(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    result = mpp_admin(redis_url, "failover", "pool1", "--to", "10.0.0.2")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("OK: Server 10.0.0.2:3306 STATE is now ACTIVE")
    pool = store.load_pool("pool1")
    assert [n.state.value for n in pool.nodes] == ["STANDBY", "ACTIVE", "STANDBY"]
    history = json.loads(mpp_admin(redis_url, "history", "--pool", "pool1", "--json").stdout)
    kinds = [e["kind"] for e in history["events"]]
    assert kinds.count("failover") == 2  # the promotion and the old ACTIVE stepping down


def test_failover_to_a_failed_node_needs_force_and_changes_nothing_without(
    redis_url: str,
) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    tick(store, "pool1", {NodeId.parse("10.0.0.2"): Outcome.CONNECT}, times=4)
    before = dump(client_for(redis_url))
    refused = mpp_admin(redis_url, "failover", "pool1", "--to", "10.0.0.2")
    assert refused.exit_code == ExitCode.REFUSED
    assert "use --force" in refused.stderr
    assert dump(client_for(redis_url)) == before
    forced = mpp_admin(redis_url, "failover", "pool1", "--to", "10.0.0.2", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert store.load_pool("pool1").nodes[1].state.value == "ACTIVE"


def test_failover_to_an_unknown_node_or_pool(redis_url: str) -> None:
    bootstrap(store_for(redis_url))
    assert mpp_admin(redis_url, "failover", "pool1", "--to", "10.9.9.9").exit_code in (
        ExitCode.REFUSED,
        ExitCode.NOT_FOUND,
    )
    assert mpp_admin(redis_url, "failover", "nope", "--to", "10.0.0.2").exit_code == (
        ExitCode.NOT_FOUND
    )
