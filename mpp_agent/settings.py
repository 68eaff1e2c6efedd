"""The settings all three commands share, each declared once: flag, environment variable,
default, validator and help text.

mpp-poller and mpp-agent read these declarations with argparse (``add_arguments``), mpp-admin
with typer (cli/mpp_cli/app.py), so a setting is spelled, defaulted, validated and documented
the same way everywhere. The environment variable always stands in for the option, and every
``--help`` names it. Nothing here does I/O beyond reading the environment for defaults, and
nothing imports redis or gevent: the daemons' entry points import this before they patch.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from mpp_agent.keys import DEFAULT_NAMESPACE

# store.DEFAULT_REDIS_URL is the same value (the store must not be imported before gevent).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level(text: str) -> str:
    """A log level in any case, as logging spells it (``debug`` -> ``DEBUG``)."""
    level = text.strip().upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"unknown log level {text!a}: {', '.join(LOG_LEVELS)} (any case)"
        )
    return level


@dataclass(frozen=True)
class Setting:
    """One setting: ``--flag``, its environment variable, its default (as text, parsed like a
    value given on the command line; None: unset), its validator and its help."""

    flag: str
    env: str
    default: str | None
    parse: Callable[[str], Any]
    help: str
    aliases: tuple[str, ...] = ()  # older spellings of the flag, still accepted
    repeatable: bool = False  # given several times: a list (the environment: comma-separated)

    @property
    def help_with_env(self) -> str:
        return f"{self.help} (env {self.env}; default {self.default or 'none'})"


REDIS_URL = Setting(
    "--redis-url",
    "MPP_REDIS_URL",
    DEFAULT_REDIS_URL,
    str,
    "Redis URL: redis://, rediss://, unix://, redis+sentinel://h1:p1,h2:p2/<master>/<db> or "
    "redis+cluster://h1:p1,h2:p2/",
)
REDIS_PASSWORD_FILE = Setting(
    "--redis-password-file",
    "MPP_REDIS_PASSWORD_FILE",
    None,
    str,
    "file whose first line is the Redis password (else the URL or MPP_REDIS_PASSWORD)",
)
NAMESPACE = Setting(
    "--namespace",
    "MPP_NAMESPACE",
    DEFAULT_NAMESPACE,
    str,
    "key prefix in Redis: the same for the pollers, the agents and mpp-admin",
)
LOG_LEVEL = Setting(
    "--log-level", "MPP_LOG_LEVEL", "INFO", log_level, "DEBUG, INFO, WARNING or ERROR"
)

FENCE_USER = Setting(
    "--fence-user",
    "MPP_FENCE_USER",
    None,
    str,
    "MySQL account that sets read_only on the nodes of pools with fence=read_only (MariaDB: "
    "READ_ONLY ADMIN; MySQL 8: SYSTEM_VARIABLES_ADMIN); its password from "
    "--fence-password-file or MPP_FENCE_PASSWORD",
)
FENCE_PASSWORD_FILE = Setting(
    "--fence-password-file",
    "MPP_FENCE_PASSWORD_FILE",
    None,
    str,
    "file whose first line is the fencing account's password (else MPP_FENCE_PASSWORD)",
)
# The poller's fencing account (pools with fence = read_only).
FENCING = (FENCE_USER, FENCE_PASSWORD_FILE)

# Where the state is: every command takes these.
CONNECTION = (REDIS_URL, REDIS_PASSWORD_FILE, NAMESPACE)


def add_arguments(parser: argparse.ArgumentParser, settings: Iterable[Setting]) -> None:
    """Declare ``settings`` on an argparse parser; the environment variable gives the default.

    The default stays text: argparse parses it like a value given on the command line, so a bad
    environment variable is a usage error (exit 2) naming the option, not a traceback."""
    for setting in settings:
        default = os.environ.get(setting.env, setting.default)
        if setting.repeatable:
            parser.add_argument(
                setting.flag,
                *setting.aliases,
                type=setting.parse,
                action=ReplaceDefault,
                default=[setting.parse(item) for item in split_list(default)],
                help=setting.help_with_env,
            )
            continue
        parser.add_argument(
            setting.flag,
            *setting.aliases,
            type=setting.parse,
            default=default,
            help=setting.help_with_env,
        )


class ReplaceDefault(argparse.Action):
    """A repeatable option: the values given on the command line, else the environment's."""

    def __call__(
        self, parser: argparse.ArgumentParser, ns: argparse.Namespace, value: Any, *_: Any
    ) -> None:
        given = getattr(ns, self.dest)
        setattr(ns, self.dest, [*([] if given is self.default else given), value])


def split_list(text: str | None) -> list[str]:
    """A repeatable setting's environment value: comma-separated, blanks ignored."""
    return [item.strip() for item in (text or "").split(",") if item.strip()]
