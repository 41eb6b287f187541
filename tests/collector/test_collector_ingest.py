"""The collector's ingest, for real: `edgeaudit-collector serve` on a loopback port with a SQLite
store, agents added with the CLI, batches posted over HTTP and `edgeaudit-agent replay
--collector` uploading a capture. Acknowledged means committed; a resent batch is stored
once; bad input gets a 4xx with a JSON error and stores nothing."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from collector_server import ENV, REPO, cli, post, serve

from collector.storage.sqlite import SqliteStorage
from wire.envelope import encode_batch


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield from serve(tmp_path)

def records(n: int, t0: float = 1_700_000_000.0) -> list[dict[str, Any]]:
    return [{"type": "weird", "ts": t0 + i, "name": "test_weird", "detail": f"n{i}"} for i in range(n)]


def stored(data: Path) -> int:
    s = SqliteStorage(data / "records")
    try:
        return s.count()
    finally:
        s.close()


def test_batches_are_acknowledged_after_commit_and_resends_stored_once(collector: dict[str, Any]) -> None:
    url, token = collector["url"], collector["token"]
    body = encode_batch("gw1", "unit-42", 1, records(50))
    assert post(url, body, token) == (200, {"accepted": 50, "duplicate": False})
    assert post(url, body, token) == (200, {"accepted": 50, "duplicate": True})
    assert post(url, encode_batch("gw1", "unit-42", 2, records(10)), token) == (
        200, {"accepted": 10, "duplicate": False})
    metrics = urllib.request.urlopen(url + "/metrics").read().decode()
    assert "edgeaudit_ingest_stored_records_total 60" in metrics
    assert "edgeaudit_ingest_duplicate_batches_total 1" in metrics


def test_bad_input_gets_a_4xx_and_stores_nothing(collector: dict[str, Any]) -> None:
    url, token = collector["url"], collector["token"]
    good = encode_batch("gw1", "unit-42", 9, records(3))
    cases = [
        (post(url, good, None), 401, "unauthenticated"),
        (post(url, good, "eaa_not-a-token"), 401, "unauthenticated"),
        (post(url, good, token, encoding=None), 415, "unsupported_encoding"),
        (post(url, b"\x28\xb5\x2f\xfdgarbage", token), 400, "invalid_batch"),
        (post(url, zstandard.ZstdCompressor().compress(b"\x93\x01\x02\x03"), token), 400, "invalid_batch"),
        (post(url, good[: len(good) // 2], token), 400, "invalid_batch"),
        # another agent's token cannot write this agent's batch
        (post(url, good, collector["other"]), 403, "wrong_agent"),
        (post(url, b"\x00" * (9 * 1024 * 1024), token), 413, "too_large"),
    ]
    # a record the schema refuses (an unknown field), in an otherwise well-formed batch
    unknown = [{"type": "weird", "ts": 1.0, "name": "x", "detail": None, "password": "x"}]
    cases.append((post(url, encode_batch("gw1", "unit-42", 10, unknown, validate=False), token), 400,
                  "invalid_batch"))
    for (status, answer), want_status, want_error in cases:
        assert (status, answer["error"]) == (want_status, want_error), answer
        assert answer["detail"]
    assert stored(collector["data"]) == 0


def test_replay_uploads_a_capture(collector: dict[str, Any], tmp_path: Path) -> None:
    pcap = tmp_path / "edge.pcap"
    subprocess.run([sys.executable, "-m", "agent.cli", "synth", str(pcap), "--packets", "3000"], env=ENV,
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    out = tmp_path / "out.jsonl"
    res = subprocess.run([sys.executable, "-m", "agent.cli", "replay", str(pcap), "--jsonl", str(out),
                          "--collector", collector["url"], "--token", collector["token"]],
                         env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    written = len(out.read_text().splitlines())
    assert written > 100
    assert stored(collector["data"]) == written
    # a revoked token is refused at once, with the collector's reason
    cli("agents", "revoke", "gw1", "--data", str(collector["data"]))
    res = subprocess.run([sys.executable, "-m", "agent.cli", "replay", str(pcap), "--collector",
                          collector["url"], "--token", collector["token"]],
                         env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 1 and "401" in res.stderr and "unauthenticated" in res.stderr


def test_agents_upload_over_tls_and_verify_the_collector(tmp_path: Path) -> None:
    """HTTPS with a certificate for 127.0.0.1 (openssl): the agent uploads when it trusts that
    certificate and refuses to talk to a collector it cannot verify."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=collector",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
    gen = serve(tmp_path, tls=(cert, key))
    c = next(gen)
    try:
        pcap = tmp_path / "edge.pcap"
        subprocess.run([sys.executable, "-m", "agent.cli", "synth", str(pcap), "--packets", "500"], env=ENV,
                       cwd=REPO, check=True, capture_output=True, timeout=120)
        base = [sys.executable, "-m", "agent.cli", "replay", str(pcap), "--collector", c["url"],
                "--token", c["token"]]
        res = subprocess.run([*base, "--collector-ca", str(cert)], env=ENV, cwd=REPO, capture_output=True,
                             text=True, timeout=300, check=False)
        assert res.returncode == 0, res.stderr
        assert stored(c["data"]) > 0
        res = subprocess.run(base, env=ENV, cwd=REPO, capture_output=True, text=True, timeout=300,
                             check=False)
        assert res.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in res.stderr
    finally:
        next(gen, None)
