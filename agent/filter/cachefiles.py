"""Files a compiled ruleset leaves beside itself for the next start: how they are kept.

Two kinds share a cache directory (`[filter] cache_dir`): the pattern tables built from the
keywords (`agent.filter.compiled`, `<hash>.tables`) and the compiled Vectorscan database
(`agent.filter.vectorscan`, `<hash>.vsdb`). Each is written whole or not at all
(`wire.files.write_atomically`), marked used whenever it is loaded, and of each kind only
the `keep` most recently used files stay: a ruleset that comes back (a rollback, a test
ruleset) is found again, an old one goes.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from wire.files import write_atomically


def store(cache_dir: Path, name: str, data: bytes, keep: int) -> None:
    """Write `data` as `cache_dir/name`, then keep only the `keep` newest files with its
    suffix. Raises OSError when the directory or the file cannot be written."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / name
    write_atomically(path, data)
    files = sorted(cache_dir.glob(f"*{path.suffix}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in files[keep:]:
        old.unlink(missing_ok=True)


def mark_used(path: Path) -> None:
    """`path` was just loaded: the newest are the ones kept. A read-only cache still serves."""
    with contextlib.suppress(OSError):
        os.utime(path)
