"""The compliance report as a printable page, and as a PDF.

What: ``render(report)`` turns ``collector.units.compliance.report``'s answer into one
self-contained HTML page (Chinese with English, styles inline, no script, every value
escaped): what an operator prints or files. ``to_pdf(html)`` renders that page with the
machine's headless Chromium (Debian's ``chromium``: ``--print-to-pdf``), or raises
``PdfUnavailable`` saying so when it is not installed.

Why Chromium for the PDF: the report is Chinese text; a browser lays it out with the
system's CJK fonts exactly as the printed page, where a PDF library would need fonts
embedded by hand. The page itself needs no browser to be printed.
"""

from __future__ import annotations

import html
import shutil
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final

#: Times on the report are Beijing time (the center's), with the zone named.
CST: Final = timezone(timedelta(hours=8), "UTC+8")
PDF_TIMEOUT_S: Final = 60
TITLES: Final = {
    "login_records": "登录/注销记录 Login and logout records",
    "nat_mapping": "地址转换（NAT）记录 NAT mapping",
    "registration": "备案信息 Registration information",
    "keyword_filtering": "关键词过滤与阻断 Keyword filtering and stopping",
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


def to_pdf(page: str) -> bytes:
    """``page`` printed to PDF by headless Chromium (raises ``PdfUnavailable`` without one)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise PdfUnavailable("PDF export needs Debian's chromium on the collector (apt-get install chromium);"
                             " the HTML report prints as it is")
    with tempfile.TemporaryDirectory(prefix="edgeaudit-report-") as tmp:
        src, out = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        src.write_text(page, encoding="utf-8")
        try:
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                            f"--user-data-dir={tmp}/profile", f"--print-to-pdf={out}", src.as_uri()],
                           capture_output=True, timeout=PDF_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise PdfUnavailable(f"chromium did not print the report within {PDF_TIMEOUT_S} s") from None
        if not out.exists() or out.stat().st_size == 0:
            raise PdfUnavailable("chromium made no PDF")
        return out.read_bytes()
