"""The collector's ingest, for real: `edgeaudit-collector serve` on a loopback port with a SQLite
store, agents added with the CLI, batches posted over HTTP and `edgeaudit-agent replay
--collector` uploading a capture. Acknowledged means committed; a resent batch is stored
once; bad input gets a 4xx with a JSON error and stores nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from collector.storage.sqlite import SqliteStorage
from wire.envelope import encode_batch

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True, text=True,
                         env=ENV, cwd=REPO, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[dict[str, Any]]:
    data = tmp_path / "data"
    token = cli("agents", "add", "gw1", "--unit", "unit-42", "--data", str(data))
    other = cli("agents", "add", "gw2", "--unit", "unit-7", "--data", str(data))
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "serve", "--data", str(data), "--listen",
                             f"127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:  # ready when it answers: polled, with a deadline
        try:
            urllib.request.urlopen(url + "/metrics", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"collector did not start: {(tmp_path / 'serve.log').read_text()}")
            time.sleep(0.05)
    try:
        yield {"url": url, "token": token, "other": other, "data": data}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(20)
        log.close()


def post(url: str, body: bytes, token: str | None,
         encoding: str | None = "zstd") -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/msgpack"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if encoding is not None:
        headers["Content-Encoding"] = encoding
    req = urllib.request.Request(url + "/api/v1/batches", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


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
