"""The compliance report as a printable page, and as a PDF.

What: ``render(report)`` turns ``collector.units.compliance.report``'s answer into one
self-contained HTML page (Chinese with English, styles inline, no script, every value
escaped): what an operator prints or files. ``to_pdf(html)`` renders that page with the
machine's headless Chromium (Debian's ``chromium``: ``--print-to-pdf``), or raises
``PdfUnavailable`` saying so when it is not installed.

Why Chromium for the PDF: the report is Chinese text; a browser lays it out with the
system's CJK fonts exactly as the printed page, where a PDF library would need fonts
embedded by hand. The page itself needs no browser to be printed.

Sandboxed: Chromium runs with its own sandbox (never ``--no-sandbox``): the page holds
values agents sent, and a renderer bug must not become code running as the collector.
Chromium refuses its sandbox to root, so a collector running as root starts it as
``RENDER_USER`` (nobody: no files of its own, no groups) in a private directory that user
owns; as any other user it runs as that user. It gets an environment of its own (nothing of
the collector's), and V8 without its JIT (the page has no script; systemd's
MemoryDenyWriteExecute would kill a JIT). Where the sandbox cannot start (no user
namespaces), there is no PDF and ``PdfUnavailable`` says why, rather than an unsandboxed run.
"""

from __future__ import annotations

import html
import os
import pwd
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

#: Times on the report are Beijing time (the center's), with the zone named.
CST: Final = timezone(timedelta(hours=8), "UTC+8")
PDF_TIMEOUT_S: Final = 60
#: Who runs Chromium when the collector is root (module doc).
RENDER_USER: Final = "nobody"
TITLES: Final = {
    "login_records": "登录/注销记录 Login and logout records",
    "nat_mapping": "地址转换（NAT）记录 NAT mapping",
    "registration": "备案信息与用户注册信息 Registration information (unit profile, user registrations)",
    "keyword_filtering": "关键词过滤与阻断 Keyword filtering and stopping",
    "publishing": "发布信息记录（新闻、出版、电子公告服务）"
                  "Published content recorded (news, publishing, bulletin boards)",
    "mail": "防范群发、伪造或隐藏发件人邮件 Mass mail with forged or hidden senders found and stopped",
    "retention": "日志留存（本地≥60天，中心≥6个月）Backup ≥ 60 days, retention ≥ 6 months",
    "upload": "上传至公安机关 Upload to the center",
    "maintenance_log": "系统维护日志 System maintenance log",
}
STYLE: Final = """
body { font: 12pt/1.5 "WenQuanYi Micro Hei", "Noto Sans CJK SC", sans-serif; margin: 2cm; color: #111; }
h1 { font-size: 16pt; } h2 { font-size: 13pt; margin-top: 1.2em; }
table { border-collapse: collapse; width: 100%; }
td, th { border: 1px solid #999; padding: 3pt 6pt; text-align: left; }
.ok { color: #075e07; font-weight: bold; } .bad { color: #a40000; font-weight: bold; }
.small { font-size: 9pt; color: #444; }
"""


class PdfUnavailable(RuntimeError):
    """No headless browser here to make the PDF (the HTML page still prints)."""


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "—"
    return datetime.fromtimestamp(ts, UTC).astimezone(CST).strftime("%Y-%m-%d %H:%M:%S UTC+8")


def _e(value: Any) -> str:
    return html.escape("—" if value is None else str(value))


def _evidence(m: dict[str, Any]) -> str:
    ev = m["evidence"]
    rows: list[tuple[str, str]] = []
    for key in ("latest", "latest_alert", "uploaded"):
        if key in ev:
            rows.append((key, _when(ev[key])))
    for key in ("records", "days_with_records", "center_retention_days", "required_days",
                "agent_backup_days_at_least", "current_ruleset"):
        if key in ev:
            rows.append((key, _e(ev[key])))
    for key in ("services", "hosts"):  # the publishing services the profile names, and their hosts
        if ev.get(key):
            rows.append((key, _e(", ".join(str(x) for x in ev[key]))))
    if ev.get("gaps"):
        gaps = ev["gaps"]
        shown = ", ".join(gaps[:10]) + (" …" if len(gaps) > 10 else "")
        rows.append(("gaps (days without records)", f"{_e(shown)} ({len(gaps)})"))
    if isinstance(ev.get("agents"), list):
        for a in ev["agents"]:
            rows.append((f"agent {a.get('agent')}",
                         f"{_e(a.get('status'))}, last upload {_when(a.get('last_upload'))}"))
    elif isinstance(ev.get("agents"), dict):
        for name, got in ev["agents"].items():
            got_text = "—" if got is None else f"{_e(got['etag'][:14])}… {_when(got['fetched'])}"
            rows.append((f"agent {name} ruleset", got_text))
    rows.extend(("note", _e(note)) for note in m.get("notes", ()))
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)


