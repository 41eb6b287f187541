"""Where an agent's ruleset comes from: a ruleset directory, or a signed bundle and its keys.

What: ``load_rules(path, key_paths, key_option)`` reads, checks and compiles the ruleset at
``path`` (a directory: ``rulesets.load``; a file: a bundle verified with
``rulesets.bundle.verify_bundle`` against the keys in ``key_paths``) and returns it with the
keys it loaded; ``load_keys(paths)`` reads trusted signing keys. Both raise
``RulesSourceError`` whose ``lines`` say every problem (``FILE:LINE`` for a bad ruleset, the
refusal reason for a bundle), for the caller to print (``replay``/``inline``) or to refuse
start with (``run``). ``key_option`` names where the keys are configured, for the message
when a bundle comes without any.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent.filter.compiled import CompiledRules, compile_rules
from agent.filter.patterns import EngineUnavailable
from rulesets.load import RulesetError, load_ruleset

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from rulesets.model import Ruleset

# rulesets.bundle and rulesets.keys (and the cryptography library under them, ~20 ms to
# import) are imported only when a signed bundle or a key is read: a ruleset directory,
# as replay and the benches load, does not need them


class RulesSourceError(Exception):
    """The ruleset or its keys cannot be used; ``lines`` holds one line per problem and
    ``field`` is "rules" or "pubkeys" (which setting is at fault)."""

    def __init__(self, lines: list[str], field: str = "rules") -> None:
        self.lines = lines
        self.field = field
        super().__init__("\n".join(lines))


def load_keys(paths: Sequence[Path]) -> list[Ed25519PublicKey]:
    """The trusted signing keys in the files ``paths``."""
    from rulesets.keys import KeyFileError, load_public_key

    try:
        return [load_public_key(p) for p in paths]
    except KeyFileError as e:
        raise RulesSourceError([str(e)], "pubkeys") from e


def load_rules(path: Path, key_paths: Sequence[Path], key_option: str, *, engine: str = "auto",
               cache_dir: Path | None = None) -> tuple[CompiledRules, list[Ed25519PublicKey]]:
    """The ruleset at ``path`` compiled for the keyword ``engine`` (a Vectorscan database cached
    in ``cache_dir``), and the keys it was verified with (none for a directory)."""
    try:
        if path.is_dir():
            return compile_rules(load_ruleset(path), engine=engine, cache_dir=cache_dir), []
        if not key_paths:
            need = f"{path}: a ruleset bundle needs {key_option} (the keys it may be signed by)"
            raise RulesSourceError([need])
        keys = load_keys(key_paths)
        ruleset = _verified(path, keys)
        return compile_rules(ruleset, engine=engine, cache_dir=cache_dir), keys
    except RulesetError as e:
        raise RulesSourceError([f"{path}/{problem}" for problem in e.problems]) from e
    except EngineUnavailable as e:
        raise RulesSourceError([f"{path}: keyword engine {engine}: {e}"], "engine") from e
    except OSError as e:
        raise RulesSourceError([f"{path}: cannot read: {e.strerror or e}"]) from e


def _verified(path: Path, keys: list[Ed25519PublicKey]) -> Ruleset:
    """The ruleset in the signed bundle at `path`, verified against `keys`."""
    from rulesets.bundle import BundleError, verify_bundle

    try:
        return verify_bundle(path.read_bytes(), keys).ruleset
    except BundleError as e:
        raise RulesSourceError([f"{path}: bundle refused: {e.reason}"]) from e
