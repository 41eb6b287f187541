"""edgeaudit-collector: the police-center collector (ingest, storage, queries, web UI).

Not built yet: it arrives with issue 5. Until then the command says so and exits
with status 2, so no script mistakes it for a working collector.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    print("edgeaudit-collector: not available in this version (the collector is issue 5)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
