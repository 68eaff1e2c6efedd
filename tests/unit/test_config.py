"""MPP's failoverpool string: parsing, MPP's error texts, rendering."""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from mpp_agent.agent_protocol import parse_request
from mpp_agent.config import (
    PoolConfig,
    PoolConfigError,
    config_of,
    new_pool,
    parse_failoverpool,
    render_failoverpool,
)
from mpp_agent.model import NodeId, NodeIdError, NodeType, PoolStatus, State, Status

P, S = NodeType.PRIMARY, NodeType.SECONDARY

PARSE_ROWS = [
    pytest.param(
        "name:pool1;primary:a;secondary:b",
        "pool1",
        ((NodeId("a", 3306), P), (NodeId("b", 3306), S)),
        id="port-defaults-to-3306",
    ),
    pytest.param(
        "name:mysql.eraser.com_pool;primary:10.0.1.11:3306;secondary:10.0.1.12:3307",
        "mysql.eraser.com_pool",
        ((NodeId("10.0.1.11", 3306), P), (NodeId("10.0.1.12", 3307), S)),
        id="article-pool-with-ports",
    ),
    pytest.param(
        "secondary:c;name:p;secondary:b;primary:a",
        "p",
        ((NodeId("a"), P), (NodeId("c"), S), (NodeId("b"), S)),
        id="priority-is-primary-then-secondaries-as-written",
    ),
    pytest.param(
        "name:p;secondary:b;secondary:c",
        "p",
        ((NodeId("b"), S), (NodeId("c"), S)),
        id="zero-primaries-accepted",
    ),
    pytest.param(
        "name:p;primary:a:3310:ignored:too;",
        "p",
        ((NodeId("a", 3310), P),),
        id="further-fields-and-empty-entries-ignored",
    ),
]


@pytest.mark.parametrize(("text", "name", "members"), PARSE_ROWS)
def test_parse_failoverpool(
    text: str, name: str, members: tuple[tuple[NodeId, NodeType], ...]
) -> None:
    config = parse_failoverpool(text)
    assert (config.name, config.members, config.max_requests) == (name, members, 4)


ERROR_ROWS = [
    pytest.param(
        "name:p;primary:a;primary:b:3307",
        'Cannot designate host "b:3307" as primary, because host "" is already defined as primary!',
        id="second-primary-mpp-text",
    ),
    pytest.param(
        "name:p;primary:a;Secondary:b",
        "Type of Secondary is not recognized for host b:3306.",
        id="type-is-lowercase-only-mpp-text",
    ),
    pytest.param(
        "name:p;master:a:3307",
        "Type of master is not recognized for host a:3307.",
        id="unknown-type-mpp-text",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERROR_ROWS)
def test_parse_failoverpool_mpp_errors(text: str, message: str) -> None:
    with pytest.raises(PoolConfigError) as error:
        parse_failoverpool(text)
    assert str(error.value) == message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("primary:a;secondary:b", "No pool name", id="no-name"),
        pytest.param("name:p;primary:a:99999", "bad port", id="bad-port"),
        pytest.param("name:p;primary:a;secondary:a:3306", "listed twice", id="duplicate-node"),
        pytest.param("name:p", "has no servers", id="no-servers"),
        pytest.param("name:p q;primary:a", "Bad pool name", id="bad-pool-name"),
    ],
)
def test_parse_failoverpool_our_errors(text: str, fragment: str) -> None:
    with pytest.raises(PoolConfigError, match=fragment):
        parse_failoverpool(text)


def test_max_requests_is_validated() -> None:
    assert parse_failoverpool("name:p;primary:a", max_requests=2).max_requests == 2
    with pytest.raises(PoolConfigError, match="max_requests must be 1-1000"):
        parse_failoverpool("name:p;primary:a", max_requests=0)


def test_render_round_trips() -> None:
    config = parse_failoverpool("name:p;primary:a;secondary:b:3307")
    text = render_failoverpool(config)
    assert text == "name:p;primary:a:3306;secondary:b:3307"
    assert parse_failoverpool(text) == config


def test_new_pool_is_unknown_ok_never_polled() -> None:
    pool = new_pool(parse_failoverpool("name:p;primary:a;secondary:b", max_requests=3))
    assert pool.status is PoolStatus.OK
    assert pool.max_requests == 3
    assert [(n.requests, n.status, n.state, n.message) for n in pool.nodes] == [
        (None, Status.OK, State.UNKNOWN, None),
        (None, Status.OK, State.UNKNOWN, None),
    ]
    assert config_of(pool) == PoolConfig("p", ((NodeId("a"), P), (NodeId("b"), S)), max_requests=3)


# ---------------------------------------------------------------------------------------------
# what a node and a pool name may be: what HAProxy, MySQL and the agent-check line can carry


