"""The collector's processes and files against a hostile or careless host (issue 18, part C).

A `kill -9` of the collector takes its decode workers, the multiprocessing fork server and
the resource tracker with it; the data directory is the collector's user's alone under the
default umask; the PDF export runs Chromium inside its sandbox (as an unprivileged user when
the collector is root) and still makes the PDF.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import tempfile
import time
import urllib.request
from base64 import b64encode
from pathlib import Path

import pytest
from collector_process import run_cli, running
from collector_server import ENV, post

from wire.envelope import encode_batch


def _batch() -> bytes:
    """One login record, of now (ingest refuses times far from its clock)."""
    login = {"type": "login", "ts": time.time(), "event": "login", "account": "alice", "ip": "10.0.0.5",
             "mac": None, "calling_station": None, "source": "radius", "session_id": None, "duration": None}
    return encode_batch("gw1", "unit-42", 1, [login])


def _token(data: Path) -> str:
    res = run_cli("agents", "add", "gw1", "--unit", "unit-42", "--data", str(data))
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every process below ``root`` (the start time tells a reused pid)."""
    children: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        started[int(entry)] = fields[19]
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = started[child]
            todo.append(child)
    return found


def _alive(pid: int, started: str) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == started and fields[0] != "Z"  # a zombie has ended


def test_a_killed_collector_leaves_no_worker_behind(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = _token(data)
    left: dict[int, str] = {}
    try:
        with running(data, "--decode-workers", "2") as (proc, url):
            assert post(url, _batch(), token)[0] == 200
            left = _descendants(proc.pid)
            assert len(left) >= 3, left  # the fork server and two workers at least
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        deadline = time.monotonic() + 5
        while any(_alive(pid, started) for pid, started in left.items()):
            assert time.monotonic() < deadline, [pid for pid, st in left.items() if _alive(pid, st)]
            time.sleep(0.05)
    finally:  # whatever the outcome, nothing this test started stays behind
        for pid, started in left.items():
            if _alive(pid, started):
                os.kill(pid, signal.SIGKILL)


def test_the_data_directory_is_private_under_the_default_umask(tmp_path: Path) -> None:
    data = tmp_path / "data"
    token = _token(data)
    assert run_cli("users", "add", "olga", "--role", "operator", "--data", str(data)).returncode == 0
    assert run_cli("holds", "add", "--account", "alice", "--data", str(data)).returncode == 0
    with running(data, "--decode-workers", "0") as (_proc, url):
        assert post(url, _batch(), token)[0] == 200
        listed = sorted(str(p.relative_to(data)) for p in data.rglob("*"))
        loose = {name: oct(mode) for name in ["."] + listed
                 if (mode := stat.S_IMODE((data / name).lstat().st_mode)) & 0o077}
        assert loose == {}, loose  # files 0600, directories 0700: nothing for group or others
        assert "audit-checkpoint.key" in listed and "cli.sock" in listed and any(
            name.startswith("records/") and name.endswith(".sqlite") for name in listed), listed


def test_the_pdf_export_runs_chromium_in_its_sandbox(tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed")
    # a chromium first on PATH that notes how it was started and who runs it, then is the real
    # one; in a directory the unprivileged user chromium may run as can reach
    with tempfile.TemporaryDirectory(prefix="edgeaudit-chromium-") as bin_dir:
        os.chmod(bin_dir, 0o755)
        wrapper, calls = Path(bin_dir) / "chromium", Path(bin_dir) / "calls.jsonl"
        note = f'printf \'{{"uid": %s, "args": "%s"}}\\n\' "$(id -u)" "$*" >> {calls}'
        wrapper.write_text(f'#!/bin/sh\n{note}\nexec {chromium} "$@"\n')
        wrapper.chmod(0o755)
        calls.touch()
        calls.chmod(0o666)
        data = tmp_path / "data"
        _token(data)
        made = run_cli("users", "add", "olga", "--role", "operator", "--data", str(data))
        env = dict(ENV, PATH=f"{bin_dir}:{ENV['PATH']}")
        with running(data, "--decode-workers", "0", env=env) as (_proc, url):
            req = urllib.request.Request(url + "/api/v1/units/unit-42/compliance?format=pdf", headers={
                "Authorization": "Basic " + b64encode(f"olga:{made.stdout.strip()}".encode()).decode()})
            with urllib.request.urlopen(req, timeout=90) as resp:
                assert resp.status == 200 and resp.headers["Content-Type"] == "application/pdf"
                body = resp.read()
        started = [json.loads(line) for line in calls.read_text().splitlines()]
    assert body.startswith(b"%PDF-") and len(body) > 5000
    assert started, "the wrapper was not used"
    for call in started:
        assert "--no-sandbox" not in call["args"], call
        assert call["uid"] != 0, call  # Chromium's sandbox does not run as root
