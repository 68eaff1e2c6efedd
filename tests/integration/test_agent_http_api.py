"""The agent's HTTP API and checks (``--http-listen``) against a real redis-server: the same
document as ``mpp-admin list --json``, checks that agree with the agent-check, the OpenAPI
document exercised by schemathesis, and the keepalived ``HTTP_GET`` example of the docs."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mpp_agent.model import State, Status
from tests.integration.test_agent_server import (
    N1,
    N2,
    AgentProcess,
    http_get,
    make_pool,
    set_nodes,
    start_agent,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
_ = start_agent  # the fixture, imported for this module's tests


def request(port: int, method: str, path: str) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path)
        resp = conn.getresponse()
        return resp.status, resp.read(), dict(resp.getheaders())
    finally:
        conn.close()


def admin_list_json(redis_url: str) -> object:
    out = subprocess.run(
        ["mpp-admin", "--redis-url", redis_url, "list", "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return json.loads(out.stdout)


def test_pools_document_is_mpp_admin_list_json(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    make_pool(redis_url)
    agent = start_agent(redis_url)
    status, body = http_get(agent.metrics_port, "/v1/pools")
    assert status == 200
    served = json.loads(body)
    listed = admin_list_json(redis_url)
    assert served == listed
    status, body = http_get(agent.metrics_port, "/v1/pools/p1")
    assert status == 200
    assert json.loads(body) == served["pools"][0]
    assert served["pools"][0]["active"] == N1
    status, body = http_get(agent.metrics_port, "/v1/pools/nope")
    assert (status, body) == (404, "unknown pool nope\n")
    status, body, headers = request(agent.metrics_port, "POST", "/v1/pools")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")
    status, body, headers = request(agent.metrics_port, "GET", "/v1/openapi.json")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert "/v1/check/{pool}/{node}" in json.loads(body)["paths"]


def test_http_check_agrees_with_the_agent_check(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    store = make_pool(redis_url)
    agent = start_agent(redis_url)
    port = agent.metrics_port
    cases = [
        (f"/v1/check/p1/{N1}?role=rw", f"p1 {N1} rw", 200),
        (f"/v1/check/p1/{N1}", f"p1 {N1} rw", 200),  # rw is the default
        (f"/v1/check/p1/{N1}?role=ro", f"p1 {N1} ro", 503),  # a replica takes the reads
        (f"/v1/check/p1/{N2}?role=rw", f"p1 {N2} rw", 503),
        (f"/v1/check/p1/{N2}?role=ro", f"p1 {N2} ro", 200),
        ("/v1/check/p1/127.0.0.9?role=rw", "p1 127.0.0.9 rw", 503),
        ("/v1/check/zz/127.0.0.1?role=rw", "zz 127.0.0.1 rw", 503),
    ]
    for path, line, want in cases:
        status, body, _ = request(port, "GET", path)
        assert (status, body.decode()) == (want, agent.ask(line)), path
        status, body, _ = request(port, "HEAD", path)
        assert (status, body) == (want, b""), path
    assert request(port, "GET", f"/v1/check/p1/{N1}?role=xx")[0] == 400
    assert request(port, "GET", "/v1/check/bad%20pool/x")[0] == 400

    # a failover: the checks follow at once, like the agent-check
    failed = {"state": State.FAILED_OFFLINE, "status": Status.FAIL, "requests": 4}
    set_nodes(store, "p1", {N1: failed, N2: {"state": State.ACTIVE, "requests": 0}})
    agent.wait_reply(f"p1 {N2} rw", lambda r: r.startswith("up ready"))
    status, body, _ = request(port, "GET", f"/v1/check/p1/{N2}?role=rw")
    # The same reply as the agent-check: the new writer, and no failover candidate left.
    assert (status, body) == (
        200,
        b"up ready #ACTIVE OK level=OK; degraded: no failover candidate\n",
    )
    assert body.decode() == agent.ask(f"p1 {N2} rw")
    status, body, _ = request(port, "GET", f"/v1/check/p1/{N1}?role=rw")
    assert status == 503
    assert body.startswith(b"down #FAILED_OFFLINE FAIL")


def test_keepalived_http_get_example(
    redis_url: str, start_agent: Callable[..., AgentProcess]
) -> None:
    """docs/http-api.md's keepalived ``HTTP_GET``: its URL answers its status_code (200) on the
    writer only."""
    make_pool(redis_url)
    agent = start_agent(redis_url)
    doc = (ROOT / "docs" / "http-api.md").read_text()
    start = doc.index("HTTP_GET {")
    block = doc[start : doc.index("\n```", start)]
    path = next(line.split()[1] for line in block.splitlines() if line.strip().startswith("path"))
    code = next(
        int(line.split()[1]) for line in block.splitlines() if "status_code" in line.split()[:1]
    )
    assert code == 200
    # the example checks app_pool's 10.0.0.1:3306: ask the same of this test's pool and nodes
    for node, want in ((N1, 200), (N2, 503)):
        mine = path.replace("app_pool", "p1").replace("10.0.0.1:3306", node)
        assert request(agent.metrics_port, "GET", mine)[0] == want, mine


def test_openapi_with_schemathesis(
    redis_url: str, start_agent: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    """Every operation of /v1/openapi.json, generated requests included, answers as documented
    (status codes, content types, response schemas) and never with a server error."""
    make_pool(redis_url)
    agent = start_agent(redis_url)
    status, body = http_get(agent.metrics_port, "/v1/openapi.json")
    assert status == 200
    assert json.loads(body)["openapi"].startswith("3.")
    url = f"http://127.0.0.1:{agent.metrics_port}"
    st = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [
            str(st), "run", f"{url}/v1/openapi.json",
            "--checks", "all",
            # 503 is a documented answer of a check (the node takes no traffic): a 500 still
            # fails, as a status code the document does not declare.
            "--exclude-checks", "ignored_auth,positive_data_acceptance,not_a_server_error",
            "--max-examples", "25",
            "--request-timeout", "5",
            "--suppress-health-check", "all",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,  # its cache directory goes there, not into the repository
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
