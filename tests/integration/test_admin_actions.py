"""mpp-admin recover, activate-primary, delete, override, release, and every error path of the
CLI (the state byte-for-byte unchanged afterwards), against a real Redis."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mpp_agent import state
from mpp_agent.model import NodeType, Outcome, PoolStatus, State, Status
from mpp_cli.errors import ExitCode
from tests.integration.admin_support import (
    S1,
    P,
    bootstrap,
    client_for,
    create,
    dump,
    failover,
    mpp_admin,
    store_for,
    tick,
)
from tests.servers import RedisServer

pytestmark = pytest.mark.integration

USER = f"admin:{os.environ.get('USER') or os.getuid()}"


def test_recover_node_prints_mpps_text_and_resets_it(redis_url: str) -> None:
    store = store_for(redis_url)
    failover(store, bootstrap(store).name)
    result = mpp_admin(redis_url, "recover", "10.0.0.1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "OK: Cached level reset from FAIL/4 (FAILED_OFFLINE) to OK_WARN/0 (UNKNOWN) "
        "for 10.0.0.1:3306\n"
    )
    node = store.load_pool("pool1").find(P)
    assert node is not None
    assert (node.state, node.status, node.requests, node.message) == (
        State.UNKNOWN, Status.OK_WARN, 0, "Manual Recovery Initiated.",
    )  # fmt: skip
    [(_, event)] = store.last_events("pool1", 1)
    assert (event["kind"], event["actor"]) == ("recover", USER)
    # The article's hand-back: the recovered primary returns by itself over the next ticks.
    pool = tick(store, "pool1", times=4)
    assert [n.state for n in pool.nodes] == [State.ACTIVE, State.STANDBY, State.STANDBY]


def test_recover_a_never_polled_node_writes_nothing(redis_url: str) -> None:
    create(store_for(redis_url))
    before = dump(client_for(redis_url))
    result = mpp_admin(redis_url, "recover", "10.0.0.2")
    assert (result.exit_code, result.stdout) == (
        0, "Server 10.0.0.2:3306 requests number not set.\n",
    )  # fmt: skip
    assert dump(client_for(redis_url)) == before


def test_recover_pool_resets_pool_fail(redis_url: str) -> None:
    store = store_for(redis_url)
    pool = bootstrap(store)
    failed = state.tick(pool, {}, store.server_time(), pool_failed=True).pool
    assert store.commit(pool, failed, (), "test", None)[0]
    result = mpp_admin(redis_url, "recover", "--pool", "pool1")
    assert (result.exit_code, result.stdout) == (0, "OK: Pool status reset from FAIL to OK\n")
    assert store.load_pool("pool1").status is PoolStatus.OK


def test_activate_primary_demotes_the_active_secondary_at_once(redis_url: str) -> None:
    store = store_for(redis_url)
    failover(store, bootstrap(store).name)
    assert mpp_admin(redis_url, "recover", "10.0.0.1").exit_code == 0
    tick(store, "pool1", {S1: Outcome.CONNECT})  # primary UNKNOWN -> STANDBY; S1 stays ACTIVE
    assert [n.state for n in store.load_pool("pool1").nodes][:2] == [State.STANDBY, State.ACTIVE]
    result = mpp_admin(redis_url, "activate-primary", "pool1")
    assert (result.exit_code, result.stdout) == (
        0, "PRIMARY SERVER 10.0.0.1:3306 STATE is now ACTIVE.\n",
    )  # fmt: skip
    pool = store.load_pool("pool1")
    assert [(n.state, n.message) for n in pool.nodes[:2]] == [
        (State.ACTIVE, "PRIMARY Manually reinstated as ACTIVE."),
        (State.STANDBY, "Relinquishing ACTIVE state to PRIMARY."),
    ]
    assert len(pool.active_nodes) == 1


def test_delete_removes_node_and_configuration(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    result = mpp_admin(redis_url, "delete", "10.0.0.3:3307")
    assert (result.exit_code, result.stdout) == (
        0, "OK: Cached server 10.0.0.3:3307 with 0 request attempts was deleted.\n",
    )  # fmt: skip
    pool = store.load_pool("pool1")
    assert [str(n.node) for n in pool.nodes] == ["10.0.0.1:3306", "10.0.0.2:3306"]
    shown = mpp_admin(redis_url, "pool", "show", "pool1").stdout
    assert "10.0.0.3" not in shown


def test_override_and_release(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    result = mpp_admin(
        redis_url, "override", "10.0.0.2", "--state", "standby", "--status", "ok_warn",
        "--reason", "kernel upgrade", "--for", "10m",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    node = store.load_pool("pool1").find(S1)
    assert node is not None and node.override is not None
    assert result.stdout == (
        f"OK: Override STANDBY/OK_WARN set for 10.0.0.2:3306 until "
        f"{state.utc_text(node.override.expires_at)}: kernel upgrade\n"
    )
    assert (node.override.state, node.override.status, node.override.set_by) == (
        State.STANDBY, Status.OK_WARN, USER,
    )  # fmt: skip
    assert node.override.expires_at == pytest.approx(node.override.set_at + 600)
    # Ticks keep the override (the state machine runs underneath it).
    assert tick(store, "pool1").find(S1).override == node.override  # type: ignore[union-attr]
    released = mpp_admin(redis_url, "release", "10.0.0.2")
    assert (released.exit_code, released.stdout) == (0, "OK: Override released for 10.0.0.2:3306\n")
    assert store.load_pool("pool1").find(S1).override is None  # type: ignore[union-attr]
    kinds = [(e["kind"], e["actor"]) for _, e in store.last_events("pool1", 10)]
    assert [k for k in kinds if k[0] != "transition"][-2:] == [
        ("override", USER),
        ("release", USER),
    ]


ERRORS = [
    pytest.param(["recover"], ExitCode.USAGE, "give a NODE", id="recover-nothing"),
    pytest.param(["recover", "10.0.0.1:0"], ExitCode.USAGE, "bad port", id="recover-bad-node"),
    pytest.param(["recover", "10.9.9.9"], ExitCode.NOT_FOUND,
                 "Server 10.9.9.9:3306 is not a member of any pool.", id="recover-unknown-node"),
    pytest.param(["recover", "10.0.0.1"], ExitCode.USAGE,
                 "is in pools pool1, pool2: choose one with --pool", id="recover-ambiguous"),
    pytest.param(["recover", "--pool", "nope"], ExitCode.NOT_FOUND, "No pool named 'nope'.",
                 id="recover-unknown-pool"),
    pytest.param(["recover", "10.0.0.1", "--pool", "nope"], ExitCode.NOT_FOUND,
                 "No pool named 'nope'.", id="recover-node-unknown-pool"),
    pytest.param(["activate-primary", "pool1"], ExitCode.REFUSED,
                 "PRIMARY SERVER 10.0.0.1:3306 IS NOT READY. STATE must be STANDBY for "
                 "activation.", id="activate-primary-not-standby"),
    pytest.param(["activate-primary", "pool3"], ExitCode.REFUSED,
                 "Pool pool3 has no PRIMARY server to activate.", id="activate-no-primary"),
    pytest.param(["activate-primary", "nope"], ExitCode.NOT_FOUND, "No pool named 'nope'.",
                 id="activate-unknown-pool"),
    pytest.param(["delete", "10.9.9.9"], ExitCode.NOT_FOUND, "not a member of any pool",
                 id="delete-unknown-node"),
    pytest.param(["delete", "10.0.0.1"], ExitCode.USAGE, "choose one with --pool",
                 id="delete-ambiguous"),
    pytest.param(["delete", "a b"], ExitCode.USAGE, "not a node", id="delete-bad-node"),
    pytest.param(["override", "10.0.0.2", "--state", "ACTIVE", "--reason", "x", "--for", "soon"],
                 ExitCode.USAGE, "bad duration 'soon'", id="override-bad-duration"),
    pytest.param(["override", "10.0.0.2", "--state", "ACTIVE", "--reason", "  "],
                 ExitCode.USAGE, "--reason must say why", id="override-empty-reason"),
    pytest.param(["override", "10.0.0.2", "--state", "UP", "--reason", "x"], ExitCode.USAGE,
                 "Invalid value", id="override-bad-state"),
    pytest.param(["override", "10.0.0.2", "--reason", "x"], ExitCode.USAGE, "Missing option",
                 id="override-no-state"),
    pytest.param(["override", "10.9.9.9", "--state", "ACTIVE", "--reason", "x"],
                 ExitCode.NOT_FOUND, "not a member of any pool", id="override-unknown-node"),
    pytest.param(["release", "10.0.0.2"], ExitCode.REFUSED,
                 "Server 10.0.0.2:3306 has no override to release.", id="release-no-override"),
    pytest.param(["release", "10.0.0.2", "--pool", "pool2"], ExitCode.NOT_FOUND,
                 "Server 10.0.0.2:3306 is not a member of pool pool2.", id="release-not-in-pool"),
    pytest.param(["no-such-command"], ExitCode.USAGE, "No such command", id="unknown-command"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "code", "message"), ERRORS)
def test_errors_go_to_stderr_with_their_code_and_change_nothing(
    redis_url: str, args: list[str], code: ExitCode, message: str
) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    create(store, "name:pool2;primary:10.0.0.1;secondary:10.0.0.9")
    create(store, "name:pool3;secondary:10.0.0.8")
    before = dump(client_for(redis_url))
    result = mpp_admin(redis_url, *args)
    assert result.exit_code == code, result.output
    assert message in result.stderr
    assert result.stdout == ""
    assert dump(client_for(redis_url)) == before


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["list"], id="list"),
        pytest.param(["list", "--json"], id="list-json"),
        pytest.param(["report", "10.0.0.1"], id="report"),
        pytest.param(["recover", "10.0.0.1"], id="recover"),
        pytest.param(["activate-primary", "pool1"], id="activate-primary"),
        pytest.param(["pool", "create", "p", "--primary", "a"], id="pool-create"),
        pytest.param(["pollers", "--json"], id="pollers"),
        pytest.param(["history"], id="history"),
    ],
)
def test_redis_unavailable_exits_6_without_showing_the_password(
    fresh_redis: RedisServer, args: list[str]
) -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{fresh_redis.port}/0"
    fresh_redis.stop()
    result = mpp_admin(url, *args)
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stdout == ""
    assert "Redis at redis://:***@127.0.0.1:" in result.stderr
    assert "s3cret-pw" not in result.output


def test_is_active_against_unavailable_redis_is_not_a_silent_no(fresh_redis: RedisServer) -> None:
    url = fresh_redis.url
    fresh_redis.stop()
    result = mpp_admin(url, "is-active", "10.0.0.1")
    assert result.exit_code == ExitCode.UNAVAILABLE
    assert result.stdout == ""


def test_bad_redis_url_and_password_file(redis_url: str, tmp_path: Path) -> None:
    bad = mpp_admin("http://127.0.0.1:1/0", "list")
    assert bad.exit_code == ExitCode.USAGE
    assert "Unsupported Redis URL scheme 'http'" in bad.stderr
    missing = mpp_admin(redis_url, "--redis-password-file", str(tmp_path / "nope"), "list")
    assert missing.exit_code == ExitCode.USAGE
    assert "cannot read the Redis password file" in missing.stderr


def test_password_from_file_and_env(tmp_path: Path) -> None:
    server = RedisServer()
    server.start()
    try:
        with server.client() as c:
            c.config_set("requirepass", "pw-file-secret")
        secret = tmp_path / "redis.pw"
        secret.write_text("pw-file-secret\n")
        denied = mpp_admin(server.url, "pools")
        assert denied.exit_code == ExitCode.UNAVAILABLE
        assert "pw-file-secret" not in denied.output
        ok = mpp_admin(server.url, "--redis-password-file", str(secret), "pools")
        assert (ok.exit_code, ok.stdout) == (0, "No pools.\n")
        env = {**os.environ, "MPP_REDIS_PASSWORD": "pw-file-secret", "MPP_REDIS_URL": server.url}
        run = subprocess.run(
            ["mpp-admin", "pools"], env=env, capture_output=True, text=True, timeout=30
        )
        assert (run.returncode, run.stdout) == (0, "No pools.\n")
    finally:
        server.cleanup()


def test_namespace_option_and_env_separate_deployments(redis_url: str) -> None:
    created = mpp_admin(redis_url, "--namespace", "other", "pool", "create", "x", "--primary", "a")
    assert created.exit_code == 0
    assert mpp_admin(redis_url, "pools").stdout == "No pools.\n"
    assert "x     OK" in mpp_admin(redis_url, "--namespace", "other", "pools").stdout
    assert dump(client_for(redis_url), "other") and not dump(client_for(redis_url), "mpp")


def test_secondary_only_pool_types(redis_url: str) -> None:
    result = mpp_admin(redis_url, "pool", "create", "s", "--secondary", "a", "--secondary", "b")
    assert result.exit_code == 0
    pool = store_for(redis_url).load_pool("s")
    assert [n.type for n in pool.nodes] == [NodeType.SECONDARY, NodeType.SECONDARY]
