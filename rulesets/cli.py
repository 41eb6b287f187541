"""edgeaudit-rules: check, sign, verify, compare and test keyword rulesets (DESIGN.md "Rulesets").

    edgeaudit-rules check DIR
    edgeaudit-rules keygen --out PREFIX
    edgeaudit-rules sign DIR --key PREFIX.key --out BUNDLE [--expires-days N]
    edgeaudit-rules verify BUNDLE --pubkey P [--pubkey P ...] [--newer-than V]
    edgeaudit-rules diff OLD NEW
    edgeaudit-rules test DIR FILE.pcap ...

Messages: one line each on stderr, starting with the subcommand (`verify: expired at ...`).
Exit status: 0 success (for `diff`: no difference), 1 failure (an invalid ruleset, a refused
bundle; for `diff`: a difference, as diff(1)), 2 usage errors (argparse) and, for `diff`,
trouble reading either side. Problems go to stdout for `check` (they are its output), to stderr
elsewhere, each on one line. Nothing here prints a private key: `keygen` prints paths and the
key id only.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from rulesets.bundle import (
    MAX_BUNDLE_BYTES,
    BundleError,
    read_bundle_unverified,
    sign_bundle,
    verify_bundle,
)
from rulesets.diff import diff_rulesets
from rulesets.keys import KeyFileError, load_private_key, load_public_key, write_keypair
from rulesets.load import Problem, RulesetError, examine_ruleset, load_ruleset
from rulesets.model import Ruleset
from wire.build import VersionAction

PROG = "edgeaudit-rules"
DAY = 86_400


def _err(message: str) -> None:
    """One line on stderr, starting with the subcommand ("verify: ..."), as the brief asks of verify."""
    print(message, file=sys.stderr)


def _utc(seconds: int) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (unix seconds)"


def _read_bundle_file(path: str) -> bytes:
    """The bundle's bytes, refusing (BundleError) an oversized file before reading it."""
    try:
        size = os.stat(path).st_size
        if size > MAX_BUNDLE_BYTES:
            raise BundleError(f"bundle is {size} bytes, over the limit of {MAX_BUNDLE_BYTES}")
        with open(path, "rb") as f:
            return f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as e:
        raise BundleError(f"{path}: cannot read: {e.strerror or e}") from None


def _print_problems(problems: Sequence[Problem], stream: TextIO | None = None) -> None:
    for problem in problems:
        print(problem, file=sys.stdout if stream is None else stream)


def cmd_check(args: argparse.Namespace) -> int:
    result = examine_ruleset(args.dir)
    _print_problems(result.problems)
    keywords = sum(len(c.keywords) for c in result.draft.categories)
    print(
        f"{args.dir}: {len(result.draft.categories)} categories, {keywords} keywords, "
        f"{result.errors} errors, {result.warnings} warnings"
    )
    return 0 if result.ok else 1


