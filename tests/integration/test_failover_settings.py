"""The catch-up and failover-lag pool settings: set, shown, kept by apply, bounds refused."""

from __future__ import annotations

import json

import pytest

from mpp_cli.errors import ExitCode
from tests.integration.admin_support import client_for, create, dump, mpp_admin, store_for


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
