"""A mutex granted in the order it was asked for (a ticket lock).

What: ``FairLock`` is a context manager like ``threading.Lock``; whoever asks first gets it
first. Not reentrant.

Why: the SQLite store commits a batch that touches many day files in turns
(``collector.storage.sqlite``, "Turns"), releasing its lock between them so other agents'
batches and queries get in. With ``threading.Lock`` the releasing thread usually takes the
lock straight back (CPython hands it to no one in particular), so a thread waiting for it
could wait out the whole batch anyway. Here a thread that releases and asks again goes
behind everyone already waiting.

Limits: waiters are woken all at once (``notify_all``) and each checks its turn, which is
fine for the handful of threads of a collector (its executor and indexer), not for hundreds.
A thread interrupted while waiting gives up its ticket, so the others are not stuck behind it.
"""

from __future__ import annotations

import threading
from types import TracebackType


class FairLock:
    """A first-come, first-served mutex (see the module doc)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next = 0  # the ticket the next caller gets
        self._serving = 0  # the ticket that holds the lock (or may take it)
        self._abandoned: set[int] = set()  # tickets whose callers stopped waiting

    def acquire(self) -> None:
        with self._cond:
            ticket = self._next
            self._next += 1
            try:
                while ticket != self._serving:
                    self._cond.wait()
            except BaseException:
                if ticket == self._serving:
                    self._advance()
                else:
                    self._abandoned.add(ticket)
                raise

    def release(self) -> None:
        with self._cond:
            self._advance()

    def _advance(self) -> None:
        """The next ticket's turn (skipping abandoned ones); the caller holds ``_cond``."""
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
