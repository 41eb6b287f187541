"""Password checks in their own bounded thread pool, apart from everything else the collector does.

What: ``PasswordPool.verify(accounts, name, password)`` runs ``Accounts.verify_password``
(the scrypt KDF, ~50 ms and 16 MiB each) in a pool of ``KDF_WORKERS`` threads of its own,
with at most ``KDF_QUEUE`` more checks waiting; one more is refused at once (``PoolBusy``,
answered 503 with ``Retry-After``) instead of queueing without end.

Why: the KDF ran in the event loop's default thread pool, the one that commits uploads and
writes the audit log: 32 parallel wrong logins took the upload latency from 15 ms to 1.2 s.
Here a flood of password checks waits behind itself only, and uses at most half the CPU
cores (scrypt releases the GIL, so the threads do run in parallel), leaving the rest to
ingest.

Limits: a running check cannot be interrupted; the slots are freed when a check ends, not
when its client goes away, so the bound is on the pool's work, not on requests. At
``KDF_WORKERS`` × ~20 checks per second, HTTP Basic on every request is for occasional
scripts; API tokens and UI sessions need no KDF.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final

from collector.auth.accounts import Accounts, User

#: Threads hashing passwords: half the cores, at least one (the other half ingests).
KDF_WORKERS: Final = max(1, (os.cpu_count() or 2) // 2)
#: Checks that may wait for a thread: ~3 s of waiting with one worker; the throttle
#: (``collector.auth.throttle``) keeps one address from holding more than its allowance.
KDF_QUEUE: Final = 64


class PoolBusy(Exception):
    """Every worker is busy and the queue is full: try again shortly."""


class PasswordPool:
    """A bounded pool for password checks (see the module doc)."""

    def __init__(self, workers: int = KDF_WORKERS, queue: int = KDF_QUEUE) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="kdf")
        # released from the worker thread when a check ends: a thread-safe count
        self._slots = threading.BoundedSemaphore(workers + queue)
        self.busy = 0  # checks refused for want of a slot

    async def verify(self, accounts: Accounts, name: str, password: str) -> User | None:
        """``accounts.verify_password(name, password)`` in the pool; PoolBusy when it is full."""
        if not self._slots.acquire(blocking=False):
            self.busy += 1
            raise PoolBusy("too many password checks at once")
        try:
            job: Future[User | None] = self._executor.submit(accounts.verify_password, name, password)
        except RuntimeError:  # shut down
            self._slots.release()
            raise PoolBusy("the collector is stopping") from None
        job.add_done_callback(lambda _: self._slots.release())
        return await asyncio.wrap_future(job)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
