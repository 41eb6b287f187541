"""The schema version, kept in a leaf module so every other ``wire`` module can import it.

``SCHEMA_VERSION`` is the text ``"major.minor"``. Adding a field or a record type bumps the
minor number; renaming or removing one bumps the major number (see SCHEMA.md). A reader
accepts any minor version of its own major version and refuses every other major version.
"""

from __future__ import annotations

from typing import Final

SCHEMA_MAJOR: Final = 1
SCHEMA_MINOR: Final = 2
SCHEMA_VERSION: Final = f"{SCHEMA_MAJOR}.{SCHEMA_MINOR}"
