"""One capture worker of the live agent: packets in, records into the durable spool.

What: ``GatewayConsumer`` is what ``agent.capture.workers.WorkerPool`` feeds in each worker
process (its ``factory`` builds one per worker): a ``Pipeline`` (flows, decoders, identity,
keyword filter) whose records are stamped with their public address from the NAT table
(``nat_ip``/``nat_port`` on ``session`` records, from ``NatLookup``), counted, and appended to
the spool. Every ``stats`` call (the pool's stats interval) it appends a ``stats`` record
(SCHEMA.md: packets, kernel drops, flows, spool size, upload lag, records in the spool's
quarantine, ruleset version), rewrites
its status file (``agent.run.status``) and picks up a changed ruleset file.

Why records are buffered briefly: the spool makes every ``append`` durable (one fsync with
``sync = "FULL"``), and the pipeline hands over records many times a second; appending at
most every ``FLUSH_EVERY_S`` (or every ``FLUSH_RECORDS``) keeps fsyncs to a few per second.
A ``kill -9`` loses at most that window of records, the same order as the flows open in
memory that a crash loses anyway; SIGTERM flushes everything (``finish``).

Rulesets: the supervisor writes a newer verified bundle to the configured rules path
(atomically); each worker notices the file changed at its next stats call and offers it to
its ``RulesetUpdater``, which verifies, test-compiles and swaps, or keeps the running one;
the outcome is an ``audit`` record. SIGHUP in a worker only asks for that check at once.

Identity across workers: the fanout hash gives each worker its own share of the flows, so
the RADIUS, DHCP or login exchange that names an address's user is seen by one worker only,
while that user's connections are spread over all of them. Each worker therefore forwards
the identity-bearing records it decodes (``FORWARDED``: RADIUS, DHCP, and application
records that carry a user name) to every other worker (``peers``: one queue per worker,
made before the fork), and keeps what it receives in a second identity table used only to
stamp ``account`` where its own table knows nothing (no holder, or a holder naming nobody,
such as a DHCP lease of a device the roster does not list). The login/logout records
themselves come from the worker that saw the exchange, once.

The captive portal runs in the supervisor: its ``login`` records (source ``portal``: a guest
admitted, the admission ended) are spooled by the supervisor and also put into every
worker's inbox (an inbox exists even for a single worker when the portal is configured).
The second table learns the guest's address from them, so the guest's sessions, HTTP
requests and alerts carry the guest account; no worker spools or forwards them again.

Mail counts across workers: one sender's SMTP connections are spread over the workers too,
and the mail policy's limits are per sender, account and host over a minute and an hour
(``agent.filter.mail_policy``). A worker with peers forwards what its policy counted (and
which limits it alerted) after each batch, through the same inboxes, merged per 5-second
slot (``mail_tally`` messages, never spooled); each worker adds its peers' tallies to its own
windows, so every worker judges a sender's next message against the whole count. The
decision stays in the worker holding the packet (no round trip while capturing).

Limits: a worker's counters are its own since its start (the supervisor sums them); a
record forwarded while another worker is emitting a session of that address may arrive a
moment too late for that one session (the collector's traceback answers from the login
records regardless).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from agent.filter.compiled import CompiledRules
from agent.filter.mail_config import DEFAULT as MAIL_DEFAULTS
from agent.filter.mail_config import MailConfig
from agent.filter.mail_policy import TALLY, MailPolicy
from agent.identity.roster import Roster
from agent.identity.table import STAMPED_TYPES, IdentityTable
from agent.pipeline import Pipeline
from agent.run.status import StatusFile
from agent.spool.store import Spool, SpoolError
from wire.records import RECORDS

if TYPE_CHECKING:
    from agent.filter.updates import UpdateResult
    from agent.publish.config import PublishingConfig

log = logging.getLogger("edgeaudit.worker")

FLUSH_EVERY_S: Final = 0.5
FLUSH_RECORDS: Final = 5000
#: A `stats` record (SCHEMA.md) this often.
STATS_EVERY_S: Final = 60.0


class NatLookup(Protocol):
    """The public side of a translated connection (``agent.nat.conntrack.ConntrackSource``)."""

    def outside_for(self, proto: str, src_ip: str, src_port: int, dst_ip: str,
                    dst_port: int) -> tuple[str, int] | None: ...


#: Record types another worker's identity table learns from (with ``_names_a_user`` for apps).
FORWARDED: Final = frozenset({"radius", "dhcp"})
_APP_USER_FIELDS: Final = {name: m.app_user for name, m in RECORDS.items() if m.app_user is not None}


def _names_a_user(rec: dict[str, Any]) -> bool:
    t = rec["type"]
    if t in FORWARDED:
        return True
    key = _APP_USER_FIELDS.get(t)
    return key is not None and rec.get(key) is not None


class Channel(Protocol):
    """One worker's inbox (``multiprocessing.Queue`` has this shape)."""

    def put_nowait(self, obj: Any) -> None: ...

    def get_nowait(self) -> Any: ...


