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

A running agent's workers use `offer_in_background` and `poll`: the bundle is verified at
once, and compiled on a thread of its own while capture goes on (Vectorscan's compiler
releases the GIL: 100,000 keywords take ~11 s to compile, which inside the capture loop
was an 11 s stall and a full ring); `poll`, called from the capture loop, swaps the result
in. An offer made while one compiles waits for it and is offered next. Every worker is
offered the update; the first to compile it builds the database into the cache directory
under its lock, and the others wait for that and load it (`cachefiles.compile_lock`), so an
update costs one compile per agent, not one per worker.

Every offer gives an `audit` record (SCHEMA.md: the system maintenance log) saying
what was applied or refused and why, for the collector.

Limits: `MAX_BUNDLE_BYTES` (rulesets.bundle) bounds what is read before verification.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.filter.compiled import CompiledRules, compile_rules
from agent.filter.engine import FilterEngine
from agent.filter.patterns import EngineUnavailable
from rulesets.bundle import MAX_BUNDLE_BYTES, BundleError, VerifiedBundle, verify_bundle
from wire.records import AuditRecord


@dataclass(frozen=True)
class UpdateResult:
    applied: bool
    detail: str  # what was applied, or why not
    version: int  # the version running after the offer

    def audit_record(self, ts: float) -> AuditRecord:
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
        self._compiling: _Compile | None = None  # offer_in_background's work under way
        self._next: bytes | None = None  # the latest bundle offered while it runs

    @property
    def rules(self) -> CompiledRules:
        return self.engine.rules

    def offer(self, data: bytes) -> UpdateResult:
        """Verify, test-compile and swap in the bundle `data`; on failure keep what runs."""
        self.counters["offered"] += 1
        running = self.engine.rules
        try:
            verified = self._verify(data, running)
            compiled = self._compile(verified, running)
        except BundleError as e:
            return self._refuse(e.reason, running)
        except (MemoryError, ValueError, EngineUnavailable) as e:  # the matcher could not be built
            return self._refuse(f"does not compile: {e}", running)
        return self._apply(compiled, verified)

    def offer_in_background(self, data: bytes) -> UpdateResult | None:
        """`offer`, with the compile on a thread: a refusal of the bundle itself comes back at
        once; otherwise None, and `poll` gives the result when the compile is done. While one
        compiles, the newest bundle offered waits and is offered when it ends."""
        if self._compiling is not None:
            self._next = data
            return None
        self.counters["offered"] += 1
        running = self.engine.rules
        try:
            verified = self._verify(data, running)
        except BundleError as e:
            return self._refuse(e.reason, running)
        work = _Compile(self, verified, running)
        self._compiling = work
        work.thread.start()
        return None

    def poll(self) -> UpdateResult | None:
        """The background compile's result once it is done, swapped in here (in the caller's
        thread, the capture loop); None while it runs or when nothing was offered."""
        work = self._compiling
        if work is None or work.thread.is_alive():
            return None
        self._compiling = None
        if work.error is not None:
            result = self._refuse(f"does not compile: {work.error}", work.running)
        elif self.engine.rules is not work.running:  # (a synchronous offer went first)
            result = self._refuse("another ruleset was applied while this one compiled", self.engine.rules)
        else:
            assert work.compiled is not None
            result = self._apply(work.compiled, work.verified)
        queued, self._next = self._next, None
        if queued is not None:
            refused = self.offer_in_background(queued)
            if refused is not None:
                self.last_error = refused.detail
        return result

    @property
    def compiling(self) -> bool:
        return self._compiling is not None

    def _verify(self, data: bytes, running: CompiledRules) -> VerifiedBundle:
        return verify_bundle(data, self.public_keys, now=int(self.clock()),
                             newer_than=running.version, max_bytes=self.max_bytes)

    @staticmethod
    def _compile(verified: VerifiedBundle, running: CompiledRules) -> CompiledRules:
        # the engine asked for at start, and its database cache, serve every later version
        return compile_rules(verified.ruleset, engine=running.patterns.requested, cache_dir=running.cache_dir)

    def _apply(self, compiled: CompiledRules, verified: VerifiedBundle) -> UpdateResult:
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


class _Compile:
    """One background compile: the thread, what it compiles against, and what it made."""

    def __init__(self, updater: RulesetUpdater, verified: VerifiedBundle, running: CompiledRules) -> None:
        self.verified = verified
        self.running = running
        self.compiled: CompiledRules | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(updater,), name="ruleset-compile", daemon=True)

    def _run(self, updater: RulesetUpdater) -> None:
        try:
            self.compiled = updater._compile(self.verified, self.running)
        except (MemoryError, ValueError, EngineUnavailable) as e:  # the matcher could not be built
            self.error = e
