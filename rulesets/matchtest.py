"""`edgeaudit-rules test DIR FILE.pcap ...`: what a ruleset would match in captures.

What: loads and compiles the ruleset directory as the agent would, runs the agent's
offline pipeline (every decoder, the keyword filter) over the captures in order, and
prints one line per alert (time, connection, field, category/action, keyword,
encoding, snippet) and a count per rule, so an admin can try a keyword list on
traffic before signing and publishing it. Nothing is written and nothing is blocked.

Exit status: 0 after a run (whether or not anything matched), 1 when the ruleset is
invalid (its problems are printed as FILE:LINE), 2 when a capture cannot be read or the
keyword engine asked for (``--engine``) cannot run.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from rulesets.load import RulesetError, load_ruleset


def run_test(ruleset_dir: str | Path, pcaps: Sequence[str | Path], out: TextIO = sys.stdout, *,
             engine: str = "auto") -> int:
    from agent.capture import CaptureError, open_capture
    from agent.filter.compiled import compile_rules
    from agent.filter.patterns import EngineUnavailable
    from agent.pipeline import Pipeline

    try:
        rules = compile_rules(load_ruleset(Path(ruleset_dir)), engine=engine)
    except RulesetError as e:
        for problem in e.problems:
            print(f"{ruleset_dir}/{problem}", file=sys.stderr)
        return 1
    except EngineUnavailable as e:
        print(f"edgeaudit-rules: keyword engine {engine}: {e}", file=sys.stderr)
        return 2
    alerts: list[dict[str, Any]] = []

    def sink(records: list[dict[str, Any]]) -> None:
        for r in records:
            if r["type"] == "alert":
                alerts.append(r)
                print(_line(r), file=out)

    p = Pipeline(sink, rules=rules)
    for path in pcaps:
        try:
            with open_capture(path) as cap:
                for batch in cap.batches(4096):
                    p.feed(batch)
        except (CaptureError, OSError) as e:
            print(f"edgeaudit-rules: {path}: {e}", file=sys.stderr)
            return 2
    p.finish()
    per_rule = Counter((a["rule_id"], a["keyword"]) for a in alerts)
    print(f"{len(alerts)} alert(s) from {rules.rule_count()} rules of {rules.name} v{rules.version}"
          f" on {p.packets} packets (keyword engine {rules.engine})", file=out)
    for (rule_id, keyword), n in per_rule.most_common():
        print(f"  {n:6d}  {rule_id}  {keyword}", file=out)
    return 0


def _line(a: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(a["ts"], tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    conn = ""
    if a.get("src_ip") is not None:
        conn = f"{a['src_ip']}:{a.get('src_port')} -> {a['dst_ip']}:{a.get('dst_port')}"
    return (f"{when}  {conn}  {a['field']}  {a['category']}/{a['action']}  {a['keyword']!r}"
            f"  [{a['encoding']}]  {a['snippet']!r}")
