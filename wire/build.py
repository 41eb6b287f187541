"""Which build of edgeaudit is running: the mypyc-compiled one or the interpreted sources.

`pip install .` compiles the packet path and the ingest workers with mypyc when a C compiler
works, and falls back to the interpreted build when none does (setup.py). Both run the same
code; the compiled one handles about 2.5x the packets per CPU second. An operator asks with
`edgeaudit-agent --version` (and the collector's and the rules tool's), and the agent says it
in its log at start. The modules are compiled as one group, so one module tells for all.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Any


def is_compiled() -> bool:
    """True when the installed modules are machine code (mypyc), not Python source."""
    import wire.jsonl  # one of setup.py's COMPILED_MODULES

    path = wire.jsonl.__file__ or ""
    return any(path.endswith(suffix) for suffix in EXTENSION_SUFFIXES)


def describe() -> str:
    """`0.1.0 (compiled by mypyc)`: the installed version and which build it is."""
    from importlib import metadata  # here: a lookup in site-packages every command need not pay

    try:
        version = metadata.version("edgeaudit")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        version = "unknown version"
    kind = "compiled by mypyc" if is_compiled() else "interpreted"
    return f"{version} ({kind})"


class VersionAction(argparse.Action):
    """`--version`: print `PROG VERSION (BUILD)` and exit; the version is looked up only then."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS,
                 help: str = "print the version and which build runs, and exit") -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog} {describe()}")
        parser.exit()
