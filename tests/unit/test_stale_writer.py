"""Rule 7 of the routing decision (``stale_writer``) and the adoption rule of versions.

Rule 7: with ``drain``, a stale view stops writes from the earliest moment the pollers could
have failed the writer over without it (``earliest_failover``); with ``keep`` nothing changes.
The adoption rule: never a lower version of an incarnation already seen.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpp_agent.adoption import Adoption, Seen, adoption, went_backwards
from mpp_agent.agent_protocol import Role, decide_pool
from mpp_agent.codec import pool_from_doc, pool_to_doc
from mpp_agent.config import PoolConfig, PoolConfigError, apply_config, config_of, new_pool
from mpp_agent.model import NodeId, NodeState, NodeType, PoolState, StaleWriter, State, Status
from mpp_agent.routing import WRITES_STOPPED, earliest_failover, route

A, B = NodeId("10.0.0.1"), NodeId("10.0.0.2")
INTERVAL = 2.0
M = 4


def pool(
    policy: StaleWriter, last_round: int = 100, active_r: int = 0, active: State = State.ACTIVE
) -> PoolState:
    return PoolState(
        "p1",
        (
            NodeState(A, NodeType.PRIMARY, active, Status.OK, requests=active_r),
            NodeState(B, NodeType.SECONDARY, State.STANDBY, Status.OK, requests=0),
        ),
        max_requests=M,
        interval=INTERVAL,
        last_round=last_round,
        stale_writer=policy,
    )


def rw_reply(p: PoolState, now: float, stale: bool) -> str:
    replies = dict(decide_pool(route(p, now, stale)))
    return replies[("p1", str(A), Role.RW)].encode(stale).decode()


# Round 100 committed, the writer at R: the pollers need M - R failing rounds, the last of them
# round 100 + (M - R), which starts at (100 + M - R) x interval.
@pytest.mark.parametrize(
    ("policy", "stale", "active_r", "now", "stopped"),
    [
        (StaleWriter.DRAIN, True, 0, (100 + 4) * INTERVAL - 0.01, False),  # not yet
        (StaleWriter.DRAIN, True, 0, (100 + 4) * INTERVAL, True),  # M rounds after the commit
        (StaleWriter.DRAIN, True, 2, (100 + 2) * INTERVAL, True),  # already failing: sooner
        (StaleWriter.DRAIN, True, 3, (100 + 1) * INTERVAL, True),  # next round could fail it
        (StaleWriter.DRAIN, True, 9, (100 + 1) * INTERVAL, True),  # R above M: the same
        (StaleWriter.DRAIN, False, 0, 10**6, False),  # fresh: a fresh view never stops writes
        (StaleWriter.KEEP, True, 0, 10**6, False),  # keep: the last decision stands
    ],
)
def test_rule_7(policy: StaleWriter, stale: bool, active_r: int, now: float, stopped: bool) -> None:
    p = pool(policy, active_r=active_r)
    decision = route(p, now, stale)
    assert decision.writes_stopped is stopped
    writer = decision.writer
    assert (writer is None) is stopped
    reply = rw_reply(p, now, stale)
    if stopped:
        assert reply.startswith(f"up drain #{WRITES_STOPPED}; ACTIVE OK level=")
        assert reply.endswith("\n") and not reply.endswith("; stale\n")
    else:
        assert reply.startswith("up ready #ACTIVE OK")
    # reads are unchanged: the STANDBY still reads
    assert [n.node for n in decision.readers] == [B]


def test_earliest_failover_needs_a_writer() -> None:
    assert earliest_failover(pool(StaleWriter.DRAIN, active=State.STANDBY)) is None
    assert route(pool(StaleWriter.DRAIN, active=State.STANDBY), 10**6, True).writes_stopped is False


def test_fresh_state_gives_the_writer_back() -> None:
    stale_pool = pool(StaleWriter.DRAIN)
    late = 110 * INTERVAL
    assert route(stale_pool, late, True).writer is None
    # a fresh view (the same state re-read, or a new commit) gives the writer back at once
    assert route(stale_pool, late, False).writer is not None
    assert route(replace(stale_pool, last_round=109), late, True).writer is not None


@given(
    st.sampled_from(StaleWriter),
    st.booleans(),
    st.integers(0, 10),
    st.integers(1, 10),
    st.floats(0.1, 100),
    st.integers(-1, 10_000),
    st.floats(0, 1e6),
)
def test_drain_stops_writes_no_later_than_m_intervals_after_the_last_commit(
    policy: StaleWriter,
    stale: bool,
    r: int,
    m: int,
    interval: float,
    last_round: int,
    now: float,
) -> None:
    """Whatever the state: with drain, a view stale for M x interval after the start of the
    round after its last commit never has a writer; a fresh view or keep is rule 6 (the
    decision of the state, unchanged); and there is never more than one writer."""
    p = replace(pool(policy, last_round=last_round, active_r=r), max_requests=m, interval=interval)
    decision = route(p, now, stale)
    unchanged = route(p, now, False)
    assert len([n for n in decision.nodes if n.takes_writes]) <= 1
    deadline = (last_round + 1 + m) * interval
    if policy is StaleWriter.DRAIN and stale and now >= deadline:
        assert decision.writer is None
    if policy is StaleWriter.KEEP or not stale:
        assert decision.writer == unchanged.writer
    if decision.writes_stopped:
        assert unchanged.writer is not None and unchanged.writer.node == A
        assert decision.readers == unchanged.readers


def test_the_setting_is_configured_stored_and_kept() -> None:
    config = PoolConfig("p1", ((A, NodeType.PRIMARY),), stale_writer=StaleWriter.DRAIN)
    created = new_pool(config, "0123456789abcdef0123456789abcdef")
    assert created.stale_writer is StaleWriter.DRAIN
    back = pool_from_doc(pool_to_doc(created), 1, -1, "p1")
    assert (back.stale_writer, back.incarnation) == (StaleWriter.DRAIN, created.incarnation)
    # apply keeps the incarnation; a configuration of the pool keeps the setting
    applied = apply_config(back, replace(config_of(back), interval=3.0))
    assert (applied.stale_writer, applied.incarnation) == (StaleWriter.DRAIN, created.incarnation)
    with pytest.raises(PoolConfigError, match="stale_writer must be keep or drain"):
        PoolConfig("p1", ((A, NodeType.PRIMARY),), stale_writer="sometimes")  # type: ignore[arg-type]


def test_a_document_without_the_new_fields_reads_as_keep() -> None:
    doc = pool_to_doc(new_pool(PoolConfig("p1", ((A, NodeType.PRIMARY),))))
    old = doc.replace(',"stale_writer":"keep","incarnation":""', "")
    assert old != doc
    back = pool_from_doc(old, 1, -1, "p1")
    assert (back.stale_writer, back.incarnation) == (StaleWriter.KEEP, "")


@pytest.mark.parametrize(
    ("seen", "incarnation", "version", "expected"),
    [
        (None, "a", 1, Adoption.NEW),  # first sight
        (Seen("a", 5), "a", 6, Adoption.NEW),  # newer
        (Seen("a", 5), "a", 5, Adoption.SAME),
        (Seen("a", 11), "a", 9, Adoption.BACKWARDS),  # a Redis failover lost commits
        (Seen("a", 11), "b", 1, Adoption.NEW),  # removed and created again: starts afresh
        (Seen("", 11), "", 9, Adoption.BACKWARDS),  # pools older than incarnations too
    ],
)
def test_adoption(seen: Seen | None, incarnation: str, version: int, expected: Adoption) -> None:
    assert adoption(seen, incarnation, version) is expected


@given(st.text(max_size=3), st.integers(0, 50), st.text(max_size=3), st.integers(0, 50))
def test_adoption_never_goes_back_within_an_incarnation(
    seen_inc: str, seen_version: int, inc: str, version: int
) -> None:
    p = replace(pool(StaleWriter.KEEP), incarnation=inc, version=version)
    backwards = went_backwards(Seen(seen_inc, seen_version), p)
    assert backwards == (seen_inc == inc and version < seen_version)
