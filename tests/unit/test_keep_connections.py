"""The pool setting keep_connections: validation, storage, what each node gets, and the
bookkeeping of kept connections (which ones stay open, which are closed)."""

from __future__ import annotations

import random
import socket
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import gevent
import gevent.socket
import pytest

from mpp_agent.codec import pool_from_doc, pool_to_doc
from mpp_agent.config import (
    SETTINGS,
    PoolConfig,
    PoolConfigError,
    apply_config,
    config_of,
    new_pool,
    parse_failoverpool,
    settings_of,
)
from mpp_agent.model import NodeId, PoolState
from mpp_agent.mysql_reply import ReplyReader
from mpp_agent.poller import node_keep
from mpp_agent.probe import KeptConnections, ProbeSettings, _Flight, _recv, _send
from mpp_agent.timeouts import MIN_SOCKET_TIMEOUT, Timeouts, fit, limits
from tests.unit.test_mysql_reply import column, packets, result, row

A, B, C = NodeId("10.0.0.1"), NodeId("10.0.0.2"), NodeId("10.0.0.3")


def pool(name: str, members: str, keep: float) -> PoolState:
    config = parse_failoverpool(f"name:{name};{members}")
    return new_pool(replace(config, keep_connections=keep))


def test_off_by_default_and_validated() -> None:
    config = parse_failoverpool("name:p;primary:10.0.0.1")
    assert config.keep_connections == 0
    assert replace(config, keep_connections=60).keep_connections == 60
    for bad in (-1, 86401):
        with pytest.raises(PoolConfigError, match="keep_connections must be between 0"):
            replace(config, keep_connections=bad)


def test_stored_read_back_and_kept_by_apply() -> None:
    kept = pool("p", "primary:10.0.0.1;secondary:10.0.0.2", 30)
    doc = pool_to_doc(kept)
    assert pool_from_doc(doc, 0, -1, "p").keep_connections == 30
    # Every setting travels from a configuration to a state and back under its own name.
    assert settings_of(config_of(kept)) == settings_of(kept)
    assert set(SETTINGS) < {f for f in PoolConfig.__dataclass_fields__}
    applied = apply_config(kept, replace(config_of(kept), keep_connections=0))
    assert applied.keep_connections == 0 and applied.nodes == kept.nodes


@pytest.mark.parametrize(
    ("keeps", "expected"),
    [
        ({"p": 30}, {A: 30, B: 30}),
        ({"p": 30, "q": 60}, {A: 30, B: 30, C: 60}),  # B in both: the shorter
        ({"p": 30, "q": 0}, {A: 30, B: 0, C: 0}),  # a login per probe where any pool wants it
        ({"p": 0, "q": 0}, {A: 0, B: 0, C: 0}),
    ],
)
def test_each_node_gets_the_shortest_keep_of_its_pools(
    keeps: dict[str, float], expected: dict[NodeId, float]
) -> None:
    pools = [pool("p", "primary:10.0.0.1;secondary:10.0.0.2", keeps["p"])]
    if "q" in keeps:
        pools.append(pool("q", "primary:10.0.0.3;secondary:10.0.0.2", keeps["q"]))
    assert node_keep(pools) == expected


@pytest.mark.parametrize("interval", [0.5, 1, 2, 10, 60])
def test_the_reach_check_fits_in_what_a_timed_out_query_leaves(interval: float) -> None:
    bounds = fit(interval, limits())
    assert MIN_SOCKET_TIMEOUT <= bounds.reach <= bounds.connect
    assert bounds.read + bounds.reach < bounds.probe
    assert Timeouts(1, 1, 1).reach == MIN_SOCKET_TIMEOUT  # nothing left: the floor


@dataclass
class Conn:
    name: str
    closed: bool = False
    _sock: Any = None  # a late probe's connection reads the rest of its reply from it

    def close(self) -> None:
        self.closed = True
        if self._sock is not None:
            self._sock.close()


