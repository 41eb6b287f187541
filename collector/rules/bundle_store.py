"""Where the collector keeps the ruleset bundle it serves, and the history of publications.

``BundleStore`` holds the current bundle in one file replaced atomically (an agent never
fetches half of one) and appends each publication to ``history.jsonl`` beside it (fsynced;
the UI's rulesets page lists it). ``etag`` is the tag agents poll with;
``current_etag`` the tag of the bundle served now (what agents should run).
The HTTP side is ``collector.rules.publish``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from wire.files import write_atomically


class BundleStore:
    """The bundle agents get, in one file replaced atomically."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "current.bundle"
        # every bundle published here, one JSON line each (name, version, etag, by, when)
        self.history_path = directory / "history.jsonl"

    def current(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def replace(self, data: bytes, entry: dict[str, Any] | None = None) -> None:
        write_atomically(self.path, data, 0o600)
        if entry is not None:
            with self.history_path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
                f.flush()
                os.fsync(f.fileno())

    def history(self) -> list[dict[str, Any]]:
        """The bundles published, newest first."""
        try:
            lines = self.history_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in reversed(lines) if line.strip()]


def etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


def current_etag(store: BundleStore | None) -> str | None:
    """The ETag of the bundle ``store`` serves, None without a store or a bundle (reads the file)."""
    data = store.current() if store is not None else None
    return etag(data) if data is not None else None
