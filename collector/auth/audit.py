"""The collector's append-only, hash-chained audit log of queries and exports.

What: `AuditLog(path).append(actor, action, target, detail, result)` writes one
entry per line (JSON Lines, UTF-8) and returns it; `verify(path, anchor)`
checks a whole file. An entry is the canonical JSON (sorted keys, no spaces,
UTF-8) of

    {"seq", "ts", "actor", "action", "target", "detail", "result", "prev", "hash"}

where seq counts from 1 (so entry seq N is line N), ts is UTC ISO 8601, prev is
the previous entry's hash (64 zeros for the first) and hash is the SHA-256 hex
of the canonical bytes of the entry without "hash".

Why:
  - Every query and export is appended *before* its results are returned, and
    `append` returns only after the line is fsync'ed: a query that returned
    results has a durable audit entry even if the machine dies right after. If
    the write or the fsync fails, `append` raises `AuditError` and the caller
    must fail the query (no audit, no results).
  - Each entry commits to its predecessor, so modifying, deleting, inserting or
    reordering any entry breaks the chain at that line, which `verify` reports.
  - After a failed write the file may end in a partial line and the kernel may
    have dropped the data of a failed fsync, so the log refuses all further
    appends (fail closed) until the collector is restarted and an operator has
    looked at `edgeaudit-collector audit verify`. Opening a log whose last line
    is damaged fails the same way, rather than chaining past it.
  - A lock serialises appends from the HTTP server's threads; an exclusive
    flock on the file keeps a second collector process from forking the chain.
  - Before each append the path is checked to still name the open file: an
    entry written to a deleted or rotated-away file would be lost silently.

Limits:
  - A chain alone cannot detect removal of the newest entries (truncating the
    file at a line boundary leaves a valid chain), nor a rewrite of the whole
    chain by someone who can write the file (SHA-256 is not keyed). Both are
    detected only against a *pin* kept elsewhere: `AuditLog.anchor()` /
    `VerifyResult.anchor` is "SEQ:HASH" of the last entry, and the running
    collector signs such a pair every few minutes and hands it to witnesses
    off the machine (`collector.auth.checkpoints`, `collector.auth.witness`).
    `verify(path, anchor, pins)` checks that each pinned entry SEQ still
    exists with that hash: a cut tail or a rewritten chain fails. What was
    appended after the newest pin is protected by the chain only.
  - One writer process per file (`AuditBusy` for the second); the file is
    never rotated by this module. The CLI reaches a running collector's log
    through `collector.auth.cli_channel`.
  - `verify` reads the whole file; it reports the first problem only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final, NamedTuple, TypedDict

GENESIS_PREV: Final = "0" * 64
FIELDS: Final = frozenset({"seq", "ts", "actor", "action", "target", "detail", "result", "prev", "hash"})
# Reading the last line at open: step back this many bytes at a time.
TAIL_CHUNK: Final = 64 * 1024
# Read and written by the collector's own user only (the log names who asked for what).
FILE_MODE: Final = 0o600


class AuditError(Exception):
    """The audit log cannot be written (or opened); the audited operation must fail."""


class AuditBusy(AuditError):
    """Another process (a running collector) holds the log's lock."""


class Pin(NamedTuple):
    """An entry's hash as recorded outside the log: the log must still hold it."""

    seq: int
    hash: str
    what: str  # where it comes from, for the message: "the anchor", "the checkpoint of <time>"


class AuditEntry(TypedDict):
    seq: int
    ts: str
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    result: str
    prev: str
    hash: str


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    entries: int  # entries that verified before the first problem (all of them when ok)
    problem: str | None
    line: int | None  # 1-based line of the first problem
    anchor: str | None = None  # "SEQ:HASH" of the last good entry, to keep elsewhere


