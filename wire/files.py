"""Replacing a file atomically and durably: readers see the old content or the new, never a part.

Shared by every side that keeps a small state file (the collector's legal holds and published
ruleset bundle, the rules tool's signed bundles). It lives in `wire` because that is the one
package agent, collector and tools all import.

How: write a temporary file in the same directory, fsync it, rename it over the target
(`os.replace`, atomic on POSIX within one file system), then fsync the directory so the
rename itself survives a power loss. On any error the temporary file is removed and the
target is untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Make `path` hold exactly `data` (permissions `mode`), all or nothing."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
