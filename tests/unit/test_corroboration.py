"""Corroboration of the pollers' views of a round (``merge_observations``), as a table:
each row is what every poller reported for one node, and the verdict the tick sees."""

from __future__ import annotations

import pytest

from mpp_agent.model import NodeId, Observation, Outcome
from mpp_agent.poller import merge_observations

NODE = NodeId("10.0.0.1")
OK = Observation.healthy()
DOWN = Observation.connect_error(NODE, "Connection refused")
SQL = Observation(Outcome.REQUEST, "Slave Error: Slave SQL is not running, Slave_SQL_Running=No.")
DENIED = Observation.abstain("Access denied for user 'monitor'@'127.0.0.1'")
NO_CHECKPOINT = Observation.abstain("checkpoints unreachable: 10.0.0.254:53")

ROWS = [
    pytest.param([OK], Observation(Outcome.HEALTHY), id="one-healthy"),
    pytest.param([DOWN], DOWN, id="one-failing-decides"),
    pytest.param([OK, DOWN], Observation(Outcome.HEALTHY), id="tie-is-healthy"),
    pytest.param([DOWN, DOWN, OK], DOWN, id="majority-failing"),
    pytest.param([DOWN, SQL, SQL], SQL, id="majority-error-is-reported"),
    pytest.param([DOWN, SQL], DOWN, id="tied-errors-prefer-connect"),
    pytest.param(
        [DENIED],
        Observation(
            Outcome.ABSTAIN,
            "monitor cannot check: Access denied for user 'monitor'@'127.0.0.1'",
            monitor_note="monitor cannot check: Access denied for user 'monitor'@'127.0.0.1'",
        ),
        id="all-abstain-is-an-abstention",
    ),
    pytest.param(
        [DENIED, DENIED, DOWN],
        Observation(
            DOWN.outcome,
            DOWN.message,
            monitor_note=(
                "monitor cannot check (2 of 3 pollers): "
                "Access denied for user 'monitor'@'127.0.0.1'"
            ),
        ),
        id="only-the-judging-poller-counts-failing",
    ),
    pytest.param(
        [DENIED, DENIED, OK],
        Observation(
            Outcome.HEALTHY,
            monitor_note=(
                "monitor cannot check (2 of 3 pollers): "
                "Access denied for user 'monitor'@'127.0.0.1'"
            ),
        ),
        id="only-the-judging-poller-counts-healthy",
    ),
    pytest.param(
        [DENIED, NO_CHECKPOINT, NO_CHECKPOINT],
        Observation(
            Outcome.ABSTAIN,
            "monitor cannot check: checkpoints unreachable: 10.0.0.254:53",
            monitor_note="monitor cannot check: checkpoints unreachable: 10.0.0.254:53",
        ),
        id="most-common-reason-wins",
    ),
]


@pytest.mark.parametrize(("seen", "verdict"), ROWS)
def test_merge(seen: list[Observation], verdict: Observation) -> None:
    reports = {f"poller{i}": {NODE: obs} for i, obs in enumerate(seen)}
    assert merge_observations(reports) == {NODE: verdict}


def test_abstentions_are_never_counted_as_failing() -> None:
    # Two pollers abstain, one sees the node healthy: a failing majority of two would have
    # failed the node if abstentions counted as votes against it.
    reports = {"p1": {NODE: DENIED}, "p2": {NODE: DENIED}, "p3": {NODE: OK}}
    assert merge_observations(reports)[NODE].is_healthy


def test_nodes_nobody_observed_are_left_out() -> None:
    other = NodeId("10.0.0.2")
    assert merge_observations({"p1": {NODE: OK}}).keys() == {NODE}
    assert other not in merge_observations({"p1": {NODE: OK}, "p2": {}})
