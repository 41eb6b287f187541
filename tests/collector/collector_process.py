"""A real `edgeaudit-collector serve` process on a data directory the test prepared, for the
tests that need the process itself (to kill it, to look at its children) or options of their
own; `run_cli` runs a command and returns its whole result (exit status, stderr).

collector_server.serve is the usual way (it also makes agents and users); this one makes
nothing but the process.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from collector_server import ENV, REPO, free_port

DEFAULT_UMASK = 0o022  # what a login shell gives: the collector must not rely on a stricter one


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collector.cli", *args], capture_output=True, text=True,
                          env=env or ENV, cwd=REPO, timeout=60, check=False, umask=DEFAULT_UMASK)


@contextmanager
def running(data: Path, *options: str, env: dict[str, str] | None = None
            ) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """(the serve process, its URL) until the block ends; then SIGINT, its graceful stop."""
    port = free_port()
    log_path = data.parent / f"serve-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "serve", "--data", str(data),
                                 "--listen", f"127.0.0.1:{port}", *options], stdout=log,
                                stderr=subprocess.STDOUT, env=env or ENV, cwd=REPO, umask=DEFAULT_UMASK)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:  # ready when it answers: polled, with a deadline
            try:
                urllib.request.urlopen(url + "/metrics", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    pytest.fail(f"collector did not start: {log_path.read_text()}")
                time.sleep(0.05)
        try:
            yield proc, url
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                proc.wait(20)


def serve_log(data: Path) -> str:
    """What the serve processes on ``data`` wrote."""
    return "".join(p.read_text() for p in sorted(data.parent.glob("serve-*.log")))
