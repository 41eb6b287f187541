"""Per-unit compliance report: each measure the law requires, with live evidence.

What: ``report(...)`` answers, for one unit, for each measure of the regulation (login and
logout records, NAT mapping, registration information, keyword filtering and stopping, the
≥ 60-day local backup and the center's 6-month retention, upload to the center, the system
maintenance log), whether it holds, the evidence and notes (facts worth a look that do not
fail the measure): the latest record of each kind, the
records per day over the window, the days without any (gaps in coverage), the agents' last
uploads and the ruleset bundle each last fetched. ``problems(...)`` is the short list behind
"units out of compliance": an agent silent for more than ``SILENT_AFTER``, a retention
shorter than ``REQUIRED_RETENTION_DAYS``, an agent on an older ruleset than the current one.

Where the evidence comes from: the units registry (``collector.units.registry``), which
ingest updates after every committed batch (per unit and record type: records per day, the
latest ts), and which the ruleset endpoint tells which bundle each agent fetched. No record
is read, so a report costs milliseconds whatever the store holds.

Registration: the measure holds when the unit's profile (备案) is uploaded; its evidence also
counts the users the unit registered (``registration`` records of its agents in the window:
the captive portal's guests, issue 19), with the latest. A unit with none is shown so (a
note), not failed: a unit whose users are its staff, or that registers them in its own
system, uploads no guest registrations, and the profile says nothing structured about a public
service (``services`` is free text) to tell such a unit from a hotel or a library.

Publishing (issue 20): a unit whose profile names a news, publishing or bulletin-board service
(``wire.unit.publishing_services``: the same reading the agent makes of it), or whose agents
sent ``publish`` records, gets the measure "can record and keep the content published and
when": it holds when ``publish`` records came in the window (their count per day and the
latest are the evidence, with the services and the hosts they name). A declared service with
no record in the whole window fails: its agent is not configured for it (no host named, or
another one), or its posts travel where the agent cannot see them (HTTPS). A quiet day is no
gap: a forum need not get a post every day. Units that declare no such service and sent no
record are not shown the measure (it does not apply to them).

Mail (issue 20): a unit whose profile lists mail servers (``mail_servers``), or whose agents
sent ``smtp`` records, gets the measure "can prevent and clear mass mail sent with a forged or
hidden sender". Every agent runs the mail policy (its defaults, or the unit's ``[mail]``), so
what the center can check is that the unit's mail passes where the policy sees it: ``smtp``
records in the window (per day, the latest), beside the mail policy's alerts (``alert``
records of category ``mail``: the latest of them). Declared mail servers with no SMTP
transaction in the whole window fail: the mail leaves another way (or is encrypted end to
end before the gateway sees a command), and nothing stops a mass mailer there.

Problems are worded in Chinese and English ("中文 / English"): the report and the list are
read by operators in either language and printed as they are.

Limits: a day counts records by the day of the latest record of their batch (a batch spans
seconds); "gaps" are whole UTC days, counted from the unit's first day of that kind in the
window (a unit that started last week has no gaps before it).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from collector.ingest.decoding import MAIL_ALERTS
from collector.units.registry import Units
from wire.unit import publishing_services, service_hosts

WINDOW_DAYS: Final = 60
#: An agent silent longer than this (seconds) makes its unit out of compliance.
SILENT_AFTER: Final = 3600.0
#: Records of a kind older than this (seconds) make the measure fail.
FRESH_WITHIN: Final = 86400.0
REQUIRED_RETENTION_DAYS: Final = 180  # network logs: 6 months
REQUIRED_BACKUP_DAYS: Final = 60  # the agent refuses a shorter local keep (agent.spool MIN_KEEP_DAYS)
IDENTITY_TYPES: Final = ("login", "radius", "dhcp", "pppoe")
#: Every measure, in the report's order; "publishing" and "mail" only for units with such services
#: (module doc).
MEASURES: Final = ("login_records", "nat_mapping", "registration", "keyword_filtering", "publishing",
                   "mail", "retention", "upload", "maintenance_log")


def _day(n: int) -> str:
    return datetime.fromtimestamp(n * 86400, UTC).strftime("%Y-%m-%d")


def _coverage(days: dict[str, dict[int, int]], types: Sequence[str], first: int, last: int) -> dict[str, Any]:
    per_day: dict[int, int] = {}
    for t in types:
        for d, n in days.get(t, {}).items():
            per_day[d] = per_day.get(d, 0) + n
    start = min(per_day, default=None)
    gaps = [] if start is None else [_day(d) for d in range(start, last + 1) if not per_day.get(d)]
    return {"records": sum(per_day.values()), "days_with_records": len(per_day),
            "per_day": {_day(d): per_day[d] for d in sorted(per_day)}, "gaps": gaps}


# The three checks the out-of-compliance list makes, shared with the report's measures:
# each gives the problems found (none: the check holds).

def _silent(live: Sequence[dict[str, Any]], now: float) -> list[str]:
    return [f"探针 {a['agent']} 超过 1 小时未上传 / agent {a['agent']} silent for more than an hour"
            for a in live if a["last_upload"] is None or now - a["last_upload"] > SILENT_AFTER]


def _behind(live: Sequence[dict[str, Any]], fetched: dict[str, tuple[str, float]],
            current_ruleset: str | None) -> list[str]:
    if current_ruleset is None:
        return []
    return [f"探针 {a['agent']} 规则库落后 / agent {a['agent']} runs an older ruleset than the current one"
            for a in live if fetched.get(a["agent"], ("",))[0] != current_ruleset]


def _short_retention(retention_days: int) -> list[str]:
    if retention_days >= REQUIRED_RETENTION_DAYS:
        return []
    return [f"中心留存 {retention_days} 天，要求 {REQUIRED_RETENTION_DAYS} 天 / the center keeps"
            f" {retention_days} days, the law asks {REQUIRED_RETENTION_DAYS}"]


def report(units: Units, agents: Sequence[tuple[str, str, bool]], unit: str, retention_days: int,
           current_ruleset: str | None, now: float | None = None) -> dict[str, Any]:
    """The unit's report (module doc); ``agents`` is (name, unit, revoked) per agent."""
    now = time.time() if now is None else now
    last = int(now // 86400)
    first = last - WINDOW_DAYS + 1
    latest, days = units.evidence(unit, first, last)
    profile, profile_updated = units.profile(unit)
    fetched = units.rulesets()
    listing = {u["unit"]: u for u in units.listing(list(agents), now)}
    mine = listing.get(unit, {"agents": []})["agents"]
    live = [a for a in mine if a["status"] != "revoked"]

    def newest(types: Sequence[str]) -> float | None:
        stamps = [latest[t] for t in types if t in latest]
        return max(stamps) if stamps else None

    def fresh(ts: float | None) -> bool:
        return ts is not None and now - ts <= FRESH_WITHIN

    measures: list[dict[str, Any]] = []

    def add(key: str, ok: bool, evidence: dict[str, Any], problems: list[str],
            notes: Sequence[str] = ()) -> None:
        measures.append({"measure": key, "ok": ok, "evidence": evidence, "problems": problems,
                         "notes": list(notes)})

    ident = newest(IDENTITY_TYPES)
    cov = _coverage(days, IDENTITY_TYPES, first, last)
    add("login_records", fresh(ident), {"latest": ident, **cov,
                                        "by_type": {t: latest[t] for t in IDENTITY_TYPES if t in latest}},
        [] if fresh(ident) else ["近 24 小时无登录/注销记录 / no login/logout record in the last 24 hours"])
    nat = newest(["nat"])
    add("nat_mapping", fresh(nat), {"latest": nat, **_coverage(days, ["nat"], first, last)},
        [] if fresh(nat) else ["近 24 小时无 NAT 记录 / no NAT record in the last 24 hours"])
    users = _coverage(days, ["registration"], first, last)
    add("registration", profile is not None,
        {"uploaded": profile_updated, "profile": profile is not None, "latest": newest(["registration"]),
         "records": users["records"], "days_with_records": users["days_with_records"],
         "per_day": users["per_day"]},  # no gaps: a day without a new guest misses nothing
        [] if profile is not None else ["未上报备案信息 / no registration profile uploaded"],
        [] if users["records"]
        else [f"{WINDOW_DAYS} 天内无用户注册记录 / no user registration in {WINDOW_DAYS} days"])
    behind = _behind(live, fetched, current_ruleset)
    runs = {a["agent"]: (None if (v := fetched.get(a["agent"])) is None else {"etag": v[0], "fetched": v[1]})
            for a in live}
    add("keyword_filtering", current_ruleset is not None and bool(live) and not behind,
        {"current_ruleset": current_ruleset, "agents": runs, "latest_alert": newest(["alert"]),
         **_coverage(days, ["alert"], first, last)},
        (["未发布规则库 / no ruleset published"] if current_ruleset is None else []) + behind)
    _publishing(add, profile, days, first, last, newest(["publish"]))
    _mail(add, profile, days, first, last, newest(["smtp"]), newest([MAIL_ALERTS]))
    short = _short_retention(retention_days)
    add("retention", not short,
        {"center_retention_days": retention_days, "required_days": REQUIRED_RETENTION_DAYS,
         "agent_backup_days_at_least": REQUIRED_BACKUP_DAYS}, short)
    silent = _silent(live, now)
    add("upload", bool(live) and not silent, {"agents": mine},
        (["无探针 / no agent"] if not live else []) + silent)
    maint = newest(["audit"])
    add("maintenance_log", maint is not None, {"latest": maint, **_coverage(days, ["audit"], first, last)},
        [] if maint is not None
        else [f"{WINDOW_DAYS} 天内无系统维护记录 / no maintenance (audit) record in {WINDOW_DAYS} days"])
    return {"unit": unit, "name": (profile or {}).get("name"), "generated": now, "window_days": WINDOW_DAYS,
            "ok": all(m["ok"] for m in measures), "measures": measures}


def _publishing(add: Any, profile: dict[str, Any] | None, days: dict[str, dict[int, int]], first: int,
                last: int, latest: float | None) -> None:
    """The publishing measure (module doc), added only where it applies."""
    services = publishing_services([s for s in (profile or {}).get("services") or [] if isinstance(s, str)])
    posts = _coverage(days, ["publish"], first, last)
    if not services and not posts["records"]:
        return
    hosts = list(dict.fromkeys(h for s in services for h in service_hosts(s)))
    missing = bool(services) and not posts["records"]
    notes = []
    if services and not hosts:
        notes.append("备案所列发布服务未写明主机名，需在探针 [publishing] hosts 中配置 / the profile's "
                     "publishing services name no host: the agent records them only with [publishing] hosts")
    if not services:
        notes.append("备案信息未载明信息发布服务，但探针上报了发布记录 / the unit's agents record published "
                     "content, but its profile names no publishing service")
    problem = (f"备案载明信息发布服务，{WINDOW_DAYS} 天内无发布记录 / the profile names publishing services, "
               f"but no publish record came in {WINDOW_DAYS} days")
    # no gaps: a day without a post misses nothing
    add("publishing", not missing,
        {"services": services, "hosts": hosts, "latest": latest, "records": posts["records"],
         "days_with_records": posts["days_with_records"], "per_day": posts["per_day"]},
        [problem] if missing else [], notes)


def _mail(add: Any, profile: dict[str, Any] | None, days: dict[str, dict[int, int]], first: int,
          last: int, latest: float | None, latest_alert: float | None) -> None:
    """The mail measure (module doc), added only where it applies."""
    servers = [s for s in (profile or {}).get("mail_servers") or [] if isinstance(s, str)]
    mail = _coverage(days, ["smtp"], first, last)
    if not servers and not mail["records"]:
        return
    missing = bool(servers) and not mail["records"]
    unlisted = ("备案信息未载明邮件服务器，但探针上报了邮件记录 / the unit's agents record mail "
                "transactions, but its profile lists no mail server")
    notes = [] if servers else [unlisted]
    problem = (f"备案载明邮件服务器，{WINDOW_DAYS} 天内无邮件记录 / the profile lists mail servers, but no "
               f"SMTP transaction came in {WINDOW_DAYS} days")
    # no gaps: a day without mail misses nothing
    add("mail", not missing,
        {"mail_servers": servers, "latest": latest, "records": mail["records"],
         "days_with_records": mail["days_with_records"], "per_day": mail["per_day"],
         "latest_policy_alert": latest_alert},
        [problem] if missing else [], notes)


def problems(units: Units, agents: Sequence[tuple[str, str, bool]], retention_days: int,
             current_ruleset: str | None, now: float | None = None) -> list[dict[str, Any]]:
    """Units out of compliance on the three checks of the list (module doc): unit and why."""
    now = time.time() if now is None else now
    fetched = units.rulesets()
    out = []
    for u in units.listing(list(agents), now):
        live = [a for a in u["agents"] if a["status"] != "revoked"]
        why = _silent(live, now) + _short_retention(retention_days) + _behind(live, fetched, current_ruleset)
        if why:
            out.append({"unit": u["unit"], "name": (u["profile"] or {}).get("name"), "problems": why})
    return out
