"""The schema version, for every other ``wire`` module to import.

``SCHEMA_VERSION`` is the text ``"major.minor"``. Adding a field or a record type bumps the
minor number, which ``wire.records`` keeps beside the declarations it counts (a new type is
one edit there); renaming or removing one bumps the major number (see SCHEMA.md). A reader
accepts any minor version of its own major version and refuses every other major version.
"""

from __future__ import annotations

from typing import Final

from wire.records import SCHEMA_MINOR as RECORDS_MINOR

SCHEMA_MAJOR: Final = 1
SCHEMA_MINOR: Final = RECORDS_MINOR
SCHEMA_VERSION: Final = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"
