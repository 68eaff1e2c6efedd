"""compose/: checked without Docker (none runs here): the YAML parses, every file it mounts or
builds from exists, the commands of our services are console scripts of the package called with
options their ``--help`` lists, the pool's nodes are what HAProxy's agent-send names, and the
HAProxy config it mounts, haproxy/haproxy.cfg itself, passes ``haproxy -c``."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.servers import require_binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = ROOT / "compose"
COMPOSE = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
OURS = [name for name, svc in SERVICES.items() if "build" in svc]


def test_services_are_the_system() -> None:
    assert {"db1", "db2", "redis", "poller1", "poller2", "agent", "haproxy"} <= set(SERVICES)
    assert set(OURS) == {"pool-init", "poller1", "poller2", "agent"}


def test_build_context_and_dockerfile_exist() -> None:
    for name in OURS:
        build = SERVICES[name]["build"]
        context = (COMPOSE_DIR / build["context"]).resolve()
        assert context == ROOT
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file()
        text = dockerfile.read_text()
        sources = [
            path
            for line in re.findall(r"^COPY (.+)$", text, re.MULTILINE)
            for path in line.split()[:-1]
        ]
        assert "pyproject.toml" in sources and "README.md" in sources  # pyproject's readme
        ignore = dockerfile.with_name(dockerfile.name + ".dockerignore").read_text()
        for path in sources:
            assert (context / path).exists(), path
            assert f"!{path}" in ignore, f"{path} is excluded from the build context"
        assert "pip install" in text


def bind_sources() -> list[tuple[str, Path]]:
    out = []
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                out.append((name, (COMPOSE_DIR / source).resolve()))
    return out


def test_every_mounted_file_and_secret_exists() -> None:
    mounts = bind_sources()
    assert mounts
    for service, path in mounts:
        assert path.exists(), f"{service} mounts {path}, which does not exist"
    for name, secret in COMPOSE["secrets"].items():
        assert (COMPOSE_DIR / secret["file"]).is_file(), name
    for svc in SERVICES.values():
        for secret in svc.get("secrets", []):
            assert secret in COMPOSE["secrets"]


def test_init_script_is_sourced_shell_that_parses() -> None:
    script = COMPOSE_DIR / "mariadb" / "10-mpp-replication.sh"
    # The MariaDB entrypoint sources non-executable .sh files (docker_process_sql is only
    # defined then); an executable one would run in a subshell without it.
    assert not script.stat().st_mode & 0o111
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    for grant in ("SLAVE MONITOR, BINLOG MONITOR, PROCESS ON *.*", "SELECT ON mppmon.*"):
        assert grant in text
    assert "CREATE TABLE mppmon." in text  # the poller needs a table in its database


@cache
def help_text(*words: str) -> str:
    done = subprocess.run(
        [*words, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def commands(svc: dict[str, Any]) -> list[list[str]]:
    """The command lines a service runs: a list as it is, or each side of a ``sh -c`` ``||``."""
    command = svc["command"]
    if command[:2] == ["sh", "-c"]:
        return [shlex.split(part) for part in command[2].split("||")]
    return [command]


def check_options(argv: list[str]) -> None:
    script = argv[0]
    assert script in SCRIPTS, f"{script} is not a console script of the package"
    # mpp-admin's subcommands come before the options; their --help lists their options.
    words = [script]
    if script == "mpp-admin":
        words += argv[1:3] if argv[1] == "pool" else argv[1:2]
    text = help_text(*words)
    for option in (w.split("=")[0] for w in argv if w.startswith("--")):
        assert re.search(rf"{re.escape(option)}\b", text), f"{option} not in {' '.join(words)}"


@pytest.mark.parametrize("service", OURS)
def test_our_commands_use_console_scripts_and_known_options(service: str) -> None:
    for argv in commands(SERVICES[service]):
        check_options(argv)


def test_environment_names_are_what_the_scripts_read() -> None:
    env = SERVICES["poller1"]["environment"]
    assert set(env) == {"MPP_REDIS_URL", "MPP_NAMESPACE"}
    for script in ("mpp-poller", "mpp-agent"):
        text = help_text(script)
        assert "MPP_REDIS_URL" in text and "MPP_NAMESPACE" in text


def test_secrets_are_files_never_arguments() -> None:
    for name in ("poller1", "poller2"):
        argv = SERVICES[name]["command"]
        assert "--mysql-password-file=/run/secrets/mysql_monitor_password" in argv
        assert not any("password=" in w.lower() for w in argv if "file" not in w)


def test_haproxy_mounts_the_shipped_config_and_the_pool_matches_it() -> None:
    haproxy = SERVICES["haproxy"]
    (mount,) = haproxy["volumes"]
    source, target = mount.split(":")[:2]
    assert (COMPOSE_DIR / source).resolve() == ROOT / "haproxy" / "haproxy.cfg"
    assert target == "/usr/local/etc/haproxy/haproxy.cfg"
    cfg = (ROOT / "haproxy" / "haproxy.cfg").read_text()
    # The nodes HAProxy names to the agent are the pool's node ids and the databases' addresses.
    sent = set(re.findall(r'agent-send "(\S+) (\S+) (?:rw|ro)\\n"', cfg))
    create = commands(SERVICES["pool-init"])[1]
    pool = create[create.index("create") + 1]
    nodes = {create[create.index("--primary") + 1], create[create.index("--secondary") + 1]}
    assert sent == {(pool, node) for node in nodes}
    addresses = {f"{SERVICES[db]['networks']['mpp']['ipv4_address']}:3306" for db in ("db1", "db2")}
    assert addresses == nodes
    # agent-addr 127.0.0.1: the agent must live in HAProxy's network namespace.
    assert "agent-addr 127.0.0.1 agent-port 9777" in cfg
    assert SERVICES["agent"]["network_mode"] == "service:haproxy"
    assert "--listen=127.0.0.1:9777" in SERVICES["agent"]["command"]
    # The pool settings the budget is computed for.
    assert create[create.index("--interval") + 1] == "1"
    assert create[create.index("--max-requests") + 1] == "4"


def test_the_mounted_haproxy_config_passes_haproxy_check() -> None:
    (mount,) = SERVICES["haproxy"]["volumes"]
    path = (COMPOSE_DIR / mount.split(":")[0]).resolve()
    done = subprocess.run(
        [require_binary("haproxy"), "-c", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_network_leaves_the_node_addresses_free() -> None:
    (ipam,) = COMPOSE["networks"]["mpp"]["ipam"]["config"]
    assert ipam["subnet"] == "10.0.0.0/24"
    used = {
        svc["networks"]["mpp"]["ipv4_address"]
        for svc in SERVICES.values()
        if isinstance(svc.get("networks"), dict)
    }
    assert ipam["gateway"] not in used
