"""The documentation stands alone: every link and every file it names is in the repository.

Covers README.md, docs/, haproxy/, compose/, bench/ and packaging/: markdown links
(``[text](path)``) and file names written in the text (``haproxy/haproxy.cfg``,
``scripts/demo.py``, ``admin.md``), resolved from the file's directory or from the repository
root. Absolute paths (``/tmp/...``, ``/etc/mpp/...``) are examples of the operator's machine and
are not checked. The code, tests, scripts and configuration files tracked by git do not name the
design documents kept outside the repository either.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.servers import unavailable

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = sorted(
    [ROOT / "README.md"]
    + list((ROOT / "docs").glob("*.md"))
    + [
        p
        for d in ("haproxy", "compose", "bench", "packaging")
        for p in (ROOT / d).rglob("*")
        if p.is_file()
    ]
)
TEXT_FILES = [p for p in DOC_FILES if "secrets" not in p.parts]

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# A file name as docs write one: a relative path with an extension of a file kind we ship.
FILE_NAME = re.compile(
    r"(?<![\w/.:@-])((?:[\w.-]+/)*[\w.-]+\.(?:md|py|cfg|yaml|yml|sh|lua|sim|jsonl|toml))\b"
)
NOT_IN_REPO = ("mpp-behaviour", "architecture.md", "haproxy-agent", "local-topology", "/work/")
# Where comments and docstrings could point to those documents: what git tracks under these
# folders, in these kinds of text file (``.sim``: the simulate scripts of tests/scripts).
CODE_DIRS = ("mpp_agent", "cli", "tests", "scripts", "haproxy", "compose")
CODE_SUFFIXES = (".py", ".lua", ".md", ".cfg", ".yml", ".yaml", ".sh", ".toml", ".sim")
# The documents of NOT_IN_REPO, and how comments also spelled two of them: "architecture 2.8",
# "architecture: ...", "house-style rule 1", "house style rule 6".
DOCUMENT = re.compile(
    "|".join(re.escape(n) for n in NOT_IN_REPO if n != "/work/")
    + r"|\barchitecture(?::|\s+\d|\s+sections?\b)|\bhouse[- ]style\b",
    re.IGNORECASE,
)


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def resolves(target: str, source: Path) -> bool:
    for base in (source.parent, ROOT):
        candidate = (base / target).resolve()
        if candidate.is_relative_to(ROOT) and candidate.exists():
            return True
    return False


def tracked_code_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--", *CODE_DIRS],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    paths = (ROOT / name for name in listed.split("\0") if name.endswith(CODE_SUFFIXES))
    return sorted(p for p in paths if p.is_file() and p != Path(__file__).resolve())


def links(path: Path) -> list[str]:
    text = path.read_text(errors="replace")
    found = [m.group(1) for m in LINK.finditer(text)]
    return [t.split("#", 1)[0] for t in found if not re.match(r"[a-z]+:|#", t)]


def file_names(path: Path) -> list[str]:
    text = path.read_text(errors="replace")
    names = {m.group(1) for m in FILE_NAME.finditer(text)}
    # ".venv/bin/python bench/x.py" names bench/x.py; "python3.11" and "e.g." are not files
    return sorted(
        n for n in names if not n.startswith(".venv/") and ("/" in n or n.endswith(".md"))
    )


@pytest.mark.parametrize("path", TEXT_FILES, ids=rel)
def test_every_link_resolves_inside_the_repository(path: Path) -> None:
    broken = [t for t in links(path) if t and not resolves(t, path)]
    assert broken == [], f"{rel(path)} links to files not in the repository: {broken}"


@pytest.mark.parametrize("path", TEXT_FILES, ids=rel)
def test_every_file_named_exists_in_the_repository(path: Path) -> None:
    missing = [n for n in file_names(path) if not resolves(n, path)]
    assert missing == [], f"{rel(path)} names files not in the repository: {missing}"


@pytest.mark.parametrize("path", TEXT_FILES, ids=rel)
def test_no_reference_to_documents_outside_the_repository(path: Path) -> None:
    text = path.read_text(errors="replace")
    assert [n for n in NOT_IN_REPO if n in text] == []


def test_code_and_tests_name_no_document_outside_the_repository() -> None:
    if not (ROOT / ".git").exists():
        # CI runs on a clone: a missing checkout must not pass unnoticed.
        unavailable("not a git checkout", "not a git checkout: the tracked files cannot be listed")
    files = tracked_code_files()
    # the listing sees the code (a check that read no file would pass vacuously)
    assert {ROOT / "mpp_agent" / "state.py", ROOT / "haproxy" / "haproxy.cfg"} <= set(files)
    found = [
        f"{rel(path)}:{number}: {match.group(0)}"
        for path in files
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        for match in DOCUMENT.finditer(line)
    ]
    assert found == [], f"comments or docstrings name documents not in the repository: {found}"


def test_the_checks_see_links_and_file_names() -> None:
    """The patterns find what the docs write (a check that found nothing would pass vacuously)."""
    readme = ROOT / "README.md"
    assert "docs/admin.md" in links(readme)
    assert "scripts/demo.py" in file_names(readme)
    assert "../haproxy/haproxy.cfg" in links(ROOT / "docs" / "admin.md")
    assert "rules.md" in file_names(ROOT / "docs" / "simulate.md")
    assert not resolves("mpp-behaviour.md", readme)
    assert not resolves("../../etc/passwd", readme)