@pytest.mark.parametrize(
    ("text", "node", "shown"),
    [
        pytest.param("db1", NodeId("db1", 3306), "db1:3306", id="hostname"),
        pytest.param("db-1.example.com:3307", NodeId("db-1.example.com", 3307),
                     "db-1.example.com:3307", id="fqdn-port"),
        pytest.param("compose_db_1", NodeId("compose_db_1"), "compose_db_1:3306",
                     id="underscore"),
        pytest.param("10.0.0.1", NodeId("10.0.0.1"), "10.0.0.1:3306", id="ipv4"),
        pytest.param("[::1]:3306", NodeId("::1", 3306), "[::1]:3306", id="ipv6-port"),
        pytest.param("[fd00::2]", NodeId("fd00::2"), "[fd00::2]:3306", id="ipv6-default-port"),
        pytest.param("[FD00:0::0002]:3307", NodeId("fd00::2", 3307), "[fd00::2]:3307",
                     id="ipv6-canonical"),
        pytest.param(" db1 ", NodeId("db1"), "db1:3306", id="outer-space-trimmed"),
        pytest.param("db1\n", NodeId("db1"), "db1:3306", id="outer-newline-trimmed"),
    ],
)  # fmt: skip
def test_nodes_accepted(text: str, node: NodeId, shown: str) -> None:
    assert NodeId.parse(text) == node
    assert str(NodeId.parse(text)) == shown
    assert NodeId.parse(shown) == node  # the printed form reads back


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("10.0.0.6,10.0.0.7", "comma or a space", id="comma"),
        pytest.param("10.0.0.6 10.0.0.7", "comma or a space", id="space"),
        pytest.param("db\t1", "control", id="tab"),
        pytest.param("127.0.0.9\x1b]0;pwned\x07:26399", "control", id="escape-sequence"),
        pytest.param("h\u00f4te", "non-ASCII", id="non-ascii"),
        pytest.param("::1", "in brackets", id="bare-ipv6"),
        pytest.param("[::1", "[address]:port", id="unclosed-bracket"),
        pytest.param("[::1]3306", "[address]:port", id="no-colon-after-bracket"),
        pytest.param("[db1]:3306", "not an IPv6 address", id="hostname-in-brackets"),
        pytest.param("[fe80::1%eth0]:3306", "zone", id="ipv6-zone"),
        pytest.param("a..b", "DNS name", id="empty-label"),
        pytest.param("-db", "DNS name", id="leading-hyphen"),
        pytest.param("db;1", "DNS name", id="semicolon"),
        pytest.param('db"1', "DNS name", id="quote"),
        pytest.param("a" * 254, "253", id="too-long"),
        pytest.param(":3306", "DNS name", id="no-host"),
        pytest.param("db1:0", "bad port", id="port-0"),
    ],
)
def test_nodes_refused(text: str, fragment: str) -> None:
    with pytest.raises(NodeIdError) as error:
        NodeId.parse(text)
    message = str(error.value)
    assert fragment in message
    assert message.isascii() and message.isprintable()  # never raw control characters


@pytest.mark.parametrize(
    "name",
    ["pool1\n", "pool 1", "pööl", "p/1", "", "p" * 129, "pool1\x00"],
    ids=["trailing-newline", "space", "non-ascii", "slash", "empty", "too-long", "nul"],
)
def test_pool_names_refused(name: str) -> None:
    with pytest.raises(PoolConfigError, match="Bad pool name") as error:
        PoolConfig(name, ((NodeId("a"), P),))
    assert str(error.value).isprintable()


def test_pool_name_and_node_must_fit_the_agent_check_line() -> None:
    long_host = ".".join(["h" * 60] * 4)  # 243 characters: a valid DNS name
    assert PoolConfig("p", ((NodeId(long_host), P),))
    with pytest.raises(PoolConfigError, match="too long together for the agent-check line"):
        PoolConfig("p" * 20, ((NodeId(long_host), P),))


def test_failoverpool_with_ipv6_round_trips() -> None:
    text = "name:p6;primary:[::1]:3306;secondary:[fd00::2];secondary:db3:3307:ignored"
    config = parse_failoverpool(text)
    assert config.members == (
        (NodeId("::1"), P),
        (NodeId("fd00::2"), S),
        (NodeId("db3", 3307), S),
    )
    rendered = render_failoverpool(config)
    assert rendered == "name:p6;primary:[::1]:3306;secondary:[fd00::2]:3306;secondary:db3:3307"
    assert parse_failoverpool(rendered) == config


def test_failoverpool_with_a_bad_node_says_which() -> None:
    with pytest.raises(PoolConfigError, match="comma or a space") as error:
        parse_failoverpool("name:p;primary:10.0.0.1,10.0.0.2")
    assert "in failoverpool string" in str(error.value)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(st.text(min_size=1, max_size=20), st.from_regex(r"[A-Za-z0-9_.-]{1,40}\Z")),
    st.one_of(
        st.text(max_size=300),
        st.from_regex(r"\[[0-9a-fA-F:]{2,39}\](:[0-9]{1,5})?", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9_.-]{1,260}(:[0-9]{1,6})?", fullmatch=True),
    ),
)
def test_whatever_is_accepted_the_agent_and_haproxy_can_carry(name: str, text: str) -> None:
    """Any pool name and node a configuration accepts makes an agent-check line that the agent
    reads back as the same pool and node, and prints as plain ASCII without separators."""
    try:
        config = PoolConfig(name, ((NodeId.parse(text), P),))
    except (NodeIdError, PoolConfigError):
        return
    event("accepted")
    node = config.members[0][0]
    shown = str(node)
    assert shown.isascii() and shown.isprintable()
    assert not any(c in shown for c in ' ,;"#\\\t')
    assert NodeId.parse(shown) == node
    request = parse_request(f"{config.name} {shown} ro\n".encode())
    assert (request.pool, request.node) == (config.name, node)
