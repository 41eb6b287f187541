"""The collector's storage layer: the ``Storage`` protocol and its backends.

What: ``Storage`` (``collector.storage.base``) is the contract ingest, queries and retention
use; ``SqliteStorage`` (``collector.storage.sqlite``) is the embedded default, one SQLite file
per UTC day; ``ClickHouseStorage`` (``collector.storage.clickhouse``) is the scale-out
backend over ClickHouse's HTTP interface (18.16 and later). Both pass the same tests
(``tests/collector/storage/``, against a real clickhouse-server the tests start).
"""

from collector.storage.base import (
    AGENT_KEY,
    IDENTITY_LOOKBACK,
    MAX_PAGE,
    MAX_SESSION_SPAN,
    NAT_CLOCK_SLACK,
    NAT_DEFAULT_LIFETIME,
    SESSION_TOLERANCE,
    UNIT_KEY,
    BatchConflict,
    ExpireResult,
    Hold,
    InsertResult,
    Page,
    Storage,
)
from collector.storage.sqlite import SqliteStorage

__all__ = [
    "AGENT_KEY",
    "IDENTITY_LOOKBACK",
    "MAX_PAGE",
    "MAX_SESSION_SPAN",
    "NAT_CLOCK_SLACK",
    "NAT_DEFAULT_LIFETIME",
    "SESSION_TOLERANCE",
    "UNIT_KEY",
    "BatchConflict",
    "ExpireResult",
    "Hold",
    "InsertResult",
    "Page",
    "SqliteStorage",
    "Storage",
]
