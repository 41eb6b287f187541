"""Run edgeaudit-agent from the mypyc-compiled tree (`make compiled` -> build/compiled).

The compiled tree is the wheel `pip wheel .` builds (what `make test` installs and
tests), unpacked: the same source as the repository plus the packet path's modules
compiled to machine code. The development install is editable,
and its import hook would otherwise keep serving the pure-Python modules, so
this launcher takes that hook out before importing `agent`.

    .venv/bin/python bench/agent_compiled.py replay CAPTURE.pcap --jsonl OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

TREE = Path(__file__).resolve().parent.parent / "build" / "compiled"


def main() -> int:
    if not (TREE / ".built").exists():
        print(f"agent_compiled: {TREE} is not built (run `make compiled`)", file=sys.stderr)
        return 2
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
    sys.path.insert(0, str(TREE))
    from agent.cli import main as agent_main

    return agent_main()


if __name__ == "__main__":
    sys.exit(main())
