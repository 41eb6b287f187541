"""edgeaudit-rules: keyword rulesets (check, test, sign, publish).

Not built yet: it arrives with issue 4. Until then the command says so and exits
with status 2, so no script mistakes it for a working tool.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    print("edgeaudit-rules: not available in this version (rulesets are issue 4)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
