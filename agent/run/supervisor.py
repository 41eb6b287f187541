"""``edgeaudit-agent run``: the live agent on a gateway, from ``agent.toml`` to the collector.

What: ``Supervisor(config).run()`` starts, in this order,

1. the spool (``<spool.path>/spool.sqlite``: every record goes there first);
2. the capture workers (``agent.capture.workers.WorkerPool`` per interface, one process per
   core by default, ``PACKET_FANOUT_HASH``), each a ``GatewayConsumer`` (pipeline → NAT stamp →
   spool), forked before any thread starts so the compiled ruleset is shared copy-on-write;
   in ``inline`` mode one worker process judging NFQUEUE packets instead;
3. threads in this process: the uploader draining the spool (``SpoolDrain``); the NAT
   sources (conntrack events in gateway mode, a router's syslog in mirror mode) whose ``nat``
   records go to the spool; the unit profile upload (``PUT /api/v1/units/self``, retried
   until accepted); the ruleset fetcher (``GET /api/v1/rulesets/current`` with ETag every
   ``update_interval_s``: a verified, newer bundle replaces the rules file atomically and
   the workers pick it up); the Prometheus endpoint; the status file (every
   ``WRITE_EVERY`` s) that ``selfcheck`` reads; and, with ``[portal]``, the captive portal
   (``agent.portal.runner``: its pages, its sweep of ended admissions), whose ``registration``
   and ``login`` records go to the spool and whose ``login`` records also go to every capture
   worker's identity inbox, so the guest's sessions carry the guest account.

Signals: SIGTERM/SIGINT stop cleanly: the workers flush every open flow into the spool, the
NAT sources stop, the uploader gets ``DRAIN_ON_STOP_S`` to send what is spooled (the rest
stays spooled for next time), and an ``audit`` record notes the stop. SIGHUP reloads: the
configuration file is read again (a bad one is refused and logged, the running one kept),
the unit profile is uploaded again, and the workers check the rules file at once. Changing
interfaces, workers or the spool needs a restart (logged).

Why one supervisor process with threads for the slow parts: capture is the only part that
needs more than one core; uploads, NAT events and HTTP are I/O-bound and share one spool
handle. A worker that dies stops the agent with exit status 1 so systemd restarts it
(``Restart=on-failure``): a silent half-capturing agent would be worse.

Every start, stop, reload and ruleset change is an ``audit`` record (the regulation's
system maintenance log).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import http.server
import logging
import multiprocessing as mp
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, cast

from agent.capture.orphan import end_with_parent
from agent.config import AgentConfig, ConfigError, load_config
from agent.filter.compiled import CompiledRules
from agent.identity.roster import Roster
from agent.run.status import WRITE_EVERY, StatusFile, merge_counts, merge_latest, read_status
from agent.run.worker import GatewayConsumer
from agent.spool.store import Spool, SpoolError
from agent.uploader.client import CollectorClient, TransientError, UploadError, backoff_delay
from agent.uploader.drain import SpoolDrain
from wire.build import describe
from wire.records import AuditRecord

log = logging.getLogger("edgeaudit.agent")

SPOOL_FILE: Final = "spool.sqlite"
DRAIN_ON_STOP_S: Final = 10.0
APPEND_EVERY_S: Final = 0.5
#: The inline worker's status and stats cadence (the capture workers' is the pool's stats interval).
STATS_INTERVAL_S: Final = WRITE_EVERY
UNIT_RESEND_S: Final = 3600.0
#: Bytes of one TPACKET_V3 block; ``ring_mb`` sets how many.
BLOCK_SIZE: Final = 1 << 20


class StartError(Exception):
    """The agent cannot start; the message says why."""


def spool_file(cfg: AgentConfig) -> Path:
    return cfg.spool.path / SPOOL_FILE


def open_spool(cfg: AgentConfig) -> Spool:
    cfg.spool.path.mkdir(parents=True, exist_ok=True)
    sync: Any = cfg.spool.sync
    return Spool(spool_file(cfg), quota_bytes=cfg.spool.quota, keep_days=cfg.spool.keep_days, sync=sync)


def load_rules(cfg: AgentConfig) -> tuple[CompiledRules | None, list[Any]]:
    """The configured ruleset, compiled, and the trusted keys; StartError naming the problem."""
    from agent.filter.source import RulesSourceError
    from agent.filter.source import load_rules as load

    keys = load_keys(cfg)  # checked even beside a ruleset directory: a bad key file is a bad config
    if cfg.inspection.rules is None:
        return None, keys
    try:
        return load(cfg.inspection.rules, cfg.inspection.pubkeys, "[inspection].pubkeys",
                    engine=cfg.filter.engine, cache_dir=cfg.filter.cache_dir)[0], keys
    except RulesSourceError as e:
        section = "[filter]" if e.field == "engine" else "[inspection]"
        raise StartError(f"{section}.{e.field}: " + "; ".join(e.lines)) from e


def load_keys(cfg: AgentConfig) -> list[Any]:
    """The trusted ruleset signing keys of ``[inspection].pubkeys``."""
    from agent.filter.source import RulesSourceError
    from agent.filter.source import load_keys as load

    try:
        return load(cfg.inspection.pubkeys)
    except RulesSourceError as e:
        raise StartError(f"[inspection].pubkeys: {'; '.join(e.lines)}") from e


def load_roster_of(cfg: AgentConfig) -> Roster | None:
    from agent.identity.roster import RosterError, load_roster

    if cfg.roster is None:
        return None
    try:
        return load_roster(cfg.roster)
    except RosterError as e:
        raise StartError(f"[identity].roster: {e}") from e
    except OSError as e:
        raise StartError(f"[identity].roster: {cfg.roster}: {e.strerror or e}") from e


def audit(action: str, target: str, detail: str, result: str = "ok") -> dict[str, Any]:
    rec: AuditRecord = {"type": "audit", "ts": time.time(), "actor": "agent", "action": action,
                        "target": target, "detail": detail, "result": result}
    return cast(dict[str, Any], rec)


class _Appender:
    """Records from this process's threads, appended to the spool together (few fsyncs)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self.by_type: dict[str, int] = {}
        self.last: dict[str, float] = {}
        self.errors = 0

    def add(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self._pending.append(rec)
            t = str(rec["type"])
            self.by_type[t] = self.by_type.get(t, 0) + 1
            self.last[t] = float(rec["ts"])

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if batch:
            try:
                self.spool.append(batch)
            except SpoolError as e:
                self.errors += 1
                log.error("%d records not spooled: %s", len(batch), e)


class Supervisor:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.info: dict[str, Any] = {"unit_uploaded": None, "unit_error": None, "ruleset_fetched": None,
                                     "ruleset_error": None, "collector": None, "conntrack": None,
                                     "syslog": None}
        self.threads: list[threading.Thread] = []
        self.pools: list[Any] = []
        self.inline_pid: int | None = None
        self.inboxes: list[Any] = []
        self.portal: Any = None

    # -- start --

    def run(self) -> int:
        cfg = self.cfg
        rules, keys = load_rules(cfg)
        if rules is not None:
            log.info("ruleset %s v%d: %d rules, %d patterns; keyword engine %s (%s)", rules.name,
                     rules.version, rules.rule_count(), len(rules.patterns), rules.engine,
                     rules.patterns.engine_reason)
            gc.freeze()  # the ruleset lives as long as the workers forked with it: not the collector's work
        roster = load_roster_of(cfg)
        try:
            spool = open_spool(cfg)
        except (SpoolError, OSError, ValueError) as e:
            raise StartError(f"[spool].path: {e}") from e
        self.spool = spool
        self.appender = _Appender(spool)
        self.status = StatusFile(cfg.spool.path, "supervisor")
        self.appender.add(audit("start", "agent", f"mode {cfg.capture.mode}, interfaces "
                                f"{','.join(cfg.capture.interfaces) or '-'}, ruleset "
                                f"{f'{rules.name} v{rules.version}' if rules else 'none'}"))
        self.appender.flush()
        self.rules_version = rules.version if rules else None
        self._start_capture(rules, keys, roster)  # forks: before any thread
        signal.signal(signal.SIGTERM, lambda s, f: self.stop.set())
        signal.signal(signal.SIGINT, lambda s, f: self.stop.set())
        signal.signal(signal.SIGHUP, lambda s, f: self.reload.set())
        client = CollectorClient(cfg.collector.url, cfg.collector.token,
                                 ca_file=str(cfg.collector.ca_file) if cfg.collector.ca_file else None)
        self.client = client
        self.drain = SpoolDrain(open_spool(cfg), client, batch_records=cfg.collector.batch_records,
                                linger_s=cfg.collector.batch_seconds)
        self.drain_stop = threading.Event()
        self._thread("uploader", lambda: self.drain.run(self.drain_stop))
        if cfg.capture.mode == "gateway" and cfg.nat.conntrack:
            self._thread("conntrack", self._conntrack)
        if cfg.nat.syslog_listen:
            self._thread("syslog", self._syslog)
        self._thread("unit", self._unit_profile)
        bundle = cfg.inspection.rules is not None and not cfg.inspection.rules.is_dir()
        if rules is not None and keys and cfg.inspection.update_interval_s and bundle:
            self._thread("rulesets", self._ruleset_fetch)
        if cfg.metrics_listen:
            self._thread("metrics", self._metrics)
        if cfg.portal is not None:
            self._start_portal()
        if cfg.publishing is not None:  # what the admin declared, and what the profile added
            log.info("publishing hosts recorded: %s", ", ".join(cfg.publishing.all_hosts))
        if cfg.mail.enabled:  # (a [mail] change takes effect at the next start: the workers hold it)
            log.info("mail policy: domains %s; limits %s", ", ".join(cfg.mail.domains) or "(none given)",
                     cfg.mail.action("rate"))
        log.info("running: edgeaudit %s, mode %s, %d capture process(es), spool %s", describe(),
                 cfg.capture.mode, sum(len(p.pids()) for p in self.pools) + (self.inline_pid is not None),
                 spool_file(cfg))
        return self._loop()

    def _thread(self, name: str, target: Callable[[], None]) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def _start_capture(self, rules: CompiledRules | None, keys: list[Any], roster: Roster | None) -> None:
        cfg = self.cfg
        from agent.capture.afpacket import default_fanout_group
        from agent.capture.workers import CaptureConfig, WorkerPool

        workers = cfg.capture.workers or os.cpu_count() or 1
        total = workers * len(cfg.capture.interfaces)
        # identity records travel between workers (worker.py), and the portal's logins to every
        # worker: one inbox each, made before the fork
        shared = total > 1 or cfg.portal is not None
        inboxes: list[Any] = [mp.get_context("fork").Queue() for _ in range(total)] if shared else []
        self.inboxes = inboxes

        def consumer(name: str, slot: int | None = None) -> GatewayConsumer:
            nat = None
            if cfg.capture.mode == "gateway" and cfg.nat.conntrack:
                nat = _worker_nat()
            inbox = inboxes[slot] if slot is not None and inboxes else None
            peers = [q for i, q in enumerate(inboxes) if i != slot] if inbox is not None else None
            return GatewayConsumer(name, open_spool(cfg), depth=cfg.inspection.depth, roster=roster,
                                   rules=rules, rules_path=cfg.inspection.rules if keys else None,
                                   pubkeys=keys, nat=nat, inbox=inbox, peers=peers,
                                   publishing=cfg.publishing, mail=cfg.mail)

        if cfg.capture.mode == "inline":
            self.inline_pid = _fork_inline(cfg, lambda: consumer("inline", None))
            return
        blocks = max(4, cfg.capture.ring_mb * (1 << 20) // BLOCK_SIZE)
        for n, ifname in enumerate(cfg.capture.interfaces):
            bpf = None
            if cfg.capture.bpf:
                from agent.capture.bpf import compile_filter

                try:
                    # per interface: tcpdump compiles `vlan` tests for the interface's link type
                    bpf = compile_filter(cfg.capture.bpf, ifname=ifname)
                except (ValueError, OSError) as e:
                    raise StartError(f"[capture].bpf: {e}") from e
            # one fanout group per interface: the kernel refuses (EINVAL) a socket joining a group
            # bound to another device, so two interfaces sharing the default group never started
            capture = CaptureConfig(ifname, block_size=BLOCK_SIZE, block_nr=blocks, bpf=bpf,
                                    stats_interval=WRITE_EVERY,
                                    fanout_group=(default_fanout_group() + n) & 0xFFFF)
            pool = WorkerPool(capture, _named(consumer, ifname, n * workers), workers=workers)
            try:
                pool.start()
            except Exception as e:
                for p in self.pools:
                    p.stop()
                raise StartError(f"[capture].interfaces: {ifname}: {e}") from e
            self.pools.append(pool)

    # -- the main loop --

    def _loop(self) -> int:
        status = 0
        next_status = 0.0
        while not self.stop.wait(APPEND_EVERY_S):
            self.appender.flush()
            if self.reload.is_set():
                self.reload.clear()
                self._reload()
            failed = [f"{p.config.ifname}-{i}" for p in self.pools for i in p.failed()]
            failed += self._inline_failed()
            if failed:
                log.error("capture worker(s) %s died: stopping (systemd restarts the agent)", failed)
                self.appender.add(audit("stop", "agent", f"capture worker(s) {failed} died", "failed"))
                status = 1
                break
            if time.monotonic() >= next_status:
                next_status = time.monotonic() + WRITE_EVERY
                self._write_status()
        self._shutdown()
        return status

    def _inline_failed(self) -> list[str]:
        if self.inline_pid is None:
            return []
        pid, _ = os.waitpid(self.inline_pid, os.WNOHANG)
        if pid == 0:
            return []
        self.inline_pid = None
        return ["inline"]

    def _shutdown(self) -> None:
        log.info("stopping: flushing flows and the spool")
        if self.portal is not None:
            try:
                self.portal.stop()  # every guest's logout, then the filter goes
            except Exception as e:
                log.error("portal: stop: %s", e)
        for pool in self.pools:
            pool.stop()
        if self.inline_pid is not None:
            os.kill(self.inline_pid, signal.SIGTERM)
            os.waitpid(self.inline_pid, 0)
        self.stop.set()
        self.appender.add(audit("stop", "agent", "stopped on request"))
        self.appender.flush()
        # give the uploader a moment to send what the workers flushed; the rest stays spooled
        deadline = time.monotonic() + DRAIN_ON_STOP_S
        while time.monotonic() < deadline:
            try:
                if self.spool.stats().unsent_records == 0:
                    break
            except SpoolError:
                break
            time.sleep(0.1)
        self.drain_stop.set()
        for t in self.threads:
            t.join(timeout=5)
        self._write_status(final=True)
        self.spool.close()

    def _reload(self) -> None:
        try:
            new = load_config(self.cfg.path)
        except ConfigError as e:
            log.error("reload refused, the running configuration stays: %s", e)
            self.appender.add(audit("reload", "agent.toml", str(e), "rejected"))
            return
        fixed = ("capture", "spool")
        if any(getattr(new, k) != getattr(self.cfg, k) for k in fixed):
            log.warning("reload: [capture] and [spool] changes take effect at the next restart")
        self.cfg = new
        self.info["unit_uploaded"] = None  # upload the profile again
        self._check_rules_now()
        self.appender.add(audit("reload", "agent.toml", "configuration reloaded"))

    def _check_rules_now(self) -> None:
        """SIGHUP to every capture process: check the rules file now, not at the next status."""
        pids = [pid for pool in self.pools for pid in pool.pids()]
        if self.inline_pid is not None:
            pids.append(self.inline_pid)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGHUP)

    # -- status --

    def _write_status(self, final: bool = False) -> None:
        listener = getattr(self, "syslog_listener", None)
        if listener is not None:  # counted as lines arrive, shown as of now (malformed ones too)
            self.info["syslog"] = {"listen": self.cfg.nat.syslog_listen, **listener.counters,
                                   **listener.parser.counters}
        try:
            st = self.spool.stats()
            spool = dataclasses.asdict(st)
        except SpoolError as e:
            spool = {"error": str(e)}
        capture = [p.counters() for p in self.pools]
        try:
            self.status.write({
                "role": "supervisor", "final": final, "mode": self.cfg.capture.mode,
                "config": str(self.cfg.path), "records": self.appender.by_type, "last": self.appender.last,
                "spool": spool, "capture": merge_counts([{"c": c} for c in capture], "c"),
                "workers": sum(len(p.pids()) for p in self.pools) + (self.inline_pid is not None),
                "uploader": {"counters": dict(getattr(self.drain, "counters", {})),
                             "last_error": getattr(self.drain, "last_error", None)},
                "portal_counters": self.portal.counters if self.portal is not None else None,
                **self.info,
            })
        except OSError as e:
            log.error("status: %s", e)

    # -- the captive portal --

    def _start_portal(self) -> None:
        from agent.portal.admission import AdmissionError
        from agent.portal.runner import PortalRunner

        cfg = self.cfg
        assert cfg.portal is not None
        try:
            unit = str(cfg.unit.get("name") or "")
            runner = PortalRunner(cfg.portal, unit, cfg.spool.path, self._portal_emit)
            runner.start()
        except (AdmissionError, OSError, ValueError) as e:
            # capture and upload go on (the law's logs matter most); the failure is on record
            self.info["portal"] = {"error": str(e)}
            log.error("portal: cannot start: %s", e)
            self.appender.add(audit("portal_start", "portal", str(e), "failed"))
            return
        self.portal = runner
        self.info["portal"] = {"url": cfg.portal.page_url, "api": cfg.portal.api_url}
        self.appender.add(audit("portal_start", "portal", f"{cfg.portal.page_url}, methods "
                                f"{','.join(cfg.portal.methods)}"))
        self._thread("portal-sweep", lambda: runner.sweep_forever(self.stop))

    def _portal_emit(self, records: list[dict[str, Any]]) -> None:
        for rec in records:
            self.appender.add(rec)
            if rec["type"] == "login":
                for q in self.inboxes:
                    try:
                        q.put_nowait(dict(rec))
                    except Exception as e:  # a full or closed inbox: stamping misses it, the spool has it
                        log.error("portal: identity inbox: %s", e)
        self.appender.flush()  # an admission is on record before the guest's page says so

    # -- threads --

    def _conntrack(self) -> None:
        from agent.nat.conntrack import ConntrackSource

        try:
            src = ConntrackSource()
        except OSError as e:
            self.info["conntrack"] = {"error": str(e)}
            log.error("conntrack: cannot open: %s (no NAT records)", e)
            return
        with src:
            for rec in src.resync():
                self.appender.add(dict(rec))
            self.info["conntrack"] = {"open": True}

            def on_record(rec: Any) -> None:
                self.appender.add(dict(rec))
                self.info["conntrack"] = {"open": True, **src.stats()}

            src.run(on_record, self.stop)

    def _syslog(self) -> None:
        from zoneinfo import ZoneInfo

        from agent.nat.syslog import SyslogNatListener, SyslogNatParser

        cfg = self.cfg.nat
        host, _, port = cfg.syslog_listen.rpartition(":")
        try:
            listener = SyslogNatListener(host.strip("[]"), int(port), tcp="tcp" in cfg.syslog_protocols,
                                         udp="udp" in cfg.syslog_protocols,
                                         parser=SyslogNatParser(ZoneInfo(cfg.syslog_timezone)))
        except (OSError, ValueError) as e:
            self.info["syslog"] = {"error": str(e)}
            log.error("syslog NAT listener on %s: %s", cfg.syslog_listen, e)
            return
        self.syslog_listener = listener
        self.info["syslog"] = {"listen": cfg.syslog_listen}

        def on_record(rec: Any) -> None:
            self.appender.add(dict(rec))

        listener.run(on_record, self.stop)

    def _unit_profile(self) -> None:
        attempt = 0
        while not self.stop.is_set():
            if self.info["unit_uploaded"] is not None and \
                    time.time() - float(self.info["unit_uploaded"]) < UNIT_RESEND_S:
                self.stop.wait(5)
                continue
            try:
                self.client.request_json("PUT", "/api/v1/units/self", self.cfg.unit)
            except TransientError as e:
                self.info["unit_error"] = str(e)
                self.stop.wait(backoff_delay(attempt))
                attempt += 1
                continue
            except UploadError as e:
                self.info["unit_error"] = str(e)
                log.error("unit profile refused: %s", e)
                self.stop.wait(UNIT_RESEND_S)
                continue
            attempt = 0
            self.info["unit_uploaded"] = time.time()
            self.info["unit_error"] = None

    def _ruleset_fetch(self) -> None:
        from rulesets.bundle import BundleError, verify_bundle
        from wire.files import write_atomically

        etag: str | None = None
        while not self.stop.wait(self.cfg.inspection.update_interval_s):
            path = self.cfg.inspection.rules
            assert path is not None
            try:
                got = self.client.fetch("/api/v1/rulesets/current", etag)
            except (TransientError, UploadError) as e:
                self.info["ruleset_error"] = str(e)
                continue
            self.info["ruleset_fetched"] = time.time()
            if got is None:  # 304 Not Modified (or 404: nothing published)
                continue
            data, etag = got
            try:
                keys = load_keys(self.cfg)
            except StartError as e:
                self.info["ruleset_error"] = str(e)
                continue
            try:
                verified = verify_bundle(data, keys, now=int(time.time()), newer_than=self.rules_version or 0)
            except BundleError as e:
                self.info["ruleset_error"] = e.reason
                if "not newer" not in e.reason:
                    self.appender.add(audit("ruleset_update", "collector bundle", e.reason, "rejected"))
                continue
            write_atomically(path, data, 0o644)  # the workers swap it in at their next check
            self.rules_version = verified.version
            self.info["ruleset_error"] = None
            self._check_rules_now()

    def _metrics(self) -> None:
        sup = self
        host, _, port = self.cfg.metrics_listen.rpartition(":")

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server API)
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = sup.metrics_text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        try:
            server = http.server.ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
        except OSError as e:
            log.error("metrics on %s: %s", self.cfg.metrics_listen, e)
            return
        server.timeout = 0.5
        with server:
            while not self.stop.is_set():
                server.handle_request()

    def metrics_text(self) -> str:
        docs = list(read_status(self.cfg.spool.path).values())
        lines = []
        capture = merge_counts([{"c": p.counters()} for p in self.pools], "c")
        for k, v in sorted(capture.items()):
            lines.append(f'edgeaudit_capture_{k}_total {v}')
        for t, v in sorted(merge_counts(docs, "records").items()):
            lines.append(f'edgeaudit_records_total{{type="{t}"}} {v}')
        for t, last in sorted(merge_latest(docs, "last").items()):
            lines.append(f'edgeaudit_last_record_timestamp_seconds{{type="{t}"}} {last}')
        engines = {(e.get("engine", "?"), e.get("reason", "")) for d in docs
                   if isinstance(e := d.get("keyword_engine"), dict)}
        for engine, reason in sorted(engines):
            why = reason.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
            lines.append(f'edgeaudit_keyword_engine_info{{engine="{engine}",reason="{why}"}} 1')
        for k, v in sorted(merge_counts(docs, "publish").items()):  # publishing hosts (agent.publish)
            lines.append(f'edgeaudit_publish_total{{counter="{k}"}} {v}')
        if self.portal is not None:  # registrations, admissions, refusals by reason (agent.portal.service)
            for k, v in sorted(self.portal.counters.items()):
                lines.append(f'edgeaudit_portal_events_total{{event="{k}"}} {v}')
        try:
            st = self.spool.stats()
            lines += [f"edgeaudit_spool_records {st.spool_records}",
                      f"edgeaudit_spool_bytes {st.spool_bytes}",
                      f"edgeaudit_spool_unsent_records {st.unsent_records}",
                      f"edgeaudit_spool_quota_bytes {st.quota_bytes}",
                      f"edgeaudit_spool_quota_alarm {int(st.quota_alarm)}",
                      f"edgeaudit_spool_records_dropped_total {st.records_dropped}",
                      f"edgeaudit_upload_lag_seconds {st.upload_lag_s or 0.0}",
                      # batches the collector refused for good (agent.spool.quarantine)
                      f"edgeaudit_spool_quarantined_batches {st.quarantined_batches}",
                      f"edgeaudit_spool_quarantined_records {st.quarantined_records}",
                      f"edgeaudit_spool_quarantined_bytes {st.quarantined_bytes}",
                      f"edgeaudit_spool_quarantined_records_total {st.quarantined_total}",
                      f"edgeaudit_spool_requeued_records_total {st.requeued_total}",
                      f"edgeaudit_spool_quarantine_evicted_records_total {st.quarantine_evicted_records}"]
        except SpoolError:
            pass
        return "\n".join(lines) + "\n"


