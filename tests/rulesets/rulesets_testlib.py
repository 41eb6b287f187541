"""Helpers shared by the rulesets tests: write real ruleset directories and re-pack bundles."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "rulesets" / "examples"

MINIMAL_TOML = """\
name = "example"
version = 3
[[categories]]
id = "gambling"
action = "alert"
severity = 3
keywords = "gambling.txt"
fields = ["http.uri", "http.request_body", "dns.query"]
"""

MINIMAL_KEYWORDS = "# gambling words\n赌博\n\nonline casino\n  百家乐  \n"


def write_ruleset(root: Path, toml: str, files: dict[str, str | bytes] | None = None) -> Path:
    """A ruleset directory at `root` with ruleset.toml and `files` (text is written as UTF-8)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "ruleset.toml").write_text(toml, encoding="utf-8")
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_bytes(content)
    return root


def minimal_ruleset(root: Path) -> Path:
    return write_ruleset(root, MINIMAL_TOML, {"gambling.txt": MINIMAL_KEYWORDS})


def full_toml(version: int = 3) -> str:
    return f"""\
name = "full"
version = {version}

[[categories]]
id = "gambling"
action = "alert"
severity = 3
keywords = "lists/gambling.txt"
exceptions = "lists/gambling-exceptions.txt"
combinations = "lists/gambling-combos.txt"

[[categories]]
id = "drugs"
action = "block"
severity = 5
keywords = "drugs.txt"
fields = ["http.uri", "dns.query"]
enabled = false
"""


FULL_FILES: dict[str, str | bytes] = {
    "lists/gambling.txt": "赌博\n赌球\nonline casino\nC#\nAT&T\n",
    "lists/gambling-exceptions.txt": "# news\n打击赌博\n",
    "lists/gambling-combos.txt": "充值 & 下注\ndeposit & bonus & wager\nAT&T & 赌球\n",
    "drugs.txt": "冰毒\nbuy meth\n",
}


def full_ruleset(root: Path, version: int = 3) -> Path:
    return write_ruleset(root, full_toml(version), FULL_FILES)


# A ruleset with one of nearly every problem (test_rulesets_load lists them with file:line).
MANY_PROBLEMS = """\
name = ""
version = true
colour = "red"

[[categories]]
id = "Gambling!"
action = "alarm"
severity = 9
keywords = "missing.txt"
feilds = ["http.uri"]

[[categories]]
id = "dup"
action = "block"
severity = 2
keywords = "../outside.txt"
fields = ["http.url"]

[[categories]]
id = "dup"
severity = "3"
keywords = "/etc/hostname"
fields = []

[[categories]]
id = "words"
action = "alert"
severity = 1
keywords = "words.txt"
combinations = "combos.txt"
enabled = "yes"
"""

MANY_WORDS = (
    "# comment\nok keyword\na\nx\x07y\n" + "长" * 86 + "\nok keyword\n"
).encode() + b"\xff\xfe bad\ngood\n"
MANY_COMBOS = "single\na & \nfoo & & bar\ngood one & another\n"
MANY_PROBLEMS_FILES: tuple[str, dict[str, str | bytes]] = (
    MANY_PROBLEMS, {"words.txt": MANY_WORDS, "combos.txt": MANY_COMBOS},
)


def tar_members(data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The members of a (well-formed) bundle with their contents, in order."""
    out: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for info in tf:
            f = tf.extractfile(info)
            out.append((info, f.read() if f is not None else b""))
    return out


def retar(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    """A tar of exactly these members, in this order (so tests can forge any layout)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for info, content in members:
            info = _copy(info)
            if info.isreg():
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
            else:
                tf.addfile(info)
    return buf.getvalue()


def _copy(info: tarfile.TarInfo) -> tarfile.TarInfo:
    new = tarfile.TarInfo(info.name)
    for attr in ("size", "mtime", "mode", "uid", "gid", "uname", "gname", "type", "linkname", "devmajor",
                 "devminor"):
        setattr(new, attr, getattr(info, attr))
    return new


def member(name: str, content: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tuple[
    tarfile.TarInfo, bytes
]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    info.size = len(content) if kind == tarfile.REGTYPE else 0
    return info, content
