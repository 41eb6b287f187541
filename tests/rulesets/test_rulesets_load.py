"""rulesets.load on real directories in tmp_path: the format, and every problem with its file:line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from rulesets_testlib import (
    EXAMPLES,
    FULL_FILES,
    MANY_COMBOS,
    MANY_PROBLEMS,
    MANY_WORDS,
    MINIMAL_KEYWORDS,
    MINIMAL_TOML,
    full_ruleset,
    minimal_ruleset,
    write_ruleset,
)

from rulesets import load
from rulesets.load import (
    Problem,
    RulesetError,
    check_ruleset,
    examine_ruleset,
    load_ruleset,
    normalize_relpath,
)
from rulesets.model import FIELDS, Category, Combination, Phrase, Ruleset

HEAD = 'name = "t"\nversion = 1\n'


def one_category(extra: str = "", keywords: str = "k.txt") -> str:
    category = f'[[categories]]\nid = "c"\naction = "alert"\nseverity = 2\nkeywords = "{keywords}"\n'
    return HEAD + category + extra


def located(problems: list[Problem]) -> set[tuple[str, int, str]]:
    return {(p.file, p.line, p.severity) for p in problems}


def only_problem(root: Path) -> Problem:
    ruleset, problems = check_ruleset(root)
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


# -- the format ---------------------------------------------------------------------------------------


def test_minimal_form_loads_exactly(tmp_path: Path) -> None:
    ruleset = load_ruleset(minimal_ruleset(tmp_path))
    assert ruleset == Ruleset(
        name="example",
        version=3,
        categories=[
            Category(
                id="gambling",
                action="alert",
                severity=3,
                keywords=[
                    Phrase("赌博", "gambling.txt", 2),
                    Phrase("online casino", "gambling.txt", 4),
                    Phrase("百家乐", "gambling.txt", 5),
                ],
                fields=frozenset({"http.uri", "http.request_body", "dns.query"}),
            )
        ],
    )
    assert ruleset.categories[0].enabled is True
    assert ruleset.rule_count() == 3


def test_fields_default_to_every_field(tmp_path: Path) -> None:
    write_ruleset(tmp_path, one_category(), {"k.txt": "abc\n"})
    assert load_ruleset(tmp_path).categories[0].fields == frozenset(FIELDS)


def test_full_form(tmp_path: Path) -> None:
    ruleset = load_ruleset(full_ruleset(tmp_path))
    gambling, drugs = ruleset.categories
    # '#' only starts a comment at the start of a line; '&' without spaces belongs to the keyword
    assert [k.text for k in gambling.keywords] == ["赌博", "赌球", "online casino", "C#", "AT&T"]
    assert gambling.exceptions == [Phrase("打击赌博", "lists/gambling-exceptions.txt", 2)]
    assert gambling.combinations == [
        Combination(("充值", "下注"), "lists/gambling-combos.txt", 1),
        Combination(("deposit", "bonus", "wager"), "lists/gambling-combos.txt", 2),
        Combination(("AT&T", "赌球"), "lists/gambling-combos.txt", 3),
    ]
    assert gambling.combinations[0].text == "充值 & 下注"
    assert (drugs.action, drugs.severity, drugs.enabled) == ("block", 5, False)
    assert drugs.fields == frozenset({"http.uri", "dns.query"})
    assert ruleset.rule_count() == 5 + 3  # disabled categories do not count


def test_examples_directory_is_valid() -> None:
    result = examine_ruleset(EXAMPLES)
    assert result.problems == []
    ruleset = result.ruleset
    assert ruleset is not None
    assert {c.action for c in ruleset.categories} == {"alert", "block"}
    texts = [k.text for c in ruleset.categories for k in c.keywords]
    assert any(t.isascii() for t in texts) and any(not t.isascii() for t in texts)
    assert any(c.exceptions for c in ruleset.categories)
    assert any(c.combinations for c in ruleset.categories)
    assert set(result.files) == {"ruleset.toml"} | {
        k.file for c in ruleset.categories for k in [*c.keywords, *c.exceptions, *c.combinations]
    }


def test_mapping_source_loads_like_the_directory(tmp_path: Path) -> None:
    root = full_ruleset(tmp_path)
    files = {"ruleset.toml": (root / "ruleset.toml").read_bytes()}
    files |= {name: c.encode() if isinstance(c, str) else c for name, c in FULL_FILES.items()}
    assert load_ruleset(files) == load_ruleset(root)
    del files["drugs.txt"]
    _, problems = check_ruleset(files)
    assert [(p.file, p.line) for p in problems] == [("ruleset.toml", 16)]
    assert "drugs.txt' not found" in problems[0].message


def test_bom_crlf_whitespace_and_paths_are_normalized(tmp_path: Path) -> None:
    write_ruleset(
        tmp_path,
        "\ufeff" + one_category(keywords="./sub//k.txt"),
        {"sub/k.txt": b"\xef\xbb\xbf\xe8\xb5\x8c\xe5\x8d\x9a\r\n\t  two words \r\n   # note\r\n"},
    )
    [category] = load_ruleset(tmp_path).categories
    assert category.keywords == [Phrase("赌博", "sub/k.txt", 1), Phrase("two words", "sub/k.txt", 2)]


def test_symlink_inside_the_ruleset_is_allowed(tmp_path: Path) -> None:
    write_ruleset(tmp_path, one_category(), {"real.txt": "abc\n"})
    (tmp_path / "k.txt").symlink_to("real.txt")
    assert load_ruleset(tmp_path).categories[0].keywords == [Phrase("abc", "k.txt", 1)]


def test_a_file_shared_by_two_categories_is_reported_once(tmp_path: Path) -> None:
    toml = one_category() + '[[categories]]\nid = "d"\naction = "block"\nseverity = 5\nkeywords = "k.txt"\n'
    write_ruleset(tmp_path, toml, {"k.txt": "abc\nx\n"})
    _, problems = check_ruleset(tmp_path)
    assert located(problems) == {("k.txt", 2, "error")}


# -- problems -----------------------------------------------------------------------------------------

MANY_EXPECTED = [
    ("ruleset.toml", 1, "error", "'name' must be a non-empty string"),
    ("ruleset.toml", 2, "error", "'version' must be an integer >= 1, not True"),
    ("ruleset.toml", 3, "error", "unknown key 'colour'"),
    ("ruleset.toml", 6, "error", "category id 'Gambling!' must match"),
    ("ruleset.toml", 7, "error", "action must be 'alert' or 'block', not 'alarm'"),
    ("ruleset.toml", 8, "error", "severity must be an integer 1..5, not 9"),
    ("ruleset.toml", 9, "error", "keywords file 'missing.txt' not found"),
    ("ruleset.toml", 10, "error", "unknown key 'feilds' in category Gambling! (did you mean 'fields'?)"),
    ("ruleset.toml", 16, "error", "keywords file '../outside.txt' leads outside the ruleset directory"),
    ("ruleset.toml", 17, "error", "unknown field 'http.url' (did you mean 'http.uri'?)"),
    ("ruleset.toml", 19, "error", "category dup has no 'action'"),
    ("ruleset.toml", 20, "error", "duplicate category id 'dup' (first on line 13)"),
    ("ruleset.toml", 21, "error", "severity must be an integer 1..5, not '3'"),
    ("ruleset.toml", 22, "error", "keywords file '/etc/hostname' is absolute"),
    ("ruleset.toml", 23, "error", "fields is empty"),
    ("ruleset.toml", 31, "error", "enabled must be true or false"),
    ("words.txt", 3, "error", "keyword 'a' is shorter than 2 bytes"),
    ("words.txt", 4, "error", "keyword contains a control character"),
    ("words.txt", 5, "error", "keyword is 258 bytes, longer than 256"),
    ("words.txt", 6, "warning", "duplicate keyword 'ok keyword' (first on line 2)"),
    ("words.txt", 7, "error", "not valid UTF-8 (byte 0xff at column 1)"),
    ("combos.txt", 1, "error", "combination 'single' needs at least 2 keywords joined by ' & '"),
    ("combos.txt", 2, "error", "combination 'a &' has an empty part"),
    ("combos.txt", 3, "error", "combination 'foo & & bar' has an empty part"),
]


def test_every_problem_is_reported_with_file_and_line(tmp_path: Path) -> None:
    write_ruleset(tmp_path, MANY_PROBLEMS, {"words.txt": MANY_WORDS, "combos.txt": MANY_COMBOS})
    result = examine_ruleset(tmp_path)
    got = [(p.file, p.line, p.severity, p.message) for p in result.problems]
    assert len(got) == len(MANY_EXPECTED), "\n".join(str(p) for p in result.problems)
    for (file, line, severity, message), want in zip(sorted(got), sorted(MANY_EXPECTED), strict=True):
        assert (file, line, severity) == want[:3]
        assert want[3] in message, (message, want)
    assert (result.errors, result.warnings) == (len(MANY_EXPECTED) - 1, 1)
    # listed as a compiler would: ruleset.toml first, then each file as first named, by line
    order = {"ruleset.toml": 0, "words.txt": 1, "combos.txt": 2}
    assert got == sorted(got, key=lambda g: (order[g[0]], g[1]))
    assert result.ruleset is None
    # the draft still counts what could be read, for `check`'s summary
    assert [c.id for c in result.draft.categories] == ["Gambling!", "dup", "dup", "words"]
    assert [k.text for k in result.draft.categories[3].keywords] == ["ok keyword", "good"]
    assert [c.text for c in result.draft.categories[3].combinations] == ["good one & another"]
    with pytest.raises(RulesetError) as raised:
        load_ruleset(tmp_path)
    assert raised.value.problems == result.problems
    assert "ruleset.toml:1: error: 'name' must be a non-empty string" in str(raised.value)


def test_problem_str() -> None:
    assert str(Problem("k.txt", 4, "bad", "warning")) == "k.txt:4: warning: bad"
    whole_file = Problem("ruleset.toml", 0, "ruleset.toml not found")
    assert str(whole_file) == "ruleset.toml: error: ruleset.toml not found"


def test_toml_syntax_error_line(tmp_path: Path) -> None:
    write_ruleset(tmp_path, HEAD + '[[categories]]\nid = "a\naction = "alert"\n')
    problem = only_problem(tmp_path)
    assert (problem.file, problem.line) == ("ruleset.toml", 4)
    assert problem.message.startswith("TOML syntax error: ") and "(at line" not in problem.message


def test_missing_directory_and_manifest(tmp_path: Path) -> None:
    problem = only_problem(tmp_path / "nope")
    assert (problem.file, problem.line, problem.message) == (str(tmp_path / "nope"), 0, "not a directory")
    problem = only_problem(tmp_path)
    assert (problem.file, problem.line, problem.message) == ("ruleset.toml", 0, "ruleset.toml not found")


def test_manifest_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "ruleset.toml").write_bytes(b'name = "t"\nversion = 1 # \xb6\xc4\n')
    problem = only_problem(tmp_path)
    assert (problem.file, problem.line) == ("ruleset.toml", 2)
    assert "not valid UTF-8 (byte 0xb6)" in problem.message


@pytest.mark.parametrize(
    ("toml", "line", "message"),
    [
        ('name = "t"\n', 1, "missing 'version'"),
        ("version = 1\n", 1, "missing 'name'"),
        ('name = "t"\nversion = 0\n', 2, "'version' must be an integer >= 1, not 0"),
        ('name = "t"\nversion = "3"\n', 2, "'version' must be an integer >= 1, not '3'"),
        ('name = "t"\nversion = 9223372036854775808\n', 2, "'version' must be an integer"),
        ('name = 5\nversion = 1\n', 1, "'name' must be a non-empty string"),
    ],
)
def test_name_and_version(tmp_path: Path, toml: str, line: int, message: str) -> None:
    write_ruleset(tmp_path, toml + one_category()[len(HEAD):], {"k.txt": "abc\n"})
    problem = only_problem(tmp_path)
    assert (problem.line, problem.severity) == (line, "error")
    assert message in problem.message


@pytest.mark.parametrize(
    ("toml", "line"),
    [(HEAD, 1), (HEAD + "categories = []\n", 3), (HEAD + "[categories]\nid = 'x'\n", 3)],
)
def test_no_categories(tmp_path: Path, toml: str, line: int) -> None:
    write_ruleset(tmp_path, toml)
    problem = only_problem(tmp_path)
    assert problem.line == line
    assert "categor" in problem.message


def test_inline_categories_point_at_the_categories_key(tmp_path: Path) -> None:
    toml = HEAD + 'categories = [{id = "a", action = "alert", severity = 1, keywords = "k.txt", bogus = 1}]\n'
    write_ruleset(tmp_path, toml, {"k.txt": "abc\n"})
    problem = only_problem(tmp_path)
    assert (problem.line, problem.message) == (3, "unknown key 'bogus' in category a")


@pytest.mark.parametrize("key", ["id", "action", "severity", "keywords"])
def test_missing_category_key_points_at_the_header(tmp_path: Path, key: str) -> None:
    toml = "\n".join(line for line in one_category().splitlines() if not line.startswith(key + " ")) + "\n"
    write_ruleset(tmp_path, toml, {"k.txt": "abc\n"})
    problem = only_problem(tmp_path)
    assert problem.line == 3
    assert problem.message.endswith(f"has no '{key}'")


@pytest.mark.parametrize(
    ("toml_extra", "message"),
    [
        ('fields = "http.uri"\n', "fields must be a list of field names"),
        ('fields = ["http.uri", "http.uri"]\n', "field 'http.uri' is listed twice"),
        ("enabled = 1\n", "enabled must be true or false"),
        ("exceptions = 3\n", "exceptions must be a file name"),
        ('exceptions = "lists\\\\e.txt"\n', "contains a backslash"),
    ],
)
def test_category_values(tmp_path: Path, toml_extra: str, message: str) -> None:
    write_ruleset(tmp_path, one_category(toml_extra), {"k.txt": "abc\n"})
    problem = only_problem(tmp_path)
    assert problem.line == 8
    assert message in problem.message


def test_severity_bool_is_refused(tmp_path: Path) -> None:
    write_ruleset(tmp_path, one_category().replace("severity = 2", "severity = true"), {"k.txt": "abc\n"})
    assert "severity must be an integer 1..5, not True" in only_problem(tmp_path).message


def test_keyword_file_with_no_keywords(tmp_path: Path) -> None:
    write_ruleset(tmp_path, one_category(), {"k.txt": "# only a comment\n\n   \n"})
    problem = only_problem(tmp_path)
    assert (problem.file, problem.line, problem.severity) == ("ruleset.toml", 7, "error")
    assert "has no keywords" in problem.message


def test_symlink_escaping_the_ruleset(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("secret\n")
    root = write_ruleset(tmp_path / "rs", one_category())
    (root / "k.txt").symlink_to(outside)
    problem = only_problem(root)
    assert (problem.file, problem.line) == ("ruleset.toml", 7)
    assert "symlink that leads outside the ruleset directory" in problem.message


def test_special_files_are_refused_without_blocking(tmp_path: Path) -> None:
    write_ruleset(tmp_path, one_category(keywords="dir") + 'exceptions = "fifo"\n')
    (tmp_path / "dir").mkdir()
    os.mkfifo(tmp_path / "fifo")
    _, problems = check_ruleset(tmp_path)
    assert [(p.line, p.message) for p in problems] == [
        (7, "category c: keywords file 'dir' is not a regular file"),
        (8, "category c: exceptions file 'fifo' is not a regular file"),
    ]


def test_unreadable_file(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    write_ruleset(tmp_path, one_category(), {"k.txt": "abc\n"})
    (tmp_path / "k.txt").chmod(0)
    assert "cannot be read" in only_problem(tmp_path).message


def test_oversized_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "MAX_FILE_BYTES", 10)
    write_ruleset(tmp_path, one_category(), {"k.txt": "abcdefghijk\n"})
    assert "over the limit of 10" in only_problem(tmp_path).message


def test_warnings_do_not_invalidate(tmp_path: Path) -> None:
    write_ruleset(
        tmp_path,
        one_category('exceptions = "e.txt"\ncombinations = "c.txt"\n'),
        {"k.txt": "abc\nabc\n", "e.txt": "# none yet\n", "c.txt": "ab & cd\ncd & ab\nxy & xy\n"},
    )
    ruleset, problems = check_ruleset(tmp_path)
    assert ruleset is not None
    assert [(p.file, p.line, p.severity) for p in problems] == [
        ("ruleset.toml", 8, "warning"), ("k.txt", 2, "warning"),
        ("c.txt", 2, "warning"), ("c.txt", 3, "warning"),
    ]
    assert "duplicate combination 'cd & ab' (first on line 1)" in problems[2].message
    assert "exceptions file 'e.txt' is empty" in problems[0].message
    assert "repeats a keyword" in problems[3].message
    assert load_ruleset(tmp_path) == ruleset
    assert [k.text for k in ruleset.categories[0].keywords] == ["abc"]


def test_all_categories_disabled_is_a_warning(tmp_path: Path) -> None:
    write_ruleset(tmp_path, one_category("enabled = false\n"), {"k.txt": "abc\n"})
    ruleset, problems = check_ruleset(tmp_path)
    assert ruleset is not None and problems[0].severity == "warning"


def test_exceptions_and_combination_parts_are_checked_like_keywords(tmp_path: Path) -> None:
    write_ruleset(
        tmp_path,
        one_category('exceptions = "e.txt"\ncombinations = "c.txt"\n'),
        {"k.txt": "abc\n", "e.txt": "x\nfine\n", "c.txt": "ok & y\n"},
    )
    _, problems = check_ruleset(tmp_path)
    assert [(p.file, p.line) for p in problems] == [("e.txt", 1), ("c.txt", 1)]
    assert problems[0].message.startswith("exception 'x' is shorter")
    assert problems[1].message.startswith("combination part 'y' is shorter")


def test_two_byte_keyword_is_enough(tmp_path: Path) -> None:
    write_ruleset(tmp_path, one_category(), {"k.txt": "ab\né\n" + "x" * 256 + "\n"})
    assert len(load_ruleset(tmp_path).categories[0].keywords) == 3


def test_problems_per_file_are_capped_but_counted(tmp_path: Path) -> None:
    write_ruleset(tmp_path, one_category(), {"k.txt": "abc\n" + "a\n" * 150})
    result = examine_ruleset(tmp_path)
    assert result.errors == 150
    assert len(result.problems) == load.MAX_PROBLEMS_PER_FILE + 1
    last = result.problems[-1]
    assert (last.file, last.line, last.severity) == ("k.txt", 0, "error")
    assert last.message == "50 more errors and 0 more warnings not shown"


def test_keyword_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "MAX_KEYWORDS", 3)
    toml = one_category() + '[[categories]]\nid = "d"\naction = "block"\nseverity = 5\nkeywords = "d.txt"\n'
    write_ruleset(tmp_path, toml, {"k.txt": "ab\ncd\nef\ngh\n", "d.txt": "ij\n"})
    result = examine_ruleset(tmp_path)
    assert [(p.line, p.severity) for p in result.problems] == [(7, "error")]
    assert "more than 3 keywords" in result.problems[0].message
    assert "d.txt" not in result.files  # not read past the limit


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "is empty"),
        ("/abs", "is absolute"),
        ("C:/x", "is absolute"),
        ("a/../b", "leads outside"),
        ("a\\b", "backslash"),
        ("a\x00b", "control"),
        ("./.", "names no file"),
        ("x" * 201, "longer than"),
    ],
)
def test_normalize_relpath_refuses(path: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        normalize_relpath(path)


def test_normalize_relpath() -> None:
    assert normalize_relpath("./a//b/./c.txt") == "a/b/c.txt"
    assert normalize_relpath("赌博.txt") == "赌博.txt"


def test_minimal_constants_match_the_brief() -> None:
    assert load.MAX_KEYWORD_BYTES == 256
    assert MINIMAL_TOML.startswith('name = "example"') and MINIMAL_KEYWORDS
