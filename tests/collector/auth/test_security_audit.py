"""AuditLog: durable hash-chained appends, and verify() against each kind of tampering."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from collector.auth.audit import GENESIS_PREV, AuditError, AuditLog, canonical, entry_hash, verify

ENTRIES = 5


def _make_log(path: Path, n: int = ENTRIES) -> str:
    """A log of n entries; returns its anchor."""
    with AuditLog(path) as log:
        for i in range(n):
            log.append(f"user{i}", "query", "records", {"q": f"ip=10.0.0.{i}", "limit": 100}, "ok")
        anchor = log.anchor()
    assert anchor is not None
    return anchor


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    _make_log(path)
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _tampered(path: Path, lines: list[bytes]) -> Path:
    copy = path.with_name("tampered.jsonl")
    copy.write_bytes(b"".join(lines))
    return copy


def test_append_and_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        assert log.anchor() is None
        first = log.append("alice", "query", "records", {"q": "网站 site:example.cn"}, "ok")
        second = log.append("alice", "export", "records", {"rows": 3}, "ok")
        assert log.anchor() == f"2:{second['hash']}"
    assert first["seq"] == 1 and first["prev"] == GENESIS_PREV
    assert second["prev"] == first["hash"]
    assert entry_hash(dict(second)) == second["hash"]
    stored = [json.loads(line) for line in _lines(path)]
    assert stored == [first, second]
    assert _lines(path)[0] == canonical(dict(first)) + b"\n"
    result = verify(path)
    assert (result.ok, result.entries, result.problem, result.line) == (True, 2, None, None)
    assert result.anchor == f"2:{second['hash']}"
    assert verify(tmp_path / "empty.jsonl").ok is False  # missing file is a problem, not an empty log


def test_reopen_continues_the_chain(log_file: Path) -> None:
    with AuditLog(log_file) as log:
        entry = log.append("bob", "query", "units", {}, "denied")
    assert entry["seq"] == ENTRIES + 1
    assert entry["prev"] == json.loads(_lines(log_file)[ENTRIES - 1])["hash"]
    assert verify(log_file).entries == ENTRIES + 1


def test_modified_field_detected(log_file: Path) -> None:
    lines = _lines(log_file)
    entry = json.loads(lines[2])
    entry["actor"] = "someone-else"
    lines[2] = canonical(entry) + b"\n"
    result = verify(_tampered(log_file, lines))
    assert (result.ok, result.line, result.entries) == (False, 3, 2)
    assert result.problem is not None and "hash mismatch" in result.problem


def test_modified_whitespace_detected(log_file: Path) -> None:
    lines = _lines(log_file)
    lines[1] = json.dumps(json.loads(lines[1])).encode() + b"\n"  # same values, not canonical
    result = verify(_tampered(log_file, lines))
    assert (result.ok, result.line) == (False, 2)


def test_deleted_middle_line_detected(log_file: Path) -> None:
    lines = _lines(log_file)
    del lines[2]
    result = verify(_tampered(log_file, lines))
    assert (result.ok, result.line) == (False, 3)
    assert result.problem is not None and "seq gap" in result.problem


def test_deleted_and_renumbered_detected(log_file: Path) -> None:
    # delete entry 3 and fix seq numbers and hashes of the later ones (not prev)
    lines = [json.loads(line) for line in _lines(log_file)]
    del lines[2]
    for i, entry in enumerate(lines[2:], start=3):
        entry["seq"] = i
        entry["hash"] = entry_hash(entry)
    result = verify(_tampered(log_file, [canonical(e) + b"\n" for e in lines]))
    assert (result.ok, result.line) == (False, 3)
    assert result.problem is not None and "prev" in result.problem


def test_swapped_lines_detected(log_file: Path) -> None:
    lines = _lines(log_file)
    lines[1], lines[2] = lines[2], lines[1]
    result = verify(_tampered(log_file, lines))
    assert (result.ok, result.line) == (False, 2)
    assert result.problem is not None and "reordered" in result.problem


def test_truncated_last_line_detected(log_file: Path) -> None:
    lines = _lines(log_file)
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    copy = _tampered(log_file, lines)
    result = verify(copy)
    assert (result.ok, result.line, result.entries) == (False, ENTRIES, ENTRIES - 1)
    assert result.problem is not None and "truncated" in result.problem
    # and the collector refuses to chain past it
    with pytest.raises(AuditError, match="truncated"):
        AuditLog(copy)


def test_garbage_appended_detected(log_file: Path) -> None:
    lines = [*_lines(log_file), b"this is not json\n"]
    result = verify(_tampered(log_file, lines))
    assert (result.ok, result.line, result.entries) == (False, ENTRIES + 1, ENTRIES)
    assert result.problem is not None and "garbage" in result.problem
    lines = [*_lines(log_file), b'{"seq": 6}\n']
    result = verify(_tampered(log_file, lines))
    assert (result.ok, result.line) == (False, ENTRIES + 1)
    assert result.problem is not None and "malformed" in result.problem


def test_dropped_last_entry_needs_the_anchor(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    anchor = _make_log(path)
    copy = _tampered(path, _lines(path)[:-1])
    assert verify(copy).ok  # the limit: a chain alone cannot see it
    result = verify(copy, anchor)
    assert (result.ok, result.line) == (False, ENTRIES)
    assert result.problem is not None and "removed from the end" in result.problem
    # the log may grow past its anchor
    with AuditLog(path) as log:
        log.append("carol", "query", "records", {}, "ok")
    assert verify(path, anchor).ok


def test_rewritten_chain_detected_by_anchor(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    anchor = _make_log(path)
    # someone who can write the file rebuilds a fully consistent chain
    entries = [json.loads(line) for line in _lines(path)]
    prev = GENESIS_PREV
    for entry in entries:
        entry["actor"] = "nobody"
        entry["prev"] = prev
        entry["hash"] = prev = entry_hash(entry)
    copy = _tampered(path, [canonical(e) + b"\n" for e in entries])
    assert verify(copy).ok
    result = verify(copy, anchor)
    assert (result.ok, result.line) == (False, ENTRIES)
    assert result.problem is not None and "anchor" in result.problem
    with pytest.raises(ValueError, match="anchor"):
        verify(path, "not-an-anchor")


def test_concurrent_appends_keep_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    threads, per_thread = 8, 10
    with AuditLog(path) as log:

        def work(k: int) -> None:
            for i in range(per_thread):
                log.append(f"t{k}", "query", "records", {"i": i}, "ok")

        workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    result = verify(path)
    assert result.ok and result.entries == threads * per_thread


def test_second_writer_refused(log_file: Path) -> None:
    with AuditLog(log_file), pytest.raises(AuditError, match="in use"):
        AuditLog(log_file)


def test_directory_removed_fails_and_stays_failed(tmp_path: Path) -> None:
    directory = tmp_path / "logs"
    directory.mkdir()
    log = AuditLog(directory / "audit.jsonl")
    log.append("alice", "query", "records", {}, "ok")
    shutil.rmtree(directory)
    with pytest.raises(AuditError, match="write failed"):
        log.append("alice", "query", "records", {}, "ok")
    directory.mkdir()
    with pytest.raises(AuditError, match="earlier failure"):
        log.append("alice", "query", "records", {}, "ok")
    log.close()


def test_file_replaced_fails(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    with AuditLog(path) as log:
        log.append("alice", "query", "records", {}, "ok")
        path.rename(tmp_path / "rotated.jsonl")
        path.write_bytes(b"")
        with pytest.raises(AuditError, match="replaced or removed"):
            log.append("alice", "query", "records", {}, "ok")
    assert path.read_bytes() == b""


def test_write_error_raises(tmp_path: Path) -> None:
    full = Path("/dev/full")  # every write fails with ENOSPC: a real failing device
    if not full.exists():
        pytest.skip("no /dev/full")
    with AuditLog(full) as log, pytest.raises(AuditError, match="write failed"):
        log.append("alice", "query", "records", {}, "ok")


def test_unwritable_location_raises(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="cannot open"):
        AuditLog(tmp_path / "missing-dir" / "audit.jsonl")


def test_unserialisable_detail_raises_and_log_stays_usable(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl") as log:
        with pytest.raises(AuditError, match="serialisable"):
            log.append("alice", "query", "records", {"x": float("nan")}, "ok")
        assert log.append("alice", "query", "records", {}, "ok")["seq"] == 1
