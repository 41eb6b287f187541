"""The collector's storage contract: the ``Storage`` protocol and its small result types.

What: ``Storage`` is what ingest, query and retention code talk to; ``InsertResult``,
``Page``, ``ExpireResult`` and ``Hold`` are the values crossing it. Backends (``sqlite`` now,
``clickhouse`` later) implement the protocol structurally and must pass the same test suite
(``tests/collector/storage/``).

Why a protocol and sync methods: callers stay backend-agnostic, and the aiohttp layer runs
these calls in a worker thread, so the backends can use blocking drivers (sqlite3) without
an async wrapper of their own.

Semantics every backend keeps (the shared tests pin them down):
- Records are SCHEMA.md records already checked by ``wire.validate``. The stored record is
  returned unchanged plus two provenance keys, ``_agent`` and ``_unit`` (``AGENT_KEY``,
  ``UNIT_KEY``), taken from the agent's credential, never from the payload. The leading
  underscore keeps them apart from schema field names.
- ``insert_batch`` is idempotent per ``(agent, batch_seq)``: the first call stores the batch
  atomically, any later call with the same pair and the same content (``digest``: the SHA-256
  of the records as sent, ``wire.envelope.records_digest``, kept with the pair) stores nothing
  and reports ``duplicate``; with other content it stores nothing and raises
  ``BatchConflict`` (a batch number used again for other records: silently dropping them as
  a duplicate would lose them). A pair stored before digests were kept matches any content.
- ``records`` pages oldest first by ``ts`` (ties: insertion order); the time range is
  half-open ``[start, end)``; the cursor is opaque and stays valid across day partitions.
- Lookups (``nat_at``, ``sessions_at``) return newest first; ``connection`` returns by ts.
- Retention: ``expire`` never deletes a record matched by any ``Hold``.

Limits: ``MAX_PAGE`` caps one page; lookups look back a bounded time (``NAT_DEFAULT_LIFETIME``,
``MAX_SESSION_SPAN``, ``IDENTITY_LOOKBACK``), so a mapping, session or login older than that is
not found. A nat mapping ends at its destroy (valid up to and including the destroy's ts), at
the next create on the same (proto, outside, remote) tuple, or ``NAT_DEFAULT_LIFETIME`` after
it began. A login ends at a logout of the same agent and source (same session_id when both
have one, else same account) at or before the queried ts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

#: Largest page ``records`` returns; a bigger ``limit`` is clamped (bounds memory per query).
MAX_PAGE: Final = 1000
#: Provenance keys added to every returned record (from the agent's credential).
AGENT_KEY: Final = "_agent"
UNIT_KEY: Final = "_unit"

# Lookup windows: part of the contract, so every backend answers a traceback the same way.
#: How long a nat mapping with no end event is taken to hold (nf_conntrack_tcp_timeout_established).
NAT_DEFAULT_LIFETIME: Final = 432_000.0
#: Longest session sessions_at can find: session ts is its start, so this bounds the lookback.
MAX_SESSION_SPAN: Final = 7 * 86_400.0
#: Slack around a session's [ts, ts + duration]: the NAT/identity sources and the packets can
#: carry timestamps a little apart (kernel conntrack vs capture clocks).
SESSION_TOLERANCE: Final = 2.0
#: How long after a queried time a NAT create may be recorded and still answer it (see
#: ``rows.nat_in_force``): conntrack reports a connection after its first packet.
NAT_CLOCK_SLACK: Final = 2.0
#: Oldest login identity_at considers: DHCP leases and RADIUS sessions re-announce well within it.
IDENTITY_LOOKBACK: Final = 31 * 86_400.0


@dataclass(frozen=True, slots=True)
class InsertResult:
    """Outcome of ``insert_batch``: records stored by the batch, and whether it was a repeat."""

    accepted: int
    duplicate: bool


class StorageUnavailable(RuntimeError):
    """The store could not commit or answer now (its server refused, its disk is full): the
    caller may try again later; nothing was decided about the data."""


class BatchConflict(Exception):
    """``(agent, batch_seq)`` is stored (or being stored) with other content; nothing was stored."""

    def __init__(self, batch_seq: int, state: str) -> None:
        super().__init__(f"batch {batch_seq} is {state} with other records: a batch number is used once;"
                         " send these records under a new one")


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``records``; ``cursor`` is None when there is nothing more to read."""

    records: list[dict[str, Any]]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class Hold:
    """A legal hold: a record matching every non-None field is exempt from deletion.

    ``start``/``end`` bound the record ``ts`` half-open ``[start, end)``. A hold with every
    field None matches every record (it suspends retention entirely).
    """

    unit: str | None = None
    account: str | None = None
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True, slots=True)
class ExpireResult:
    """Outcome of ``expire``: rows deleted, day partitions dropped whole, old rows kept by holds."""

    deleted: int
    days_dropped: list[str] = field(default_factory=list)
    held: int = 0


class Storage(Protocol):
    """Durable record store of the collector (see the module docstring for the semantics)."""

    def insert_batch(
        self, agent: str, unit: str, batch_seq: int, records: Sequence[Mapping[str, Any]],
        digest: bytes | None = None,
    ) -> InsertResult:
        """Store a batch atomically with its ``(agent, batch_seq)`` marker and ``digest`` (by
        default ``records_digest(records)``); a repeat stores nothing, and raises
        ``BatchConflict`` when its digest differs."""
        ...

    def records(
        self,
        *,
        type: str | None = None,
        start: float | None = None,
        end: float | None = None,
        ip: str | None = None,
        account: str | None = None,
        text: str | None = None,
        limit: int = MAX_PAGE,
        cursor: str | None = None,
    ) -> Page:
        """Records matching every given filter, oldest first, one page at a time.

        ``ip`` matches src_ip, dst_ip, nat_ip, or the address of a login/radius/dhcp/
        registration record (and a nat record's inside/outside/remote address); ``account``
        is exact; ``text`` is a case-insensitive substring of host, uri, query,
        server_name, subject or keyword.
        """
        ...

    def nat_at(self, ip: str, port: int, ts: float, proto: str | None = None) -> list[dict[str, Any]]:
        """``nat`` create records whose outside (ip, port) mapping was in force at ``ts`` (of
        ``proto`` when given), newest first; failing that, one created within
        ``NAT_CLOCK_SLACK`` after ``ts`` (``rows.nat_in_force``)."""
        ...

    def sessions_at(self, ip: str, port: int, ts: float, *, outside: bool,
                    proto: str | None = None) -> list[dict[str, Any]]:
        """``session`` records from (ip, port) (inside, or the NAT side if ``outside``) active at
        ``ts``, of ``proto`` when given."""
        ...

    def identity_at(self, ip: str, ts: float) -> dict[str, Any] | None:
        """The latest login for ``ip`` at or before ``ts`` not ended by a matching logout."""
        ...

    def connection(self, uid: str, *, agent: str | None = None, start: float | None = None,
                   end: float | None = None) -> list[dict[str, Any]]:
        """Every record carrying ``uid``, by ts; only those of ``agent`` and with ts in
        ``[start, end]`` when given (a uid is unique per agent run, not across agents)."""
        ...

    def expire(self, before: float, holds: Sequence[Hold]) -> ExpireResult:
        """Delete records with ``ts < before`` except those matched by a hold."""
        ...

    def count(self) -> int:
        """Number of stored records."""
        ...

    def close(self) -> None:
        """Release files and connections; the object is unusable afterwards."""
        ...
