"""Bounds and secrets, without servers: password files, URL redaction, durations, stored
numbers, connection caps, quiet logs and the agent's loop supervisor."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import cast
from urllib.parse import quote

import gevent
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpp_agent.agent_main import connection_caps
from mpp_agent.agent_server import Agent, AgentSettings
from mpp_agent.codec import DocumentError, pool_from_doc, pool_to_doc
from mpp_agent.config import new_pool, parse_failoverpool
from mpp_agent.daemon import OnChange, RateLimited
from mpp_agent.secret_file import MAX_SECRET_BYTES, SecretFileError, read_first_line
from mpp_agent.store import Store, StoreError, connect, redact_url, replicas_news
from mpp_cli.admin_cmd import parse_duration
from mpp_cli.errors import CliError

# ------------------------------------------------------------------------------ password files


def test_a_password_file_is_read_to_its_first_line(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_bytes(b"s3cret\r\nsecond line\n")
    assert read_first_line(str(path), "Redis password") == "s3cret"
    path.write_bytes(b"no newline at all")
    assert read_first_line(str(path), "Redis password") == "no newline at all"
    path.write_bytes(b"x" * MAX_SECRET_BYTES + b"\n" + b"y" * 10_000_000)
    assert read_first_line(str(path), "Redis password") == "x" * MAX_SECRET_BYTES


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"\xff\xfe\xfd\n", "is not UTF-8 text", id="not-utf8"),
        pytest.param(b"x" * (MAX_SECRET_BYTES + 1), "no line end in its first", id="too-long"),
        pytest.param(b"pass\x00word\n", "control characters", id="nul"),
    ],
)
def test_a_bad_password_file_is_a_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "pw"
    path.write_bytes(content)
    with pytest.raises(SecretFileError, match=message) as info:
        read_first_line(str(path), "Redis password")
    assert "pass" not in str(info.value).replace("password", "")


def test_dev_zero_is_one_bounded_read() -> None:
    with pytest.raises(SecretFileError, match="no line end"):
        read_first_line("/dev/zero", "Redis password")
    with pytest.raises(SecretFileError, match="cannot read the Redis password file /nope"):
        read_first_line("/nope", "Redis password")


# ------------------------------------------------------------------------------ URLs

SECRET_CHARS = st.text(
    alphabet=st.sampled_from("abcXYZ0189#/?@%:&=+ !$'()*,;[]~"), min_size=6, max_size=24
)


@settings(max_examples=300, deadline=None)
@given(password=SECRET_CHARS, encode=st.booleans(), user=st.sampled_from(["", "app"]))
def test_redaction_hides_any_password(password: str, encode: bool, user: str) -> None:
    written = quote(password, safe="") if encode else password
    for url in (
        f"redis://{user}:{written}@10.0.0.9:6379/0",
        f"rediss://{user}:{written}@redis.example:6380/1?ssl_ca_certs=/etc/ca.pem",
        f"redis+sentinel://{user}:{written}@h1:26379,h2:26379/mymaster/0",
        f"redis://10.0.0.9:6379/0?password={quote(password, safe='')}&db=1",
    ):
        shown = redact_url(url)
        assert written not in shown and password not in shown, (url, shown)
        assert "***" in shown
        # A URL that cannot be used is refused with the redacted text only.
        try:
            connect(url)
        except StoreError as exc:
            assert written not in str(exc) and password not in str(exc)


def test_redaction_keeps_what_is_not_secret() -> None:
    assert redact_url("redis://:hunter2@10.0.0.9:6379/0") == "redis://:***@10.0.0.9:6379/0"
    assert redact_url("rediss://app:hunter2@r:6380/1") == "rediss://app:***@r:6380/1"
    assert redact_url("redis://:s3cr#t@host/0") == "redis://:***@host/0"
    assert redact_url("redis://r:6379/0?password=x#y&db=1") == "redis://r:6379/0?password=***&db=1"
    assert redact_url("unix:///run/redis.sock?db=2") == "unix:///run/redis.sock?db=2"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        pytest.param("redis://:s3cr#t@host/0", "percent-encode", id="raw-hash"),
        pytest.param("redis://:a/b@host/0", "percent-encode", id="raw-slash"),
        pytest.param("redis://:a?b@host/0", "percent-encode", id="raw-question-mark"),
        pytest.param("redis://host/0?foo=bar", "unknown parameter 'foo'", id="unknown-param"),
        pytest.param("redis://host/0?ssl_ca_certs=/x", "unknown parameter", id="tls-param-plain"),
        pytest.param("redis://host/zero", "database 'zero' is not a number", id="bad-db"),
        pytest.param("redis://host:port/0", "Port could not be cast", id="bad-port"),
        pytest.param("redis:///0", "names no host", id="no-host"),
        pytest.param("redis+sentinel://h:1/m/x", "database 'x' is not a number", id="sentinel-db"),
        pytest.param("redis+sentinel://h:1/m/0?x=1", "Bad Sentinel URL", id="sentinel-query"),
        pytest.param("mysql://h/0", "Unsupported Redis URL scheme 'mysql'", id="scheme"),
    ],
)
def test_unusable_urls_say_why(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        connect(url)


# ------------------------------------------------------------------------------ durations


def test_override_durations_are_bounded() -> None:
    assert parse_duration("30s") == 30
    assert parse_duration("366d") == 366 * 86400
    assert parse_duration("1.5m") == 90
    for text in ("0", "0s", "367d", "99999999999999999999d", "9" * 400, "1e3", "-1", "inf", "nan"):
        with pytest.raises(CliError):
            parse_duration(text)


# ------------------------------------------------------------------------------ stored numbers


def doc_with(**changes: object) -> str:
    pool = new_pool(parse_failoverpool("name:p1;primary:10.0.0.1;secondary:10.0.0.2"))
    data = json.loads(pool_to_doc(pool))
    data.update(changes)
    return json.dumps(data)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"interval": 1e-300}, id="tiny-interval"),
        pytest.param({"interval": 1e300}, id="huge-interval"),
        pytest.param({"interval": float("nan")}, id="nan-interval"),
        pytest.param({"max_requests": 10**30}, id="huge-max-requests"),
        pytest.param({"max_lag": float("inf")}, id="infinite-max-lag"),
        pytest.param({"name": "p2"}, id="another-pools-name"),
    ],
)
def test_out_of_bounds_documents_are_unreadable(changes: dict[str, object]) -> None:
    with pytest.raises(DocumentError):
        pool_from_doc(doc_with(**changes), 1, 0, "p1")


def test_out_of_bounds_node_values_are_unreadable() -> None:
    base = json.loads(doc_with())
    override = {"state": "STANDBY", "reason": "r", "set_at": 1.0, "expires_at": float("inf")}
    for node_change in (
        {"requests": 10**12},
        {"last_request_time": -5},
        {"override": override},
    ):
        data = {**base, "nodes": [{**base["nodes"][0], **node_change}, base["nodes"][1]]}
        with pytest.raises(DocumentError):
            pool_from_doc(json.dumps(data), 1, 0, "p1")
    with pytest.raises(DocumentError):
        pool_from_doc(doc_with(), 2**60, 0, "p1")


def test_infinity_is_never_written() -> None:
    pool = new_pool(parse_failoverpool("name:p1;primary:10.0.0.1"))
    with pytest.raises(DocumentError, match="refusing to store"):
        pool_to_doc(pool.__class__(**{**pool.__dict__, "max_lag": math.inf}))


# ------------------------------------------------------------------------------ connection caps


def test_connection_caps_fit_the_open_file_limit() -> None:
    assert connection_caps(4096, 64, 1_048_576) == (4096, 64)
    probe, http = connection_caps(4096, 64, 1024)
    assert probe + http <= 1024 - 64 and http >= 1 and probe >= 1
    assert connection_caps(4096, 64, 10) == (1, 1)


# ------------------------------------------------------------------------------ quiet logs


def test_on_change_logs_a_repeating_problem_once(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.onchange")
    note = OnChange(logger, "works again")
    with caplog.at_level(logging.INFO, logger="test.onchange"):
        for _ in range(100):
            note.problem("Redis at x is unreachable")
        note.problem("Redis at x refused the password")
        note.ok()
        note.ok()
    assert [r.getMessage() for r in caplog.records] == [
        "Redis at x is unreachable",
        "Redis at x refused the password",
        "works again",
    ]


def test_rate_limited_logs_one_line_per_kind_per_period(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    limited = RateLimited(logging.getLogger("test.rate"), period=60, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.rate"):
        for i in range(1000):
            now[0] = i * 0.1  # 100 s of a request every 0.1 s
            limited.note("bad HTTP request", "garbage")
            limited.note("bad agent-check", "garbage")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4
    assert lines[2] == "bad HTTP request: garbage (599 more since the last such line)"


# ------------------------------------------------------------------------------ the supervisor


def test_a_loop_that_ends_is_restarted_and_reported_down() -> None:
    agent = Agent(cast(Store, None), AgentSettings())
    runs: list[int] = []

    def flaky() -> None:
        runs.append(1)
        if len(runs) == 1:
            raise OverflowError("cannot convert float infinity to integer")
        agent._stopping.wait()  # the second run lasts until the agent stops

    worker = gevent.spawn(agent.supervised, "refresh", flaky)
    gevent.sleep(0.2)
    assert agent.loops_down == {"refresh"}
    agent._loops = {"refresh": worker}
    assert agent.readiness() == (False, "loop down: refresh")
    gevent.sleep(1.2)
    assert len(runs) == 2 and agent.loops_down == set()
    agent._stopping.set()
    worker.join(timeout=2)
    assert worker.dead


# ------------------------------------------------------------------------------ Redis replicas


@pytest.mark.parametrize(
    ("had", "has", "fails_over", "said"),
    [
        (None, True, True, None),  # first look, a replica: nothing to say
        (None, True, False, None),
        (None, False, False, None),  # a plain Redis without replica: nothing to fail over to
        (None, False, True, "has no connected replica:"),  # Sentinel or Cluster without one
        (True, True, True, None),
        (True, False, False, "has no connected replica any more:"),  # lost, whatever the URL
        (True, False, True, "has no connected replica any more:"),
        (False, False, True, None),  # said once, not at every look
        (False, True, False, "has a connected replica again"),
        (False, True, True, "has a connected replica again"),
    ],
)
def test_a_master_losing_or_regaining_its_replica_is_said_on_change(
    had: bool | None, has: bool, fails_over: bool, said: str | None
) -> None:
    news = replicas_news("127.0.0.1:6379", had, has, fails_over)
    if said is None:
        assert news is None
    else:
        assert news is not None and news.startswith(f"Redis master 127.0.0.1:6379 {said}")
        assert ("could lose them" in news) is (not has)