def _named(make: Callable[[str, int | None], GatewayConsumer], ifname: str,
           first_slot: int) -> Callable[[int, Any], GatewayConsumer]:
    """The pool's consumer factory for interface ``ifname``: worker i is "IFNAME-i", with the
    identity inbox ``first_slot + i``."""
    return lambda index, _source: make(f"{ifname}-{index}", first_slot + index)


def _worker_nat() -> Any:
    """The NAT table a capture worker stamps sessions from: its own conntrack listener (the
    supervisor's emits the `nat` records; this one only answers ``outside_for``)."""
    from agent.nat.conntrack import ConntrackSource

    try:
        src = ConntrackSource()
    except OSError as e:
        log.error("conntrack in a capture worker: %s (sessions get no nat_ip)", e)
        return None
    src.resync()
    stop = threading.Event()
    threading.Thread(target=src.run, args=(lambda _r: None, stop), daemon=True, name="nat-lookup").start()
    return src


def _fork_inline(cfg: AgentConfig, make: Callable[[], GatewayConsumer]) -> int:
    """A child process judging NFQUEUE packets with the pipeline of ``make()``; returns its pid."""
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        end_with_parent(parent)  # SIGTERM when the agent is killed: its stop path below
        code = _inline_child(cfg, make)
    except BaseException:
        log.exception("inline worker")
    finally:
        os._exit(code)


