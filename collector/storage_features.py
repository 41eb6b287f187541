"""Storage methods only some backends have, as protocols: asked once, never probed per call.

What: ``Storage`` (``collector.storage.base``) is what every backend offers. Two more methods
exist only in ``SqliteStorage``:
- ``PreparedStorage.insert_prepared``: store a batch the decoder workers already packed into
  granules (``collector.storage.granules``), so uploads are decoded in worker processes and
  only compact granules cross back (``collector.ingest.decoding``);
- ``IndexBacklog.unindexed_bytes``: keys stored but not yet in the files' key index, a gauge
  on ``/metrics``.
``ClickHouseStorage`` has neither: it takes the records themselves and indexes on insert.

How: ``collector.app.create_app`` checks the storage once against these runtime-checkable
protocols and puts it under a typed application key (``collector.app_keys``) only when it
has the method; handlers read the key, not the storage's attributes. A runtime check sees
only that the method exists, so the block at the end makes mypy prove that
``SqliteStorage``'s methods have these signatures: a renamed or changed method fails the type
check instead of silently turning the fast path off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from collector.storage.base import InsertResult
from collector.storage.granules import Granule


@runtime_checkable
class PreparedStorage(Protocol):
    """A store that takes batches packed by ``collector.storage.granules.prepare``."""

    def insert_prepared(self, agent: str, unit: str, batch_seq: int, granules: Sequence[Granule],
                        count: int, digest: bytes | None = None) -> InsertResult:
        """Like ``Storage.insert_batch`` for a packed batch of ``count`` records whose content
        is ``digest`` (``wire.envelope.records_digest``; None: not compared)."""
        ...


@runtime_checkable
class IndexBacklog(Protocol):
    """A store that indexes keys after the commit, and can say how far behind it is."""

    def unindexed_bytes(self) -> int:
        """Bytes of stored keys not yet in the key index (0 once it caught up)."""
        ...


if TYPE_CHECKING:
    from collector.storage.sqlite import SqliteStorage

    def _sqlite_has_both(storage: SqliteStorage) -> tuple[PreparedStorage, IndexBacklog]:
        return storage, storage
