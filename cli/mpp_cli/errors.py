"""mpp-admin's exit codes and the one place where errors become them.

Every command runs inside ``cli_errors``: a refusal or failure the operator can act on is printed
as one line on stderr (``mpp-admin <command>: <message>``) and the command exits with the code
of the table below, having changed nothing. Anything not in the table is a bug and keeps its
traceback (without locals: they may hold secrets).

====  ===========  ==========================================================================
code  name         meaning
====  ===========  ==========================================================================
0     OK           done (``is-active``: the node is ACTIVE)
1     NO           ``is-active``: the node is not ACTIVE, or is not known (as in MPP)
2     USAGE        bad command line: unknown option, bad node ``host[:port]``, bad failoverpool
                   string or pool settings, bad or out-of-range duration or count, a node in
                   several pools without ``--pool``, an unusable Redis URL (unknown scheme or
                   parameter, a raw ``#``/``/``/``?``/``@`` in its password) or password file
                   (unreadable, not UTF-8, no line end in its first 4096 bytes)
3     NOT_FOUND    no such pool, or no such node in the pool(s)
4     REFUSED      MPP refuses the change (e.g. activate-primary when the primary is not
                   STANDBY, apply that would remove the ACTIVE node, remove not confirmed)
5     CONFLICT     the pool already exists, or kept changing under concurrent writers
6     UNAVAILABLE  Redis cannot be used: unreachable, the password refused, no such database,
                   not a Redis server, a TLS mismatch, no Sentinel master (one line says which;
                   the URL is printed without its password)
7     BAD_STATE    the state stored in Redis cannot be read by this version: a key of the
                   wrong type or unreadable content (a command over several pools shows the
                   readable ones, then one line per unusable key, then exits 7)
8     HAPROXY      ``status --haproxy-socket``: a socket cannot be used (no such socket,
                   refused, no answer, not HAProxy's runtime API, below level admin); the
                   rest is shown first, then one line per such socket
9     ABANDONED    ``switchover``: the switchover was abandoned (the target failed, a
                   position could not be read, or the timeout passed); the old ACTIVE takes
                   writes again
====  ===========  ==========================================================================
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from enum import IntEnum
from typing import ParamSpec, TypeVar

import typer

from mpp_agent.codec import DocumentError
from mpp_agent.config import PoolConfigError
from mpp_agent.model import NodeIdError
from mpp_agent.state import AdminRefused
from mpp_agent.store import (
    REDIS_ERRORS,
    BadKey,
    Conflict,
    PoolExists,
    StoreError,
    UnknownPool,
    redis_problem,
)


class ExitCode(IntEnum):
    """The exit codes of mpp-admin (the table of the module docstring)."""

    OK = 0
    NO = 1
    USAGE = 2
    NOT_FOUND = 3
    REFUSED = 4
    CONFLICT = 5
    UNAVAILABLE = 6
    BAD_STATE = 7
    HAPROXY = 8
    ABANDONED = 9


class CliError(Exception):
    """An error of the command line itself, carrying its exit code."""

    code = ExitCode.USAGE

    def __init__(self, message: str, code: ExitCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UnknownNode(CliError):
    code = ExitCode.NOT_FOUND


class AmbiguousNode(CliError):
    """A node that is in several pools, named without ``--pool``."""

    code = ExitCode.USAGE


class NotConfirmed(CliError):
    code = ExitCode.REFUSED


# Checked in order: the first class that matches decides the code.
EXIT_CODES: tuple[tuple[tuple[type[BaseException], ...], ExitCode], ...] = (
    ((NodeIdError, PoolConfigError), ExitCode.USAGE),
    ((UnknownPool,), ExitCode.NOT_FOUND),
    ((AdminRefused,), ExitCode.REFUSED),
    ((PoolExists, Conflict), ExitCode.CONFLICT),
    (REDIS_ERRORS, ExitCode.UNAVAILABLE),
    ((DocumentError, BadKey), ExitCode.BAD_STATE),
    ((StoreError,), ExitCode.USAGE),  # what is left: a bad Redis URL
)

HANDLED: tuple[type[BaseException], ...] = (
    CliError,
    *(cls for classes, _ in EXIT_CODES for cls in classes),
)


def exit_code_of(error: BaseException) -> ExitCode:
    if isinstance(error, CliError):
        return error.code
    for classes, code in EXIT_CODES:
        if isinstance(error, classes):
            return code
    raise TypeError(f"no exit code for {type(error).__name__}")  # pragma: no cover


def report_unusable(command: str, problems: Sequence[BadKey], *, fatal: bool = True) -> None:
    """One stderr line per unusable key (after the readable part was shown); exit 7 if any
    and ``fatal`` (metrics only shown, never state, are not)."""
    for problem in problems:
        typer.echo(f"mpp-admin {command}: {problem} (left out)", err=True)
    if problems and fatal:
        raise typer.Exit(ExitCode.BAD_STATE)


def message_of(error: BaseException, redis_url: str) -> str:
    if isinstance(error, REDIS_ERRORS):
        return redis_problem(error, redis_url)
    return str(error)


@contextmanager
def reported(command: str, redis_url: Callable[[], str]) -> Iterator[None]:
    """Turn the errors of the table into one stderr line and the table's exit code."""
    try:
        yield
    except HANDLED as error:
        typer.echo(f"mpp-admin {command}: {message_of(error, redis_url())}", err=True)
        raise typer.Exit(exit_code_of(error)) from None


P = ParamSpec("P")
R = TypeVar("R")


def cli_errors(command: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a command so that every error of the table exits as the table says.

    The redacted Redis URL, for "unavailable" messages, comes from the session that the root
    callback stored in the command's ``ctx``."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with reported(command, lambda: redacted_url_of(kwargs.get("ctx"))):
                return func(*args, **kwargs)

        return wrapper

    return decorate


def redacted_url_of(ctx: object) -> str:
    find_root = getattr(ctx, "find_root", None)  # a typer (click) context
    obj = find_root().obj if find_root is not None else None
    return str(getattr(obj, "redacted_url", "the configured URL"))
