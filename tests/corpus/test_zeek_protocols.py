"""Protocol records against the logs Zeek wrote for the corpus captures (issue 3's conformance).

Every Zeek case of ../shared/corpus/manifest.json with an http, dns, ssl, smtp,
ftp, dhcp or radius log runs through the real `Pipeline` (decoders on, its
traces in order as one stream, like `edgeaudit-agent replay`), and the rows are
scored with the comparison of ../shared/tools/conformance.py itself (loaded by
path, never copied): rows matched on the flow id and the log's key fields,
then field by field. The issue asks for >= 90% of the rows found and >= 95% of
the fields right over these seven logs together; the thresholds below are
what this code reaches (README), so a regression fails here.

Known differences (they are why the figures are not 100%): Zeek rewrites FTP
file arguments into ftp:// URLs with the server's address and logs PASS's
argument (we record `<hidden>`: no secrets in records); in two DNS traces Zeek's
baseline says RD false where the query's RD bit is set (tshark shows it set);
RADIUS `result` is `unknown` in Zeek where we say null; and one HTTP URI that
Zeek logs percent-decoded, one body length a byte apart in an MPLS trace.

Skipped when ../shared is absent.
"""

from __future__ import annotations

import collections
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from corpus_replay import records_of

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "corpus"
TOOL = SHARED / "tools" / "conformance.py"
if not (CORPUS / "manifest.json").exists() or not TOOL.exists():
    pytest.skip(f"no corpus or conformance tool under {SHARED}", allow_module_level=True)

LOGS = ("http", "dns", "ssl", "smtp", "ftp", "dhcp", "radius")
MIN_ROWS = 1.0  # reached: 176/176
MIN_FIELDS = 0.989  # reached: 1184/1196 (one 3,240-character TXT answer is cut to the wire's 1,024 per item)


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shared_conformance", TOOL)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def scores() -> dict[str, dict[str, Any]]:
    tool = _tool()
    manifest = tool.json.loads((CORPUS / "manifest.json").read_text())
    stats: dict[str, dict[str, Any]] = collections.defaultdict(lambda: {
        "rows": 0, "found": 0, "fields": 0, "ok": 0, "extra": 0, "bad_fields": collections.Counter()})
    for case in manifest["zeek"]:
        logs = [e for e in case["expected"] if Path(e["path"]).name.split(".")[0].split("-")[0] in LOGS]
        if not logs:
            continue
        name = case.get("test") or case["traces"][0]["path"]
        records = records_of(tuple(CORPUS / t["path"] for t in case["traces"]))
        for e in logs:
            path = CORPUS / e["path"]
            zlog = path.name.split(".")[0].split("-")[0]
            fields = e.get("fields") or tool.cut_fields(case.get("exec", []), path.name.replace(".cut", ""))
            rows = tool.read_zeek_log(path, fields)
            tool.compare_zeek_log(rows, records, zlog, False, name, stats)
    return dict(stats)


def test_every_log_type_is_scored(scores: dict[str, dict[str, Any]]) -> None:
    assert set(scores) == set(LOGS)
    assert all(s["rows"] > 0 for s in scores.values())


def test_protocol_records_match_zeek(scores: dict[str, dict[str, Any]]) -> None:
    rows = sum(s["rows"] for s in scores.values())
    found = sum(s["found"] for s in scores.values())
    fields = sum(s["fields"] for s in scores.values())
    ok = sum(s["ok"] for s in scores.values())
    table = "\n".join(f"{k:7} rows {s['found']}/{s['rows']} fields {s['ok']}/{s['fields']} "
                      f"worst {s['bad_fields'].most_common(3)}" for k, s in sorted(scores.items()))
    print(f"\nzeek protocol logs: rows {found}/{rows}, fields {ok}/{fields}\n{table}")
    assert found >= MIN_ROWS * rows, table
    assert ok >= MIN_FIELDS * fields, table


@pytest.mark.parametrize("log", ["http", "ssl", "dhcp", "smtp"])
def test_these_logs_match_every_row_exactly(scores: dict[str, dict[str, Any]], log: str) -> None:
    """No known difference applies to them: every row found; fields all right but http's two
    (a Teredo trace's URI Zeek logs decoded, and a body length one byte off in an MPLS trace)."""
    s = scores[log]
    assert s["found"] == s["rows"], s
    assert s["fields"] - s["ok"] <= (2 if log == "http" else 0), s["bad_fields"]
