"""MPP's failoverpool string (mpp-behaviour.md 1.1): parsing, MPP's error texts, rendering."""

from __future__ import annotations

import pytest

from mpp_agent.config import (
    PoolConfig,
    PoolConfigError,
    config_of,
    new_pool,
    parse_failoverpool,
    render_failoverpool,
)
from mpp_agent.model import NodeId, NodeType, PoolStatus, State, Status

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
