"""dashboards/mpp.json: every query of the Grafana dashboard asks for a metric that a running
mpp-agent or mpp-poller really exports (both real processes, against real Redis and MariaDB,
scraped over HTTP), and every panel reads the dashboard's Prometheus data source variable."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mpp_agent.config import parse_failoverpool
from mpp_agent.store import Store
from tests.daemons import PollerProcess, watch_ticks
from tests.integration.test_agent_server import AgentProcess, http_get, start_agent
from tests.integration.test_poller_abstain import pollers
from tests.servers import MariaDBCluster, free_port, wait_until

pytestmark = pytest.mark.integration
_ = (pollers, start_agent)  # the fixtures, imported for this module's tests

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "mpp.json"

# PromQL words that are not metric names: functions are told by the "(" after them.
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip
IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: strings, label matchers, ranges and
    ``by (...)`` groupings removed, then every identifier that is not a function call."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        word = match.group()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL query: each panel target's ``expr`` and each template variable's."""
    found = []
    for panel in panels(dashboard):
        found += [target["expr"] for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else None
        if variable["type"] == "query" and text:
            values = re.fullmatch(r"label_values\((\w+),\s*\w+\)", text)
            found.append(values.group(1) if values else text)
    return found


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def exported(text: str) -> set[str]:
    """The metric names of a ``/metrics`` page: every sample's, and every declared family's
    (a counter with no labels seen yet has its HELP and TYPE only), histograms expanded."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
        elif line and not line.startswith("#"):
            names.add(IDENTIFIER.match(line).group())  # type: ignore[union-attr]
    return names


def test_metric_names_of_promql() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (pool, le) (rate(a_bucket{pool=~"$pool"}[5m])))'
    ) == {"a_bucket"}
    assert metric_names("sum(rate(x_total[$__rate_interval])) / sum(rate(y[1m]))") == {
        "x_total",
        "y",
    }
    assert metric_names('max by (pool) (s{status="FAIL", x="by (a)"}) == 1') == {"s"}


def test_every_query_uses_a_metric_the_agent_or_the_poller_exports(
    redis_url: str,
    mariadb_cluster: MariaDBCluster,
    pollers: list[PollerProcess],
    start_agent: Callable[..., AgentProcess],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    store = Store.from_url(redis_url, "mpp")
    n1, n2 = mariadb_cluster.node1.node_id, mariadb_cluster.node2.node_id
    store.create_pool(parse_failoverpool(f"name:dash;primary:{n1};secondary:{n2}", interval=0.5))
    port = free_port()
    poller = PollerProcess(redis_url, "dash-poller", extra=["--http-listen", f"127.0.0.1:{port}"])
    pollers.append(poller.start())
    watch_ticks(store, "dash", lambda seen: seen[-1].nodes[0].state == "ACTIVE", 15)
    agent = start_agent(redis_url)
    agent.wait_reply(f"dash {n1} rw", lambda reply: reply.startswith("up ready"))
    wait_until(lambda: http_get(port, "/healthz")[0] == 200, 10, "the poller's /healthz")

    agent_text = http_get(agent.metrics_port, "/metrics")[1]
    poller_text = http_get(port, "/metrics")[1]
    available = exported(agent_text) | exported(poller_text)
    asked = {name: query for query in queries(dashboard) for name in metric_names(query)}
    assert len(asked) >= 20  # every part of the dashboard is covered below
    missing = {name: query for name, query in asked.items() if name not in available}
    assert not missing, f"queried but exported by neither the agent nor the poller: {missing}"
    # The state panels have real series behind them, not only declared families.
    assert f'mpp_node_takes_writes{{pool="dash",node="{n1}"}} 1' in agent_text
    assert f'mpp_node_state{{pool="dash",node="{n2}",state="STANDBY"}} 1' in agent_text
    assert re.search(r"^mpp_agent_probe_seconds_count [1-9]", agent_text, re.M)
    assert re.search(r'^mpp_poller_rounds_committed_total\{pool="dash"\} [1-9]', poller_text, re.M)

    # Every panel and query reads the data source variable, so the dashboard imports anywhere.
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    source = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == source, panel["title"]
        assert panel["targets"], panel["title"]
        assert all(t["datasource"] == source for t in panel["targets"]), panel["title"]
    assert len({p["id"] for p in panels(dashboard)}) == len(list(panels(dashboard)))
