"""Packaging: the systemd units pass ``systemd-analyze verify``, and the sdist and wheel build and
install into a fresh virtualenv whose every console script answers ``--version``."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mpp_agent import __version__
from tests.servers import require_binary

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNITS = sorted((ROOT / "packaging" / "systemd").glob("*.service"))
SCRIPTS = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
BIN = Path(sys.executable).parent
HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes")


def test_every_daemon_has_a_unit() -> None:
    daemons = {s for s in SCRIPTS if s != "mpp-admin"}
    assert {u.stem for u in UNITS} == daemons


@pytest.mark.parametrize("unit", UNITS, ids=[u.stem for u in UNITS])
def test_unit_verifies_and_runs_the_command_confined(unit: Path, tmp_path: Path) -> None:
    text = unit.read_text()
    for line in ("User=mpp", "Restart=always", *HARDENING):
        assert f"\n{line}\n" in text, line
    assert re.search(rf"^ExecStart=/opt/mpp-agent/bin/{unit.stem}$", text, re.M)
    # systemd-analyze checks that ExecStart is executable: point it at this venv's command.
    local = tmp_path / unit.name
    local.write_text(text.replace("/opt/mpp-agent/bin/", f"{BIN}/"))
    analyze = require_binary("systemd-analyze")
    done = subprocess.run(
        [analyze, "verify", str(local)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert unit.stem in done.stdout + done.stderr or not (done.stdout + done.stderr).strip()


@pytest.mark.parametrize("unit", UNITS, ids=[u.stem for u in UNITS])
def test_the_environment_example_names_only_real_settings(unit: Path) -> None:
    env_file = re.search(r"^EnvironmentFile=/etc/mpp/(\S+)$", unit.read_text(), re.M)
    assert env_file is not None
    example = unit.with_name(env_file.group(1)).read_text()
    names = set(re.findall(r"^#? ?(MPP_[A-Z_]+)=", example, re.M))
    assert names
    shown = subprocess.run(
        [str(BIN / unit.stem), "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    documented = set(re.findall(r"MPP_[A-Z_]+", shown))
    assert names <= documented, names - documented


def test_sdist_and_wheel_install_into_a_fresh_virtualenv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    # python -m build makes the sdist, then the wheel from that sdist: an incomplete sdist fails.
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    [sdist] = dist.glob("*.tar.gz")
    [wheel] = dist.glob("*.whl")
    assert __version__ in sdist.name and __version__ in wheel.name
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)]
    subprocess.run(pip, check=True, timeout=600, capture_output=True)
    for script in SCRIPTS:
        done = subprocess.run(
            [str(venv / "bin" / script), "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{script}: {done.stderr}"
        assert __version__ in done.stdout, f"{script}: {done.stdout!r}"
    # The Lua scripts travel with the package: the installed store can load each of them.
    check = "from mpp_agent.store import load_script; print(len(load_script('commit_pool')))"
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", check],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    ).stdout
    assert int(out) > 100
    shutil.rmtree(venv)


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_names_the_environment_variable_of_every_option_that_has_one(script: str) -> None:
    # Every MPP_* variable a command reads appears in its --help (the source is the reference).
    module = {"mpp-admin": ROOT / "cli" / "mpp_cli", "mpp-agent": ROOT / "mpp_agent"}
    sources = {
        "mpp-poller": [ROOT / "mpp_agent" / "poller_main.py"],
        "mpp-agent": [ROOT / "mpp_agent" / "agent_main.py"],
        "mpp-hooks": [ROOT / "mpp_agent" / "hooks_main.py"],
    }.get(script, sorted(module.get(script, ROOT / "nowhere").glob("*.py")))
    read = set()
    for source in sources:
        read |= set(re.findall(r'"(MPP_[A-Z_]+)"', source.read_text()))
    shown = subprocess.run(
        [str(BIN / script), "--help"], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    documented = set(re.findall(r"MPP_[A-Z_]+", shown))
    assert read <= documented, read - documented
