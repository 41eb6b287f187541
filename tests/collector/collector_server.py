"""A real `edgeaudit-collector serve` for tests: a process on a free loopback port with a data
directory of its own, two agents ("gw1" of unit-42, "gw2" of unit-7) and an operator and an
auditor; stopped with SIGINT (its graceful shutdown) at the end.

`post` sends a batch body as an agent does; `cli` runs the collector's own commands.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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


def serve(tmp_path: Path, tls: tuple[Path, Path] | None = None, extra: tuple[str, ...] = (),
          accounts_of: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Start the collector (HTTPS with `tls` = (certificate, key), trusted as its own CA);
    with `accounts_of` (what another `serve` yielded), with a copy of that one's accounts."""
    data = tmp_path / "data"
    if accounts_of is None:
        token = cli("agents", "add", "gw1", "--unit", "unit-42", "--data", str(data))
        other = cli("agents", "add", "gw2", "--unit", "unit-7", "--data", str(data))
        operator = cli("users", "add", "olga", "--role", "operator", "--data", str(data))
        auditor = cli("users", "add", "ada", "--role", "auditor", "--data", str(data))
        admin = cli("users", "add", "root", "--role", "admin", "--data", str(data))
    else:
        # as configuration management copies the accounts file to every collector of a cluster
        data.mkdir(parents=True)
        with sqlite3.connect(accounts_of["data"] / "accounts.sqlite") as src, \
                sqlite3.connect(data / "accounts.sqlite") as dst:
            src.backup(dst)
        token, other = accounts_of["token"], accounts_of["other"]
        operator, auditor, admin = (accounts_of[k][1] for k in ("operator", "auditor", "admin"))
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    options = [*(["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])] if tls else []), *extra]
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "serve", "--data", str(data), "--listen",
                             f"127.0.0.1:{port}", *options], stdout=log, stderr=subprocess.STDOUT, env=ENV,
                            cwd=REPO)
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    context = ssl.create_default_context(cafile=str(tls[0])) if tls else None
    deadline = time.monotonic() + 20
    while True:  # ready when it answers: polled, with a deadline
        try:
            urllib.request.urlopen(url + "/metrics", timeout=1, context=context).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"collector did not start: {(tmp_path / 'serve.log').read_text()}")
            time.sleep(0.05)
    try:
        yield {"url": url, "token": token, "other": other, "data": data, "operator": ("olga", operator),
               "auditor": ("ada", auditor), "admin": ("root", admin)}
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