def _inline_child(cfg: AgentConfig, make: Callable[[], GatewayConsumer]) -> int:
    from agent.enforce.inject import RawInjector
    from agent.enforce.inline import InlineAgent
    from agent.enforce.nfqueue import NfQueue

    stopping = [False]
    signal.signal(signal.SIGTERM, lambda s, f: stopping.__setitem__(0, True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    consumer = make()
    injector = RawInjector()
    agent = InlineAgent(consumer.pipeline, injector)
    next_stats = time.monotonic() + STATS_INTERVAL_S

    def should_stop() -> bool:
        nonlocal next_stats
        consumer.feed([])  # flushes buffered records on time
        if time.monotonic() >= next_stats:
            next_stats = time.monotonic() + STATS_INTERVAL_S
            consumer.stats(dict(agent.counters))
        return stopping[0]

    with NfQueue(cfg.capture.queue) as queue:
        try:
            agent.serve(queue, should_stop)
        finally:
            consumer.finish()
            injector.close()
    return 0


def main_run(config: Path) -> int:
    """``edgeaudit-agent run --config FILE``: exit 0 after a clean stop, 2 on a bad configuration."""
    logging.basicConfig(level=logging.INFO, format="edgeaudit-agent: %(name)s: %(message)s")
    try:
        cfg = load_config(config)
        return Supervisor(cfg).run()
    except ConfigError as e:
        for line in str(e).splitlines():
            log.error("%s", line)
        return 2
    except StartError as e:
        log.error("cannot start: %s", e)
        return 2