def canonical(obj: dict[str, Any]) -> bytes:
    """The canonical bytes hashed and stored: sorted keys, no whitespace, UTF-8, no NaN."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode(
        "utf-8"
    )


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in entry.items() if k != "hash"})).hexdigest()


def _anchor(seq: int, digest: str) -> str:
    return f"{seq}:{digest}"


def _parse_anchor(anchor: str) -> tuple[int, str]:
    seq, sep, digest = anchor.partition(":")
    if not sep or not seq.isdigit() or len(digest) != len(GENESIS_PREV):
        raise ValueError(f"bad anchor {anchor!r} (expected SEQ:SHA256HEX)")
    return int(seq), digest.lower()


def _check_shape(entry: Any) -> str | None:
    """Why `entry` is not a well-formed entry, or None."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    if set(entry) != FIELDS:
        return f"wrong fields {sorted(entry)}"
    if not isinstance(entry["seq"], int) or isinstance(entry["seq"], bool):
        return "seq is not an integer"
    for key in ("ts", "actor", "action", "target", "result", "prev", "hash"):
        if not isinstance(entry[key], str):
            return f"{key} is not a string"
    if not isinstance(entry["detail"], dict):
        return "detail is not an object"
    return None


def verify(path: Path, anchor: str | None = None, pins: Sequence[Pin] = ()) -> VerifyResult:
    """Check the whole chain in `path` (and, given, that it still holds `anchor` and every pin)."""
    wanted: dict[int, list[Pin]] = {}
    if anchor is not None:
        seq, digest = _parse_anchor(anchor)
        wanted.setdefault(seq, []).append(Pin(seq, digest, "the anchor"))
    for pin in pins:
        if pin.seq > 0:  # seq 0 pins the empty log: nothing to find
            wanted.setdefault(pin.seq, []).append(pin)
    prev = GENESIS_PREV
    count = 0

    def bad(problem: str, line: int) -> VerifyResult:
        return VerifyResult(False, count, problem, line, _anchor(count, prev) if count else None)

    try:
        data = path.read_bytes()
    except OSError as exc:
        return VerifyResult(False, 0, f"cannot read: {exc.strerror}", None)
    lines = data.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    for lineno, raw in enumerate(complete, start=1):
        try:
            entry = json.loads(raw)
        except ValueError:
            return bad("not a JSON entry (garbage)", lineno)
        shape = _check_shape(entry)
        if shape is not None:
            return bad(f"malformed entry: {shape}", lineno)
        if entry_hash(entry) != entry["hash"] or canonical(entry) != raw:
            return bad("entry modified (hash mismatch)", lineno)
        expected = count + 1
        seen = f"(seq {entry['seq']}, expected {expected})"
        if entry["seq"] > expected:
            return bad(f"seq gap: entry deleted or reordered {seen}", lineno)
        if entry["seq"] < expected:
            return bad(f"seq goes back: entry reordered or duplicated {seen}", lineno)
        if entry["prev"] != prev:
            return bad("chain broken (prev does not match the previous entry's hash)", lineno)
        for pin in wanted.get(expected, ()):
            if entry["hash"] != pin.hash.lower():
                return bad(f"entry does not match {pin.what} (chain rewritten)", lineno)
        prev = entry["hash"]
        count = expected
    if tail:
        return bad("truncated last line (incomplete write)", len(complete) + 1)
    if wanted and count < max(wanted):
        furthest = wanted[max(wanted)][0]
        return bad(f"entries removed from the end (last seq {count}, {furthest.what} has seq {furthest.seq})",
                   count + 1)
    return VerifyResult(True, count, None, None, _anchor(count, prev) if count else None)


