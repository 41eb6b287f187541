"""The keyword engines give the same answers (issue 16's differential test).

Every capture of ../shared/corpus, a capture of the shared generator
(../shared/tools/gen_edge_pcap.py) and one of the agent's own (`edgeaudit-agent synth`) are
replayed through the whole offline pipeline (every decoder, the keyword filter) with a
ruleset built to match often — common words of the generated text in Chinese and English,
exception phrases that cover some of them, combinations, a GBK keyword whose trail bytes are
letters, the example ruleset — once with Vectorscan and once with Aho-Corasick. The `alert`
records must be identical, field for field and in order; the filter's counters too.
The filter's own tests run with each engine as well (`keyword_engine` in conftest.py).

A missing `hyperscan` module, and `engine = "aho-corasick"`, still work: checked in a
subprocess where the module cannot be imported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent.capture import open_capture
from agent.filter.compiled import compile_rules
from agent.pipeline import Pipeline
from rulesets.load import load_ruleset

REPO = Path(__file__).resolve().parents[3]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "corpus"
GEN_TOOL = SHARED / "tools" / "gen_edge_pcap.py"
EXAMPLES = REPO / "rulesets" / "examples"

# Words of the generators' text (agent/synth/content.py, gen_edge_pcap.py) and a few of the
# corpus' (HTTP, mail, DNS names): enough that nearly every text flow alerts somewhere.
KEYWORDS = ["中国", "网络", "安全", "下载", "视频", "翻墙", "VPN", "代理", "密码", "登录", "服务器",
            "password", "login", "download", "Security", "proxy", "the", "google", "html", "mail",
            "丅丅测试", "QQ群", "一丁", "七万"]
EXCEPTIONS = ["网络安全", "security server", "google.com"]
COMBOS = ["下载 & 视频", "login & password", "中国 & 新闻 & 北京"]


def _ruleset(tmp: Path) -> Path:
    d = tmp / "rules"
    shutil.copytree(EXAMPLES, d)
    (d / "often.txt").write_text("\n".join(KEYWORDS) + "\n", encoding="utf-8")
    (d / "often-exceptions.txt").write_text("\n".join(EXCEPTIONS) + "\n", encoding="utf-8")
    (d / "often-combos.txt").write_text("\n".join(COMBOS) + "\n", encoding="utf-8")
    toml = (d / "ruleset.toml").read_text(encoding="utf-8")
    toml += ('\n[[categories]]\nid = "often"\naction = "alert"\nseverity = 1\nkeywords = "often.txt"\n'
             'exceptions = "often-exceptions.txt"\ncombinations = "often-combos.txt"\n')
    (d / "ruleset.toml").write_text(toml, encoding="utf-8")
    return d


Alerts = list[dict[str, Any]]


def _alerts(rules_dir: Path, captures: list[Path], engine: str) -> tuple[Alerts, dict[str, int]]:
    rules = compile_rules(load_ruleset(rules_dir), engine=engine)
    assert rules.engine == engine, rules.patterns.engine_reason
    alerts: list[dict[str, Any]] = []

    def sink(records: list[dict[str, Any]]) -> None:
        alerts.extend(r for r in records if r["type"] == "alert")

    for path in captures:  # one pipeline per capture: flows of one never meet another's
        p = Pipeline(sink, rules=rules)
        with open_capture(path) as cap:
            for batch in cap.batches(4096):
                p.feed(batch)
        p.finish()
        assert p.filter is not None
        counters = dict(p.filter.counters)
    return alerts, counters


def _corpus_captures() -> list[Path]:
    if not (CORPUS / "manifest.json").exists():
        return []
    manifest = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))
    paths = {CORPUS / t["path"] for group in manifest.values() for case in group
             for t in case.get("traces", [])}
    return sorted(p for p in paths if p.exists())


@pytest.mark.skipif(not _corpus_captures(), reason=f"no corpus at {CORPUS}")
def test_corpus_captures_give_identical_alerts(tmp_path: Path) -> None:
    rules = _ruleset(tmp_path)
    captures = _corpus_captures()
    assert len(captures) > 50
    vs, _ = _alerts(rules, captures, "vectorscan")
    ac, _ = _alerts(rules, captures, "aho-corasick")
    assert len(vs) > 100  # the ruleset matches often: the comparison means something
    assert vs == ac


def test_generated_captures_give_identical_alerts(tmp_path: Path) -> None:
    rules = _ruleset(tmp_path)
    ours = tmp_path / "synth.pcap"
    synth = [sys.executable, "-m", "agent.cli", "synth", str(ours), "--packets", "20000", "--seed", "5"]
    subprocess.run(synth, check=True, capture_output=True, timeout=300)
    captures = [ours]
    if GEN_TOOL.exists():
        shared = tmp_path / "edge.pcap"
        subprocess.run([sys.executable, str(GEN_TOOL), str(shared), "--packets", "20000"], check=True,
                       capture_output=True, timeout=300)
        captures.append(shared)
    for capture in captures:
        vs, vs_counters = _alerts(rules, [capture], "vectorscan")
        ac, ac_counters = _alerts(rules, [capture], "aho-corasick")
        assert len(vs) > 200, capture
        assert {a["encoding"] for a in vs} >= {"utf-8"}
        assert vs == ac, capture
        assert vs_counters == ac_counters


def test_without_the_hyperscan_module_auto_falls_back(tmp_path: Path) -> None:
    """`auto` takes Aho-Corasick when `hyperscan` does not import, and says why; `vectorscan`
    is then refused with a clear message, and `aho-corasick` works as always."""
    script = f"""
import sys
sys.modules["hyperscan"] = None  # import hyperscan now raises ImportError
from pathlib import Path
from agent.filter.compiled import compile_rules
from agent.filter.patterns import EngineUnavailable
from rulesets.load import load_ruleset
ruleset = load_ruleset(Path({str(EXAMPLES)!r}))
auto = compile_rules(ruleset, engine="auto")
print(auto.engine, "|", auto.patterns.engine_reason)
print(compile_rules(ruleset, engine="aho-corasick").engine)
try:
    compile_rules(ruleset, engine="vectorscan")
except EngineUnavailable as e:
    print("refused |", e)
"""
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr
    auto, reference, refused = res.stdout.splitlines()
    assert auto.startswith("aho-corasick | auto: vectorscan unavailable (the hyperscan module does not "
                           "import")
    assert reference == "aho-corasick"
    assert refused.startswith("refused | the hyperscan module does not import")


def test_matching_at_the_batch_end_gives_the_records_of_matching_at_once(tmp_path: Path) -> None:
    """The inspector matches a batch's content at its end (agent.flows.inspector) and puts each
    alert back where it belongs: every record, alerts included, in the same order as when
    matching is immediate (inline, `on_block` set), in batches of every size."""
    rules = compile_rules(load_ruleset(_ruleset(tmp_path)))
    capture = tmp_path / "synth.pcap"
    synth = [sys.executable, "-m", "agent.cli", "synth", str(capture), "--packets", "8000", "--seed", "7"]
    subprocess.run(synth, check=True, capture_output=True, timeout=300)

    def records(immediate: bool, batch: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        p = Pipeline(out.extend, rules=rules)
        if immediate:
            assert p.inspector is not None
            p.inspector.on_block = lambda flow, blocks: False  # inline: match at once, block nothing
        with open_capture(capture) as cap:
            for b in cap.batches(batch):
                p.feed(b)
        p.finish()
        return out

    at_once = records(True, 4096)
    assert sum(r["type"] == "alert" for r in at_once) > 50
    for size in (1, 7, 4096):
        assert records(False, size) == at_once, size
