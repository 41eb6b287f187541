"""Signed audit checkpoints: what verifies, what is refused, what is ignored; the key's file;
the syslog frame a witness sends."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from collector.auth.audit import GENESIS_PREV, AuditLog
from collector.auth.checkpoints import (
    MARKER,
    CheckpointError,
    checkpoints_in,
    key_paths,
    load_or_create_key,
    parse,
    public_key_of,
    sign,
    verify_with_checkpoints,
)
from collector.auth.witness import Checkpointer, FileWitness, syslog_frame
from rulesets.keys import Ed25519PrivateKey


def _log(path: Path, n: int) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.append("ada", "query", "records", {"i": i}, "ok")
    return log


def test_the_key_is_made_once_private_and_refused_when_others_may_read_it(tmp_path: Path) -> None:
    key, created = load_or_create_key(tmp_path)
    again, created_again = load_or_create_key(tmp_path)
    assert (created, created_again) == (True, False)
    assert again.public_key().public_bytes_raw() == key.public_key().public_bytes_raw()
    assert public_key_of(tmp_path).public_bytes_raw() == key.public_key().public_bytes_raw()
    private, _ = key_paths(tmp_path)
    assert private.stat().st_mode & 0o777 == 0o600
    private.chmod(0o644)
    with pytest.raises(CheckpointError, match="readable by others"):
        load_or_create_key(tmp_path)


def test_checkpoints_pin_the_log_and_others_cannot_forge_them(tmp_path: Path) -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    path, witness = tmp_path / "audit.log", tmp_path / "witness"
    with _log(path, 3) as log:
        seen: list[str] = []
        checkpointer = Checkpointer(log, key, [FileWitness(witness)], seen.append)
        first, failures = checkpointer.checkpoint()
        log.append("ada", "query", "records", {"i": 3}, "ok")
        checkpointer.checkpoint()
    assert failures == [] and (first.seq, len(seen)) == (3, 2)
    text = witness.read_text()
    # a line of another collector's key in a shared syslog: ignored, counted
    text += "Dec  7 host edgeaudit-collector[1]: " + sign(other, 9, GENESIS_PREV).line() + "\n"
    result, found = verify_with_checkpoints(path, {"w": text}, key.public_key())
    assert result.ok and result.entries == 4 and found.other_keys == 1 and len(found.checkpoints) == 2
    # every field is signed
    for field, value in (("seq", "2"), ("hash", '"' + "1" * 64 + '"'), ("ts", '"2020-01-01T00:00:00Z"')):
        altered = re.sub(rf'"{field}":("[^"]*"|\d+)', f'"{field}":{value}', first.line())
        result, found = verify_with_checkpoints(path, {"w": altered}, key.public_key())
        assert not result.ok and "signature does not verify" in str(result.problem), field
    assert not verify_with_checkpoints(path, {"w": MARKER + "{nonsense\n"}, key.public_key())[0].ok
    # the log cut below a checkpoint
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]))
    result, _ = verify_with_checkpoints(path, {"w": text}, key.public_key())
    assert not result.ok and "removed from the end" in str(result.problem)


def test_a_checkpoint_line_is_found_behind_a_syslog_prefix_and_framed_by_its_length() -> None:
    key = Ed25519PrivateKey.generate()
    checkpoint = sign(key, 5, "a" * 64)
    assert parse("2026-12-07T10:00:00+08:00 host edgeaudit-collector " + checkpoint.line()) == checkpoint
    assert checkpoints_in(checkpoint.line(), key.public_key()).checkpoints == [checkpoint]
    frame = syslog_frame(checkpoint, "collector 1\n", 42)
    length, _, message = frame.partition(b" ")
    assert int(length) == len(message)
    assert message.decode() == (f"<109>1 {checkpoint.ts} collector1 edgeaudit-collector 42 checkpoint - "
                                f"{checkpoint.line()}")
    with pytest.raises(CheckpointError):
        parse(MARKER + '{"v":2}')