def read_entries(path: Path, limit: int, before: int | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` entries, newest first, those with ``seq < before`` when given (a page
    of the log for people to read; ``verify`` is what checks it). Reads the whole file."""
    out: list[dict[str, Any]] = []
    with path.open("rb") as f:
        lines = f.read().splitlines()
    last = len(lines) if before is None else min(len(lines), before - 1)
    for raw in reversed(lines[:max(last, 0)]):
        if len(out) == limit:
            break
        try:
            entry = json.loads(raw)
        except ValueError:
            entry = {"seq": None, "damaged": raw[:200].decode("utf-8", "replace")}
        out.append(entry)
    return out


def _read_last_line(fd: int, size: int) -> bytes:
    """The last complete line of the file (without its newline); b"" if empty."""
    if size == 0:
        return b""
    buf = b""
    pos = size
    while pos > 0:
        step = min(TAIL_CHUNK, pos)
        pos -= step
        buf = os.pread(fd, step, pos) + buf
        # The file must end with "\n"; look for the newline before the last line.
        cut = buf.rfind(b"\n", 0, len(buf) - 1)
        if cut >= 0:
            return buf[cut + 1 :]
    return buf


class AuditLog:
    """An open audit log: thread-safe, durable `append`; the chain resumes from the file."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._broken: str | None = None
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise AuditError(f"cannot open audit log {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._seq, self._prev = self._recover()
            # A new file's directory entry must be durable too, or a crash
            # could lose the whole file with its fsync'ed entries.
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BlockingIOError as exc:
            os.close(self._fd)
            raise AuditBusy(f"audit log {path} is in use by another process") from exc
        except (OSError, AuditError) as exc:
            os.close(self._fd)
            if isinstance(exc, AuditError):
                raise
            raise AuditError(f"cannot open audit log {path}: {exc.strerror}") from exc

    def _recover(self) -> tuple[int, str]:
        """(seq, hash) of the last entry, from the file's last line."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0, GENESIS_PREV
        with open(self._path, "rb") as reader:
            if os.pread(reader.fileno(), 1, size - 1) != b"\n":
                raise AuditError(f"audit log {self._path}: truncated last line; run `audit verify`")
            last = _read_last_line(reader.fileno(), size)
        try:
            entry = json.loads(last)
        except ValueError:
            entry = None
        if _check_shape(entry) is not None or entry_hash(entry) != entry["hash"]:
            raise AuditError(f"audit log {self._path}: damaged last entry; run `audit verify`")
        return int(entry["seq"]), str(entry["hash"])

    @property
    def path(self) -> Path:
        return self._path

    def anchor(self) -> str | None:
        """The last entry as "SEQ:HASH" (None when empty): keep it elsewhere to detect truncation."""
        with self._lock:
            return _anchor(self._seq, self._prev) if self._seq else None

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last entry; (0, GENESIS_PREV) when the log is empty."""
        with self._lock:
            return self._seq, self._prev

    def append(self, actor: str, action: str, target: str, detail: dict[str, Any], result: str) -> AuditEntry:
        """Append one entry and return it once it is on disk; AuditError if it is not."""
        with self._lock:
            if self._broken is not None:
                raise AuditError(f"audit log unusable since an earlier failure: {self._broken}")
            body: dict[str, Any] = {
                "seq": self._seq + 1,
                "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
                "actor": actor,
                "action": action,
                "target": target,
                "detail": detail,
                "result": result,
                "prev": self._prev,
            }
            try:
                body["hash"] = entry_hash(body)
                line = canonical(body) + b"\n"
            except (TypeError, ValueError) as exc:
                # Bad detail (not JSON): nothing written, the log stays usable.
                raise AuditError(f"audit entry not serialisable: {exc}") from exc
            try:
                self._check_same_file()
                view = memoryview(line)
                while view:
                    written = os.write(self._fd, view)
                    view = view[written:]
                os.fsync(self._fd)
            except OSError as exc:
                self._broken = f"{exc.strerror or exc}"
                raise AuditError(f"audit write failed: {self._broken}") from exc
            self._seq += 1
            self._prev = body["hash"]
            entry: AuditEntry = {
                "seq": body["seq"],
                "ts": body["ts"],
                "actor": actor,
                "action": action,
                "target": target,
                "detail": detail,
                "result": result,
                "prev": body["prev"],
                "hash": body["hash"],
            }
            return entry

    def _check_same_file(self) -> None:
        """OSError unless the path still names our open file (not deleted or replaced)."""
        here, ours = os.stat(self._path), os.fstat(self._fd)
        if (here.st_dev, here.st_ino) != (ours.st_dev, ours.st_ino):
            raise OSError(0, "the audit log file was replaced or removed")

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                self._broken = self._broken or "closed"

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
