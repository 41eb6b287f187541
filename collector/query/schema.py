"""What the collector knows of each record type, for its clients: `GET /api/v1/schema`, the CSV
columns, and the masking of personal fields.

What: the record types and their metadata as `wire.records.RECORDS` declares them
(`wire.spec.describe_all`: each type's fields with their rules, and under ``records`` its
family, search, address, account, content, personal and UI detail fields). The web UI builds
its type list, detail column and address columns from it; nothing in the collector or the
UI names a record type's fields on its own.

Personal fields (a registration's ID and phone numbers: ``RecordMeta.personal``) are masked in
every answer that carries records (`mask_personal`: a record list, or one record such as the
traceback's registration) unless an admin asks with ``personal=1``, which is audited as such
(Order 82: registration data is uploaded for the police, and seen only by those who need it).
The mask is the units' security officers' (`mask`, `collector.units.routes`): all but the last
two characters hidden, ``****************3X``, ``*********00``. A guest's name is not masked:
a traceback names the person (issue 19).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from aiohttp import web

from collector.access import json_answer, requires
from collector.auth import ROLES, User
from wire.records import RECORDS
from wire.spec import describe_all

#: Roles that may see personal fields unmasked (asking with ``personal=1``).
PERSONAL_ROLES: Final = frozenset({"admin"})
#: CSV export columns: the flow id, the account, every searchable text field of every type (in
#: the order RECORDS declares them), the agent and unit the record came from.
CSV_FIELDS: Final = ("type", "ts", "uid", "src_ip", "src_port", "dst_ip", "dst_port", "account",
                     *dict.fromkeys(f for m in RECORDS.values() for f in m.search), "_agent", "_unit")
_PERSONAL: Final = {name: m.personal for name, m in RECORDS.items() if m.personal}
_SCHEMA: Final = describe_all()


def mask(text: object) -> object:
    """A personal number with all but its last two characters hidden (two or fewer: all)."""
    if not isinstance(text, str) or len(text) <= 2:
        return "**" if isinstance(text, str) and text else text
    return "*" * (len(text) - 2) + text[-2:]


def mask_personal(records: Iterable[dict[str, Any]]) -> None:
    """Mask, in place, the personal fields of the records whose type has any."""
    for r in records:
        fields = _PERSONAL.get(r.get("type"))  # type: ignore[arg-type]
        if fields:
            for f in fields:
                if f in r:
                    r[f] = mask(r[f])


def has_personal(records: Iterable[dict[str, Any]]) -> bool:
    return any(r.get("type") in _PERSONAL for r in records)


@requires(ROLES, "read the record schema")
async def schema_handler(request: web.Request, user: User) -> web.Response:
    return json_answer(_SCHEMA)


SCHEMA_ROUTES: Final = (web.get("/api/v1/schema", schema_handler),)
