"""mpp-admin and the monitor's own view against a real Redis: the ``--max-lag`` setting, the
``M`` line of nodes the pollers could not judge, replication lag in ``list --json``, what each
poller abstains on and does not serve, the interval warning, and unusable keys reported in one
line (never a traceback)."""

from __future__ import annotations

import json

import pytest

from mpp_agent import state
from mpp_agent.model import NodeId, Observation, Outcome
from mpp_agent.store import Store
from mpp_cli.errors import ExitCode
from tests.integration.admin_support import (
    S1,
    S2,
    P,
    bootstrap,
    client_for,
    create,
    dump,
    mpp_admin,
    store_for,
)

pytestmark = pytest.mark.integration

DENIED = "Access denied for user 'monitor'@'10.0.0.9' (using password: YES)"


# --------------------------------------------------------------------------- --max-lag


def test_max_lag_is_set_shown_and_kept(redis_url: str) -> None:
    created = mpp_admin(
        redis_url, "pool", "create", "pool1", "--primary", "10.0.0.1", "--secondary",
        "10.0.0.2", "--max-lag", "12.5",
    )  # fmt: skip
    assert created.exit_code == 0, created.stderr
    store = store_for(redis_url)
    assert store.load_pool("pool1").max_lag == 12.5
    show = mpp_admin(redis_url, "pool", "show", "pool1").stdout.splitlines()
    assert "max_lag       12.5s" in show
    assert (
        json.loads(mpp_admin(redis_url, "pool", "show", "pool1", "--json").stdout)["max_lag"]
        == 12.5
    )
    assert (
        mpp_admin(redis_url, "pools")
        .stdout.splitlines()[1]
        .endswith("  12.5s    keep          30s      off           auto      off    3          off")
    )
    assert json.loads(mpp_admin(redis_url, "pools", "--json").stdout)["pools"][0]["max_lag"] == 12.5
    assert json.loads(mpp_admin(redis_url, "list", "--json").stdout)["pools"][0]["max_lag"] == 12.5
    assert mpp_admin(redis_url, "list").stdout.splitlines()[2] == (
        "*  [ pool1 ] status=OK  interval=10s max_requests=4 max_lag=12.5s stale_writer=keep"
        " catchup_timeout=30s max_failover_lag=off failback=auto fence=off observers=3"
        " keep_connections=off"
    )

    # apply without --max-lag keeps it; with it, replaces it
    kept = mpp_admin(
        redis_url, "pool", "apply", "pool1", "--primary", "10.0.0.1", "--interval", "5"
    )
    assert kept.exit_code == 0, kept.stderr
    assert (store.load_pool("pool1").max_lag, store.load_pool("pool1").interval) == (12.5, 5.0)
    changed = mpp_admin(
        redis_url, "pool", "apply", "--failoverpool", "name:pool1;primary:10.0.0.1",
        "--max-lag", "0",
    )  # fmt: skip
    assert changed.exit_code == 0, changed.stderr
    assert store.load_pool("pool1").max_lag == 0.0


def test_the_default_max_lag_is_30s(redis_url: str) -> None:
    assert mpp_admin(redis_url, "pool", "create", "p", "--primary", "db1").exit_code == 0
    assert store_for(redis_url).load_pool("p").max_lag == 30.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "max_lag must be between 0 and 86400 s, not -1.0."),
        ("86401", "max_lag must be between 0 and 86400 s, not 86401.0."),
        ("soon", "Invalid value for '--max-lag'"),
    ],
)
@pytest.mark.parametrize("command", ["create", "apply"])
def test_a_bad_max_lag_is_refused_and_changes_nothing(
    redis_url: str, command: str, value: str, message: str
) -> None:
    create(store_for(redis_url))
    before = dump(client_for(redis_url))
    name = "pool1" if command == "apply" else "pool2"
    result = mpp_admin(redis_url, "pool", command, name, "--primary", "db1", "--max-lag", value)
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert dump(client_for(redis_url)) == before


# --------------------------------------------------------------------------- list


