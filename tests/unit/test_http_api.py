"""The agent's HTTP API, pure part (mpp_agent/http_api.py), and its options: which path asks
for what, which check line it stands for, and --http-listen / --haproxy-socket parsing."""

from __future__ import annotations

import pytest

from mpp_agent.agent_main import build_parser
from mpp_agent.http_api import OPENAPI, Route, check_line, route_path, takes_traffic


@pytest.mark.parametrize(
    ("path", "query", "route"),
    [
        ("/v1/pools", "", Route("pools")),
        ("/v1/pools/app_pool", "", Route("pool", pool="app_pool")),
        ("/v1/openapi.json", "", Route("openapi")),
        ("/v1/check/p1/10.0.0.1:3306", "role=ro", Route("check", "p1", "10.0.0.1:3306", "ro")),
        ("/v1/check/p1/10.0.0.1", "", Route("check", "p1", "10.0.0.1", "rw")),
        ("/v1/check/p1/%5Bfd00%3A%3A1%5D%3A3306", "", Route("check", "p1", "[fd00::1]:3306")),
        ("/v1/check/p1", "", Route("unknown")),
        ("/v1/pools/", "", Route("unknown")),
        ("/v2/pools", "", Route("unknown")),
        ("/", "", Route("unknown")),
    ],
)
def test_route_path(path: str, query: str, route: Route) -> None:
    assert route_path(path, query) == route


@pytest.mark.parametrize(
    ("route", "line"),
    [
        (Route("check", "p1", "db1", "rw"), b"p1 db1 rw\n"),
        (Route("check", "p1", "db1 ro", "rw"), None),  # would be another request
        (Route("check", "p1", "db1", ""), None),
        (Route("check", "p1\t", "db1", "rw"), None),
    ],
)
def test_check_line(route: Route, line: bytes | None) -> None:
    assert check_line(route) == line


@pytest.mark.parametrize(
    ("reply", "ok"),
    [
        (b"up ready #ACTIVE OK level=OK\n", True),
        (b"up ready 75% #STANDBY OK level=OK_INFO\n", True),
        (b"up drain #STANDBY OK level=OK\n", False),
        (b"down #unknown pool p1\n", False),
        (b"", False),
    ],
)
def test_takes_traffic(reply: bytes, ok: bool) -> None:
    assert takes_traffic(reply) is ok


def test_openapi_documents_every_v1_path() -> None:
    paths = set(OPENAPI["paths"])
    assert {"/v1/pools", "/v1/pools/{pool}", "/v1/check/{pool}/{node}"} <= paths
    assert set(OPENAPI["paths"]["/v1/check/{pool}/{node}"]) == {"get", "head"}


def test_http_listen_and_its_alias() -> None:
    parser = build_parser()
    assert parser.parse_args(["--http-listen", "127.0.0.1:9778"]).http_listen == ("127.0.0.1", 9778)
    assert parser.parse_args(["--metrics-listen", "[::1]:9"]).http_listen == ("::1", 9)


def test_haproxy_socket_is_repeatable_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert build_parser().parse_args([]).haproxy_socket == []
    args = ["--haproxy-socket", "/a.sock", "--haproxy-socket", "/b.sock"]
    assert build_parser().parse_args(args).haproxy_socket == ["/a.sock", "/b.sock"]
    monkeypatch.setenv("MPP_AGENT_HAPROXY_SOCKETS", "/x.sock, /y.sock")
    assert build_parser().parse_args([]).haproxy_socket == ["/x.sock", "/y.sock"]
    assert build_parser().parse_args(args[:2]).haproxy_socket == ["/a.sock"]