class GatewayConsumer:
    """Pipeline → NAT stamp → spool, with stats, status and ruleset pick-up (module doc)."""

    def __init__(self, name: str, spool: Spool, *, depth: int, roster: Roster | None,
                 rules: CompiledRules | None, rules_path: Path | None, pubkeys: list[Any],
                 nat: NatLookup | None = None, clock: Callable[[], float] = time.monotonic,
                 inbox: Channel | None = None, peers: list[Channel] | None = None,
                 publishing: PublishingConfig | None = None, mail: MailConfig | None = MAIL_DEFAULTS) -> None:
        self.name = name
        self.inbox = inbox
        self.peers = peers or []
        self.shared_identity = IdentityTable(roster=roster) if inbox is not None else None
        self.spool = spool
        self.nat = nat
        self.clock = clock
        self.status = StatusFile(spool.path.parent, name)
        self.by_type: Counter[str] = Counter()
        self.last_ts: dict[str, float] = {}
        self.counters: Counter[str] = Counter()
        self._buffer: list[dict[str, Any]] = []
        self._flushed = clock()
        self._stats_at = clock()
        self.capture: dict[str, int] = {}
        # a random uid seed per worker run: uids stay unique across restarts and workers
        self.pipeline = Pipeline(self._sink, depth=depth, roster=roster, rules=rules,
                                 keep_bodies=rules is not None, uid_seed=os.urandom(16),
                                 publishing=publishing, mail=mail)
        # the mail policy's counts travel to the peers (module docstring)
        self.mail_share = self.pipeline.mail if self.peers else None
        if self.mail_share is not None:
            self.mail_share.share = True
        self.updater = None
        self.rules_path = rules_path
        self._rules_stamp = _stamp(rules_path)
        if rules is not None and pubkeys and self.pipeline.filter is not None:
            from agent.filter.updates import RulesetUpdater

            self.updater = RulesetUpdater(self.pipeline.filter, pubkeys)
        self._reload = False
        signal.signal(signal.SIGHUP, self._on_hup)
        self._write_status()

    # -- the pool's Consumer protocol --

    def feed(self, batch: list[tuple[float, int, bytes]], nbytes: int | None = None) -> None:
        if self.inbox is not None:
            self._receive()
        self.pipeline.feed(batch, nbytes)
        if self.mail_share is not None:
            self._forward_tallies(self.mail_share)
        buffered = len(self._buffer)
        if buffered and (buffered >= FLUSH_RECORDS or self.clock() - self._flushed >= FLUSH_EVERY_S):
            self.flush()

    def finish(self) -> None:
        self.pipeline.finish()
        self._stats_record(self.clock())
        self.flush()
        self._write_status(final=True)

    def stats(self, capture: dict[str, int]) -> None:
        """The pool's periodic call (every ``WRITE_EVERY`` s): status, rules, and every
        ``STATS_EVERY_S`` a ``stats`` record."""
        self.capture = dict(capture)
        self._check_rules()
        self.pipeline.tick(time.time())  # packet time stands still on an idle link
        now = self.clock()
        if now - self._stats_at >= STATS_EVERY_S:
            self._stats_record(now)
        self.flush()
        self._write_status()

    def _stats_record(self, now: float) -> None:
        capture = self.capture
        interval = round(now - self._stats_at, 3)
        self._stats_at = now
        rec = self.pipeline.stats_record(interval)
        rec["kernel_drops"] = int(capture.get("kernel_drops", 0))
        try:
            st = self.spool.stats()
        except SpoolError as e:
            log.error("%s: spool stats: %s", self.name, e)
        else:
            rec.update(st.stats_record_fields())
            rec["records_dropped"] = int(rec["records_dropped"]) + st.records_lost
        version = self.ruleset_version
        rec["ruleset_version"] = str(version) if version is not None else None  # SCHEMA: str
        f = self.pipeline.filter
        rec["keyword_engine"] = f.rules.engine if f is not None else None
        self._sink([rec])

    # -- records --

    def _engine_status(self) -> dict[str, str] | None:
        """Which keyword engine the filter runs, and why (status file: selfcheck, /metrics)."""
        f = self.pipeline.filter
        if f is None:
            return None
        return {"engine": f.rules.engine, "reason": f.rules.patterns.engine_reason}

    @property
    def ruleset_version(self) -> int | None:
        f = self.pipeline.filter
        return f.rules.version if f is not None else None

    def _receive(self) -> None:
        """Learn the identity records other workers forwarded and the portal's login records the
        supervisor put in (their login records are theirs to emit: the table emits none here)."""
        assert self.inbox is not None and self.shared_identity is not None
        for _ in range(1000):
            try:
                rec = self.inbox.get_nowait()
            except queue.Empty:
                return
            if rec.get("type") == TALLY:  # a peer's mail counts
                if self.mail_share is not None:
                    self.mail_share.absorb(rec)
                self.counters["mail_tallies_received"] += 1
                continue
            self.shared_identity.observe(rec)
            self.counters["identity_received"] += 1

    def _forward_tallies(self, mail: MailPolicy) -> None:
        tallies = mail.take_tallies()
        if tallies:
            for peer in self.peers:
                for t in tallies:
                    peer.put_nowait(t)
            self.counters["mail_tallies_forwarded"] += len(tallies)

    def _sink(self, records: list[Any]) -> None:  # Pipeline's records, as plain dicts
        nat = self.nat
        shared = self.shared_identity
        for r in records:
            t = r["type"]
            if self.peers and _names_a_user(r):
                for peer in self.peers:
                    peer.put_nowait(dict(r))
                self.counters["identity_forwarded"] += 1
            if shared is not None and t in STAMPED_TYPES and r.get("account") is None:
                shared.stamp(r)
            self.by_type[t] += 1
            ts = r.get("ts")
            if isinstance(ts, float):
                self.last_ts[t] = ts
            if nat is not None and t == "session" and r.get("nat_ip") is None:
                found = nat.outside_for(r["proto"], r["src_ip"], r["src_port"], r["dst_ip"], r["dst_port"])
                if found is not None:
                    r["nat_ip"], r["nat_port"] = found
                    self.counters["nat_stamped"] += 1
        self._buffer.extend(records)

    def flush(self) -> None:
        """Append what is buffered to the spool (durable when this returns)."""
        if not self._buffer:
            return
        batch, self._buffer = self._buffer, []
        try:
            stored = self.spool.append(batch)
        except SpoolError as e:
            # the spool counts what it refuses; an unusable spool must not stop capture silently
            self.counters["spool_errors"] += 1
            self.counters["records_lost"] += len(batch)
            log.error("%s: %d records not spooled: %s", self.name, len(batch), e)
        else:
            self.counters["spooled"] += stored
        self._flushed = self.clock()

    # -- rulesets --

    def _on_hup(self, signum: int, frame: object) -> None:
        self._reload = True

    def _check_rules(self) -> None:
        """A changed bundle (or SIGHUP) is verified here and compiled on a thread while capture
        goes on (`RulesetUpdater.offer_in_background`); its result is swapped in at a later call."""
        if self.updater is None or self.rules_path is None:
            return
        done = self.updater.poll()
        if done is not None:
            self._rules_result(done)
        stamp = _stamp(self.rules_path)
        if stamp == self._rules_stamp and not self._reload:
            return
        self._reload = False
        self._rules_stamp = stamp
        try:
            data = self.rules_path.read_bytes()
        except OSError as e:
            log.error("%s: %s: %s", self.name, self.rules_path, e)
            return
        refused = self.updater.offer_in_background(data)
        if refused is not None:
            self._rules_result(refused)
        else:
            log.info("%s: %s: verified, compiling", self.name, self.rules_path)

    def _rules_result(self, result: UpdateResult) -> None:
        self._sink([result.audit_record(time.time())])
        log.info("%s: %s", self.name, result.detail)

    def _write_status(self, final: bool = False) -> None:
        try:
            self.status.write({
                "role": "capture", "final": final, "records": dict(self.by_type), "last": self.last_ts,
                "capture": self.capture, "counters": dict(self.counters),
                "pipeline": {"packets": self.pipeline.packets, "bytes": self.pipeline.bytes,
                             "flows_active": len(self.pipeline.table.active)},
                "ruleset_version": self.ruleset_version,
                "keyword_engine": self._engine_status(),
                "ruleset": self.updater.counters if self.updater is not None else None,
                "ruleset_error": self.updater.last_error if self.updater is not None else None,
                # what the publishing hosts received (agent.publish): records, bodies cut, fields dropped
                "publish": None if (pub := self.pipeline.publisher) is None else dict(pub.counters),
            })
        except OSError as e:
            log.error("%s: status: %s", self.name, e)


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)
