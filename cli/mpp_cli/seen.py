"""mpp-admin's memory of the newest pool versions it has shown, to tell a rollback.

A small JSON file, ``$XDG_CACHE_HOME/mpp-admin/seen.json`` (``~/.cache/mpp-admin/seen.json``
by default): for each Redis (its redacted URL), namespace and pool, the incarnation and the
highest version ``list`` has read. A lower version of the same incarnation is a rollback
(``adoption.py``); ``list`` says so on the pool. Losing or deleting the file forgets nothing
that matters: it is only ever a warning. An unreadable file is started afresh; one that
cannot be written is ignored (mpp-admin never fails for its cache).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from mpp_agent.adoption import Seen, backwards_text, went_backwards
from mpp_agent.model import PoolState


def seen_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mpp-admin" / "seen.json"


def load(path: Path) -> dict[str, dict[str, object]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def seen_of(entry: object) -> Seen | None:
    if not isinstance(entry, dict):
        return None
    incarnation, version = entry.get("incarnation"), entry.get("version")
    if not isinstance(incarnation, str) or type(version) is not int:
        return None
    return Seen(incarnation, version)


def check_versions(redis: str, namespace: str, pools: Iterable[PoolState]) -> dict[str, str]:
    """Pool name -> "state went backwards: ..." for each pool older than last seen; the
    newest versions are remembered."""
    path = seen_path()
    data = load(path)
    backwards = {}
    for pool in pools:
        key = f"{redis} {namespace} {pool.name}"
        seen = seen_of(data.get(key))
        if seen is not None and went_backwards(seen, pool):
            backwards[pool.name] = backwards_text(pool, seen)
            continue
        data[key] = {"incarnation": pool.incarnation, "version": pool.version}
    save(path, data)
    return backwards


def save(path: Path, data: dict[str, dict[str, object]]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as tmp:
            json.dump(data, tmp)
        os.replace(tmp.name, path)
    except OSError:
        pass
