"""Files a compiled ruleset leaves beside itself for the next start: how they are kept.

Two kinds share a cache directory (`[filter] cache_dir`): the pattern tables built from the
keywords (`agent.filter.compiled`, `<hash>.tables`) and the compiled Vectorscan database
(`agent.filter.vectorscan`, `<hash>.vsdb`). Each is written whole or not at all
(`wire.files.write_atomically`), marked used whenever it is loaded, and of each kind only
the `keep` most recently used files stay: a ruleset that comes back (a rollback, a test
ruleset) is found again, an old one goes.

Compiling into a directory is done under its lock (`compile_lock`): the capture workers of
one agent are offered the same update at once, and each compiles it on a thread of its own.
Without the lock each would build the same 100,000-keyword database (~10 s of a core and
~270 MiB each) while capture runs beside them; with it the first compiles and saves, and
the others, waiting for it, load what it saved in milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
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


LOCK_NAME = ".compile.lock"


@contextlib.contextmanager
def compile_lock(cache_dir: Path | None) -> Iterator[None]:
    """Hold `cache_dir`'s lock (an advisory `flock` on a file in it, freed if the holder
    dies) while loading or building what it caches; no cache (None), no lock. A directory
    where the lock cannot be made (read-only, absent and not creatable) is used without it:
    the worst case is the same work done twice, never an error."""
    fd = -1
    if cache_dir is not None:
        with contextlib.suppress(OSError):
            cache_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(cache_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if fd >= 0:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)  # blocks this thread only: the call releases the GIL
            except OSError:
                os.close(fd)
                fd = -1
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # (closing the descriptor releases the lock)
