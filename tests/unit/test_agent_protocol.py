"""The agent wire protocol: the reply table as data, and the request parser against bad input."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mpp_agent.agent_protocol import (
    BAD_REQUEST,
    MAX_REPLY_BYTES,
    MAX_REQUEST_BYTES,
    BadRequest,
    Reply,
    Request,
    Role,
    answer_changes,
    decide,
    decide_pool,
    parse_request,
    unknown_node,
    unknown_pool,
)
from mpp_agent.model import (
    NodeId,
    NodeState,
    NodeType,
    Override,
    PoolState,
    PoolStatus,
    State,
    Status,
)
from mpp_agent.routing import next_expiry, route

ME = NodeId("10.0.0.1")
PEER = NodeId("10.0.0.2")
NOW = 1_000_000.0

# ---------------------------------------------------------------------------------------------
# the reply table: state, status, role, peer -> words.
# peer "replica": the other node is a healthy STANDBY; "alone": it is FAILED_OFFLINE.
# "*" matches both peers.

TABLE = """
ACTIVE         OK       rw  *        up ready
ACTIVE         OK_WARN  rw  *        up ready
ACTIVE         FAIL     rw  *        up ready
ACTIVE         OK       ro  replica  up drain
ACTIVE         OK_WARN  ro  replica  up drain
ACTIVE         FAIL     ro  replica  up drain
ACTIVE         OK       ro  alone    up ready 100%
ACTIVE         OK_WARN  ro  alone    up ready 100%
ACTIVE         FAIL     ro  alone    up ready 100%
STANDBY        OK       rw  *        up drain
STANDBY        OK_WARN  rw  *        up drain
STANDBY        FAIL     rw  *        up drain
STANDBY        OK       ro  *        up ready 100%
STANDBY        OK_WARN  ro  *        up ready 100%
STANDBY        FAIL     ro  *        up drain
UNKNOWN        OK       rw  *        down
UNKNOWN        OK_WARN  rw  *        down
UNKNOWN        FAIL     rw  *        down
UNKNOWN        OK       ro  *        down
UNKNOWN        OK_WARN  ro  *        down
UNKNOWN        FAIL     ro  *        down
FAILED_OFFLINE OK       rw  *        down
FAILED_OFFLINE OK_WARN  rw  *        down
FAILED_OFFLINE FAIL     rw  *        down
FAILED_OFFLINE OK       ro  *        down
FAILED_OFFLINE OK_WARN  ro  *        down
FAILED_OFFLINE FAIL     ro  *        down
FAILED_ONLINE  OK       rw  *        down
FAILED_ONLINE  OK_WARN  rw  *        down
FAILED_ONLINE  FAIL     rw  *        down
FAILED_ONLINE  OK       ro  *        down
FAILED_ONLINE  OK_WARN  ro  *        down
FAILED_ONLINE  FAIL     ro  *        down
"""


def table_rows() -> list[tuple[State, Status, Role, str, str]]:
    rows = []
    for line in TABLE.strip().splitlines():
        state, status, role, peer, *words = line.split()
        for p in ("replica", "alone") if peer == "*" else (peer,):
            rows.append((State(state), Status(status), Role(role), p, " ".join(words)))
    return rows


VARIANTS = ("plain", "stale", "pool-fail", "override", "expired-override")


def make_pool(me: NodeState, peer_state: str, pool_status: PoolStatus = PoolStatus.OK) -> PoolState:
    peer = NodeState(PEER, NodeType.SECONDARY, requests=0)
    peer = replace(peer, state=State.STANDBY if peer_state == "replica" else State.FAILED_OFFLINE)
    peer = replace(peer, status=Status.OK if peer_state == "replica" else Status.FAIL)
    return PoolState("p1", (me, peer), status=pool_status, max_requests=4)


def cases() -> list[object]:
    out = []
    for state, status, role, peer, words in table_rows():
        for variant in VARIANTS:
            case_id = f"{state}-{status}-{role}-{peer}-{variant}"
            out.append(pytest.param(state, status, role, peer, words, variant, id=case_id))
    return out


def opposite(state: State) -> State:
    return State.FAILED_OFFLINE if state in (State.ACTIVE, State.STANDBY) else State.ACTIVE


@pytest.mark.parametrize(("state", "status", "role", "peer", "words", "variant"), cases())
def test_reply_table(
    state: State, status: Status, role: Role, peer: str, words: str, variant: str
) -> None:
    me = NodeState(ME, NodeType.PRIMARY, state=state, status=status, requests=0)
    pool_status = PoolStatus.OK
    if variant == "override":
        # the node really is in another state; the override's state and status decide
        override = Override(state, status, "kernel upgrade", "alice", NOW - 5, NOW + 60)
        me = replace(me, state=opposite(state), status=Status.OK, override=override)
    elif variant == "expired-override":
        override = Override(opposite(state), Status.OK, "old", "bob", NOW - 60, NOW - 1)
        me = replace(me, override=override)
    elif variant == "pool-fail":
        pool_status = PoolStatus.FAIL
    reply = decide(make_pool(me, peer, pool_status), ME, role, NOW)
    line = reply.encode(stale=variant == "stale")

    assert reply.words == words
    assert line.startswith(f"{words} #{state} {status} level=OK".encode())
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert len(line) < MAX_REPLY_BYTES
    assert line.endswith(b"; stale\n") == (variant == "stale")
    assert (b"pool FAIL" in line) == (variant == "pool-fail")
    assert (b"override: kernel upgrade by alice" in line) == (variant == "override")
    assert b"old" not in line


# ---------------------------------------------------------------------------------------------
# weights by request level


@pytest.mark.parametrize(
    ("requests", "max_requests", "weight", "level"),
    [
        pytest.param(None, 4, "100%", "OK", id="never-polled"),
        pytest.param(0, 4, "100%", "OK", id="R0"),
        pytest.param(1, 4, "75%", "OK_INFO", id="R1"),
        pytest.param(2, 4, "50%", "OK_WARN", id="R2"),
        pytest.param(3, 4, "25%", "OK_CRITICAL", id="R3"),
        pytest.param(4, 4, "25%", "FAIL_CRITICAL", id="R4-fail-critical-floor"),
        pytest.param(45, 4, "25%", "FAIL_CRITICAL", id="R45"),
        pytest.param(2, 2, "50%", "OK_WARN", id="R2-of-M2-capped"),
    ],
)
def test_ro_weight_follows_request_level(
    requests: int | None, max_requests: int, weight: str, level: str
) -> None:
    me = NodeState(ME, NodeType.SECONDARY, State.STANDBY, Status.OK_WARN, requests=requests)
    pool = PoolState("p1", (me,), max_requests=max_requests)
    reply = decide(pool, ME, Role.RO, NOW)
    assert reply.words == f"up ready {weight}"
    assert f"level={level}" in reply.reason
    assert decide(pool, ME, Role.RW, NOW).words == "up drain"


def test_ro_active_serves_reads_when_the_only_standby_is_overridden_away() -> None:
    override = Override(State.FAILED_OFFLINE, None, "disk swap", "carol")
    me = NodeState(ME, NodeType.PRIMARY, State.ACTIVE, Status.OK, requests=2)
    peer = NodeState(PEER, NodeType.SECONDARY, State.STANDBY, Status.OK, override=override)
    pool = PoolState("p1", (me, peer))
    assert decide(pool, ME, Role.RO, NOW).words == "up ready 50%"
    assert decide(pool, PEER, Role.RO, NOW).words == "down"
    assert "override: disk swap by carol" in decide(pool, PEER, Role.RW, NOW).reason


def test_override_without_status_keeps_the_node_status() -> None:
    override = Override(State.STANDBY, None, "drain for backup", "dave", expires_at=None)
    me = NodeState(ME, NodeType.PRIMARY, State.ACTIVE, Status.OK_WARN, override=override)
    reply = decide(PoolState("p1", (me,)), ME, Role.RW, NOW)
    assert reply.words == "up drain"
    assert reply.reason.startswith("STANDBY OK_WARN")


def test_unknown_node_and_pool() -> None:
    me = NodeState(ME, NodeType.PRIMARY, State.ACTIVE)
    assert decide(PoolState("p1", (me,)), PEER, Role.RW, NOW) == unknown_node("p1", str(PEER))
    assert unknown_node("p1", "x:1").encode() == b"down #unknown node x:1 in pool p1\n"
    assert unknown_pool("p9").encode(stale=True) == b"down #unknown pool p9; stale\n"
    assert BAD_REQUEST == b"down #bad request\n"


def test_reason_is_sanitised_and_short() -> None:
    override = Override(State.ACTIVE, None, "evil\nup ready\r\x00\xe9" + "x" * 500, "m\tallory")
    me = NodeState(ME, NodeType.PRIMARY, State.FAILED_ONLINE, override=override)
    line = decide(PoolState("p1", (me,)), ME, Role.RW, NOW).encode(stale=True)
    assert line.startswith(b"up ready #ACTIVE OK level=OK; override: evil up ready ")
    assert line.endswith(b"...\n")
    assert len(line) <= MAX_REPLY_BYTES
    assert line.count(b"\n") == 1 and b"\r" not in line
    assert all(0x20 <= b < 0x7F for b in line[:-1])


def test_labels() -> None:
    assert Reply("up ready 75%", "").label == "up_ready"
    assert Reply("up drain", "").label == "up_drain"
    assert Reply("down", "").label == "down"


def test_decide_pool_covers_every_node_and_role() -> None:
    me = NodeState(ME, NodeType.PRIMARY, State.ACTIVE)
    peer = NodeState(PEER, NodeType.SECONDARY, State.STANDBY)
    replies = dict(decide_pool(route(PoolState("p1", (me, peer)), NOW)))
    assert set(replies) == {
        ("p1", "10.0.0.1:3306", Role.RW),
        ("p1", "10.0.0.1:3306", Role.RO),
        ("p1", "10.0.0.2:3306", Role.RW),
        ("p1", "10.0.0.2:3306", Role.RO),
    }
    assert replies[("p1", "10.0.0.2:3306", Role.RO)].words == "up ready 100%"
    assert replies[("p1", "10.0.0.1:3306", Role.RO)].words == "up drain"


def test_next_expiry() -> None:
    soon = Override(State.STANDBY, None, "a", expires_at=NOW + 5)
    later = Override(State.STANDBY, None, "b", expires_at=NOW + 50)
    gone = Override(State.STANDBY, None, "c", expires_at=NOW - 5)
    nodes = (
        NodeState(ME, NodeType.PRIMARY, override=later),
        NodeState(PEER, NodeType.SECONDARY, override=soon),
        NodeState(NodeId("10.0.0.3"), NodeType.SECONDARY, override=gone),
    )
    assert next_expiry(PoolState("p1", nodes), NOW) == NOW + 5
    assert next_expiry(PoolState("p1", nodes[2:]), NOW) is None


# ---------------------------------------------------------------------------------------------
# requests


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(b"p1 10.0.0.1:3306 rw\n", Request("p1", ME, Role.RW), id="full"),
        pytest.param(b"p1 10.0.0.1\n", Request("p1", ME, Role.RW), id="default-port-and-role"),
        pytest.param(b"p1 10.0.0.1 RO\n", Request("p1", ME, Role.RO), id="role-case"),
        pytest.param(b"p1\t10.0.0.1:3306  ro\r\n", Request("p1", ME, Role.RO), id="tabs-crlf"),
        pytest.param(b"  p.x-1_2 db1:3307 \n", Request("p.x-1_2", NodeId("db1", 3307)), id="pad"),
        pytest.param(b"p6 [::1]:3306 rw\n", Request("p6", NodeId("::1"), Role.RW), id="ipv6"),
        pytest.param(b"p6 [fd00::2]\n", Request("p6", NodeId("fd00::2")), id="ipv6-default-port"),
    ],
)
def test_parse_request(data: bytes, expected: Request) -> None:
    assert parse_request(data) == expected


def test_request_key_is_canonical() -> None:
    assert parse_request(b"p1 db1\n").key == parse_request(b"p1 db1:3306 rw\n").key
    assert parse_request(b"p1 db1\n").key == ("p1", "db1:3306", Role.RW)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"\n", id="empty-line"),
        pytest.param(b"   \t\n", id="blank-line"),
        pytest.param(b"p1 10.0.0.1:3306 rw", id="no-newline"),
        pytest.param(b"p1 10.0.0.1 rw\nmore\n", id="two-lines"),
        pytest.param(b"p1 " + b"h" * MAX_REQUEST_BYTES + b"\n", id="too-long"),
        pytest.param(b"p1 10.0.0.1 rw\xff\xfe\n", id="not-utf8"),
        pytest.param("p1 h\u00f4te rw\n".encode(), id="non-ascii"),
        pytest.param(b"p1 10.0.0.1\x00 rw\n", id="nul"),
        pytest.param(b"p1 10.0.0.1 rw extra\n", id="extra-field"),
        pytest.param(b"p1\n", id="no-node"),
        pytest.param(b"p1 10.0.0.1 rx\n", id="unknown-role"),
        pytest.param(b"p1 10.0.0.1:0\n", id="port-0"),
        pytest.param(b"p1 10.0.0.1:65536\n", id="port-too-big"),
        pytest.param(b"p1 10.0.0.1:abc\n", id="port-not-a-number"),
        pytest.param(b"p1 10.0.0.1:\n", id="port-empty"),
        pytest.param(b"p1 :3306\n", id="no-host"),
        pytest.param(b"p/1 10.0.0.1\n", id="bad-pool-name"),
        pytest.param(b"GET / HTTP/1.1\r\n", id="http"),
        pytest.param(b"p6 ::1 rw\n", id="ipv6-without-brackets"),
        pytest.param(b"p1 10.0.0.1,10.0.0.2 rw\n", id="comma"),
        pytest.param(b"p1\n 10.0.0.1 rw\n", id="newline-in-pool"),
    ],
)
def test_bad_requests(data: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_request(data)


def test_request_at_the_limit_is_accepted() -> None:
    head = b"p1 "
    host = b"h" * (MAX_REQUEST_BYTES - len(head) - 1)
    assert parse_request(head + host + b"\n").node.host == host.decode()


def test_an_active_override_pins_the_writer_over_a_later_failover() -> None:
    a, b = NodeId("10.0.0.1"), NodeId("10.0.0.2")
    pin = Override(State.ACTIVE, None, "drill", set_by="admin:ops")
    # b was pinned ACTIVE by an operator; the state machine later made a ACTIVE too.
    pool = PoolState(
        "p1",
        (
            NodeState(a, NodeType.PRIMARY, State.ACTIVE, Status.OK, 0),
            NodeState(b, NodeType.SECONDARY, State.STANDBY, Status.OK, 0, override=pin),
        ),
    )
    writer = decide(pool, b, Role.RW, 0.0)
    other = decide(pool, a, Role.RW, 0.0)
    assert writer.encode().startswith(b"up ready #ACTIVE")
    assert other.encode().startswith(b"up drain #STANDBY")
    assert b"writes pinned to 10.0.0.2:3306 by override" in other.encode()


def test_answer_changes_name_the_node_the_role_and_the_new_reason() -> None:
    me = NodeState(ME, NodeType.PRIMARY, State.ACTIVE, Status.OK, requests=0)
    peer = NodeState(PEER, NodeType.SECONDARY, State.STANDBY, Status.OK, requests=0)
    before = dict(decide_pool(route(PoolState("p1", (me, peer)), NOW)))
    failed = replace(me, state=State.FAILED_OFFLINE, status=Status.FAIL, requests=4)
    after = dict(decide_pool(route(PoolState("p1", (failed, replace(peer, requests=1))), NOW)))
    lines = sorted(answer_changes(before, after))
    assert lines == [
        "p1 10.0.0.1:3306 ro: up drain -> down (FAILED_OFFLINE FAIL level=FAIL_CRITICAL)",
        "p1 10.0.0.1:3306 rw: up ready -> down (FAILED_OFFLINE FAIL level=FAIL_CRITICAL)",
        "p1 10.0.0.2:3306 ro: up ready 100% -> up ready 75% (STANDBY OK level=OK_INFO)",
    ]
    # the same answers again, or a pool seen for the first time: nothing to log
    assert list(answer_changes(after, after)) == []
    assert list(answer_changes({}, after)) == []
