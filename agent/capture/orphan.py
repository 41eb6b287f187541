"""A child process of the agent ends with its parent, even when the parent is killed outright.

What: ``end_with_parent(parent_pid)``, called first thing in a forked worker, asks the kernel
(``prctl(PR_SET_PDEATHSIG, SIGTERM)``) to send the worker SIGTERM when the process that
forked it dies, and ends the worker at once if that happened before the call.

Why: ``kill -9`` of the supervisor (or an OOM kill) gives it no chance to stop its capture
workers. An orphaned worker would go on capturing and spooling beside the restarted agent's
new ones: every connection recorded twice, a ring and a CPU held for nothing. With SIGTERM
the worker takes its normal way out: it flushes its open flows into the spool and exits.

Limits: Linux only (the agent is); the signal goes when the forking *thread* exits, so call
it in a child forked from the supervisor's main thread (the agent forks before any thread).
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Final

PR_SET_PDEATHSIG: Final = 1


def end_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """Have ``sig`` sent to this process when ``parent_pid`` (its parent) dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")
    if os.getppid() != parent_pid:  # the parent died before the call: nobody would signal
        os.kill(os.getpid(), sig)
