"""The Redis URL forms every command accepts, against real servers: unix:// and Sentinel."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from mpp_agent.config import parse_failoverpool
from mpp_agent.store import Store, StoreError, redact_url
from tests.servers import free_port, require_binary, short_tempdir, spawn, terminate, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = short_tempdir("mppu")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_redis(workdir: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1"]
    argv += ["--dir", str(workdir), "--save", "", "--appendonly", "no", *extra]
    proc = spawn(argv, workdir / f"redis-{port}.log")
    client = redis.Redis(port=port)
    wait_until(lambda: ping(client), 10, f"redis on {port}")
    return proc, port


def ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def round_trip(store: Store) -> None:
    """What every command does first: create, read and change a pool."""
    store.create_pool(parse_failoverpool("name:u1;primary:10.0.0.1;secondary:10.0.0.2"))
    assert store.pool_names() == ["u1"]
    assert [str(n.node) for n in store.load_pool("u1").nodes] == ["10.0.0.1:3306", "10.0.0.2:3306"]


def test_unix_socket_url(workdir: Path) -> None:
    sock = workdir / "r.sock"
    proc, _ = start_redis(workdir, "--unixsocket", str(sock), "--unixsocketperm", "700")
    try:
        round_trip(Store.from_url(f"unix://{sock}?db=0", "mpp"))
    finally:
        terminate(proc)


def test_sentinel_url_follows_the_master(workdir: Path) -> None:
    master, port = start_redis(workdir)
    sentinel_port = free_port()
    conf = workdir / "sentinel.conf"
    conf.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {workdir}\n"
        f"sentinel monitor mymaster 127.0.0.1 {port} 1\n"
    )
    sentinel = spawn(
        [require_binary("redis-server"), str(conf), "--sentinel"], workdir / "sentinel.log"
    )
    try:
        wait_until(lambda: ping(redis.Redis(port=sentinel_port)), 10, "sentinel")
        url = f"redis+sentinel://127.0.0.1:{sentinel_port}/mymaster/0"
        store = Store.from_url(url, "mpp")
        round_trip(store)
        direct = redis.Redis(port=port)
        assert direct.sismember("mpp:pools", "u1")  # it really wrote to the master
    finally:
        terminate(sentinel)
        terminate(master)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/0",
        "redis+sentinel:///mymaster/0",
        "redis+sentinel://127.0.0.1:notaport/mymaster/0",
        "redis+sentinel://127.0.0.1:26379",
    ],
)
def test_bad_urls_are_clear_errors(url: str) -> None:
    with pytest.raises(StoreError) as info:
        Store.from_url(url, "mpp")
    assert "redis" in str(info.value).lower()


def test_redact_url_hides_the_password() -> None:
    assert redact_url("redis://:hunter2@10.0.0.9:6379/0") == "redis://:***@10.0.0.9:6379/0"
    assert redact_url("rediss://app:hunter2@r:6380/1") == "rediss://app:***@r:6380/1"
    assert redact_url("redis://10.0.0.9:6379/0") == "redis://10.0.0.9:6379/0"
    assert (
        redact_url("redis://r:6379/0?password=hunter2&db=1") == "redis://r:6379/0?password=***&db=1"
    )


def test_rediss_url_over_tls(workdir: Path) -> None:
    openssl = require_binary("openssl")
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    port = free_port()
    argv = [require_binary("redis-server"), "--port", "0", "--tls-port", str(port)]
    argv += ["--bind", "127.0.0.1", "--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    argv += ["--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no", "--save", ""]
    proc = spawn(argv, workdir / "tls.log")
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    try:
        store = Store.from_url(url, "mpp")
        wait_until(lambda: tls_ping(store), 10, "redis over TLS")
        round_trip(store)
    finally:
        terminate(proc)


def tls_ping(store: Store) -> bool:
    try:
        return bool(store.client.ping())
    except redis.ConnectionError:
        return False