def render(report: dict[str, Any]) -> str:
    """The report as one printable HTML page (module doc)."""
    parts = [f"<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
             f"<title>合规报告 {_e(report['unit'])}</title><style>{STYLE}</style></head><body>",
             "<h1>互联网安全保护技术措施合规报告<br>"
             f"Compliance report — {_e(report['unit'])} {_e(report.get('name'))}</h1>",
             f"<p>生成时间 Generated: {_when(report['generated'])}；"
             f"统计窗口 Window: {_e(report['window_days'])} 天 days；"
             f"结论 Overall: <span class='{'ok' if report['ok'] else 'bad'}'>"
             f"{'符合 compliant' if report['ok'] else '不符合 not compliant'}</span></p>",
             "<table><tr><th>措施 Measure</th><th>结论 Result</th><th>问题 Problems</th></tr>"]
    for m in report["measures"]:
        parts.append(f"<tr><td>{_e(TITLES.get(m['measure'], m['measure']))}</td>"
                     f"<td class='{'ok' if m['ok'] else 'bad'}'>{'符合 OK' if m['ok'] else '不符合 NO'}</td>"
                     f"<td>{_e('; '.join(m['problems']) or '—')}</td></tr>")
    parts.append("</table>")
    for m in report["measures"]:
        parts.append(f"<h2>{_e(TITLES.get(m['measure'], m['measure']))}</h2><table>{_evidence(m)}</table>")
    parts.append("<p class='small'>edgeaudit collector — evidence from the units registry"
                 " (records per day and kind as committed, uploads, ruleset fetches).</p></body></html>")
    return "".join(parts)


def _render_user() -> tuple[int, int] | None:
    """(uid, gid) to run Chromium as: None to stay ourselves (we are not root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(RENDER_USER)
    except KeyError:
        raise PdfUnavailable(f"the collector runs as root and Chromium's sandbox refuses root; no user "
                             f"{RENDER_USER!r} to run it as") from None
    return entry.pw_uid, entry.pw_gid


def to_pdf(page: str) -> bytes:
    """``page`` printed to PDF by headless, sandboxed Chromium (raises ``PdfUnavailable``
    without one)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise PdfUnavailable("PDF export needs Debian's chromium on the collector (apt-get install chromium);"
                             " the HTML report prints as it is")
    as_user = _render_user()
    with tempfile.TemporaryDirectory(prefix="edgeaudit-report-") as tmp:
        src, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        src.write_text(page, encoding="utf-8")
        os.chmod(src, 0o644)  # read by Chromium, inside a directory only it and we may enter
        if as_user is not None:
            os.chown(tmp, *as_user)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "TMPDIR": tmp,
               "XDG_CONFIG_HOME": f"{tmp}/config", "XDG_CACHE_HOME": f"{tmp}/cache", "LANG": "C.UTF-8"}
        command = [browser, "--headless", "--disable-gpu", "--no-pdf-header-footer", "--js-flags=--jitless",
                   f"--user-data-dir={tmp}/profile", f"--print-to-pdf={out}", src.as_uri()]
        try:
            done = subprocess.run(command, capture_output=True, timeout=PDF_TIMEOUT_S, check=False, env=env,
                                  cwd=tmp, user=as_user[0] if as_user else None,
                                  group=as_user[1] if as_user else None, extra_groups=[] if as_user else None)
        except subprocess.TimeoutExpired:
            raise PdfUnavailable(f"chromium did not print the report within {PDF_TIMEOUT_S} s") from None
        except OSError as e:  # e.g. a browser its user may not run
            raise PdfUnavailable(f"cannot start {browser}: {e.strerror or e}") from None
        if not out.exists() or out.stat().st_size == 0:
            said = [line for line in done.stderr.decode("utf-8", "replace").splitlines()
                    if "FATAL" in line or "sandbox" in line.lower()]
            raise PdfUnavailable("chromium made no PDF" + (f": {said[-1][-300:]}" if said else
                                                           f" (exit status {done.returncode})"))
        return out.read_bytes()
