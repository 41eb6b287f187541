"""Reading and checking a ruleset (DESIGN.md "Rulesets") into the `rulesets.model` data.

What: `load_ruleset(source)` turns a ruleset directory, or the files of a verified bundle (a mapping
of relative path -> bytes), into a `Ruleset`, or raises `RulesetError` listing every problem.
`check_ruleset` returns the problems instead, and `examine_ruleset` also returns the exact bytes
that were read (what `rulesets.bundle` signs, so what was checked is what gets signed) and a
best-effort draft of the ruleset for counts even when it is invalid.

Why this shape: admins edit these files by hand, so a check must name every problem at once with
`file:line`, as a compiler does, instead of stopping at the first. Errors make a ruleset invalid
(the agent would refuse it); warnings (a duplicate keyword, an empty exceptions file) do not.

Format: ruleset.toml has `name`, `version` and `[[categories]]` tables with `id`, `action`,
`severity`, `keywords` and optionally `fields`, `enabled`, `exceptions`, `combinations`. The
referenced files are UTF-8 (an initial BOM is dropped), one entry a line; surrounding whitespace
is stripped; blank lines and lines whose first non-blank character is '#' are skipped (a '#' later
in a line is part of the keyword: "C#" is a keyword). A combination line joins at least two
keywords with " & " (an '&' without spaces around it belongs to the keyword: "AT&T").

Limits (named below): each file at most MAX_FILE_BYTES; at most MAX_KEYWORDS phrases in all
(keywords, exceptions and combination parts), past which files are no longer read; keywords of
MIN_KEYWORD_BYTES..MAX_KEYWORD_BYTES in UTF-8; at most MAX_PROBLEMS_PER_FILE problems shown per
file (the rest are counted in one closing problem, so a GBK file does not print a million lines).

Line numbers of TOML keys are found by scanning the text for the key inside its `[[categories]]`
block: tomllib does not keep positions. The scan is a heuristic (it does not parse multi-line
strings); when it finds nothing it points at the block header, or line 1.
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, cast

from rulesets.model import ACTIONS, FIELDS, Action, Category, Combination, Phrase, Ruleset

MANIFEST: Final = "ruleset.toml"
MAX_KEYWORDS: Final = 1_000_000
MAX_FILE_BYTES: Final = 64 * 1024 * 1024
MAX_KEYWORD_BYTES: Final = 256
MIN_KEYWORD_BYTES: Final = 2  # a 1-byte keyword ("a", "1") would match nearly every message
MAX_CATEGORIES: Final = 1_000
MAX_PROBLEMS_PER_FILE: Final = 100
MAX_NAME_CHARS: Final = 128
MAX_ID_CHARS: Final = 64
# A referenced path must fit a ustar member name once prefixed with "files/" (rulesets.bundle).
MAX_PATH_BYTES: Final = 200
MAX_VERSION: Final = 2**63 - 1  # agents and the collector keep it in a signed 64-bit integer
MIN_SEVERITY: Final = 1
MAX_SEVERITY: Final = 5

TOP_KEYS: Final = ("name", "version", "categories")
CATEGORY_KEYS: Final = (
    "id", "action", "severity", "keywords", "fields", "enabled", "exceptions", "combinations",
)
REQUIRED_CATEGORY_KEYS: Final = ("id", "action", "severity", "keywords")

Severity = Literal["error", "warning"]
RulesetSource = str | os.PathLike[str] | Mapping[str, bytes]

_BOM: Final = b"\xef\xbb\xbf"
_ID_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
# C0, DEL, C1 and the Unicode line/paragraph separators: invisible in an editor, never meant.
_CONTROL_RE: Final = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# The same over a whole file, except the line ends "\n" and "\r\n".
_FILE_CONTROL_RE: Final = re.compile("[\x00-\x09\x0b-\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]|\r(?!\n)")
# '&' with whitespace (or the line's end) on both sides separates the parts of a combination.
_COMBO_SPLIT_RE: Final = re.compile(r"(?:^|\s)&(?=\s|$)")
_TOML_POS_RE: Final = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END_RE: Final = re.compile(r"\s*\(at end of document\)\s*$")
_TABLE_RE: Final = re.compile(r"^\s*\[")
_CATEGORY_HEADER_RE: Final = re.compile(r"""^\s*\[\[\s*(?:categories|"categories"|'categories')\s*\]\]""")
_ANY_CATEGORIES_HEADER_RE: Final = re.compile(
    r"""^\s*\[\[?\s*(?:categories|"categories"|'categories')\s*\]"""
)


@dataclass(frozen=True)
class Problem:
    """One problem, located like a compiler message. `line` is 1-based; 0 means the whole file."""

    file: str
    line: int
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line > 0 else self.file
        return f"{where}: {self.severity}: {self.message}"


class RulesetError(Exception):
    """The ruleset is invalid; `problems` holds every problem found (errors and warnings)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        errors = [p for p in problems if p.severity == "error"]
        shown = "; ".join(str(p) for p in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"invalid ruleset: {len(errors)} error(s): {shown}{more}")


@dataclass
class CheckResult:
    """Everything `examine_ruleset` learnt: `ruleset` is None when there is any error."""

    ruleset: Ruleset | None
    draft: Ruleset  # what could be read, even when invalid: for counts in `check`'s summary
    problems: list[Problem]
    files: dict[str, bytes]  # ruleset.toml and every referenced file that could be read, as read
    errors: int  # including problems past MAX_PROBLEMS_PER_FILE that are not listed
    warnings: int

    @property
    def ok(self) -> bool:
        return self.errors == 0


def normalize_relpath(value: str) -> str:
    """The canonical form ("a/b.txt") of a path inside a ruleset, or ValueError saying why it is
    not one: absolute, '..', backslashes (ambiguous between systems), control characters."""
    if not value:
        raise ValueError("is empty")
    if _CONTROL_RE.search(value):
        raise ValueError("contains control characters")
    if "\\" in value:
        raise ValueError("contains a backslash: use '/' between directories")
    if value.startswith("/") or re.match(r"[A-Za-z]:", value):
        raise ValueError("is absolute: use a path relative to the ruleset directory")
    raw = value.split("/")
    if ".." in raw:
        raise ValueError("leads outside the ruleset directory ('..')")
    parts = [p for p in raw if p not in ("", ".")]
    if not parts:
        raise ValueError("names no file")
    rel = "/".join(parts)
    if len(rel.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise ValueError(f"is longer than {MAX_PATH_BYTES} bytes")
    return rel


def load_ruleset(source: RulesetSource) -> Ruleset:
    """The ruleset in `source` (a directory, or relative path -> bytes); RulesetError if invalid."""
    result = examine_ruleset(source)
    if result.ruleset is None:
        raise RulesetError(result.problems)
    return result.ruleset


def check_ruleset(source: RulesetSource) -> tuple[Ruleset | None, list[Problem]]:
    """Every problem in `source`, and the ruleset when there is no error (warnings allowed)."""
    result = examine_ruleset(source)
    return result.ruleset, result.problems


def examine_ruleset(source: RulesetSource) -> CheckResult:
    """Check `source` fully; see CheckResult."""
    return _Checker(_make_source(source)).run()


# -- sources ------------------------------------------------------------------------------------------


class _Unreadable(Exception):
    """A file could not be read; the message completes "FILE ..."."""


class _DirSource:
    def __init__(self, root: Path) -> None:
        self.root = root

    def missing_root(self) -> tuple[str, str] | None:
        return None if self.root.is_dir() else (str(self.root), "not a directory")

    def read(self, rel: str) -> bytes:
        path = self.root / rel
        try:
            real = path.resolve(strict=True)
            root = self.root.resolve(strict=True)
        except FileNotFoundError:
            raise _Unreadable("not found") from None
        except (OSError, RuntimeError) as e:  # RuntimeError: a symlink loop
            raise _Unreadable(f"cannot be resolved: {e}") from None
        if not real.is_relative_to(root):
            # A symlink may point inside the ruleset (shared lists), never out of it: the bundle
            # must hold what the admin sees in this directory, and nothing else on the host.
            raise _Unreadable("is a symlink that leads outside the ruleset directory")
        try:
            # stat before open: opening a FIFO would block the checker forever
            st = os.stat(real)
            if not stat.S_ISREG(st.st_mode):
                raise _Unreadable("is not a regular file")
            if st.st_size > MAX_FILE_BYTES:
                raise _Unreadable(f"is {st.st_size} bytes, over the limit of {MAX_FILE_BYTES}")
            with open(real, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except OSError as e:
            raise _Unreadable(f"cannot be read: {e.strerror or e}") from None
        if len(data) > MAX_FILE_BYTES:
            raise _Unreadable(f"is over the limit of {MAX_FILE_BYTES} bytes")
        return data


class _MapSource:
    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = files

    def missing_root(self) -> tuple[str, str] | None:
        return None

    def read(self, rel: str) -> bytes:
        data = self.files.get(rel)
        if data is None:
            raise _Unreadable("not found")
        if len(data) > MAX_FILE_BYTES:
            raise _Unreadable(f"is {len(data)} bytes, over the limit of {MAX_FILE_BYTES}")
        return bytes(data)


_Source = _DirSource | _MapSource


def _make_source(source: RulesetSource) -> _Source:
    if isinstance(source, Mapping):
        return _MapSource(source)
    return _DirSource(Path(source))


# -- problems -----------------------------------------------------------------------------------------


class _Collector:
    """Problems in discovery order, at most MAX_PROBLEMS_PER_FILE listed per file."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.errors = 0
        self.warnings = 0
        self._listed: dict[str, int] = {}
        self._hidden: dict[str, list[int]] = {}  # file -> [errors, warnings] not listed

    def add(self, file: str, line: int, message: str, severity: Severity = "error") -> None:
        if severity == "error":
            self.errors += 1
        else:
            self.warnings += 1
        listed = self._listed.get(file, 0)
        if listed >= MAX_PROBLEMS_PER_FILE:
            hidden = self._hidden.setdefault(file, [0, 0])
            hidden[0 if severity == "error" else 1] += 1
            return
        self._listed[file] = listed + 1
        self.problems.append(Problem(file, line, message, severity))

    def finish(self) -> None:
        # as a compiler lists them: ruleset.toml, then the other files in the order they were first
        # named, each by line (ruleset.toml is checked key by key, not top to bottom)
        rank: dict[str, int] = {MANIFEST: 0}
        for problem in self.problems:
            rank.setdefault(problem.file, len(rank))
        self.problems.sort(key=lambda p: (rank[p.file], p.line))
        for file, (errors, warnings) in self._hidden.items():
            # counted already: this line only says what was left out
            self.problems.append(
                Problem(
                    file, 0, f"{errors} more errors and {warnings} more warnings not shown",
                    "error" if errors else "warning",
                )
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _did_you_mean(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


# -- TOML positions -----------------------------------------------------------------------------------


class _TomlLines:
    """Where keys are in ruleset.toml; see the module docstring for the heuristic."""

    def __init__(self, text: str) -> None:
        self.lines = text.split("\n")
        self.tables: list[int] = []  # 1-based lines of every table header
        self.categories: list[int] = []  # 1-based lines of the [[categories]] headers
        for number, line in enumerate(self.lines, 1):
            if _TABLE_RE.match(line):
                self.tables.append(number)
                if _CATEGORY_HEADER_RE.match(line):
                    self.categories.append(number)

    def _find(self, key: str, start: int, end: int) -> int | None:
        pattern = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}"|'{re.escape(key)}')\s*=""")
        for number in range(start, min(end, len(self.lines) + 1)):
            if pattern.match(self.lines[number - 1]):
                return number
        return None

    def top(self, key: str) -> int:
        end = self.tables[0] if self.tables else len(self.lines) + 1
        found = self._find(key, 1, end)
        if found is None and key == "categories":
            # `[categories]` (one bracket) is a table, not the array of tables it should be
            found = next((t for t in self.tables if _ANY_CATEGORIES_HEADER_RE.match(self.lines[t - 1])), None)
        return found or 1

    def category(self, index: int) -> int:
        if index < len(self.categories):
            return self.categories[index]
        return self.top("categories")  # inline tables: `categories = [{...}]`

    def category_key(self, index: int, key: str) -> int:
        if index >= len(self.categories):
            return self.category(index)
        start = self.categories[index]
        end = next((t for t in self.tables if t > start), len(self.lines) + 1)
        return self._find(key, start + 1, end) or start


def _toml_error_line(message: str, text: str) -> tuple[int, str]:
    match = _TOML_POS_RE.search(message)
    if match:
        return int(match.group(1)), message[: match.start()]
    match = _TOML_END_RE.search(message)
    if match:
        return max(1, text.count("\n") + (0 if text.endswith("\n") else 1)), message[: match.start()]
    return 1, message


# -- the checker --------------------------------------------------------------------------------------


@dataclass
class _ListFile:
    """One referenced file, parsed as one kind of list (keywords, exceptions or combinations)."""

    phrases: list[Phrase] = field(default_factory=list)
    combinations: list[Combination] = field(default_factory=list)
    read: bool = False  # False: missing or unreadable (already reported)
    entries: int = 0  # lines that were neither blank nor comments, valid or not

    @property
    def empty(self) -> bool:
        """Read and without a single entry (a file whose entries are all wrong is not called
        empty: each wrong line has its own problem)."""
        return self.read and self.entries == 0


_KINDS: Final = {"keywords": "keyword", "exceptions": "exception", "combinations": "combination"}


class _Checker:
    def __init__(self, source: _Source) -> None:
        self.source = source
        self.out = _Collector()
        self.files: dict[str, bytes] = {}
        self.lists: dict[tuple[str, str], _ListFile] = {}  # (path, kind): a file shared by categories
        self.phrase_count = 0
        self.over_limit = False

    def run(self) -> CheckResult:
        draft = Ruleset(name="", version=0)
        self._check(draft)
        self.out.finish()
        ok = self.out.errors == 0
        return CheckResult(
            ruleset=draft if ok else None, draft=draft, problems=self.out.problems, files=self.files,
            errors=self.out.errors, warnings=self.out.warnings,
        )

    def _check(self, draft: Ruleset) -> None:
        missing = self.source.missing_root()
        if missing is not None:
            self.out.add(missing[0], 0, missing[1])
            return
        try:
            data = self.source.read(MANIFEST)
        except _Unreadable as e:
            self.out.add(MANIFEST, 0, f"{MANIFEST} {e}")
            return
        self.files[MANIFEST] = data
        text = self._decode_whole(MANIFEST, data)
        if text is None:
            return
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            line, message = _toml_error_line(str(e), text)
            self.out.add(MANIFEST, line, f"TOML syntax error: {message}")
            return
        lines = _TomlLines(text)
        self._check_top(doc, lines, draft)
        categories = doc.get("categories")
        if categories is None:
            self.out.add(MANIFEST, 1, "no categories: add at least one [[categories]] table")
            return
        if not isinstance(categories, list):
            self.out.add(MANIFEST, lines.top("categories"), "'categories' must be [[categories]] tables")
            return
        if not categories:
            self.out.add(
                MANIFEST, lines.top("categories"), "no categories: add at least one [[categories]] table"
            )
            return
        if len(categories) > MAX_CATEGORIES:
            self.out.add(MANIFEST, lines.category(MAX_CATEGORIES), f"more than {MAX_CATEGORIES} categories")
            categories = categories[:MAX_CATEGORIES]
        seen_ids: dict[str, int] = {}
        for index, table in enumerate(categories):
            category = self._check_category(index, table, lines, seen_ids)
            if category is not None:
                draft.categories.append(category)
        if draft.categories and not any(c.enabled for c in draft.categories):
            self.out.add(MANIFEST, lines.top("categories"), "every category is disabled", "warning")

    def _decode_whole(self, file: str, data: bytes) -> str | None:
        if data.startswith(_BOM):
            data = data[len(_BOM):]
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            line = data.count(b"\n", 0, e.start) + 1
            self.out.add(file, line, f"not valid UTF-8 (byte 0x{data[e.start]:02x}): save the file as UTF-8")
            return None

    def _check_top(self, doc: dict[str, object], lines: _TomlLines, draft: Ruleset) -> None:
        for key in doc:
            if key not in TOP_KEYS:
                self.out.add(MANIFEST, lines.top(key), f"unknown key '{key}'{_did_you_mean(key, TOP_KEYS)}")
        name = doc.get("name")
        if name is None:
            self.out.add(MANIFEST, 1, "missing 'name'")
        elif not isinstance(name, str) or not name.strip():
            self.out.add(MANIFEST, lines.top("name"), "'name' must be a non-empty string")
        elif len(name) > MAX_NAME_CHARS or _CONTROL_RE.search(name):
            self.out.add(MANIFEST, lines.top("name"),
                         f"'name' must be at most {MAX_NAME_CHARS} characters, without control characters")
        else:
            draft.name = name
        version = doc.get("version")
        if version is None:
            self.out.add(MANIFEST, 1, "missing 'version'")
        elif isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= MAX_VERSION:
            self.out.add(
                MANIFEST, lines.top("version"), f"'version' must be an integer >= 1, not {version!r}"
            )
        else:
            draft.version = version

    def _check_category(
        self, index: int, table: object, lines: _TomlLines, seen_ids: dict[str, int]
    ) -> Category | None:
        header = lines.category(index)
        if not isinstance(table, dict):
            self.out.add(MANIFEST, header, f"category #{index + 1} is not a table")
            return None

        def at(key: str) -> int:
            return lines.category_key(index, key)

        raw_id = table.get("id")
        label = raw_id if isinstance(raw_id, str) and raw_id else f"#{index + 1}"
        for key in table:
            if key not in CATEGORY_KEYS:
                hint = _did_you_mean(key, CATEGORY_KEYS)
                self.out.add(MANIFEST, at(key), f"unknown key '{key}' in category {label}{hint}")
        for key in REQUIRED_CATEGORY_KEYS:
            if key not in table:
                self.out.add(MANIFEST, header, f"category {label} has no '{key}'")

        category = Category(id=label, action="alert", severity=MIN_SEVERITY)
        if raw_id is not None:
            if not isinstance(raw_id, str) or not _ID_RE.match(raw_id) or len(raw_id) > MAX_ID_CHARS:
                self.out.add(
                    MANIFEST, at("id"),
                    f"category id {raw_id!r} must match [a-z0-9][a-z0-9_-]* "
                    f"(at most {MAX_ID_CHARS} characters)",
                )
            elif raw_id in seen_ids:
                first = seen_ids[raw_id]
                self.out.add(MANIFEST, at("id"), f"duplicate category id '{raw_id}' (first on line {first})")
            else:
                seen_ids[raw_id] = at("id")
        action = table.get("action")
        if action is not None:
            if action in ACTIONS:
                category.action = cast(Action, action)
            else:
                self.out.add(
                    MANIFEST, at("action"),
                    f"category {label}: action must be 'alert' or 'block', not {action!r}",
                )
        severity = table.get("severity")
        if severity is not None:
            if _is_int(severity) and MIN_SEVERITY <= cast(int, severity) <= MAX_SEVERITY:
                category.severity = cast(int, severity)
            else:
                self.out.add(
                    MANIFEST, at("severity"),
                    f"category {label}: severity must be an integer "
                    f"{MIN_SEVERITY}..{MAX_SEVERITY}, not {severity!r}",
                )
        if "fields" in table:
            category.fields = self._check_fields(label, table["fields"], at("fields"))
        enabled = table.get("enabled")
        if enabled is not None:
            if isinstance(enabled, bool):
                category.enabled = enabled
            else:
                self.out.add(MANIFEST, at("enabled"), f"category {label}: enabled must be true or false")

        for key in ("keywords", "exceptions", "combinations"):
            value = table.get(key)
            if value is None:
                continue
            parsed = self._check_list(label, key, value, at(key))
            if parsed is None:
                continue
            if key == "keywords":
                category.keywords = parsed.phrases
                if parsed.empty:
                    self.out.add(
                        MANIFEST, at(key), f"category {label}: keywords file '{value}' has no keywords"
                    )
            elif key == "exceptions":
                category.exceptions = parsed.phrases
                if parsed.empty:
                    self.out.add(
                        MANIFEST, at(key), f"category {label}: exceptions file '{value}' is empty", "warning"
                    )
            else:
                category.combinations = parsed.combinations
                if parsed.empty:
                    self.out.add(
                        MANIFEST, at(key), f"category {label}: combinations file '{value}' is empty",
                        "warning",
                    )
        return category

    def _check_fields(self, label: str, value: object, line: int) -> frozenset[str]:
        if not isinstance(value, list) or not all(isinstance(f, str) for f in value):
            self.out.add(MANIFEST, line, f"category {label}: fields must be a list of field names")
            return frozenset(FIELDS)
        if not value:
            self.out.add(
                MANIFEST, line, f"category {label}: fields is empty (leave it out to match every field)"
            )
            return frozenset(FIELDS)
        good: list[str] = []
        for name in value:
            if name not in FIELDS:
                hint = _did_you_mean(name, FIELDS)
                self.out.add(
                    MANIFEST, line,
                    f"category {label}: unknown field '{name}'{hint}; known: {', '.join(FIELDS)}",
                )
            elif name in good:
                self.out.add(MANIFEST, line, f"category {label}: field '{name}' is listed twice", "warning")
            else:
                good.append(name)
        return frozenset(good) if good else frozenset(FIELDS)

    def _check_list(self, label: str, key: str, value: object, line: int) -> _ListFile | None:
        if not isinstance(value, str):
            self.out.add(MANIFEST, line, f"category {label}: {key} must be a file name (a string)")
            return None
        try:
            rel = normalize_relpath(value)
        except ValueError as e:
            self.out.add(MANIFEST, line, f"category {label}: {key} file '{value}' {e}")
            return None
        cached = self.lists.get((rel, key))
        if cached is not None:
            return cached
        parsed = _ListFile()
        self.lists[(rel, key)] = parsed
        if self.over_limit:
            return parsed
        data = self.files.get(rel)
        if data is None:
            try:
                data = self.source.read(rel)
            except _Unreadable as e:
                self.out.add(MANIFEST, line, f"category {label}: {key} file '{rel}' {e}")
                return parsed
            self.files[rel] = data
        parsed.read = True
        self._parse_list(rel, key, data, parsed)
        if self.phrase_count > MAX_KEYWORDS:
            self.over_limit = True
            self.out.add(
                MANIFEST, line,
                f"more than {MAX_KEYWORDS} keywords, exceptions and combination parts in all; "
                "files after this one are not read",
            )
        return parsed

    def _lines(self, rel: str, data: bytes) -> tuple[list[tuple[int, str]], bool]:
        """(line number, stripped text) of every entry line, skipping blanks, comments and lines
        that are not UTF-8 (each reported); and whether the file may hold a control character
        (if not, the per-line search for one is skipped: the common case, a million lines)."""
        if data.startswith(_BOM):
            data = data[len(_BOM):]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            # slow path only for a damaged file: name each bad line, keep the good ones
            good: list[str] = []
            for number, raw in enumerate(data.split(b"\n"), 1):
                try:
                    good.append(raw.decode("utf-8"))
                except UnicodeDecodeError as e:
                    self.out.add(
                        rel, number,
                        f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}): "
                        "save the file as UTF-8",
                    )
                    good.append("")
            text = "\n".join(good)
        entries: list[tuple[int, str]] = []
        for number, raw_line in enumerate(text.split("\n"), 1):
            entry = raw_line.strip()
            if entry and entry[0] != "#":
                entries.append((number, entry))
        return entries, _FILE_CONTROL_RE.search(text) is not None

    def _phrase_ok(self, rel: str, number: int, kind: str, text: str) -> bool:
        """Check one keyword, exception or combination part, reporting what is wrong."""
        if _CONTROL_RE.search(text):
            self.out.add(rel, number, f"{kind} contains a control character")
            return False
        size = len(text.encode("utf-8"))
        if size < MIN_KEYWORD_BYTES:
            self.out.add(
                rel, number,
                f"{kind} '{text}' is shorter than {MIN_KEYWORD_BYTES} bytes: "
                "it would match almost everything",
            )
            return False
        if size > MAX_KEYWORD_BYTES:
            self.out.add(rel, number, f"{kind} is {size} bytes, longer than {MAX_KEYWORD_BYTES}")
            return False
        return True

    def _parse_list(self, rel: str, key: str, data: bytes, parsed: _ListFile) -> None:
        entries, may_have_control = self._lines(rel, data)
        parsed.entries = len(entries)
        if key == "combinations":
            self._parse_combinations(rel, entries, parsed)
            return
        kind = _KINDS[key]
        seen: dict[str, int] = {}
        phrases = parsed.phrases
        # the loop runs once per keyword (up to MAX_KEYWORDS): the checks are inlined and the
        # reporting method is called only for a line that fails one
        for number, text in entries:
            size = len(text.encode("utf-8"))
            if (
                size < MIN_KEYWORD_BYTES or size > MAX_KEYWORD_BYTES
                or (may_have_control and _CONTROL_RE.search(text))
            ):
                self._phrase_ok(rel, number, kind, text)
                continue
            first = seen.setdefault(text, number)
            if first != number:
                self.out.add(rel, number, f"duplicate {kind} '{text}' (first on line {first})", "warning")
                continue
            phrases.append(Phrase(text, rel, number))
        self.phrase_count += len(phrases)

    def _parse_combinations(self, rel: str, entries: list[tuple[int, str]], parsed: _ListFile) -> None:
        seen: dict[frozenset[str], int] = {}
        for number, text in entries:
            parts = tuple(p.strip() for p in _COMBO_SPLIT_RE.split(text))
            if len(parts) < 2:
                self.out.add(rel, number, f"combination '{text}' needs at least 2 keywords joined by ' & '")
                continue
            if any(not p for p in parts):
                self.out.add(rel, number, f"combination '{text}' has an empty part")
                continue
            if not all(self._phrase_ok(rel, number, "combination part", p) for p in parts):
                continue
            if len(set(parts)) != len(parts):
                self.out.add(rel, number, f"combination '{text}' repeats a keyword", "warning")
            identity = frozenset(parts)  # "a & b" and "b & a" are the same rule
            first = seen.setdefault(identity, number)
            if first != number:
                self.out.add(
                    rel, number, f"duplicate combination '{text}' (first on line {first})", "warning"
                )
                continue
            parsed.combinations.append(Combination(parts, rel, number))
            self.phrase_count += len(parts)