def abstain_on(store: Store, name: str, node: NodeId, note: str) -> None:
    """One committed tick in which the pollers could not judge ``node`` (as a poller would)."""
    pool = store.load_pool(name)
    observations = {n.node: Observation.healthy() for n in pool.nodes}
    observations[node] = Observation(Outcome.ABSTAIN, DENIED, monitor_note=note)
    now = store.server_time()
    result = state.tick(pool, observations, now)
    assert store.commit(pool, result.pool, result.events, "p-test", pool.last_round + 1)[0]


def test_list_shows_why_the_monitor_could_not_check_a_node(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    note = f"monitor cannot check (1 of 3 pollers): {DENIED}"
    abstain_on(store, "pool1", S1, note)
    lines = mpp_admin(redis_url, "list").stdout.splitlines()
    s1 = next(i for i, line in enumerate(lines) if line.startswith("S  10.0.0.2:3306"))
    assert lines[s1 + 1] == f"  M {note}"
    assert not any(line.startswith("  M") for line in lines[:s1] + lines[s1 + 2 :])
    nodes = json.loads(mpp_admin(redis_url, "list", "--json").stdout)["pools"][0]["nodes"]
    assert [n["monitor_note"] for n in nodes] == [None, note, None]
    # A round in which every poller could judge it clears the note.
    pool = store.load_pool("pool1")
    now = store.server_time()
    result = state.tick(pool, {n.node: Observation.healthy() for n in pool.nodes}, now)
    assert store.commit(pool, result.pool, result.events, "p-test", pool.last_round + 1)[0]
    assert not any(
        line.startswith("  M") for line in mpp_admin(redis_url, "list").stdout.splitlines()
    )


def test_list_json_gives_each_nodes_lag_from_its_last_probe(redis_url: str) -> None:
    store = store_for(redis_url)
    pool = bootstrap(store)
    metrics = {
        str(P): json.dumps({"seconds_behind": None, "read_only": False}),  # a primary: unknown
        str(S1): json.dumps({"seconds_behind": 3}),
        str(S2): json.dumps({"seconds_behind": 4, "lag": 4.5}),  # lag preferred
    }
    observations = {n.node: Observation.healthy() for n in pool.nodes}
    store.record_observations([("pool1", 7, observations, metrics)], "p-test", 30, 30)
    nodes = json.loads(mpp_admin(redis_url, "list", "--json").stdout)["pools"][0]["nodes"]
    assert [(n["node"], n["lag"]) for n in nodes] == [
        ("10.0.0.1:3306", None),
        ("10.0.0.2:3306", 3),
        ("10.0.0.3:3307", 4.5),
    ]


def test_a_pool_never_probed_has_no_lag(redis_url: str) -> None:
    create(store_for(redis_url))
    nodes = json.loads(mpp_admin(redis_url, "list", "--json").stdout)["pools"][0]["nodes"]
    assert [n["lag"] for n in nodes] == [None, None, None]


# --------------------------------------------------------------------------- pollers


def beat(store: Store, poller_id: str, info: dict[str, object], alive: bool = True) -> None:
    now = store.server_time()
    if alive:
        store.heartbeat(poller_id, {"poller_id": poller_id, **info}, now, ttl=30)
    else:  # its heartbeat ran out a while ago
        store.heartbeat(poller_id, {"poller_id": poller_id, **info}, now - 100, ttl=1)


def test_pollers_show_abstentions_and_unserved_pools(redis_url: str) -> None:
    store = store_for(redis_url)
    beat(
        store,
        "poller-a",
        {
            "pools": ["pool1"],
            "min_interval": 1.25,
            "abstentions": {"pool1/10.0.0.1:3306": DENIED, "pool1/10.0.0.2:3306": DENIED},
            "unserved": {"fast": "interval 0.5s is shorter than this poller can serve (1.25s)"},
        },
    )
    beat(store, "poller-b", {"pools": ["pool1"], "abstentions": {}, "unserved": {}})
    text = mpp_admin(redis_url, "pollers")
    assert text.exit_code == 0, text.stderr
    assert text.stdout.splitlines() == [
        "poller-a  alive",
        "  pools         pool1",
        "  min_interval  1.250s",
        "  abstentions",
        f"    pool1/10.0.0.1:3306  {DENIED}",
        f"    pool1/10.0.0.2:3306  {DENIED}",
        "  unserved",
        "    fast  interval 0.5s is shorter than this poller can serve (1.25s)",
        "poller-b  alive",
        "  pools        pool1",
        "  abstentions  -",
        "  unserved     -",
    ]
    doc = json.loads(mpp_admin(redis_url, "pollers", "--json").stdout)
    a, b = doc["pollers"]
    assert a["abstentions"] == {"pool1/10.0.0.1:3306": DENIED, "pool1/10.0.0.2:3306": DENIED}
    assert a["unserved"] == {"fast": "interval 0.5s is shorter than this poller can serve (1.25s)"}
    assert a["info"]["min_interval"] == 1.25
    assert (b["abstentions"], b["unserved"], b["problem"]) == ({}, {}, None)


def test_pollers_of_an_older_version_show_no_abstentions(redis_url: str) -> None:
    beat(store_for(redis_url), "old", {"pools": ["pool1"], "lag": 0.05})
    doc = json.loads(mpp_admin(redis_url, "pollers", "--json").stdout)
    [old] = doc["pollers"]
    assert (old["abstentions"], old["unserved"]) == ({}, {})
    assert mpp_admin(redis_url, "pollers").stdout.splitlines() == [
        "old  alive",
        "  pools  pool1",
        "  lag    0.050s",
    ]


# --------------------------------------------------------------------------- the interval warning


def test_create_and_apply_warn_when_no_live_poller_can_serve_the_interval(redis_url: str) -> None:
    store = store_for(redis_url)
    beat(store, "poller-a", {"min_interval": 2.0})
    beat(store, "poller-b", {"min_interval": 1.5})
    beat(store, "gone", {"min_interval": 30.0}, alive=False)  # not live: not asked
    fast = mpp_admin(redis_url, "pool", "create", "fast", "--primary", "db1", "--interval", "1")
    assert fast.exit_code == 0, fast.stderr
    assert fast.stdout == "OK: Pool fast created: name:fast;primary:db1:3306\n"
    assert fast.stderr == (
        "warning: interval 1s is shorter than live poller(s) poller-a (at least 2s), "
        "poller-b (at least 1.5s) can serve: no live poller will poll this pool; use a longer "
        "--interval\n"
    )
    assert store.load_pool("fast").interval == 1.0  # configured anyway

    ok = mpp_admin(redis_url, "pool", "create", "slow", "--primary", "db1", "--interval", "5")
    assert (ok.exit_code, ok.stderr) == (0, "")

    some = mpp_admin(redis_url, "pool", "apply", "slow", "--primary", "db1", "--interval", "1.8")
    assert some.exit_code == 0, some.stderr
    assert some.stderr == (
        "warning: interval 1.8s is shorter than live poller(s) poller-a (at least 2s) can "
        "serve: they will not poll this pool\n"
    )


def test_an_unusable_pollers_key_does_not_fail_a_create(redis_url: str) -> None:
    store = store_for(redis_url)
    client_for(redis_url).set(store.keys.pollers(), "by hand")
    result = mpp_admin(redis_url, "pool", "create", "p", "--primary", "db1")
    assert result.exit_code == 0
    assert result.stderr == (
        "warning: cannot tell which intervals the pollers serve: mpp:pollers is a string, "
        "not a zset\n"
    )
    assert store.pool_names() == ["p"]


def test_no_warning_without_pollers_that_say_what_they_serve(redis_url: str) -> None:
    beat(store_for(redis_url), "old", {"pools": []})
    fast = mpp_admin(redis_url, "pool", "create", "fast", "--primary", "db1", "--interval", "0.1")
    assert (fast.exit_code, fast.stderr) == (0, "")


# --------------------------------------------------------------------------- unusable keys


def test_history_reports_an_unusable_stream_in_one_line(redis_url: str) -> None:
    store = store_for(redis_url)
    create(store)
    create(store, "name:pool2;primary:db1")
    client = client_for(redis_url)
    client.delete(store.keys.events("pool2"))
    client.set(store.keys.events("pool2"), "by hand")
    result = mpp_admin(redis_url, "history")
    assert result.exit_code == ExitCode.BAD_STATE
    assert "pool created by" in result.stdout  # pool1's events are shown
    assert result.stderr == (
        "mpp-admin history: mpp:{pool2}:events is a string, not a stream (left out)\n"
    )
    only = mpp_admin(redis_url, "history", "--pool", "pool2", "--json")
    assert only.exit_code == ExitCode.BAD_STATE
    assert json.loads(only.stdout) == {"events": []}
    assert only.stderr.count("\n") == 1


def test_history_leaves_out_an_entry_that_is_not_an_event(redis_url: str) -> None:
    store = store_for(redis_url)
    create(store)
    client_for(redis_url).xadd(store.keys.events("pool1"), {"event": "{not json"})
    result = mpp_admin(redis_url, "history")
    # One garbage entry never hides a pool's history: the events around it are shown.
    assert result.exit_code == 0, result.stderr
    assert "pool created" in result.stdout and "{not json" not in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_pollers_report_an_unusable_key_in_one_line(redis_url: str) -> None:
    store = store_for(redis_url)
    beat(store, "poller-a", {"pools": ["pool1"]})
    beat(store, "poller-b", {"pools": ["pool1"]})
    client = client_for(redis_url)
    client.set(store.keys.poller("poller-b"), "{not json", ex=30)
    text = mpp_admin(redis_url, "pollers")
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[:2] == ["poller-a  alive", "  pools  pool1"]
    assert lines[2] == "poller-b  alive"
    assert lines[3].startswith("  unreadable heartbeat: mpp:poller:poller-b is not JSON: ")
    doc = json.loads(mpp_admin(redis_url, "pollers", "--json").stdout)
    assert doc["pollers"][1]["problem"].startswith("mpp:poller:poller-b is not JSON")

    client.delete(store.keys.pollers())
    client.set(store.keys.pollers(), "by hand")
    broken = mpp_admin(redis_url, "pollers")
    assert broken.exit_code == ExitCode.BAD_STATE
    assert broken.stdout == ""
    assert broken.stderr == "mpp-admin pollers: mpp:pollers is a string, not a zset\n"


def test_list_and_pools_show_the_readable_pools_and_name_the_others(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    create(store, "name:pool2;primary:db1")
    client = client_for(redis_url)
    client.hset(store.keys.pool("pool2"), "doc", "{garbage")
    for command in (["list"], ["pools"], ["list", "--json"]):
        result = mpp_admin(redis_url, *command)
        assert result.exit_code == ExitCode.BAD_STATE, command
        assert "pool1" in result.stdout and "pool2" not in result.stdout
        assert result.stderr.startswith(
            f"mpp-admin {command[0]}: mpp:{{pool2}}:pool holds an unreadable pool document: "
        )
        assert result.stderr.endswith(" (left out)\n") and result.stderr.count("\n") == 1
    one = mpp_admin(redis_url, "list", "--pool", "pool2")
    assert one.exit_code == ExitCode.BAD_STATE
    assert one.stderr.startswith("mpp-admin list: mpp:{pool2}:pool holds an unreadable pool")


def test_list_json_with_an_unusable_metrics_hash_shows_lag_unknown(redis_url: str) -> None:
    store = store_for(redis_url)
    bootstrap(store)
    client_for(redis_url).set(store.keys.metrics("pool1"), "by hand")
    result = mpp_admin(redis_url, "list", "--json")
    assert result.exit_code == 0
    nodes = json.loads(result.stdout)["pools"][0]["nodes"]
    assert [n["lag"] for n in nodes] == [None, None, None]
    assert result.stderr == (
        "mpp-admin list: mpp:{pool1}:metrics is a string, not a hash (left out)\n"
    )
