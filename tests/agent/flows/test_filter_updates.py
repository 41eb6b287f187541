"""Ruleset updates on a running filter: only signed, newer, intact, unexpired bundles that compile
are swapped in; every refusal leaves the last good ruleset matching, and says why."""

from __future__ import annotations

import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from tcp_frames import Conn

from agent.filter.compiled import compile_rules
from agent.filter.engine import FilterEngine
from agent.filter.updates import RulesetUpdater
from agent.pipeline import Pipeline
from rulesets.bundle import pack_bundle
from rulesets.load import load_ruleset
from wire.validate import validate_record

pytestmark = pytest.mark.usefixtures("keyword_engine")  # each test with each keyword engine

NOW = 1_800_000_000
CLIENT, SERVER = "192.0.2.10", "198.51.100.80"


def files(version: int, keyword: str = "casino", keywords_file: bytes | None = None) -> dict[str, bytes]:
    toml = (f'name = "t"\nversion = {version}\n[[categories]]\nid = "gambling"\naction = "alert"\n'
            f'severity = 3\nkeywords = "k.txt"\n').encode()
    words = keywords_file if keywords_file is not None else keyword.encode() + b"\n"
    return {"ruleset.toml": toml, "k.txt": words}


def bundle(key: Ed25519PrivateKey, version: int, *, expires: int = NOW + 3600, **kw: Any) -> bytes:
    data, _ = pack_bundle(files(version, **kw), key, name="t", version=version, created=NOW - 10,
                          expires=expires)
    return data


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def updater(key: Ed25519PrivateKey, tmp_path: Any) -> RulesetUpdater:
    for name, data in files(3).items():
        (tmp_path / name).write_bytes(data)
    engine = FilterEngine(compile_rules(load_ruleset(tmp_path)))
    return RulesetUpdater(engine, [key.public_key()], clock=lambda: float(NOW))


def matches(updater: RulesetUpdater, text: str) -> list[str]:
    """Keywords the filter alerts on for one HTTP request whose URI carries `text`."""
    c = Conn(CLIENT, 40001, SERVER, 80)
    frames = c.handshake() + [c.c(f"GET /{text} HTTP/1.1\r\nHost: h\r\n\r\n".encode()), c.s()] + c.close()
    out: list[dict[str, Any]] = []
    p = Pipeline(out.extend, rules=updater.rules)
    assert p.filter is not None
    p.filter.rules = updater.engine.rules
    p.feed([(NOW + i * 0.01, 1, f) for i, f in enumerate(frames)])
    p.finish()
    return [r["keyword"] for r in out if r["type"] == "alert"]


def test_a_newer_signed_bundle_is_swapped_in(updater: RulesetUpdater, key: Ed25519PrivateKey) -> None:
    assert matches(updater, "casino") == ["casino"]
    res = updater.offer(bundle(key, 4, keyword="lottery"))
    assert res.applied and res.version == 4 and updater.rules.version == 4
    assert matches(updater, "casino-lottery") == ["lottery"]
    rec = res.audit_record(float(NOW))
    validate_record(rec)
    assert rec["result"] == "applied" and "v4" in rec["detail"]


def tamper_signature(b: bytes) -> bytes:
    i = b.index(b"manifest.sig") + 512  # the member's data follows its 512-byte header
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1:]


