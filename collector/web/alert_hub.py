"""Alerts as they are stored, handed to whoever watches: an in-process publish/subscribe hub.

``LiveAlerts.publish`` is called by ingest after a batch holding ``alert`` records is
committed (never before: what an operator sees is stored); each subscriber
(``collector.web.live``, one per open event stream) has a queue of at most
``QUEUE_ALERTS``; alerts beyond it are dropped and counted (``dropped``) rather than held in
the collector's memory. Everything runs on the event loop; nothing crosses processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final

from collector.storage.base import AGENT_KEY, UNIT_KEY

QUEUE_ALERTS: Final = 1000


class LiveAlerts:
    """Subscribers' queues; ``publish`` runs on the event loop."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self.dropped = 0

    def publish(self, agent: str, unit: str, alerts: Sequence[dict[str, Any]]) -> None:
        for q in list(self._subscribers):
            for a in alerts:
                if q.qsize() >= QUEUE_ALERTS:
                    self.dropped += 1
                    continue
                q.put_nowait({**a, AGENT_KEY: agent, UNIT_KEY: unit})

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_ALERTS + 1)  # + the end mark
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(q)

    def close(self) -> None:
        """End every stream (the collector is stopping): each gets the end mark None."""
        for q in list(self._subscribers):
            q.put_nowait(None)
        self._subscribers.clear()
