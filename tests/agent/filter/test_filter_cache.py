"""What a restart reuses: the pattern tables and the Vectorscan database cached beside the ruleset.

`compile_rules(..., cache_dir=D)` saves the tables built from the keywords (`<hash>.tables`)
and the compiled database (`<hash>.vsdb`) in D; compiling the same ruleset again loads both
and must give the same answers. A damaged file is rebuilt, a directory that cannot be
written is not an error, and a change to any phrase or to where it was written is a
different hash.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.filter.compiled import CompiledRules, compile_rules
from agent.filter.engine import FilterEngine
from agent.protocols.base import Content
from rulesets.model import Category, Combination, Phrase, Ruleset

WORDS = ["赌博", "online casino", "百家乐", "丅丅测试", "VPN"]


def _ruleset(words: list[str] = WORDS, line0: int = 1) -> Ruleset:
    cat = Category(
        "gambling", "alert", 3,
        keywords=[Phrase(w, "g.txt", line0 + i) for i, w in enumerate(words)],
        exceptions=[Phrase("打击赌博", "g-x.txt", 1)],
        combinations=[Combination(("扑克", "下注"), "g-c.txt", 1)],
    )
    return Ruleset("test", 7, [cat])


def _tables(r: CompiledRules) -> tuple[object, ...]:
    return (r.pat_role, r.pat_cat, r.pat_ref, r.pat_enc, r.pat_len, r.part_text, r.part_rules,
            r.max_exception_len, [(x.rule_id, x.category, x.text, x.parts) for x in r.rules],
            [r.patterns.pattern_len(i) for i in range(len(r.patterns))])


def _alerts(r: CompiledRules) -> list[tuple[str, str, str]]:
    f = FilterEngine(r)
    body = "在线百家乐和Online Casino，打击赌博，扑克下注".encode() + "赌博".encode("gbk")
    out = f.scan("C1", [Content("http.response_body", body, 1, True, "text/html")], 1.0)
    out += f.scan("C1", [Content("http.uri", b"/q?w=%E8%B5%8C%E5%8D%9A", 1, True)], 1.0)
    return sorted((a["rule_id"], a["encoding"], a["keyword"]) for a in out)


@pytest.mark.parametrize("engine", ["vectorscan", "aho-corasick"])
def test_second_compile_loads_what_the_first_saved(tmp_path: Path, engine: str) -> None:
    first = compile_rules(_ruleset(), engine=engine, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.tables"))) == 1
    assert len(list(tmp_path.glob("*.vsdb"))) == (1 if engine == "vectorscan" else 0)
    second = compile_rules(_ruleset(), engine=engine, cache_dir=tmp_path)
    if engine == "vectorscan":
        assert "database loaded from" in second.patterns.engine_reason
        assert "compiled (no cached database in" in first.patterns.engine_reason
        assert "database saved to" in first.patterns.engine_reason
    assert _tables(second) == _tables(first) == _tables(compile_rules(_ruleset(), engine=engine))
    expected = _alerts(first)
    assert {a[0] for a in expected} == {"gambling:g.txt:1", "gambling:g.txt:2", "gambling:g.txt:3",
                                        "gambling:g-c.txt:1"}
    assert _alerts(second) == expected


def test_a_changed_phrase_or_line_is_another_hash(tmp_path: Path) -> None:
    compile_rules(_ruleset(), engine="aho-corasick", cache_dir=tmp_path)
    moved = compile_rules(_ruleset(line0=5), engine="aho-corasick", cache_dir=tmp_path)
    assert {r.rule_id for r in moved.rules} >= {"gambling:g.txt:5"}
    other = compile_rules(_ruleset(WORDS[:-1] + ["vpn2"]), engine="aho-corasick", cache_dir=tmp_path)
    assert other.rules[len(WORDS) - 1].text == "vpn2"
    assert len(list(tmp_path.glob("*.tables"))) == 3


@pytest.mark.parametrize("damage", [b"", b"EATB1\n\x00garbage", b"EATB1\n" + b"\xe9" * 40, b"not tables"])
def test_damaged_cache_files_are_rebuilt(tmp_path: Path, damage: bytes) -> None:
    good = compile_rules(_ruleset(), engine="vectorscan", cache_dir=tmp_path)
    for path in [*tmp_path.glob("*.tables"), *tmp_path.glob("*.vsdb")]:
        path.write_bytes(damage)
    again = compile_rules(_ruleset(), engine="vectorscan", cache_dir=tmp_path)
    assert "cached database refused" in again.patterns.engine_reason
    assert _tables(again) == _tables(good)
    assert _alerts(again) == _alerts(good)
    # and the rebuilt files serve the next start
    third = compile_rules(_ruleset(), engine="vectorscan", cache_dir=tmp_path)
    assert "database loaded from" in third.patterns.engine_reason
    assert _tables(third) == _tables(good)


def test_a_cache_that_cannot_be_written_is_not_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would be")
    r = compile_rules(_ruleset(), engine="vectorscan", cache_dir=blocker / "cache")
    assert "cache not written" in r.patterns.engine_reason
    assert _alerts(r) == _alerts(compile_rules(_ruleset(), engine="vectorscan"))


def _compile_in_child(cache_dir: Path, words: list[str], start: object, out: object) -> None:
    start.wait(30)  # type: ignore[attr-defined]  # both children compile at the same moment
    r = compile_rules(_ruleset(words), engine="vectorscan", cache_dir=cache_dir)
    out.put(r.patterns.engine_reason)  # type: ignore[attr-defined]


def test_workers_compiling_one_update_at_once_build_it_once(tmp_path: Path) -> None:
    """Two capture workers offered the same update compile it at the same moment: the first
    builds and saves the database, the other waits for the directory's lock and loads it."""
    import multiprocessing
    import random

    rng = random.Random(16)
    letters = "abcdefghijklmnopqrstuvwxyz"
    # enough keywords that a compile takes a good part of a second: the two overlap
    words = sorted({"".join(rng.choice(letters) for _ in range(rng.randint(5, 12))) for _ in range(8000)})
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(2)
    out = ctx.Queue()
    procs = [ctx.Process(target=_compile_in_child, args=(tmp_path, words, start, out)) for _ in range(2)]
    for p in procs:
        p.start()
    notes = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert ["database loaded from" in n for n in notes].count(True) == 1, notes
    assert ["database saved to" in n for n in notes].count(True) == 1, notes
    assert len(list(tmp_path.glob("*.vsdb"))) == 1
