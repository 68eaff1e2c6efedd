"""The only Redis I/O of mpp-agent: pool state, observations, events, heartbeats.

Every change to a pool is a compare-and-set on the pool's version inside one Lua script
(``lua/*.lua``); a writer that loses the race re-reads and, where that is safe, tries again a
bounded number of times. Lua return codes become typed exceptions here. Policy (what the new
state is) stays in Python: the scripts only fence and write.

Redis URLs: ``redis://``, ``rediss://`` (TLS), ``unix://``,
``redis+sentinel://h1:26379,h2:26379/<master>/<db>`` and ``redis+cluster://h1:p1,h2:p2/`` (or
``rediss+cluster://``) for a Redis Cluster. On a Cluster every script touches the keys of one
pool, which share a slot (keys.py): the pool index is split into one bucket per slot there, so
the script that creates or removes a pool changes its index entry as on a single Redis; the
poller heartbeats are keys of their own that no command uses together with another slot's keys.
Every time a script stores in a pool's keys (heartbeats of the pool's pollers, event times) is
the script's own ``TIME``, the clock of the shard holding the pool; a poller cuts a pool's rounds
by that same clock (``server_times``). The password comes from the URL, the environment
(``MPP_REDIS_PASSWORD``) or a file, and never appears in a log line or repr.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any, NamedTuple
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

import redis
import redis.cluster
import redis.sentinel
from redis._parsers.encoders import Encoder
from redis.backoff import NoBackoff
from redis.retry import Retry

from mpp_agent.codec import (
    DocumentError,
    as_stored,
    event_from_json,
    event_to_json,
    head_of,
    head_text,
    observations_from_json,
    observations_to_json,
    pool_from_doc,
    pool_to_doc,
)
from mpp_agent.config import PoolConfig, new_pool
from mpp_agent.daemon import RateLimited
from mpp_agent.keys import DEFAULT_NAMESPACE, Keys
from mpp_agent.model import Event, EventKind, NodeId, Observation, PoolHead, PoolState, evolve
from mpp_agent.rounds import FORGET_POLLER_AFTER
from mpp_agent.secret_file import SecretFileError, read_first_line
from mpp_agent.state import AdminResult, expire_overrides

log = logging.getLogger("mpp.store")
UNREADABLE_LOG = RateLimited(log)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
EVENTS_MAXLEN = 10_000
ADMIN_RETRIES = 20
# Seconds a Cluster's pool index read is reused while ns:pool-changes says no pool was created
# or removed (at most: a creation whose counter bump was lost is seen within this).
INDEX_REFRESH = 30.0
SOCKET_TIMEOUT = 2.0
# A commit waits at most this fraction of its pool's interval for a Redis replica to have it.
WAIT_FRACTION = 0.2
REPLICA_CHECK_EVERY = 10.0

# Errors that mean "Redis is not reachable right now" (as opposed to a bug or a refusal).
REDIS_DOWN_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.sentinel.MasterNotFoundError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    # A Redis Cluster shard without a master (being failed over) or a slot moving.
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterException,
)
# Every error of the Redis client (a refused password, a missing db, a server that is not
# Redis...): ``redis_problem`` words each as one line saying what to fix.
REDIS_ERRORS: tuple[type[Exception], ...] = (
    redis.RedisError,
    redis.exceptions.RedisClusterException,
)

# Command errors that are no key's fault: raised as they are, never taken for a BadKey.
NOT_KEY_ERRORS: tuple[type[Exception], ...] = (*REDIS_DOWN_ERRORS, redis.exceptions.NoScriptError)


class StoreError(Exception):
    """Base of the store's refusals."""


class UnknownPool(StoreError):
    def __init__(self, pool: str) -> None:
        super().__init__(f"No pool named {pool!r}.")
        self.pool = pool


class PoolExists(StoreError):
    def __init__(self, pool: str) -> None:
        super().__init__(f"Pool {pool!r} already exists (use 'pool apply' to change it).")
        self.pool = pool


class Conflict(StoreError):
    """A compare-and-set kept losing to other writers."""


class BadKey(StoreError):
    """A key of the wrong type, or holding what this version cannot read. Batched reads return
    it in place of the value (the other pools' values are unaffected); single reads raise it."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key = key
        self.problem = problem


class CommitRefusal(StrEnum):
    """Why a compare-and-set wrote nothing (a normal outcome: re-read and decide again)."""

    VERSION = "version"  # another writer changed the pool since it was read
    ROUND = "round"  # the round is not newer than the last committed one


class CommitResult(NamedTuple):
    """A committed change wrote version ``before.version + 1`` (or ``least_version`` if that is
    higher): the compare-and-set guarantees ``before`` was the version it replaced."""

    committed: bool
    refusal: CommitRefusal | None = None


@dataclass(frozen=True)
class Commit:
    """One compare-and-set of ``Store.commit_many`` (``Store.commit`` says what each is)."""

    before: PoolState
    after: PoolState
    events: Sequence[Event]
    actor: str
    round_: int | str | None
    least_version: int | None = None


def wait_ms(interval: float) -> int:
    """How long a commit waits for a Redis replica to confirm it: a fraction of the pool's
    interval, so that a slow replica never costs a round."""
    return max(1, int(interval * WAIT_FRACTION * 1000))


def unconfirmed_text(commits: Sequence[tuple[str, int]], timeout_ms: int) -> str:
    """The WARNING for commits (pool, version) no Redis replica confirmed in time."""
    if len(commits) == 1:
        (pool, version), lost = commits[0], "it"
        which = f"commit of pool {pool} version {version}"
    else:
        shown = ", ".join(f"{pool} (version {version})" for pool, version in commits[:5])
        more = f" and {len(commits) - 5} more" if len(commits) > 5 else ""
        which, lost = f"commits of pools {shown}{more}", "them"
    return (
        f"{which} not confirmed by any Redis replica within {timeout_ms}ms: "
        f"a Redis failover now could lose {lost}"
    )


def replicas_news(where: str, had: bool | None, has: bool, fails_over: bool) -> str | None:
    """The WARNING when the Redis master ``where`` loses its last connected replica, or gets
    one again; on the first look (``had`` None) only a master that Sentinel or the Cluster may
    replace (``fails_over``) and that has no replica is worth it. None: nothing to say."""
    if has and had is False:
        return f"Redis master {where} has a connected replica again: commits are confirmed"
    if has or had is False or (had is None and not fails_over):
        return None
    lost = "has no connected replica any more" if had else "has no connected replica"
    return (
        f"Redis master {where} {lost}: commits not confirmed by any Redis replica until one "
        "connects; a Redis failover now could lose them"
    )


def unconfirmable(exc: Exception) -> None:
    """A WAIT that failed: the commits stand, only their confirmation is missing."""
    UNREADABLE_LOG.note(
        "cannot confirm commits with a Redis replica",
        f"{type(exc).__name__}: {exc}",
        logging.WARNING,
    )


class KeyProblems:
    """The keys this process found unusable, so that each problem is logged once: when first
    seen, when it changes, and when the key is usable again (not once per round)."""

    def __init__(self) -> None:
        self.known: dict[str, str] = {}

    def bad(self, error: BadKey) -> BadKey:
        if self.known.get(error.key) != error.problem:
            self.known[error.key] = error.problem
            log.error("%s: left out until it is repaired (other pools go on)", error)
        return error

    def good(self, *keys: str) -> None:
        for key in keys:
            if self.known.pop(key, None) is not None:
                log.warning("%s is usable again", key)


# --------------------------------------------------------------------------- connecting

# Query parameters a URL may carry (redis-py would pass any other name to the connection and
# fail later with a TypeError); the TLS ones only for rediss://.
URL_PARAMETERS = frozenset(
    {
        "db",
        "username",
        "password",
        "client_name",
        "protocol",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "health_check_interval",
    }
)
TLS_URL_PARAMETERS = frozenset(
    {
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "ssl_check_hostname",
        "ssl_min_version",
        "ssl_ciphers",
    }
)
PERCENT_ENCODING_HINT = (
    "percent-encode '#', '/', '?', '@', '%' in a password (as %23 %2F %3F %40 %25), "
    "or give it by --redis-password-file or MPP_REDIS_PASSWORD"
)
# What follows the scheme: [userinfo@]rest. Split on the *last* "@" of the URL, before any
# parsing: a raw "#", "/", "?" or "@" in a password would move urlsplit's idea of where the
# password ends (and print the rest), while no host, port or path holds an "@".
_AUTHORITY_RE = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>.*)@(?P<rest>[^@]*)$", re.S
)
_QUERY_SECRET_RE = re.compile(r"(?i)([?&](?:password|ssl_password)=)[^&]*")


def redact_url(url: str) -> str:
    """The URL with every password hidden, for log lines and error messages.

    Works on the raw text (never parsed first), so any characters in the password, raw or
    percent-encoded, stay hidden; a user name is kept."""
    match = _AUTHORITY_RE.match(url)
    if match is not None:
        user, colon, _ = match["userinfo"].partition(":")
        shown = f"{user}:***" if colon and "/" not in user and "?" not in user else "***"
        url = f"{match['scheme']}{shown}@{match['rest']}"
    return _QUERY_SECRET_RE.sub(r"\1***", url)


def read_password(password_file: str | None = None) -> str | None:
    """The Redis password from a file (first line) or ``MPP_REDIS_PASSWORD``, if any.

    StoreError (exit code 2 everywhere) for a file that cannot be used."""
    if password_file:
        try:
            return read_first_line(password_file, "Redis password") or None
        except SecretFileError as exc:
            raise StoreError(str(exc)) from None
    return os.environ.get("MPP_REDIS_PASSWORD") or None


def check_url(url: str) -> SplitResult:
    """The parts of a redis://, rediss:// or unix:// URL; StoreError naming what is wrong."""
    shown = redact_url(url)
    match = _AUTHORITY_RE.match(url)
    try:
        parts = urlsplit(url)
        if match is not None and parts.netloc.rsplit("@", 1)[0] != match["userinfo"]:
            raise ValueError(PERCENT_ENCODING_HINT)
        if parts.fragment:
            raise ValueError(f"it has a '#' part; {PERCENT_ENCODING_HINT}")
        if parts.scheme != "unix":
            _ = parts.port  # raises ValueError for a port that is not a number
            if not parts.hostname:
                raise ValueError("it names no host")
            if parts.path not in ("", "/") and not parts.path[1:].isdigit():
                raise ValueError(f"the database {parts.path[1:]!r} is not a number")
        allowed = URL_PARAMETERS | (TLS_URL_PARAMETERS if parts.scheme == "rediss" else set())
        for name, _value in parse_qsl(parts.query, keep_blank_values=True):
            if name not in allowed:
                known = ", ".join(sorted(allowed))
                raise ValueError(f"unknown parameter {name!r} (known: {known})")
    except ValueError as exc:
        raise StoreError(f"Bad Redis URL {shown}: {exc}") from None
    return parts


