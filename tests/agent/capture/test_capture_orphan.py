"""A worker ends with the agent that forked it, even when the agent is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# The "agent": forks a worker that asks for SIGTERM at its parent's death, handles it by
# writing a file (the flush it would do) and exiting; then prints the worker's pid and waits.
AGENT = """
import os, signal, sys, time
from agent.capture.orphan import end_with_parent
out = sys.argv[1]
parent = os.getpid()
pid = os.fork()
if pid == 0:
    def on_term(signum, frame):
        with open(out, "w") as f:
            f.write("flushed")
        os._exit(0)
    signal.signal(signal.SIGTERM, on_term)
    end_with_parent(parent)
    while True:
        time.sleep(1)
print(pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # a zombie reparented to init is reaped by it; one reparented to a subreaper may linger
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return True
        time.sleep(0.02)  # polling for the worker's exit with a deadline
    return False


def test_a_killed_agents_worker_gets_sigterm_and_takes_its_stop_path(tmp_path: Path) -> None:
    out = tmp_path / "flushed"
    agent = subprocess.Popen([sys.executable, "-c", AGENT, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None
        worker = int(agent.stdout.readline())
        time.sleep(0.2)
        assert not out.exists()  # alive while the agent is
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        assert _gone(worker, 10), "the worker outlived its killed agent"
        assert out.read_text() == "flushed"
    finally:
        if agent.poll() is None:
            agent.kill()
