"""HAProxy's runtime API (its stats socket, ``level admin``): the only module that talks to it.

One connection per exchange: the commands joined by ``;`` on one line, the whole answer read
until HAProxy closes (its non-interactive mode). Under the agent, gevent's patched sockets make
this cooperative; every exchange is bounded by ``timeout`` seconds.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

TIMEOUT = 1.0
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class RuntimeApiError(OSError):
    """The socket could not be used, or HAProxy refused a command."""


def exchange(path: str, commands: Sequence[str], timeout: float = TIMEOUT) -> str:
    """Send ``commands`` in one go; HAProxy's whole answer (every command's, in order)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(";".join(commands).encode() + b"\n")
        chunks: list[bytes] = []
        size = 0
        while chunk := sock.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise RuntimeApiError(f"{path}: answer over {MAX_ANSWER_BYTES} bytes")
    return b"".join(chunks).decode(errors="replace")


def servers_state(path: str, timeout: float = TIMEOUT) -> str:
    return exchange(path, ["show servers state"], timeout)


def show_stat(path: str, timeout: float = TIMEOUT) -> str:
    """``show stat``: one CSV line per frontend, backend and server."""
    return exchange(path, ["show stat"], timeout)


LEVELS = ("user", "operator", "admin")


def cli_level(path: str, timeout: float = TIMEOUT) -> str:
    """The socket's level (``show cli level``: user, operator or admin); RuntimeApiError if
    what answers is not HAProxy's runtime API (or an HAProxy older than 2.0)."""
    answer = exchange(path, ["show cli level"], timeout).strip()
    if answer not in LEVELS:
        raise RuntimeApiError(
            f"{path}: not HAProxy's runtime API (show cli level answered {answer[:80]!r})"
        )
    return answer


# What HAProxy answers to a command it refuses (each `set server` that works answers nothing).
REFUSALS = ("Unknown command", "Permission denied", "No such", "Require", "can't", "cannot")


def apply(path: str, commands: Sequence[str], timeout: float = TIMEOUT) -> None:
    """Run ``set server`` commands; RuntimeApiError with HAProxy's words if it refused one."""
    answer = exchange(path, commands, timeout).strip()
    refused = [line for line in answer.splitlines() if any(r in line for r in REFUSALS)]
    if refused:
        raise RuntimeApiError(f"{path}: {'; '.join(refused)[:300]}")
