"""``edgeaudit-agent selfcheck``: the compliance self-check receipt (自查回执) of one agent.

What: for each technical measure the regulation asks of a unit's internet exit (Ministry of
Public Security Order 82, 互联网安全保护技术措施规定, arts. 7-8 and 13), whether this agent
is *configured* for it and whether it is *working*, with the evidence: what the running agent
reports in its status files (``agent.run.status``: records by type and the time of the last
one, kernel drops, NAT sources, ruleset version, profile upload), what its spool holds, and
what the collector answers right now. Measures:

=================  ======================================================================
login              上网登录/退出记录: login/logout records (RADIUS, DHCP, PPPoE, roster)
nat                地址转换记录: NAT mapping (conntrack on the gateway, router syslog)
registration       用户/单位注册信息: the unit's registration profile, uploaded
filtering          有害信息过滤: keyword ruleset loaded and running; blocking (inline)
backup             记录备份≥60天: local backup kept >= 60 days within the quota
upload             上传报警处置中心: records reach the collector
maintenance_log    系统维护日志: the agent's own audit records
capture            (prerequisite) capture processes running, kernel drops
=================  ======================================================================

The receipt is printed as a table (or JSON with ``--json``); the exit status is 0 when every
measure is configured and working, 1 when one is not, 2 when the configuration itself is bad.

Why from status files and not by asking the agent: the receipt must also be produced when
the agent is down (that is itself a finding), and must not depend on the agent answering.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from agent.config import AgentConfig, ConfigError, load_config
from agent.run.status import merge_counts, merge_latest, read_status
from agent.spool.store import MIN_KEEP_DAYS

GUEST_TITLE: Final = "用户注册信息 guest registration (captive portal)"
#: Records of a kind older than this are "stale" evidence (the measure may have stopped).
STALE_EVIDENCE_S: Final = 24 * 3600.0


@dataclass
class Measure:
    key: str
    title: str
    configured: bool = False
    working: bool = False
    evidence: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.configured and self.working


TITLES: Final = {
    "login": "上网登录/退出记录 login/logout records",
    "nat": "地址转换记录 NAT mapping",
    "registration": "注册信息 registration profile",
    "filtering": "有害信息过滤 keyword filtering",
    "backup": "记录备份≥60天 local backup",
    "upload": "上传报警处置中心 upload to the centre",
    "maintenance_log": "系统维护日志 maintenance log",
    "capture": "采集 capture",
}


def _when(ts: float | None, now: float) -> str:
    if ts is None:
        return "never"
    age = now - ts
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    if age < 120:
        return f"{stamp} ({age:.0f} s ago)"
    if age < 7200:
        return f"{stamp} ({age / 60:.0f} min ago)"
    return f"{stamp} ({age / 3600:.1f} h ago)"


def _seen(m: Measure, kinds: tuple[str, ...], records: dict[str, int], last: dict[str, float],
          now: float) -> bool:
    """Evidence lines for record kinds; True when one was seen and is fresh."""
    fresh = False
    for k in kinds:
        ts = last.get(k)
        m.evidence.append(f"{records.get(k, 0)} {k} records since the agent started, last {_when(ts, now)}")
        fresh = fresh or (ts is not None and now - ts <= STALE_EVIDENCE_S)
    return fresh


def check(cfg: AgentConfig, *, offline: bool = False, now: float | None = None) -> list[Measure]:
    now = time.time() if now is None else now
    status = read_status(cfg.spool.path, now)
    sup = status.get("supervisor", {})
    workers = [d for n, d in status.items() if n != "supervisor"]
    running = bool(sup.get("running"))
    docs = list(status.values())
    records = merge_counts(docs, "records")
    last = merge_latest(docs, "last")
    out: dict[str, Measure] = {k: Measure(k, t) for k, t in TITLES.items()}

    # capture
    m = out["capture"]
    m.configured = True
    m.evidence.append(f"mode {cfg.capture.mode}, interfaces {', '.join(cfg.capture.interfaces) or '-'}")
    alive = [d for d in workers if d.get("running")]
    cap = merge_counts(workers, "capture")
    m.working = running and bool(alive)
    m.evidence.append(f"agent {'running' if running else 'NOT running'} (status updated "
                      f"{_when(sup.get('updated'), now)}); {len(alive)} capture process(es) running")
    if cap:
        m.evidence.append(f"{cap.get('packets', 0)} packets, kernel drops {cap.get('kernel_drops', 0)}")

    # login
    m = out["login"]
    m.configured = True  # RADIUS, DHCP and PPPoE decoders are always on
    roster_note = f", roster {cfg.roster}" if cfg.roster else ""
    m.evidence.append(f"sources: RADIUS accounting, DHCP, PPPoE{roster_note}")
    if cfg.roster is not None:
        from agent.identity.roster import RosterError, load_roster

        try:
            roster = load_roster(cfg.roster)
            m.evidence.append(f"roster: {len(roster)} entries")
        except (RosterError, OSError) as e:
            m.configured = False
            m.evidence.append(f"roster unusable: {e}")
    m.working = running and _seen(m, ("login",), records, last, now)

    # nat
    m = out["nat"]
    if cfg.capture.mode == "gateway" and cfg.nat.conntrack:
        m.configured = True
        ct = sup.get("conntrack") or {}
        state = "open" if ct.get("open") else f"not open ({ct.get('error')})"
        m.evidence.append(f"conntrack events: {state}")
        m.working = running and bool(ct.get("open"))
    if cfg.nat.syslog_listen:
        m.configured = True
        sl = sup.get("syslog") or {}
        m.evidence.append(f"router syslog on {cfg.nat.syslog_listen}: "
                          + (f"{sl.get('messages', 0)} messages, {sl.get('malformed', 0)} malformed"
                             if "error" not in sl else f"not listening ({sl['error']})"))
        m.working = running and "error" not in sl and "listen" in sl
    if not m.configured:
        m.evidence.append("no NAT source: [nat].conntrack (gateway mode) or [nat].syslog_listen "
                          "(mirror mode)")
    _seen(m, ("nat",), records, last, now)

    # registration
    m = out["registration"]
    required = ("name", "legal_representative", "address", "phone", "isp", "access_method")
    missing = [k for k in required if not cfg.unit.get(k)] + \
        (["security_officers"] if not cfg.unit.get("security_officers") else []) + \
        (["ip_ranges"] if not cfg.unit.get("ip_ranges") else [])
    m.configured = not missing
    gaps = f"; missing {', '.join(missing)}" if missing else ""
    m.evidence.append(f"unit {cfg.unit.get('name')!r}{gaps}")
    m.working = running and sup.get("unit_uploaded") is not None
    m.evidence.append(f"profile uploaded {_when(sup.get('unit_uploaded'), now)}"
                      + (f"; last error: {sup['unit_error']}" if sup.get("unit_error") else ""))

    # filtering
    m = out["filtering"]
    m.configured = cfg.inspection.rules is not None
    if cfg.inspection.rules is None:
        m.evidence.append("no ruleset: [inspection].rules")
    else:
        from agent.run.supervisor import StartError, load_rules

        try:
            rules, _ = load_rules(cfg)
            assert rules is not None
            m.evidence.append(f"configured ruleset {rules.name} v{rules.version}, {rules.rule_count()} "
                              f"rules, keyword engine {rules.engine} ({rules.patterns.engine_reason})")
        except StartError as e:
            m.configured = False
            m.evidence.append(f"ruleset unusable: {e}")
    versions = sorted({int(d["ruleset_version"]) for d in workers
                       if d.get("running") and d.get("ruleset_version") is not None})
    m.working = running and bool(versions)
    engines = sorted({f"{ke.get('engine')} ({ke.get('reason')})" for d in workers
                      if d.get("running") and isinstance(ke := d.get("keyword_engine"), dict)})
    if engines:
        m.evidence.append(f"running keyword engine: {'; '.join(engines)}")
    m.evidence.append(f"running ruleset version(s): {', '.join(map(str, versions)) or 'none'}; "
                      + ("block rules drop and reset (inline)" if cfg.capture.mode == "inline"
                         else "alerts only (blocking needs inline mode)"))
    m.evidence.append(f"{records.get('alert', 0)} alerts, last {_when(last.get('alert'), now)}")

    # backup
    m = out["backup"]
    m.configured = cfg.spool.keep_days >= MIN_KEEP_DAYS
    m.evidence.append(f"keep {cfg.spool.keep_days} days, quota {cfg.spool.quota / 2**30:.1f} GiB, "
                      f"sync {cfg.spool.sync}")
    sp = sup.get("spool") or {}
    if "error" in sp or not sp:
        m.evidence.append(f"spool: {sp.get('error', 'no status yet')}")
    else:
        used = sp["spool_bytes"] / max(1, sp["quota_bytes"])
        m.working = running and not sp["quota_alarm"] and not sp["evicted_early_records"]
        oldest = sp.get("oldest_added")
        m.evidence.append(f"{sp['spool_records']} records, {used:.0%} of quota"
                          + (" — QUOTA ALARM" if sp["quota_alarm"] else "")
                          + f"; oldest kept from {_when(oldest, now)}")
        if sp["evicted_early_records"]:
            m.evidence.append(f"{sp['evicted_early_records']} records evicted before {cfg.spool.keep_days} "
                              "days for want of room: raise [spool].quota")
        if sp["records_dropped"]:
            m.working = False
            m.evidence.append(f"{sp['records_dropped']} records refused: the spool was full of unsent "
                              "records")

    # upload
    m = out["upload"]
    m.configured = bool(cfg.collector.url and cfg.collector.token)
    m.evidence.append(f"collector {cfg.collector.url}")
    if sp and "error" not in sp:
        lag = sp.get("upload_lag_s")
        oldest_note = f", oldest {lag:.0f} s" if lag else ""
        m.evidence.append(f"{sp['unsent_records']} records waiting{oldest_note}")
        held = sp.get("quarantined_records") or 0
        if held:
            # refused by the collector for good: they have not reached the centre until requeued
            m.evidence.append(f"{held} records the collector refused are held in quarantine: "
                              "`edgeaudit-agent spool quarantine` says why; requeue after the fix")
    up = sup.get("uploader") or {}
    if up.get("last_error"):
        m.evidence.append(f"last upload error: {up['last_error']}")
    reachable = None
    if not offline and m.configured:
        from agent.uploader.client import CollectorClient, UploadError

        try:
            ca = str(cfg.collector.ca_file) if cfg.collector.ca_file else None
            client = CollectorClient(cfg.collector.url, cfg.collector.token, ca_file=ca, timeout=10)
            agent, unit = client.whoami()
            reachable = True
            m.evidence.append(f"collector answers now: this agent is {agent!r} of unit {unit!r}")
        except UploadError as e:
            reachable = False
            m.evidence.append(f"collector does not accept this agent now: {e}")
    lag_ok = not sp or "error" in sp or (sp.get("upload_lag_s") or 0.0) < 3600
    m.working = running and reachable is not False and lag_ok and not (sp or {}).get("quarantined_records")

    # guest registration through the captive portal (only where one is configured)
    if cfg.portal is not None:
        pc = cfg.portal
        m = out["guest_registration"] = Measure("guest_registration", GUEST_TITLE, configured=True)
        m.evidence.append(f"captive portal {pc.page_url} on {', '.join(pc.interfaces)}, methods "
                          f"{', '.join(pc.methods)}; RFC 8908 API {pc.api_url}"
                          + ("" if pc.https_port else " (over HTTP: RFC 8908 wants TLS; set https_port)"))
        portal_state: dict[str, Any] = sup.get("portal") or {}
        if portal_state.get("error"):
            m.evidence.append(f"portal not running: {portal_state['error']}")
        counts = sup.get("portal_counters") or {}
        sms, desk = counts.get("registered_sms", 0), counts.get("registered_desk", 0)
        m.evidence.append(f"{sms} SMS and {desk} desk registrations, {counts.get('admitted', 0)} "
                          "admissions since the agent started")
        _seen(m, ("registration",), records, last, now)
        m.working = running and bool(portal_state.get("url")) and not portal_state.get("error")

    # maintenance log
    m = out["maintenance_log"]
    m.configured = True
    m.working = running and records.get("audit", 0) > 0
    _seen(m, ("audit",), records, last, now)
    return list(out.values())


def render(cfg: AgentConfig, measures: list[Measure], now: float) -> str:
    lines = [f"edgeaudit agent self-check receipt (自查回执) — {cfg.unit.get('name')}",
             f"configuration {cfg.path}, {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(now))}", ""]
    for m in measures:
        mark = "PASS" if m.ok else "FAIL"
        lines.append(f"[{mark}] {m.title}: configured {'yes' if m.configured else 'NO'}, "
                     f"working {'yes' if m.working else 'NO'}")
        lines += [f"         {e}" for e in m.evidence]
    failed = [m.key for m in measures if not m.ok]
    lines += ["", "all measures in place" if not failed else f"not in place: {', '.join(failed)}"]
    return "\n".join(lines) + "\n"


def main_selfcheck(path: Path, *, as_json: bool = False, offline: bool = False) -> int:
    try:
        cfg = load_config(path)
    except ConfigError as e:
        print(f"edgeaudit-agent: {e}", file=sys.stderr)
        return 2
    now = time.time()
    measures = check(cfg, offline=offline, now=now)
    if as_json:
        doc = {"unit": cfg.unit.get("name"), "ts": now,
               "measures": [dict(asdict(m), ok=m.ok) for m in measures]}
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        sys.stdout.write(render(cfg, measures, now))
    return 0 if all(m.ok for m in measures) else 1
