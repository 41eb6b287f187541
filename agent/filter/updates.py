"""Ruleset updates on a running agent: verify, test-compile, swap; keep the last good one.

What: `RulesetUpdater.offer(bundle_bytes)` is the agent's only way to a new ruleset
(DESIGN.md "Rulesets"). A bundle is accepted only when
  1. its Ed25519 signature is by one of the public keys in the agent's configuration,
     its files match the signed manifest, it is not expired, its version is higher than
     the running one (no rollback) and it is within the size limit
     (`rulesets.bundle.verify_bundle`, which names the reason for every refusal), and
  2. it compiles (`agent.filter.compiled.compile_rules`: the automaton is built before
     anything changes, so a ruleset that cannot be built never replaces one that runs).
Then the filter's `rules` reference is replaced in one assignment: capture never stops,
connections already being scanned finish with the ruleset they started with, new ones
get the new one. On any failure nothing changes: the last good ruleset keeps running.

Every offer gives an `audit` record (SCHEMA.md: the system maintenance log) saying
what was applied or refused and why, for the collector.

Limits: `MAX_BUNDLE_BYTES` (rulesets.bundle) bounds what is read before verification.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.filter.compiled import CompiledRules, compile_rules
from agent.filter.engine import FilterEngine
from agent.filter.patterns import EngineUnavailable
from rulesets.bundle import MAX_BUNDLE_BYTES, BundleError, verify_bundle


@dataclass(frozen=True)
class UpdateResult:
    applied: bool
    detail: str  # what was applied, or why not
    version: int  # the version running after the offer

    def audit_record(self, ts: float) -> dict[str, Any]:
        return {"type": "audit", "ts": ts, "actor": "agent", "action": "ruleset_update",
                "target": f"ruleset v{self.version}", "detail": self.detail,
                "result": "applied" if self.applied else "rejected"}


class RulesetUpdater:
    def __init__(self, engine: FilterEngine, public_keys: Sequence[Ed25519PublicKey], *,
                 clock: Callable[[], float] = time.time, max_bytes: int = MAX_BUNDLE_BYTES) -> None:
        if not public_keys:
            raise ValueError("an updater needs at least one trusted public key")
        self.engine = engine
        self.public_keys = list(public_keys)
        self.clock = clock
        self.max_bytes = max_bytes
        self.counters = {"offered": 0, "applied": 0, "rejected": 0}
        self.last_error: str | None = None

    @property
    def rules(self) -> CompiledRules:
        return self.engine.rules

    def offer(self, data: bytes) -> UpdateResult:
        """Verify, test-compile and swap in the bundle `data`; on failure keep what runs."""
        self.counters["offered"] += 1
        running = self.engine.rules
        try:
            verified = verify_bundle(data, self.public_keys, now=int(self.clock()),
                                     newer_than=running.version, max_bytes=self.max_bytes)
            # the engine asked for at start, and its database cache, serve every later version
            compiled = compile_rules(verified.ruleset, engine=running.patterns.requested,
                                     cache_dir=running.cache_dir)
        except BundleError as e:
            return self._refuse(e.reason, running)
        except (MemoryError, ValueError, EngineUnavailable) as e:  # the matcher could not be built
            return self._refuse(f"does not compile: {e}", running)
        self.engine.rules = compiled  # one reference: the swap is atomic for the capture thread
        self.counters["applied"] += 1
        self.last_error = None
        return UpdateResult(True, f"ruleset {compiled.name} v{compiled.version} applied "
                                  f"({compiled.rule_count()} rules, key {verified.key_id})", compiled.version)

    def _refuse(self, reason: str, running: CompiledRules) -> UpdateResult:
        self.counters["rejected"] += 1
        self.last_error = reason
        return UpdateResult(False, f"bundle refused: {reason}; v{running.version} keeps running",
                            running.version)