def whole() -> float:
    """A spread that makes every login serve the whole period."""
    return 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_kept_connections_are_taken_given_back_aged_and_bounded() -> None:
    clock = Clock()
    kept = KeptConnections(limit=2, clock=clock, spread=whole)
    a, b, c = (kept.logged_in(n, Conn(str(n))) for n in (A, B, C))
    assert kept.take(A, 10) is None
    assert kept.give_back(A, a) and kept.give_back(B, b)
    assert not kept.give_back(C, c)  # full: the caller closes it
    assert kept.take(A, 10) is a and kept.take(A, 10) is None  # in one probe's hands only
    assert kept.give_back(A, a)
    clock.now = 6
    assert kept.take(B, 5) is None and b.conn.closed  # past its age: closed, the probe logs in
    assert kept.take(A, 0) is None and a.conn.closed  # nothing served to a pool keeping nothing
    a = kept.logged_in(A, Conn("a2"))
    kept.give_back(A, a)
    kept.retain({B: 10})
    assert a.conn.closed and len(kept) == 0  # A no longer probed by this poller
    fresh = kept.logged_in(C, Conn("fresh"))
    kept.give_back(C, fresh)
    kept.close()
    assert fresh.conn.closed and len(kept) == 0


def test_the_age_counts_from_the_login_not_from_the_last_use() -> None:
    clock = Clock()
    kept = KeptConnections(clock=clock, spread=whole)
    held = kept.logged_in(A, Conn("a"))
    for now in (2, 4, 6, 8):  # used every 2 s, given back each time
        assert kept.give_back(A, held)
        clock.now = now
        taken = kept.take(A, 9)
        assert taken is held
    assert kept.give_back(A, held)
    clock.now = 9
    assert kept.take(A, 9) is None and held.conn.closed
    kept.give_back(B, kept.logged_in(B, Conn("b")))
    clock.now = 12
    kept.retain({B: 2})  # past its age for its pool's keep_connections: closed
    assert len(kept) == 0


def renewals(kept: KeptConnections, clock: Clock, nodes: list[NodeId], keep: float) -> Counter[int]:
    """Probe ``nodes`` every 2 s for five periods of ``keep`` seconds, all logged in at 0 (a
    poller just started): the logins per round, each connection checked never to serve past
    ``keep`` seconds."""
    logins: Counter[int] = Counter()
    for step in range(int(5 * keep / 2) + 1):
        clock.now = 2.0 * step
        for node in nodes:
            held = kept.take(node, keep)
            if held is None:
                held = kept.logged_in(node, Conn(f"{node}@{step}"))
                logins[step] += 1
            assert clock.now - held.since < keep
            assert kept.give_back(node, held)
    return logins


def test_connections_opened_together_are_renewed_a_few_per_round() -> None:
    nodes = [NodeId(f"10.0.1.{i}") for i in range(1, 201)]
    clock = Clock()
    together = renewals(KeptConnections(clock=clock, spread=whole), clock, nodes, 60)
    assert together[0] == 200 and max(n for step, n in together.items() if step) == 200
    clock = Clock()
    spread = renewals(
        KeptConnections(clock=clock, spread=random.Random(7).random), clock, nodes, 60
    )
    assert spread[0] == 200
    # 200 renewals per 30 rounds is 6.7 a round on average; never a wave of them.
    assert max(n for step, n in spread.items() if step) <= 20
    # Only the first login serves a part of the period: over five periods, no more logins
    # than without the spread (the first, then one a period).
    assert sum(spread.values()) <= sum(together.values()) == 6 * len(nodes)


def test_a_renewal_serves_the_whole_period_and_other_logins_a_random_part() -> None:
    clock = Clock()
    kept = KeptConnections(clock=clock, spread=lambda: 0.75)
    first = kept.logged_in(A, Conn("a"))
    assert first.share == 0.25  # the node's first login
    kept.give_back(A, first)
    clock.now = 15
    assert kept.take(A, 60) is None and first.conn.closed  # a quarter of 60 s served
    renewed = kept.logged_in(A, Conn("a2"))
    assert renewed.share == 1.0
    kept.give_back(A, renewed)
    clock.now = 74
    assert kept.take(A, 60) is renewed
    # The server closed it (a restart): that login is not a renewal, so it is spread again.
    assert kept.logged_in(A, Conn("a3")).share == 0.25
    # Aged out by retain too, for a node still probed: its next login is a renewal.
    kept.give_back(B, kept.logged_in(B, Conn("b")))
    clock.now = 200
    kept.retain({B: 60})
    assert kept.logged_in(B, Conn("b2")).share == 1.0


def _drain(sock: socket.socket, size: int) -> bytes:
    got = b""
    while len(got) < size:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


