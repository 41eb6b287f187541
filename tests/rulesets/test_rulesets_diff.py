"""rulesets.diff: one line per change, nothing for an identical ruleset."""

from __future__ import annotations

from pathlib import Path

from rulesets_testlib import EXAMPLES, FULL_FILES, full_ruleset, full_toml, write_ruleset

from rulesets.diff import diff_rulesets
from rulesets.load import load_ruleset


def test_identical_rulesets_have_no_difference(tmp_path: Path) -> None:
    assert diff_rulesets(load_ruleset(EXAMPLES), load_ruleset(EXAMPLES)) == []
    old = load_ruleset(full_ruleset(tmp_path / "a"))
    # moving keywords around (other lines, other file) and reordering a combination is no change
    files = dict(FULL_FILES)
    files["lists/gambling.txt"] = "# reordered\nAT&T\nC#\nonline casino\n赌球\n赌博\n"
    files["lists/gambling-combos.txt"] = "下注 & 充值\nwager & deposit & bonus\n赌球 & AT&T\n"
    new = load_ruleset(write_ruleset(tmp_path / "b", full_toml(), files))
    assert diff_rulesets(old, new) == []


def test_every_kind_of_change(tmp_path: Path) -> None:
    old = load_ruleset(full_ruleset(tmp_path / "a"))
    toml = (
        full_toml(version=4)
        .replace('name = "full"', 'name = "production"')
        .replace('action = "alert"\nseverity = 3', 'action = "block"\nseverity = 4')
        .replace('fields = ["http.uri", "dns.query"]\nenabled = false', 'fields = ["http.uri"]')
    )
    toml += '\n[[categories]]\nid = "phishing"\naction = "alert"\nseverity = 2\nkeywords = "phish.txt"\n'
    files = dict(FULL_FILES)
    files["lists/gambling.txt"] = "赌博\nonline casino\nC#\nAT&T\n六合彩\n"
    files["lists/gambling-exceptions.txt"] = "禁止赌博\n"
    files["lists/gambling-combos.txt"] = "充值 & 下注\ndeposit & bonus & wager\n代理 & 佣金\n"
    files["phish.txt"] = "verify your account\n银行账户冻结\n"
    new = load_ruleset(write_ruleset(tmp_path / "b", toml, files))
    assert diff_rulesets(old, new) == [
        "~ name full -> production",
        "~ version 3 -> 4",
        "~ category gambling: action alert -> block",
        "~ category gambling: severity 3 -> 4",
        "- gambling keyword 赌球",
        "+ gambling keyword 六合彩",
        "- gambling exception 打击赌博",
        "+ gambling exception 禁止赌博",
        "- gambling combination AT&T & 赌球",
        "+ gambling combination 代理 & 佣金",
        "~ category drugs: fields http.uri, dns.query -> http.uri",
        "~ category drugs: enabled false -> true",
        "+ category phishing (alert, severity 2, 2 keywords)",
    ]


def test_added_and_removed_categories(tmp_path: Path) -> None:
    old = load_ruleset(full_ruleset(tmp_path / "a"))
    toml = 'name = "full"\nversion = 3\n[[categories]]\nid = "weapons"\naction = "block"\nseverity = 5\n'
    toml += 'keywords = "w.txt"\nexceptions = "we.txt"\nfields = ["dns.query"]\nenabled = false\n'
    new = load_ruleset(write_ruleset(tmp_path / "b", toml, {"w.txt": "枪支\nguns\n", "we.txt": "水枪枪支\n"}))
    assert diff_rulesets(old, new) == [
        "- category gambling",
        "- category drugs",
        "+ category weapons (block, severity 5, 2 keywords, 1 exceptions, fields dns.query, disabled)",
    ]
    assert diff_rulesets(new, old) == [
        "- category weapons",
        "+ category gambling (alert, severity 3, 5 keywords, 1 exceptions, 3 combinations)",
        "+ category drugs (block, severity 5, 2 keywords, fields http.uri, dns.query, disabled)",
    ]