class LazyCluster:
    """A Redis Cluster client made on first use: redis-py's connects as it is made, and a
    daemon must start, and keep retrying, while the Cluster is unreachable."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._client: redis.cluster.RedisCluster | None = None

    def __repr__(self) -> str:  # never the options: they hold the password
        return "LazyCluster()"

    def real(self) -> redis.cluster.RedisCluster:
        if self._client is None:
            self._client = redis.cluster.RedisCluster(**self._options)
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real(), name)

    def get_encoder(self) -> Any:
        """What a Script hashes its source with, without connecting (bytes, as the client)."""
        return Encoder("utf-8", "strict", False)  # type: ignore[no-untyped-call, unused-ignore]

    def register_script(self, script: str) -> Any:
        return redis.commands.core.Script(self, script)  # type: ignore[arg-type]


Client = redis.Redis | redis.cluster.RedisCluster | LazyCluster
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


def connect(url: str, password: str | None = None) -> Client:
    """A client for ``url``; ``password`` (from env or file) applies if the URL has none.

    Nothing is sent to Redis yet: a bad URL is a StoreError here, a Redis that cannot be used
    shows on the first command (``redis_problem`` words it)."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if scheme == "redis+sentinel":
        return connect_sentinel(url, password)
    if scheme in CLUSTER_SCHEMES:
        return connect_cluster(url, password)
    if scheme not in ("redis", "rediss", "unix"):
        raise StoreError(
            f"Unsupported Redis URL scheme {scheme!r} in {redact_url(url)}: use redis://, "
            "rediss://, unix://, redis+sentinel:// or redis+cluster://"
        )
    parts = check_url(url)
    extra: dict[str, Any] = {}
    if password and parts.password is None:
        extra["password"] = password
    try:
        return redis.Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=30,
            retry=one_retry(),
            **extra,
        )
    except ValueError as exc:
        raise StoreError(f"Bad Redis URL {redact_url(url)}: {exc}") from None


def one_retry() -> Retry:
    """Retry a command once (a connection dropped while idle), not redis-py's default of
    three with back-off: a Redis that does not answer costs mpp-admin (and an is-active
    check script) about two socket timeouts, and the daemons' own loops retry anyway."""
    return Retry(NoBackoff(), 1)


def connect_sentinel(url: str, password: str | None) -> redis.Redis:
    """``redis+sentinel://[:password@]h1:p1,h2:p2/<master>/<db>``."""
    shown = redact_url(url)
    match = _AUTHORITY_RE.match(url)
    userinfo = match["userinfo"] if match is not None else ""
    body = match["rest"] if match is not None else url.partition("://")[2]
    hosts_part, _, path_text = body.partition("/")
    path = [p for p in path_text.split("/") if p]
    if not hosts_part or not path or len(path) > 2 or "?" in body or "#" in body:
        raise StoreError(
            f"Bad Sentinel URL {shown}: expected redis+sentinel://h1:p1,h2:p2/<master>/<db>"
        )
    sentinels = [address(item, shown) for item in hosts_part.split(",")]
    if len(path) > 1 and not path[1].isdigit():
        raise StoreError(f"Bad Sentinel URL {shown}: the database {path[1]!r} is not a number")
    db = int(path[1]) if len(path) > 1 else 0
    secret = unquote(userinfo.partition(":")[2]) if ":" in userinfo else password
    sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call, unused-ignore]
        sentinels,
        socket_timeout=SOCKET_TIMEOUT,
        sentinel_kwargs={"password": secret, "socket_timeout": SOCKET_TIMEOUT},
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call, unused-ignore]
        path[0], db=db, password=secret, socket_timeout=SOCKET_TIMEOUT, retry=one_retry()
    )
    return client


def connect_cluster(url: str, password: str | None) -> LazyCluster:
    """``redis+cluster://[user:password@]h1:p1,h2:p2[/][?params]`` (``rediss+cluster://``:
    TLS): any reachable node tells the client the whole cluster's layout."""
    shown = redact_url(url)
    match = _AUTHORITY_RE.match(url)
    scheme = url.partition("://")[0]
    userinfo = match["userinfo"] if match is not None else ""
    body = match["rest"] if match is not None else url.partition("://")[2]
    body, _, query = body.partition("?")
    hosts_part, _, path = body.partition("/")
    usage = "expected redis+cluster://h1:p1,h2:p2/ (a Redis Cluster has only database 0)"
    if not hosts_part or path.strip("/") not in ("", "0") or "#" in url:
        raise StoreError(f"Bad Redis Cluster URL {shown}: {usage}")
    nodes = [
        redis.cluster.ClusterNode(*address(item, shown))  # type: ignore[no-untyped-call, unused-ignore]
        for item in hosts_part.split(",")
    ]
    tls = scheme == "rediss+cluster"
    allowed = (URL_PARAMETERS - {"db"}) | (TLS_URL_PARAMETERS if tls else set())
    options: dict[str, Any] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise StoreError(f"Bad Redis Cluster URL {shown}: unknown parameter {name!r} ({known})")
        options[name] = float(value) if name.endswith("_timeout") else value
    user, colon, secret = userinfo.partition(":")
    options.setdefault("socket_timeout", SOCKET_TIMEOUT)
    options.setdefault("socket_connect_timeout", SOCKET_TIMEOUT)
    return LazyCluster(
        startup_nodes=nodes,
        username=unquote(user) or None,
        password=unquote(secret) if colon else password,
        ssl=tls,
        # A shard being failed over must not stop the other shards' pools.
        require_full_coverage=False,
        **options,
    )


