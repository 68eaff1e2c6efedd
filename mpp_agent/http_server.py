"""The gevent HTTP listener of the gevent daemons (mpp-agent's ``--http-listen``, mpp-poller's):
the only module besides agent_server that imports ``gevent`` servers.

It guarantees what a port open to a network must: at most ``max_connections`` connections
handled at once (more wait in the backlog), each closed after ``HTTP_TIMEOUT`` seconds whatever
the client does (idle, slow or keep-alive), only GET and HEAD answered (405 otherwise), and what
bad clients send logged at most once a minute. A daemon gives it a ``Handler``: path and query
in, (status, content type, body) out.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

import gevent
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from mpp_agent.daemon import RateLimited

# An HTTP client has this long to send its request and read the reply, keep-alive included.
HTTP_TIMEOUT = 5.0
OK = "200 OK"
UNAVAILABLE = "503 Service Unavailable"
PROMETHEUS = "text/plain; version=0.0.4"

# (PATH_INFO, QUERY_STRING) -> (status line, content type, body)
Handler = Callable[[str, str], tuple[str, str, str]]


def health_answer(ok: bool, text: str) -> tuple[str, str, str]:
    """``/healthz`` and the like: 200 with ``text`` when ``ok``, else 503 saying why."""
    return (OK if ok else UNAVAILABLE), "text/plain", text


def wsgi_app(handler: Handler) -> Callable[[dict[str, Any], Callable[..., Any]], list[bytes]]:
    """The WSGI application answering every GET and HEAD with ``handler``'s answer."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            status, ctype, body = "405 Method Not Allowed", "text/plain", "GET or HEAD only"
        else:
            status, ctype, body = handler(
                environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
            )
        data = (body if body.endswith("\n") else body + "\n").encode()
        headers = [("Content-Type", ctype), ("Content-Length", str(len(data)))]
        if status.startswith("405"):
            headers.append(("Allow", "GET, HEAD"))
        start_response(status, headers)
        return [] if method == "HEAD" else [data]

    return app


def start_http(
    address: tuple[str, int], handler: Handler, max_connections: int, rate_limited: RateLimited
) -> HttpServer:
    """Bind (OSError if the port is taken) and serve ``handler`` from greenlets."""
    server = HttpServer(
        address,
        wsgi_app(handler),
        spawn=Pool(max_connections),
        log=None,
        error_log=BadRequestLog(rate_limited),
    )
    server.start()
    return server


class BadRequestLog:
    """pywsgi's error log: what a client sent wrong, at most one line a minute."""

    def __init__(self, rate_limited: RateLimited) -> None:
        self.rate_limited = rate_limited

    def write(self, text: str) -> None:
        # pywsgi prefixes the socket's repr; the client's address and complaint are enough.
        message = text.strip().rsplit(">: ", 1)[-1]
        self.rate_limited.note("bad HTTP request", message[:200])

    def flush(self) -> None:
        pass


class HttpServer(WSGIServer):  # type: ignore[misc]
    """A WSGIServer whose connections each end after HTTP_TIMEOUT seconds."""

    def handle(self, sock: Any, address: Any) -> None:
        # Each read or write times out (idle), and a deadline ends the whole connection (a
        # client dribbling bytes): shutting the socket down ends pywsgi's wait as an EOF it
        # handles quietly, where a gevent.Timeout raised inside it would be logged as a bug.
        sock.settimeout(HTTP_TIMEOUT)
        deadline = gevent.spawn_later(HTTP_TIMEOUT, shut_down, sock)
        try:
            super().handle(sock, address)
        except OSError:
            pass
        finally:
            deadline.kill(block=False)
            sock.close()


def shut_down(sock: Any) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