@pytest.mark.parametrize("module", [socket, gevent.socket], ids=["stdlib", "gevent"])
def test_a_probe_query_is_sent_whole_on_either_kind_of_socket(module: Any) -> None:
    ours, peer = module.socketpair()
    with ours, peer:
        assert _send(ours, b"\x05\x00\x00\x00\x03hello")
        assert _drain(peer, 9) == b"\x05\x00\x00\x00\x03hello"


def test_what_does_not_fit_the_send_buffer_waits_and_arrives_in_order() -> None:
    ours, peer = gevent.socket.socketpair()
    data = bytes(range(256)) * 40_000  # ~10 MB: far more than a socket buffer holds
    with ours, peer:
        reader = gevent.spawn(_drain, peer, len(data))
        assert _send(ours, data)
        assert reader.get(timeout=10) == data


@pytest.mark.parametrize("module", [socket, gevent.socket], ids=["stdlib", "gevent"])
def test_a_send_on_a_connection_the_peer_closed_is_false(module: Any) -> None:
    ours, peer = module.socketpair()
    peer.close()
    with ours:
        assert not _send(ours, b"x" * 1024)
    ours.close()
    assert not _send(ours, b"x")  # closed on our side


def test_a_read_takes_what_has_arrived_and_never_waits_for_more() -> None:
    ours, peer = gevent.socket.socketpair()
    ours.settimeout(30)  # what PyMySQL leaves on a kept connection: a wait would be this long
    with ours, peer, gevent.Timeout(2):  # raised into this greenlet if the read waited
        assert _recv(ours, 4096) is None  # nothing yet
        peer.sendall(b"\x01\x00\x00\x01\x00")
        gevent.sleep(0.05)
        assert _recv(ours, 4096) == b"\x01\x00\x00\x01\x00"
        peer.close()
        assert _recv(ours, 4096) == b""  # the server closed the connection


REPLY = packets(result([column("one")], [row(b"1")]))


def late_probe(kept: KeptConnections, node: NodeId) -> tuple[_Flight, Any]:
    """A probe of ``node`` sent on a socket pair that timed out; the server's end."""
    ours, peer = gevent.socket.socketpair()
    held = kept.logged_in(node, Conn(str(node), _sock=ours))
    settings = ProbeSettings("u", "p", keep_for=10)
    flight = _Flight(node, held, settings, "", 0.0, 0.0, ReplyReader("utf8"))
    kept.set_aside(flight)
    return flight, peer


@pytest.mark.parametrize(
    ("arrived", "ready"),
    [
        (REPLY, True),  # the whole reply came late: the connection is in step again
        (REPLY[:-3], False),  # part of it: still out of step
        (b"", False),  # nothing at all
        (REPLY + b"\x01\x00\x00\x09\x00", False),  # more than a reply: out of step
        (b"\x05\x00\x00\x07garbage", False),  # not a reply
    ],
    ids=["whole", "part", "nothing", "more", "garbage"],
)
def test_a_late_reply_makes_its_connection_ready_once_it_is_all_in(
    arrived: bytes, ready: bool
) -> None:
    kept = KeptConnections(spread=whole)
    flight, peer = late_probe(kept, A)
    with peer:
        assert (len(kept), kept.late) == (0, 1)
        peer.sendall(arrived)
        gevent.sleep(0.05)
        kept.catch_up([B])  # another node's: this one waits on
        assert kept.late == 1
        kept.catch_up([A])
        assert kept.late == 0
        assert (len(kept), flight.held.conn.closed) == ((1, False) if ready else (0, True))
        assert (kept.take(A, 10) is flight.held) is ready


def test_late_connections_count_toward_the_limit_and_close_like_the_others() -> None:
    clock = Clock()
    kept = KeptConnections(limit=2, clock=clock, spread=whole)
    a, peer_a = late_probe(kept, A)
    b, peer_b = late_probe(kept, B)
    c, peer_c = late_probe(kept, C)  # full: closed at once
    with peer_a, peer_b, peer_c:
        assert kept.late == 2 and c.held.conn.closed
        assert not kept.give_back(C, kept.logged_in(C, Conn("c")))
        kept.retain({A: 10})  # B no longer probed by this poller
        assert kept.late == 1 and b.held.conn.closed and not a.held.conn.closed
        clock.now = 10
        kept.retain({A: 10})  # past its age
        assert kept.late == 0 and a.held.conn.closed
        d, peer_d = late_probe(kept, A)
        with peer_d:
            kept.close()
            assert kept.late == 0 and d.held.conn.closed
