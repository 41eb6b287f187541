"""What the other parts of the system know about a record type besides its fields.

What: ``RecordMeta``, one per record type, declared beside the type's TypedDict in
``wire.records`` (``RECORDS``): the storage family it is kept in, the fields the collector
indexes for search, addresses and accounts, the content the keyword filter may scan, the
personal fields an operator sees masked, and what the web UI shows of it. Every consumer
derives its view from this table instead of holding a copy:

- collector storage: ``family`` (granule files, ClickHouse partitions), ``search`` (the
  stored search text, in this order), ``addresses`` and ``accounts`` (the ``addr`` and
  ``account`` columns: the first non-null field wins, in this order);
- collector query and UI: ``GET /api/v1/schema`` serves the whole table (CSV columns, the
  UI's type list and detail column, masking of ``personal`` fields);
- agent: ``content`` (the keyword filter's fields and the decoded views each gets; the
  rulesets' ``fields`` check), ``stamped`` and ``app_user`` (the identity table).

Why here: ``wire`` is the one package both sides import; a type added in ``wire.records``
with its ``RecordMeta`` is known everywhere without another edit (DESIGN.md: adding a
protocol touches one decoder file, one registry line, one record type).

``wire.spec`` checks at import that every field named here is a field of the type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

Family: TypeAlias = Literal["flow", "nat", "app", "identity", "event"]
#: The storage families, in the order the collector ranks their files.
FAMILIES: Final[tuple[Family, ...]] = ("flow", "nat", "app", "identity", "event")

#: How the keyword filter treats a content field: ``url`` (percent-decoded view), ``name``
#: (host or domain name: IDNA view), ``mime-header`` (RFC 2047 view), ``body`` (streamed in
#: pieces, with the body views: forms, JSON, multipart, MIME), ``text`` (matched as is).
ContentKind: TypeAlias = Literal["url", "name", "mime-header", "body", "text"]
CONTENT_KINDS: Final[tuple[ContentKind, ...]] = ("url", "name", "mime-header", "body", "text")


#: The flow id's endpoints and a session's translated address (``RecordMeta.endpoints``).
FLOW_ENDPOINTS: Final = ("src_ip", "src_port", "dst_ip", "dst_port", "nat_ip", "nat_port")


@dataclass(frozen=True)
class ContentField:
    """A piece of a record type's traffic the keyword filter may scan. ``name`` is what rulesets
    write in a category's ``fields`` (``"<type>.<part>"``); the part is a record field or a
    part of the message no record keeps (a body)."""

    name: str
    kind: ContentKind


@dataclass(frozen=True)
class RecordMeta:
    """One record type's metadata (module doc). Field names refer to the type's TypedDict."""

    typeddict: type
    family: Family
    #: text fields matched by the collector's free-text search, in the order stored
    search: tuple[str, ...] = ()
    #: address fields naming the user's address when the record has no flow id, preferred first
    addresses: tuple[str, ...] = ()
    #: fields naming an account, preferred first (the collector's ``account`` column)
    accounts: tuple[str, ...] = ()
    #: the agent's identity table fills ``account`` from who had the address at the time
    stamped: bool = False
    #: the field naming a user who logged in to an application (an identity source)
    app_user: str | None = None
    #: what the keyword filter may scan (the order rulesets list them in)
    content: tuple[ContentField, ...] = ()
    #: personal numbers (Order 82 registration: ID and phone numbers), masked for operators
    #: without the right to see them; a name is not masked (a traceback names the person)
    personal: tuple[str, ...] = ()
    #: the fields the web UI's record list shows in its detail column, in order
    detail: tuple[str, ...] = ()
    #: where a record keeps its source address and port, destination address and port, and
    #: translated address and port (a ``nat`` record: inside, remote, outside)
    endpoints: tuple[str, str, str, str, str, str] = FLOW_ENDPOINTS
    #: offered in the web UI's record search (types kept for the system itself are not)
    listed: bool = True