def cmd_keygen(args: argparse.Namespace) -> int:
    try:
        kid = write_keypair(args.out)
    except FileExistsError as e:
        _err(f"keygen: {e}")
        return 1
    except OSError as e:
        _err(f"keygen: cannot write {e.filename}: {e.strerror}")
        return 1
    print(f"wrote {args.out}.key (private, mode 0600: keep it offline) and {args.out}.pub")
    print(f"key id {kid}")
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    try:
        private = load_private_key(args.key)
    except KeyFileError as e:
        _err(f"sign: {e}")
        return 1
    # warnings do not stop signing, but the signer should see them
    checked = examine_ruleset(args.dir)
    if checked.ok:
        _print_problems(checked.problems, sys.stderr)
    now = int(time.time())
    try:
        manifest = sign_bundle(args.dir, private, args.out, expires=now + args.expires_days * DAY, now=now)
    except RulesetError as e:
        _print_problems(e.problems, sys.stderr)
        _err(f"sign: {args.dir}: invalid ruleset, not signed")
        return 1
    except BundleError as e:
        _err(f"sign: {e.reason}")
        return 1
    except OSError as e:
        _err(f"sign: cannot write {args.out}: {e.strerror or e}")
        return 1
    print(
        f"signed {manifest.name} version {manifest.version} ({len(manifest.files)} files) with key "
        f"{manifest.key_id}, expires {_utc(manifest.expires)} -> {args.out}"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        keys = [load_public_key(Path(p)) for p in args.pubkey]
    except KeyFileError as e:
        _err(f"verify: {e}")
        return 1
    try:
        verified = verify_bundle(_read_bundle_file(args.bundle), keys, newer_than=args.newer_than)
    except BundleError as e:
        _err(f"verify: {e.reason}")
        return 1
    print(f"name: {verified.name}")
    print(f"version: {verified.version}")
    print(f"created: {_utc(verified.created)}")
    print(f"expires: {_utc(verified.expires)}")
    print(f"key id: {verified.key_id}")
    print(f"files: {len(verified.files)}")
    print(f"rules: {verified.ruleset.rule_count()}")
    return 0


def _load_either(path: str) -> Ruleset:
    if os.path.isdir(path):
        return load_ruleset(path)
    return load_ruleset(read_bundle_unverified(_read_bundle_file(path)))


def cmd_diff(args: argparse.Namespace) -> int:
    rulesets: list[Ruleset] = []
    for path in (args.old, args.new):
        try:
            rulesets.append(_load_either(path))
        except RulesetError as e:
            _print_problems([p for p in e.problems if p.severity == "error"], sys.stderr)
            _err(f"diff: {path}: invalid ruleset")
            return 2
        except BundleError as e:
            _err(f"diff: {path}: {e.reason}")
            return 2
    lines = diff_rulesets(rulesets[0], rulesets[1])
    for line in lines:
        print(line)
    return 1 if lines else 0


def cmd_test(args: argparse.Namespace) -> int:
    # imported here: the matcher pulls in the agent's decoders, which check/sign/verify never need
    try:
        from rulesets.matchtest import run_test  # type: ignore[import-not-found]
    except ImportError as e:
        _err(f"test: not available in this version ({e})")
        return 2
    rc: int = run_test(args.dir, args.pcaps, engine=args.engine)
    return rc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Check, sign, verify and compare keyword rulesets."
    )
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="report every problem in a ruleset directory")
    p.add_argument("dir", metavar="DIR")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("keygen", help="make an Ed25519 signing key pair (PREFIX.key, PREFIX.pub)")
    p.add_argument("--out", required=True, metavar="PREFIX")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("sign", help="check a ruleset and write a signed bundle")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--key", required=True, metavar="PREFIX.key", help="private key from keygen")
    p.add_argument("--out", required=True, metavar="BUNDLE")
    p.add_argument("--expires-days", type=_positive_int, default=30, metavar="N", help="default: 30")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("verify", help="verify a bundle as an agent would")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument(
        "--pubkey", action="append", required=True, metavar="P", help="trusted public key (repeatable)"
    )
    p.add_argument("--newer-than", type=int, metavar="V", help="refuse versions <= V (rollback)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser(
        "diff",
        help="show what changed between two rulesets or bundles (bundles are NOT verified; "
        "exit 1 if they differ)",
        description="OLD and NEW are each a ruleset directory or a bundle file. Bundles are read "
        "WITHOUT verifying their signature or expiry: use verify for that.",
    )
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.set_defaults(func=cmd_diff)

    p = sub.add_parser("test", help="run a ruleset over captures and show what it matches")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("pcaps", nargs="+", metavar="FILE.pcap")
    p.add_argument("--engine", choices=("auto", "vectorscan", "aho-corasick"), default="auto",
                   help="keyword engine, as the agent's [filter] engine (default auto)")
    p.set_defaults(func=cmd_test)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    sys.exit(main())