def address(item: str, shown: str) -> tuple[str, int]:
    """``host:port`` of a URL's host list; StoreError naming the bad one."""
    host, _, port = item.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise StoreError(f"Bad address {item!r} in {shown}: expected host:port")
    return host.strip("[]"), int(port)


def is_redis_down(exc: Exception) -> bool:
    """Worth retrying: Redis (or its Sentinel master) is not reachable right now, as opposed to
    refusing us (a wrong password, no such database, not a Redis server, a plain Redis named
    as a Sentinel: redis-py >= 8.2 reports that as no master found, a ConnectionError)."""
    if isinstance(exc, redis.AuthenticationError) or is_not_a_sentinel(exc):
        return False
    return isinstance(exc, REDIS_DOWN_ERRORS)


def is_not_a_sentinel(exc: Exception) -> bool:
    """A server named as a Sentinel answered that it knows no SENTINEL command."""
    return "unknown command 'SENTINEL'" in str(exc)


def redis_problem(exc: Exception, url: str) -> str:
    """One line saying what went wrong with the Redis at ``url`` and what to fix.

    ``exc`` is any redis-py error; ``url`` is redacted here. Its messages name hosts and
    ports, never the password."""
    shown = redact_url(url)
    text = str(exc) or type(exc).__name__
    tls = url.startswith("rediss://")
    if isinstance(exc, redis.AuthenticationError) or text.startswith(("NOAUTH", "WRONGPASS")):
        return (
            f"Redis at {shown} refused the password ({text}): check --redis-password-file, "
            "MPP_REDIS_PASSWORD or the URL"
        )
    if "DB index is out of range" in text:
        return (
            f"Redis at {shown} has no such database ({text}): use a db number the server has "
            "(0-15 unless its 'databases' setting says more)"
        )
    if is_not_a_sentinel(exc):
        return (
            f"{shown} names a plain Redis where Sentinels were expected: use redis:// for it, "
            "or the Sentinels' addresses"
        )
    if isinstance(exc, redis.sentinel.MasterNotFoundError):
        return (
            f"no Sentinel of {shown} knows a reachable master of that name ({text}): check "
            "the master name and the Sentinels"
        )
    if isinstance(exc, (redis.exceptions.RedisClusterException, redis.exceptions.ClusterError)):
        return f"Redis Cluster at {shown} is unreachable or has a shard down: {text}"
    if isinstance(exc, (redis.exceptions.InvalidResponse, redis.exceptions.DataError)):
        return f"{shown} did not answer as a Redis server ({text}): check the host and port"
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        hint = ""
        if tls:
            hint = "; if that port does not serve TLS, use redis://"
        elif "closed" in text.lower() or "reset" in text.lower():
            hint = "; if that port serves TLS, use rediss://"
        return f"Redis at {shown} is unreachable: {text}{hint}"
    return f"Redis at {shown} refused a command: {text}"


# Helpers every script may call, prepended to each.
LUA_HELPERS = ("check_key_types", "server_time")


def load_script(name: str) -> str:
    """A script's source, after the helpers every script may call (``check_key_types``,
    ``now_ms``, ``stamped``)."""
    lua = resources.files("mpp_agent").joinpath("lua")
    return "".join(lua.joinpath(f"{part}.lua").read_text() for part in (*LUA_HELPERS, name))


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class PollerInfo:
    """A poller's heartbeat; ``problem`` says why its info could not be read, if it could not."""

    poller_id: str
    alive: bool
    info: dict[str, Any]
    problem: str = ""


@dataclass(frozen=True)
class RoundRecord:
    """What ``record_observation.lua`` said about a round after recording."""

    pool: str
    round: int
    live: int
    reported: int
    committed: int = -1  # the pool's last committed round when this one was recorded

    @property
    def is_complete(self) -> bool:
        return self.reported >= self.live

    @property
    def was_committed(self) -> bool:
        """Committed already (by an observer that recorded it, or at its deadline): there is
        nothing left to commit or to wait for."""
        return self.committed >= self.round


Record = tuple[str, int, dict[NodeId, Observation], dict[str, str]]
Report = dict[NodeId, Observation]
Reports = dict[str, Report]
# The keys a command touches with the Redis type each must have (for diagnosing errors).
Expected = Sequence[tuple[str, str]]