ATTACKS = {
    "bad signature": lambda key, other: tamper_signature(bundle(key, 4)),
    "wrong key": lambda key, other: bundle(other, 4),
    "older version (rollback)": lambda key, other: bundle(key, 2),
    "same version": lambda key, other: bundle(key, 3),
    "expired": lambda key, other: bundle(key, 4, expires=NOW - 1),
    "truncated": lambda key, other: bundle(key, 4)[:700],
    "not a bundle": lambda key, other: b"\x00" * 4096,
    "malformed keyword file": lambda key, other: bundle(key, 4, keywords_file=b"ok\n\xff\xfe bad utf-8\n"),
    "empty keyword file": lambda key, other: bundle(key, 4, keywords_file=b"# nothing\n"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_every_refusal_keeps_the_last_good_ruleset(updater: RulesetUpdater, key: Ed25519PrivateKey,
                                                   attack: str) -> None:
    other = Ed25519PrivateKey.generate()
    res = updater.offer(ATTACKS[attack](key, other))
    assert not res.applied and res.version == 3 and updater.rules.version == 3
    assert updater.last_error and res.detail.startswith("bundle refused: ")
    assert updater.counters == {"offered": 1, "applied": 0, "rejected": 1}
    assert matches(updater, "casino") == ["casino"]  # still running, still matching
    rec = res.audit_record(float(NOW))
    validate_record(rec)
    assert rec["result"] == "rejected"


def test_an_oversized_bundle_is_refused_before_it_is_read(key: Ed25519PrivateKey, tmp_path: Any) -> None:
    for name, data in files(3).items():
        (tmp_path / name).write_bytes(data)
    small = RulesetUpdater(FilterEngine(compile_rules(load_ruleset(tmp_path))), [key.public_key()],
                           clock=lambda: float(NOW), max_bytes=4096)
    res = small.offer(bundle(key, 4, keyword="x" * 100) + b"\x00" * 10000)
    assert not res.applied and small.rules.version == 3


def test_the_swap_does_not_disturb_a_connection_being_scanned(updater: RulesetUpdater,
                                                              key: Ed25519PrivateKey) -> None:
    """A connection keeps the ruleset it started with; the next one gets the new one."""
    c = Conn(CLIENT, 40002, SERVER, 80)
    head = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\n"
    out: list[dict[str, Any]] = []
    p = Pipeline(out.extend, rules=updater.rules)
    assert p.filter is not None
    updater.engine = p.filter  # the pipeline's filter is the one updated
    t = [float(NOW)]

    def feed(frames: list[bytes]) -> None:
        for f in frames:
            t[0] += 0.01
            p.feed([(t[0], 1, f)])

    feed(c.handshake() + [c.c(head + b"casino ")])
    assert updater.offer(bundle(key, 4, keyword="lottery")).applied
    feed([c.c(b"lottery and casino!")] + [c.s()] + c.close())
    c2 = Conn(CLIENT, 40003, SERVER, 80)
    feed(c2.handshake() + [c2.c(b"GET /casino/lottery HTTP/1.1\r\nHost: h\r\n\r\n"), c2.s()] + c2.close())
    p.finish()
    got = [(r["src_port"], r["keyword"], r["ruleset_version"]) for r in out if r["type"] == "alert"]
    assert got == [(40002, "casino", "3"), (40003, "lottery", "4")]


def test_the_clock_decides_expiry(key: Ed25519PrivateKey, tmp_path: Any) -> None:
    for name, data in files(3).items():
        (tmp_path / name).write_bytes(data)
    u = RulesetUpdater(FilterEngine(compile_rules(load_ruleset(tmp_path))), [key.public_key()])
    res = u.offer(bundle(key, 4, expires=int(time.time()) - 5))
    assert not res.applied and "expired" in res.detail


def _settle(updater: RulesetUpdater) -> Any:
    """Poll until the background compile's result comes (the capture loop polls at each stats tick)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        res = updater.poll()
        if res is not None:
            return res
        time.sleep(0.01)  # polling a thread's end, as the worker's periodic call does
    raise AssertionError("the background compile did not end")


def test_background_offer_compiles_on_a_thread_and_poll_swaps_it_in(updater: RulesetUpdater,
                                                                    key: Ed25519PrivateKey) -> None:
    assert updater.poll() is None  # nothing offered
    assert updater.offer_in_background(bundle(key, 4, keyword="lottery")) is None
    assert updater.compiling
    # while it compiles the running ruleset keeps matching; a newer bundle offered meanwhile waits
    assert updater.offer_in_background(bundle(key, 5, keyword="poker")) is None
    assert matches(updater, "casino") == ["casino"]
    first = _settle(updater)
    assert first.applied and first.version == 4 and updater.rules.version == 4
    assert updater.compiling  # the one that waited is compiling now
    second = _settle(updater)
    assert second.applied and second.version == 5 and not updater.compiling
    assert matches(updater, "casino-lottery-poker") == ["poker"]
    assert updater.counters == {"offered": 2, "applied": 2, "rejected": 0}
    validate_record(second.audit_record(float(NOW)))


def test_background_offer_refuses_a_bad_bundle_at_once(updater: RulesetUpdater,
                                                       key: Ed25519PrivateKey) -> None:
    res = updater.offer_in_background(tamper_signature(bundle(key, 4)))
    assert res is not None and not res.applied and res.detail.startswith("bundle refused: ")
    assert not updater.compiling and updater.poll() is None and updater.rules.version == 3
    # a keyword file that does not load is found by the verification (rulesets.load), at once too
    bad = updater.offer_in_background(bundle(key, 4, keywords_file=b"ok\n\xff\xfe bad utf-8\n"))
    assert bad is not None and not bad.applied and not updater.compiling
    assert updater.counters == {"offered": 2, "applied": 0, "rejected": 2}
    assert matches(updater, "casino") == ["casino"]