class Store:
    """Pool state in Redis for one namespace."""

    def __init__(self, client: Client, namespace: str = DEFAULT_NAMESPACE) -> None:
        # redis-py's return types are unions over decode modes; this client never decodes.
        self.client: Any = client
        self.is_cluster = isinstance(client, redis.cluster.RedisCluster | LazyCluster)
        # A master that Sentinel or the Cluster may replace: a replica is what keeps commits.
        self.fails_over = self.is_cluster or isinstance(
            getattr(client, "connection_pool", None), redis.sentinel.SentinelConnectionPool
        )
        self.keys = Keys(namespace)
        self.problems = KeyProblems()
        self.redacted_url = "the configured Redis"  # for messages; from_url sets the real one
        # register_script costs no round trip and reloads itself after NOSCRIPT.
        self._commit = client.register_script(load_script("commit_pool"))
        self._create = client.register_script(load_script("create_pool"))
        self._remove = client.register_script(load_script("remove_pool"))
        self._record = client.register_script(load_script("record_observation"))
        self._replicas_checked: dict[str, tuple[float, bool]] = {}  # node -> (monotonic, any)
        # Per pool, the report this store last recorded: (round, poller, its text, what that
        # text reads back as). A poller that commits a round reads its own report back with the
        # others': the same bytes are not decoded again.
        self._recorded: dict[str, tuple[int, str, bytes, dict[NodeId, Observation]]] = {}
        # A Cluster's pool index as last read whole: (ns:pool-changes then, monotonic, names).
        self._index: tuple[bytes | None, float, list[str]] | None = None
        self.index_refresh = INDEX_REFRESH
        # pool -> (version, round, document) of the last tick this store committed, and the
        # state it is: a poller reads the pools it commits again (its next cycle, the next
        # commit), and the state it wrote is not decoded from the same bytes again.
        self._written: dict[str, tuple[bytes, bytes, bytes, PoolState]] = {}

    @classmethod
    def from_url(
        cls,
        url: str = DEFAULT_REDIS_URL,
        namespace: str = DEFAULT_NAMESPACE,
        password: str | None = None,
    ) -> Store:
        store = cls(connect(url, password if password is not None else read_password()), namespace)
        store.redacted_url = redact_url(url)
        return store

    def __repr__(self) -> str:
        return f"Store(namespace={self.keys.namespace!r})"

    def check(self) -> None:
        """One round trip that raises what a misconfigured URL or password would (see
        ``redis_problem``): daemons call it at start-up."""
        self.client.ping()

    def stored_pools(self, names: Iterable[str]) -> set[str]:
        """Which of these pools have a stored hash at all, readable or not (removing a pool
        deletes its hash in the same script that notifies)."""
        names = list(names)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.exists(self.keys.pool(name))
        return {name for name, found in zip(names, pipe.execute(), strict=True) if found}

    def namespaces_with_pools(self, limit: int = 20) -> list[str]:
        """Other namespaces of this Redis that have pools (to help after a wrong --namespace)."""
        index = Keys("*").pool_buckets() if self.is_cluster else Keys("*").pools()
        suffix = index.removeprefix("*")
        found = set()
        for key in self.client.scan_iter(match=index, count=1000):
            namespace = key.decode(errors="replace").removesuffix(suffix)
            try:
                if Store(self.client, namespace).read_index()[0]:
                    found.add(namespace)
            except BadKey:
                continue  # not a namespace of this version's, or a broken one: not a hint
            if len(found) >= limit:
                break
        return sorted(found)

    @property
    def notify_channel(self) -> str:
        return self.keys.notify_channel()

    # ---------------------------------------------------------------- errors

    def diagnose(self, error: Exception, expected: Expected) -> BadKey:
        """Which of ``expected``'s keys made a command fail, and how (one extra round trip,
        only when something is wrong)."""
        pipe = self.client.pipeline(transaction=False)
        for key, _ in expected:
            pipe.type(key)
        for (key, want), got in zip(expected, pipe.execute(), strict=True):
            kind = got.decode() if isinstance(got, bytes) else str(got)
            if kind not in (want, "none"):
                return BadKey(key, f"is a {kind}, not a {want}")
        return BadKey(expected[0][0], f"cannot be used: {error}")

    def key_error(self, error: Exception, expected: Expected) -> BadKey:
        """The BadKey of a command error caused by one of ``expected``'s keys; an error that is
        no key's fault (Redis down, read-only, loading, a flushed script) is raised as it is."""
        if not isinstance(error, redis.ResponseError) or isinstance(error, NOT_KEY_ERRORS):
            raise error
        return self.diagnose(error, expected)

    def checked(self, reply: Any, expected: Expected) -> Any:
        """A pipelined reply, or BadKey in its place if the command failed on a key."""
        return self.key_error(reply, expected) if isinstance(reply, Exception) else reply

    # ---------------------------------------------------------------- reading

    def server_time(self, pool: str | None = None) -> float:
        """Redis server time in seconds: the only clock rounds are cut by. On a Redis Cluster,
        the clock of the shard holding ``pool`` (without one: the default clock, of the shard
        holding the poller heartbeats, by which every poller's liveness is judged)."""
        seconds, micros = self.client.time(**self.at_shard(self.keys.pool(pool) if pool else None))
        return float(seconds) + float(micros) / 1e6

    def server_times(self, pools: Iterable[str]) -> dict[str, float]:
        """Each pool's clock: Redis time, on a Cluster that of the pool's shard (one TIME per
        shard, never whichever node answers)."""
        names = list(pools)
        if not self.is_cluster:
            now = self.server_time()
            return dict.fromkeys(names, now)
        by_node: dict[str, list[str]] = {}
        for name in names:
            node = self.client.get_node_from_key(self.keys.pool(name))
            by_node.setdefault(node.name, []).append(name)
        out: dict[str, float] = {}
        for members in by_node.values():
            now = self.server_time(members[0])
            out.update(dict.fromkeys(members, now))
        return out

    def at_shard(self, key: str | None) -> dict[str, Any]:
        """The keyword that sends a keyless command (TIME, WAIT, INFO) to the Cluster node
        holding ``key`` (default: the poller heartbeats, whose clock judges every poller's
        liveness); nothing for a single Redis."""
        if not self.is_cluster:
            return {}
        return {"target_nodes": self.client.get_node_from_key(key or self.keys.pollers())}

    def pool_names(self) -> list[str]:
        """Every pool's name. BadKey if the index is unusable; on a Redis Cluster a bucket of
        the wrong type is logged once and its pools are left out (``read_pools`` returns it)."""
        return self.pool_index()[0]

    def pool_index(self) -> tuple[list[str], bool]:
        """``pool_names``, and whether they are every pool's (False: a Cluster bucket could
        not be read, and pools that exist may be missing from them)."""
        names, unusable = self.read_index()
        for problem in unusable:
            self.problems.bad(problem)
        return names, not unusable

    def read_index(self) -> tuple[list[str], list[BadKey]]:
        """The names in the pool index, and the Cluster buckets that cannot be read (BadKey
        raised for an unusable index set or directory)."""
        if not self.is_cluster:
            return sorted(self.set_members(self.keys.pools())), []
        changes, kept = self.pool_changes(), self._index
        if (
            kept is not None
            and changes is not None
            and kept[0] == changes
            and time.monotonic() - kept[1] < self.index_refresh
        ):
            return list(kept[2]), []
        at = time.monotonic()
        names, unusable = self.read_buckets()
        self._index = None if unusable else (changes, at, names)
        return names, unusable

    def pool_changes(self) -> bytes | None:
        """A Cluster's ``ns:pool-changes`` (None when never bumped or unusable: unusable, it is
        logged once and the index is read whole every time)."""
        key = self.keys.pool_changes()
        try:
            value: bytes | None = self.client.get(key)
        except redis.ResponseError as exc:
            self.problems.bad(self.key_error(exc, [(key, "string")]))
            return None
        self.problems.good(key)
        return value

    def pool_changed(self) -> None:
        """Say that a pool was created or removed (on a Cluster: ``ns:pool-changes`` bumped,
        after the script; a failure is a WARNING only, the change itself is made and readers see
        it within ``INDEX_REFRESH``)."""
        if not self.is_cluster:
            return
        try:
            self.client.incr(self.keys.pool_changes())
        except redis.RedisError as exc:
            log.warning(
                "%s not bumped (%s): other processes see the pool change within %gs",
                self.keys.pool_changes(),
                exc,
                INDEX_REFRESH,
            )

    def read_buckets(self) -> tuple[list[str], list[BadKey]]:
        """Every bucket of a Cluster's pool index (``read_index``)."""
        # Two reads: the directory, then every bucket it lists (one pipeline per master).
        tags = sorted(self.set_members(self.keys.pool_buckets()))
        if not tags:
            return [], []
        buckets = [self.keys.pool_bucket(tag) for tag in tags]
        pipe = self.client.pipeline(transaction=False)
        for key in buckets:
            pipe.smembers(key)
        names: set[str] = set()
        unusable = []
        for key, raw in zip(buckets, pipe.execute(raise_on_error=False), strict=True):
            reply = self.checked(raw, [(key, "set")])
            if isinstance(reply, BadKey):
                unusable.append(reply)
            else:
                self.problems.good(key)
                names.update(m.decode() for m in reply)
        return sorted(names), unusable

    def set_members(self, key: str) -> set[str]:
        """The members of a set key (BadKey if it is not a set)."""
        try:
            members = self.client.smembers(key)
        except redis.ResponseError as exc:
            raise self.key_error(exc, [(key, "set")]) from None
        return {m.decode() for m in members}

    def read_pools(self, names: Iterable[str] | None = None) -> dict[str, PoolState | BadKey]:
        """The named pools (default all) in one round trip, each a PoolState or the BadKey that
        makes it unreadable (logged once); missing pools are left out. Reading all of them, an
        unusable bucket of a Cluster's index is in the result too, under its key's name."""
        out: dict[str, PoolState | BadKey] = {}
        if names is None:
            names, unusable = self.read_index()
            out.update((problem.key, self.problems.bad(problem)) for problem in unusable)
        else:
            names = list(names)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(self.keys.pool(name))
        for name, raw in zip(names, pipe.execute(raise_on_error=False), strict=True):
            pool = self.pool_of(name, raw)
            if pool is not None:
                out[name] = pool
        return out

    def read_heads(
        self, names: Sequence[str], whole: Container[str]
    ) -> tuple[list[PoolHead], dict[str, PoolState]]:
        """The head of every named pool, and the pools named in ``whole`` read in full, in one
        round trip; a pool whose head cannot stand for its document (``head_of``) is read in
        full too, in a second one. Pools missing or unreadable are left out of both (an
        unreadable one logged once, as by ``load_pools``)."""
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            key = self.keys.pool(name)
            pipe.hgetall(key) if name in whole else pipe.hmget(key, "version", "head")
        pools: dict[str, PoolState] = {}
        heads: dict[str, PoolHead] = {}
        again = []
        for name, raw in zip(names, pipe.execute(raise_on_error=False), strict=True):
            if name in whole:
                pool = self.pool_of(name, raw)
                if isinstance(pool, PoolState):
                    pools[name] = pool
            elif isinstance(raw, list) and (head := head_of(name, *raw)) is not None:
                heads[name] = head
            else:  # no usable head, or an error reply (the whole read says which)
                again.append(name)
        pools.update((p.name, p) for p in self.load_pools(again))
        heads.update((name, PoolHead.of(pool)) for name, pool in pools.items())
        return [heads[name] for name in names if name in heads], pools

    def load_pools(self, names: Iterable[str] | None = None) -> list[PoolState]:
        """The readable pools of ``read_pools``: one unreadable pool never hides the others."""
        return [p for p in self.read_pools(names).values() if isinstance(p, PoolState)]

    def load_pool(self, name: str) -> PoolState:
        """One pool; UnknownPool if missing, BadKey if unreadable."""
        key = self.keys.pool(name)
        try:
            raw = self.client.hgetall(key)
        except redis.ResponseError as exc:
            raise self.key_error(exc, [(key, "hash")]) from None
        pool = decode_pool(key, name, raw)
        if pool is None:
            raise UnknownPool(name)
        return pool

    def pool_of(self, name: str, raw: Any) -> PoolState | BadKey | None:
        """A pipelined pool hash reply decoded; a bad one is noted in ``problems``."""
        key = self.keys.pool(name)
        try:
            reply = self.checked(raw, [(key, "hash")])
            if isinstance(reply, BadKey):
                raise reply
            pool = self.written(name, reply) or decode_pool(key, name, reply)
        except BadKey as exc:
            return self.problems.bad(exc)
        self.problems.good(key)
        return pool

    def events(
        self, pool: str, count: int = 100, after: str = "-"
    ) -> list[tuple[str, dict[str, Any]]]:
        """Up to ``count`` events of a pool after stream id ``after`` (exclusive), oldest first.

        BadKey if the stream is not a stream or holds an entry that is not an event."""
        start = "-" if after == "-" else f"({after}"
        key = self.keys.events(pool)
        try:
            rows = self.client.xrange(key, min=start, count=count)
        except redis.ResponseError as exc:
            raise self.key_error(exc, [(key, "stream")]) from None
        return decode_events(key, rows)

    def last_events(self, pool: str, count: int) -> list[tuple[str, dict[str, Any]]]:
        """The newest ``count`` events of a pool, oldest first (BadKey as ``events``)."""
        key = self.keys.events(pool)
        try:
            rows = self.client.xrevrange(key, count=count)
        except redis.ResponseError as exc:
            raise self.key_error(exc, [(key, "stream")]) from None
        return decode_events(key, list(reversed(rows)))

    def metrics(self, pool: str) -> dict[str, dict[str, Any]]:
        """The last probe metrics of each node of a pool (BadKey if the hash is unreadable)."""
        found = self.read_metrics([pool])[pool]
        if isinstance(found, BadKey):
            raise found
        return found

    def read_metrics(self, pools: Sequence[str]) -> dict[str, dict[str, dict[str, Any]] | BadKey]:
        """Each pool's metrics hash (node -> its last probe metrics) in one round trip; a hash
        of the wrong type is a BadKey, an unreadable entry is left out."""
        pipe = self.client.pipeline(transaction=False)
        for pool in pools:
            pipe.hgetall(self.keys.metrics(pool))
        out: dict[str, dict[str, dict[str, Any]] | BadKey] = {}
        for pool, raw in zip(pools, pipe.execute(raise_on_error=False), strict=True):
            reply = self.checked(raw, [(self.keys.metrics(pool), "hash")])
            out[pool] = reply if isinstance(reply, BadKey) else decode_metrics(reply)
        return out

    def round_observations(self, pool: str, round_: int) -> Reports:
        return decode_reports(self.client.hgetall(self.keys.observations(pool, round_)))

    def read_rounds(self, rounds: Sequence[tuple[str, int]]) -> dict[str, Reports | BadKey]:
        """Each pool's reports of one round (poller id -> its observations), in one round
        trip: a pool -> {} when the round's observations expired; BadKey if unusable."""
        pipe = self.client.pipeline(transaction=False)
        for pool, round_ in rounds:
            pipe.hgetall(self.keys.observations(pool, round_))
        out: dict[str, Reports | BadKey] = {}
        for (pool, round_), raw in zip(rounds, pipe.execute(raise_on_error=False), strict=True):
            reply = self.checked(raw, [(self.keys.observations(pool, round_), "hash")])
            out[pool] = reply if isinstance(reply, BadKey) else decode_reports(reply)
        return out

    # ---------------------------------------------------------------- pools

    def create_pool(self, config: PoolConfig, actor: str = "admin") -> PoolState:
        # A fresh id per creation: versions of a pool removed and created again start over.
        pool = new_pool(config, uuid.uuid4().hex)
        event = Event(EventKind.CONFIGURE, pool.name, message=f"pool created by {actor}")
        keys = [self.keys.pool(pool.name), self.keys.events(pool.name), self.index_key(pool.name)]
        if self.is_cluster:
            self.list_bucket(pool.name)
        try:
            created = self._create(
                keys=keys,
                args=[
                    pool_to_doc(pool),
                    EVENTS_MAXLEN,
                    self.notify_channel,
                    pool.name,
                    event_to_json(event, actor),
                    head_text(pool),
                ],
            )
        except redis.ResponseError as exc:
            raise self.key_error(
                exc, list(zip(keys, ("hash", "stream", "set"), strict=True))
            ) from None
        if not created:
            raise PoolExists(pool.name)
        self.pool_changed()
        return self.load_pool(pool.name)

    def remove_pool(self, name: str) -> None:
        k = self.keys
        keys = [k.pool(name), k.events(name), k.metrics(name), k.pool_pollers(name)]
        keys.append(self.index_key(name))
        for _ in range(ADMIN_RETRIES):
            pool = self.load_pool(name)
            try:
                result = self._remove(keys=keys, args=[pool.version, self.notify_channel, name])
            except redis.ResponseError as exc:
                raise self.key_error(exc, [(keys[0], "hash"), (keys[-1], "set")]) from None
            if result == 1:
                self.pool_changed()
                return
            if result == 0:
                raise UnknownPool(name)
        raise Conflict(f"Pool {name} kept changing while removing it; try again.")

    def index_key(self, pool: str) -> str:
        """The index set that lists ``pool``, changed by the same script as the pool: the one
        index of a single Redis, or on a Cluster the bucket of the pool's own slot."""
        if not self.is_cluster:
            return self.keys.pools()
        return self.keys.pool_bucket(self.keys.bucket_tag(pool))

    def list_bucket(self, pool: str) -> None:
        """Put the bucket of ``pool`` in a Cluster's directory of buckets, before the pool can
        exist: the directory is only ever added to (at most one tag per slot), so it never
        needs to change with a pool, and a bucket listed without pools reads as none."""
        key = self.keys.pool_buckets()
        try:
            self.client.sadd(key, self.keys.bucket_tag(pool))
        except redis.ResponseError as exc:
            raise self.key_error(exc, [(key, "set")]) from None

    def admin(
        self,
        name: str,
        change: Callable[[PoolState], AdminResult],
        actor: str = "admin",
    ) -> AdminResult:
        """Apply an admin transition atomically: read, change, compare-and-set, retry if beaten.

        ``change`` may raise (e.g. ``AdminRefused``): nothing is written then."""
        for _ in range(ADMIN_RETRIES):
            pool = self.load_pool(name)
            now = self.server_time(name)
            result = change(expire_overrides(pool, now))
            # A new interval re-numbers the rounds (round = time // interval): start afresh.
            renumber = "=-1" if result.pool.interval != pool.interval else None
            if self.commit(pool, result.pool, result.events, actor, renumber).committed:
                return result
        raise Conflict(f"Pool {name} kept changing under concurrent writers; try again.")

    def commit(
        self,
        before: PoolState,
        after: PoolState,
        events: Sequence[Event],
        actor: str,
        round_: int | str | None,
        least_version: int | None = None,
    ) -> CommitResult:
        """Compare-and-set ``after`` over ``before``: (committed, why not if not).

        ``round_`` is the tick's round (refused unless newer than the last), None for an admin
        change, or ``"=<n>"`` to re-number the rounds. ``least_version``: write at least this
        version (restoring a state Redis lost, above every version seen of it). The events are
        stamped with the time of the shard holding the pool, by the script that writes them.

        Raises UnknownPool if the pool is gone, BadKey if one of its keys is unusable (then
        nothing is written)."""
        (result,) = self.commit_many([Commit(before, after, events, actor, round_, least_version)])
        if isinstance(result, Exception):
            raise result
        return result

    def commit_many(
        self,
        commits: Sequence[Commit],
        each: Callable[[Iterable[Commit]], Iterable[Commit]] = iter,
    ) -> list[CommitResult | Exception]:
        """Each ``commit``, all in one round trip (per shard on a Cluster), each atomic on its
        own, and confirmed by a Redis replica in that round trip where the master has one. Per
        commit its result, or in its place the error that stopped it: UnknownPool, BadKey, or
        the Redis error (the other commits stand). ``each``: how the commits are walked to
        encode their documents (a poller's lets its event loop run in a long batch)."""
        docs = [pool_to_doc(c.after).encode() for c in each(commits)]  # sent as is, kept to compare
        calls = [
            (self.commit_keys(c.before.name), self.commit_args(c, doc))
            for c, doc in zip(commits, docs, strict=True)
        ]
        timeout_ms = min((wait_ms(c.before.interval) for c in commits), default=1)
        replies, acks = self.run_scripts(self._commit, calls, confirm_ms=timeout_ms)
        results: list[CommitResult | Exception] = []
        unconfirmed: list[tuple[str, int]] = []
        for commit, doc, (keys, _), reply, acked in zip(
            commits, docs, calls, replies, acks, strict=True
        ):
            result = self.commit_result(commit.before.name, keys, reply)
            if result == CommitResult(True):
                version = int(reply[1])
                self.wrote(commit, version, doc)
                if acked is None:  # not asked in its round trip (a Cluster redirect)
                    self.confirm(commit.before.name, version, commit.before.interval)
                elif acked < 1:
                    unconfirmed.append((commit.before.name, version))
            results.append(result)
        if unconfirmed:
            log.warning("%s", unconfirmed_text(unconfirmed, timeout_ms))
        return results

    def commit_keys(self, pool: str) -> list[str]:
        return [self.keys.pool(pool), self.keys.events(pool)]

    def wrote(self, commit: Commit, version: int, doc: bytes) -> None:
        """Keep the state a tick committed as ``version`` (``written``); an admin change is
        not kept (rare, and it may re-number the rounds)."""
        name = commit.before.name
        if not isinstance(commit.round_, int):
            self._written.pop(name, None)
            return
        pool = evolve(commit.after, version=version, last_round=commit.round_)
        self._written[name] = (b"%d" % version, b"%d" % commit.round_, doc, pool)

    def forget_pools(self, keep: Container[str]) -> None:
        """What this store holds of the pools not in ``keep`` (removed) dropped: their last
        commit (``written``) and last report recorded."""
        for held in (self._written, self._recorded):
            for name in [n for n in held if n not in keep]:
                del held[name]

    def written(self, name: str, raw: Mapping[bytes, bytes]) -> PoolState | None:
        """The state this store committed last of pool ``name``, if the raw pool hash ``raw``
        holds exactly it (the same version, round and document bytes); else None (decode)."""
        kept = self._written.get(name)
        if kept is None or raw.get(b"doc") != kept[2]:
            return None
        if raw.get(b"version") != kept[0] or raw.get(b"round") != kept[1]:
            return None
        return kept[3]

    def commit_args(self, commit: Commit, doc: bytes) -> list[Any]:
        """ARGV of commit_pool.lua (``doc``: the new document, encoded)."""
        tag = commit.round_ if isinstance(commit.round_, int) else None
        payload = [event_to_json(e, commit.actor, tag) for e in commit.events]
        least = commit.least_version
        return [
            commit.before.version,
            "" if commit.round_ is None else commit.round_,
            doc,
            EVENTS_MAXLEN,
            self.notify_channel,
            commit.before.name,
            head_text(commit.after),
            len(payload),
            *payload,
            *([] if least is None else [least]),
        ]

    def commit_result(self, pool: str, keys: list[str], reply: Any) -> CommitResult | Exception:
        """commit_pool.lua's reply (or the error in its place) as ``commit`` reads it."""
        if isinstance(reply, redis.ResponseError):
            expected = list(zip(keys, ("hash", "stream"), strict=True))
            try:
                return self.problems.bad(self.key_error(reply, expected))
            except redis.RedisError as exc:  # no key's fault
                return exc
        if isinstance(reply, Exception):
            return reply
        self.problems.good(*keys)
        if int(reply[0]) == 1:
            return CommitResult(True)
        reason = reply[1].decode()
        if reason == "missing":
            return UnknownPool(pool)
        return CommitResult(False, CommitRefusal(reason))

    def confirm(self, pool: str, version: int, interval: float) -> bool:
        """Wait (a bounded fraction of the interval) for one Redis replica to have the commit
        just made, where the master has replicas: a Redis failover then cannot roll the pool
        back past it. A timeout is a WARNING, not a lost commit (the master has it).
        (``commit_many`` asks in the commits' own round trip; this is for the odd one out.)"""
        timeout_ms = wait_ms(interval)
        try:
            if not self.has_replicas(pool):
                return True
            at = self.at_shard(self.keys.pool(pool))
            acked = int(self.client.execute_command("WAIT", 1, timeout_ms, **at))
        except redis.RedisError as exc:  # the commit stands: only its confirmation failed
            unconfirmable(exc)
            return False
        if acked < 1:
            log.warning("%s", unconfirmed_text([(pool, version)], timeout_ms))
        return acked >= 1

    def has_replicas(self, pool: str) -> bool:
        """Whether the master holding ``pool`` has connected replicas."""
        if not self.is_cluster:
            return self.replicas_at("", self.client)
        node = self.client.get_node_from_key(self.keys.pool(pool))
        return self.replicas_at(node.name, node.redis_connection)

    def replicas_at(self, node: str, client: Any) -> bool:
        """Whether the master ``client`` (named ``node``; "" for a single Redis) has connected
        replicas (``INFO replication``), asked at most once per REPLICA_CHECK_EVERY seconds:
        not a round trip per commit. Losing the last replica is said (``replicas_news``)."""
        now = time.monotonic()
        checked = self._replicas_checked.get(node)
        if checked is None or now - checked[0] > REPLICA_CHECK_EVERY:
            info = client.info("replication")
            has = int(info.get("connected_slaves", 0)) > 0
            had = None if checked is None else checked[1]
            news = replicas_news(node or self.redacted_url, had, has, self.fails_over)
            if news is not None:
                log.warning("%s", news)
            checked = (now, has)
            self._replicas_checked[node] = checked
        return checked[1]

    # ---------------------------------------------------------------- pollers

    def record_observations(
        self,
        records: Sequence[Record],
        poller_id: str,
        ttl: float,
        heartbeat_ttl: float,
        waits: Mapping[str, Sequence[str]] | None = None,
    ) -> list[RoundRecord]:
        """Record this poller's observations for several (pool, round)s in one round trip.

        Each record is (pool, round, observations, metrics JSON by node), kept ``ttl``
        seconds; this poller counts as one of each pool's live pollers for ``heartbeat_ttl``
        seconds, by the clock of the shard holding the pool (the script's own TIME). ``waits``:
        per pool, the assigned observers its round waits for (by default every live poller of
        the pool). A record that one of its pool's keys refused (logged once, nothing of it
        written) is left out of the result: that pool loses this round, the others do not."""

        calls = []
        for pool, round_, observations, metrics in records:
            flat = [x for item in metrics.items() for x in item]
            waits_for = list((waits or {}).get(pool, ()))
            keys = [key for key, _ in self.record_keys(pool, round_)]
            text = observations_to_json(observations).encode()  # sent as is, kept to compare
            self._recorded[pool] = (round_, poller_id, text, as_stored(observations))
            args = [
                poller_id,
                text,
                int(ttl * 1000),
                int(heartbeat_ttl * 1000),
                len(metrics),
                *flat,
                len(waits_for),
                *waits_for,
            ]
            calls.append((keys, args))
        replies, _ = self.run_scripts(self._record, calls)
        out = []
        for (pool, round_, _, _), raw in zip(records, replies, strict=True):
            expected = self.record_keys(pool, round_)
            reply = self.checked(raw, expected)
            if isinstance(reply, BadKey):
                self.problems.bad(reply)
                continue
            self.problems.good(*(key for key, _ in expected))
            live, reported, committed = reply
            out.append(RoundRecord(pool, round_, int(live), int(reported), int(committed)))
        return out

    def run_scripts(
        self,
        script: Any,
        calls: Sequence[tuple[list[str], list[Any]]],
        confirm_ms: int | None = None,
    ) -> tuple[list[Any], list[int | None]]:
        """Run ``script`` once per (keys, args) in one round trip (per shard on a Cluster);
        each reply, or the error in its place. With ``confirm_ms``, a shard that has replicas
        is also asked, at the end of the same round trip (the same connection, whose writes
        WAIT counts), how many replicas have the writes: per call that count, or None when
        not asked."""
        acks: list[int | None] = [None] * len(calls)
        if not self.is_cluster:
            done, acked = self.pipelined(self.client, script, calls, confirm_ms, "")
            return done, [acked] * len(calls)
        # redis-py's Cluster pipeline refuses scripts: one plain pipeline per master instead
        # (it loads the script where missing, e.g. on a just promoted replica).
        by_node: dict[str, list[int]] = {}
        nodes = {}
        for i, (keys, _) in enumerate(calls):
            node = self.client.get_node_from_key(keys[0])
            by_node.setdefault(node.name, []).append(i)
            nodes[node.name] = node
        replies: list[Any] = [None] * len(calls)
        for name, indexes in by_node.items():
            part = [calls[i] for i in indexes]
            try:
                done, acked = self.pipelined(
                    nodes[name].redis_connection, script, part, confirm_ms, name
                )
            except REDIS_DOWN_ERRORS as exc:
                done, acked = [exc] * len(indexes), None
            for i, reply in zip(indexes, done, strict=True):
                replies[i], acks[i] = reply, acked
        for i, reply in enumerate(replies):
            if isinstance(reply, (redis.exceptions.AskError, *REDIS_DOWN_ERRORS)):
                # A slot moved or its master changed: the Cluster client finds the new one.
                acks[i] = None
                try:
                    replies[i] = script(keys=calls[i][0], args=calls[i][1])
                except redis.ResponseError as exc:
                    replies[i] = exc
        return replies, acks

    def pipelined(
        self,
        client: Any,
        script: Any,
        calls: Sequence[tuple[list[str], list[Any]]],
        confirm_ms: int | None,
        node: str,
    ) -> tuple[list[Any], int | None]:
        """One pipeline of ``script`` calls on ``client`` (a Redis or one Cluster master, named
        ``node``), then WAIT where asked for and the master has replicas: the replies and the
        replicas' count (None: not asked)."""
        wait = confirm_ms is not None and self.replicas_at(node, client)
        pipe = client.pipeline(transaction=False)
        for keys, args in calls:
            script(keys=keys, args=args, client=pipe)
        if wait:
            pipe.execute_command("WAIT", 1, confirm_ms)
        done = list(pipe.execute(raise_on_error=False))
        if not wait:
            return done, None
        acked = done.pop()
        if isinstance(acked, Exception):  # the writes stand: only their confirmation failed
            unconfirmable(acked)
            return done, 0
        return done, int(acked)

    def record_keys(self, pool: str, round_: int) -> list[tuple[str, str]]:
        """KEYS of record_observation.lua, with their types."""
        return [
            (self.keys.observations(pool, round_), "hash"),
            (self.keys.pool_pollers(pool), "zset"),
            (self.keys.metrics(pool), "hash"),
            (self.keys.pool(pool), "hash"),
        ]

    def last_rounds(self, names: Sequence[str]) -> dict[str, int]:
        """Each pool's last committed round, in one pipeline; a pool that is gone or whose
        hash is unreadable is left out (``load_round`` then says which)."""
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hget(self.keys.pool(name), "round")
        out = {}
        for name, raw in zip(names, pipe.execute(raise_on_error=False), strict=True):
            try:
                out[name] = int(raw)
            except (TypeError, ValueError):  # None (gone), an error reply, or not a number
                continue
        return out

    def load_round(
        self, names: Sequence[tuple[str, int]]
    ) -> list[tuple[PoolState | BadKey | None, Reports]]:
        """For each (pool, round): the pool (None if removed, BadKey if unreadable) and every
        poller's observations of that round."""
        pipe = self.client.pipeline(transaction=False)
        for name, round_ in names:
            pipe.hgetall(self.keys.pool(name))
            pipe.hgetall(self.keys.observations(name, round_))
        raw = pipe.execute(raise_on_error=False)
        out: list[tuple[PoolState | BadKey | None, Reports]] = []
        for i, (name, round_) in enumerate(names):
            pool = self.pool_of(name, raw[2 * i])
            obs_key = self.keys.observations(name, round_)
            reports = self.checked(raw[2 * i + 1], [(obs_key, "hash")])
            if isinstance(reports, BadKey):
                out.append((pool if pool is None else self.problems.bad(reports), {}))
                continue
            out.append((pool, decode_reports(reports, self.recorded_report(name, round_))))
        return out

    def recorded_report(self, pool: str, round_: int) -> tuple[str, bytes, Report] | None:
        """The report of ``pool``'s round this store recorded last, if that round: (poller,
        text, observations)."""
        recorded = self._recorded.get(pool)
        if recorded is None or recorded[0] != round_:
            return None
        return recorded[1:]

    def heartbeat(
        self,
        poller_id: str,
        info: dict[str, Any] | None,
        now: float,
        ttl: float,
        live_for: float | None = None,
        observer: bool = False,
    ) -> None:
        """Keep the heartbeat document ``info`` ``ttl`` seconds (None: leave it as it is, only
        say the poller lives) and the poller live for ``live_for`` (default ``ttl``); an
        ``observer`` (a poller not pinned to named pools) is also one of the pollers pools are
        assigned over.

        ``now`` is the default clock's (``server_time()``), unlike the pools' own pollers
        zsets, which their scripts stamp by their shard's clock: ``ns:pollers`` and
        ``ns:observers`` are read against that one clock by every poller and mpp-admin, so a
        poller's liveness never depends on which shard judges it."""
        live_for = ttl if live_for is None else live_for
        expiry = (now + live_for) * 1000
        forgotten = f"({int((now - FORGET_POLLER_AFTER) * 1000)}"
        pipe = self.client.pipeline(transaction=False)
        if info is not None:
            pipe.set(self.keys.poller(poller_id), json.dumps(info), px=int(ttl * 1000))
        pipe.zadd(self.keys.pollers(), {poller_id: expiry})
        pipe.zremrangebyscore(self.keys.pollers(), "-inf", forgotten)
        expected = [(self.keys.poller(poller_id), "string"), (self.keys.pollers(), "zset")]
        if observer:
            pipe.zadd(self.keys.observers(), {poller_id: expiry})
            pipe.zremrangebyscore(self.keys.observers(), "-inf", forgotten)
            expected.append((self.keys.observers(), "zset"))
        replies = pipe.execute(raise_on_error=False)
        errors = [r for r in replies if isinstance(r, Exception)]
        if errors:
            self.problems.bad(self.key_error(errors[0], expected))
        else:
            self.problems.good(*(key for key, _ in expected))

    def leave(self, poller_id: str, pools: Iterable[str]) -> None:
        """A poller stopping gracefully: it stops counting as live at once (a pool whose
        pollers key is unusable keeps it until its heartbeat expires)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(self.keys.poller(poller_id))
        pipe.zrem(self.keys.pollers(), poller_id)
        pipe.zrem(self.keys.observers(), poller_id)
        for pool in pools:
            pipe.zrem(self.keys.pool_pollers(pool), poller_id)
        pipe.execute(raise_on_error=False)

    def observer_beats(self) -> dict[str, float]:
        """The pollers pools are assigned over: poller id -> heartbeat expiry (Redis time, s),
        expired ones included (the assignment decides what counts as live)."""
        key = self.keys.observers()
        try:
            members = self.client.zrange(key, 0, -1, withscores=True)
        except redis.ResponseError as exc:
            raise self.key_error(exc, [(key, "zset")]) from None
        return {m.decode(): float(score) / 1000 for m, score in members}

    def pollers(self) -> list[PollerInfo]:
        """Every poller that sent a heartbeat (BadKey if the pollers zset is unusable); a
        heartbeat that cannot be read is reported in its PollerInfo's ``problem``."""
        now_ms = self.server_time() * 1000
        key = self.keys.pollers()
        try:
            members = self.client.zrange(key, 0, -1, withscores=True)
        except redis.ResponseError as exc:
            raise self.key_error(exc, [(key, "zset")]) from None
        if not members:
            return []
        ids = [m.decode() for m, _ in members]
        keys = [self.keys.poller(i) for i in ids]
        # Heartbeat documents live in many slots of a Cluster: read them slot by slot there.
        infos = self.client.mget_nonatomic(keys) if self.is_cluster else self.client.mget(keys)
        out = []
        for poller_id, (_, score), raw in zip(ids, members, infos, strict=True):
            info, problem = decode_heartbeat(raw)
            if problem:
                problem = f"{self.keys.poller(poller_id)} {problem}"
            out.append(PollerInfo(poller_id, score > now_ms and raw is not None, info, problem))
        return out

    # ----------------------------------------------------------------- mpp-hooks

    def join_hook_group(self, pools: Iterable[str], group: str) -> set[str]:
        """Create ``group`` on each pool's events stream, from its next event on (a group
        that exists already keeps its position); the pools whose stream has the group. A pool
        without a stream (removed meanwhile) is left out rather than given a stray one."""
        joined = set()
        for pool in pools:
            key = self.keys.events(pool)
            try:
                self.client.xgroup_create(key, group, id="$")
            except redis.ResponseError as exc:
                if "requires the key to exist" in str(exc):
                    continue
                if "BUSYGROUP" not in str(exc):
                    raise self.key_error(exc, [(key, "stream")]) from None
            joined.add(pool)
        return joined

    def read_hook_events(
        self, pool: str, group: str, consumer: str, count: int
    ) -> list[tuple[str, dict[str, Any] | None]]:
        """Up to ``count`` events of a pool never delivered to ``group``, now this consumer's
        (pending until acknowledged); an unreadable entry as None."""
        key = self.keys.events(pool)
        try:
            reply = self.client.xreadgroup(group, consumer, {key: ">"}, count=count)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # the stream went away with its pool, or was replaced
                self.join_hook_group([pool], group)
                return []
            raise self.key_error(exc, [(key, "stream")]) from None
        return [row for _, rows in reply for row in hook_rows(key, rows)]

    def claim_hook_events(
        self, pool: str, group: str, consumer: str, idle: float, count: int
    ) -> list[tuple[str, dict[str, Any] | None]]:
        """Events of ``group`` pending for over ``idle`` seconds on another consumer (one that
        died, or hangs), now this consumer's (XAUTOCLAIM)."""
        key = self.keys.events(pool)
        try:
            reply = self.client.xautoclaim(key, group, consumer, int(idle * 1000), "0-0", count)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):
                return []
            raise self.key_error(exc, [(key, "stream")]) from None
        return hook_rows(key, [r for r in reply[1] if r and r[1] is not None])

    def touch_hook_event(self, pool: str, group: str, consumer: str, event_id: str) -> None:
        """Reset the idle time of an event this consumer is still handling, so that no other
        consumer claims it meanwhile."""
        self.client.xclaim(self.keys.events(pool), group, consumer, 0, [event_id], justid=True)

    def ack_hook_event(self, pool: str, group: str, event_id: str) -> None:
        self.client.xack(self.keys.events(pool), group, event_id)

    def dead_letter(self, record: dict[str, Any]) -> None:
        """Keep an event whose hook kept failing (``mpp-admin hooks`` shows them)."""
        self.client.xadd(
            self.keys.hooks_dead(),
            {"record": json.dumps(record, separators=(",", ":"))},
            maxlen=EVENTS_MAXLEN,
            approximate=True,
        )

    def dead_letters(self, count: int) -> list[tuple[str, dict[str, Any]]]:
        """The newest ``count`` dead letters, oldest first (an unreadable one as its text)."""
        key = self.keys.hooks_dead()
        try:
            rows = self.client.xrevrange(key, count=count)
        except redis.ResponseError as exc:
            raise self.key_error(exc, [(key, "stream")]) from None
        out = []
        for rid, fields in reversed(rows):
            raw = fields.get(b"record", b"")
            try:
                record = json.loads(raw)
            except ValueError:
                record = {"unreadable": raw.decode(errors="replace")[:200]}
            out.append((rid.decode(), record if isinstance(record, dict) else {"record": record}))
        return out

    def dead_letter_count(self) -> int:
        return int(self.client.xlen(self.keys.hooks_dead()))

    def hook_groups(self, pools: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """Per pool, its events stream's consumer groups: name, consumers, pending, last id."""
        out: dict[str, list[dict[str, Any]]] = {}
        for pool in pools:
            try:
                groups = self.client.xinfo_groups(self.keys.events(pool))
            except redis.ResponseError:
                groups = []  # no stream yet (no event since the pool was created)
            out[pool] = [
                {
                    "group": g["name"].decode() if isinstance(g["name"], bytes) else g["name"],
                    "consumers": g["consumers"],
                    "pending": g["pending"],
                    "last_delivered": g["last-delivered-id"].decode()
                    if isinstance(g["last-delivered-id"], bytes)
                    else g["last-delivered-id"],
                }
                for g in groups
            ]
        return out


def decode_pool(key: str, name: str, raw: dict[bytes, bytes]) -> PoolState | None:
    """The pool of a raw pool hash; None if absent; BadKey if unreadable."""
    if not raw or b"doc" not in raw:
        return None
    try:
        version, round_ = int(raw[b"version"]), int(raw[b"round"])
    except (KeyError, ValueError) as exc:
        raise BadKey(key, f"holds an unreadable pool hash: {exc!r}") from None
    try:
        pool = pool_from_doc(raw[b"doc"], version, round_, name)
    except DocumentError as exc:
        raise BadKey(key, f"holds an {exc}") from None
    if pool.name != name:
        raise BadKey(key, f"holds the document of pool {pool.name!r}")
    return pool


def decode_reports(
    raw: dict[bytes, bytes], known: tuple[str, bytes, Report] | None = None
) -> Reports:
    """Every poller's readable observations of a round; an unreadable report is left out.
    ``known``: a (poller, text, observations) whose text need not be decoded again when it is
    the one stored."""
    reports = {}
    for poller, text in raw.items():
        if known is not None and text == known[1] and poller.decode() == known[0]:
            reports[known[0]] = known[2]
            continue
        try:
            reports[poller.decode()] = observations_from_json(text)
        except DocumentError as exc:
            log.error("ignoring the report of poller %s: %s", poller.decode(), exc)
    return reports


def decode_events(key: str, rows: Iterable[Any]) -> list[tuple[str, dict[str, Any]]]:
    """The readable events of stream rows; a garbage entry is logged (once a minute) and left
    out, so one bad entry never hides a pool's history."""
    out = []
    for rid, fields in rows:
        try:
            out.append((rid.decode(), event_from_json(fields.get(b"event", b""))))
        except DocumentError as exc:
            UNREADABLE_LOG.note(f"skipping entries of {key}", f"{rid!r}: {exc}")
    return out


def hook_rows(key: str, rows: Iterable[Any]) -> list[tuple[str, dict[str, Any] | None]]:
    """Stream rows for mpp-hooks: every id, with its event or None if unreadable (logged by
    decode_events), so that a garbage entry is acknowledged rather than read again forever."""
    out: list[tuple[str, dict[str, Any] | None]] = []
    for rid, fields in rows:
        decoded = decode_events(key, [(rid, fields)])
        out.append((rid.decode(), decoded[0][1] if decoded else None))
    return out


def decode_metrics(raw: dict[bytes, bytes]) -> dict[str, dict[str, Any]]:
    """node -> its metrics; an entry that is not a JSON object is left out (metrics are only
    shown, never decided on)."""
    out = {}
    for node, text in raw.items():
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict):
            out[node.decode(errors="replace")] = data
    return out


def decode_heartbeat(raw: bytes | None) -> tuple[dict[str, Any], str]:
    """A poller's heartbeat info and, if it cannot be read, what is wrong."""
    if raw is None:
        return {}, ""
    try:
        info = json.loads(raw)
    except ValueError as exc:
        return {}, f"is not JSON: {exc}"
    if not isinstance(info, dict):
        return {}, "is not a JSON object"
    return info, ""
