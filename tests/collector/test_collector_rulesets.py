"""Ruleset distribution through a running collector: an admin publishes a signed bundle (checked
like an agent checks it), agents fetch it with an ETag, and the agent's updater accepts what
it fetched. Non-admins, forged, re-played and foreign bundles are refused with the reason."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_server import REPO, serve

from agent.filter.compiled import compile_rules
from agent.filter.engine import FilterEngine
from agent.filter.updates import RulesetUpdater
from rulesets.bundle import pack_bundle, sign_bundle
from rulesets.keys import load_private_key, load_public_key, write_keypair
from rulesets.load import examine_ruleset, load_ruleset

pytestmark = pytest.mark.usefixtures("keyword_engine")  # each test with each keyword engine

EXAMPLES = REPO / "rulesets" / "examples"


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[dict[str, Any]]:
    write_keypair(tmp_path / "signer")
    gen = serve(tmp_path, extra=("--ruleset-pubkey", str(tmp_path / "signer.pub")))
    c = next(gen)
    c["key"] = load_private_key(tmp_path / "signer.key")
    c["pub"] = load_public_key(tmp_path / "signer.pub")
    try:
        yield c
    finally:
        next(gen, None)


def call(c: dict[str, Any], method: str, body: bytes | None = None, *,
         user: tuple[str, str] | None = None, token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(c["url"] + "/api/v1/rulesets/current", data=body, method=method,
                                 headers=dict(headers or {}))
    if user is not None:
        req.add_header("Authorization", "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode())
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def bundle(c: dict[str, Any], tmp: Path, version: int) -> bytes:
    files = examine_ruleset(EXAMPLES).files
    toml = files["ruleset.toml"].replace(b"version = 1", f"version = {version}".encode())
    data, _ = pack_bundle({**files, "ruleset.toml": toml}, c["key"], name="example", version=version,
                          created=1_800_000_000, expires=4_000_000_000)
    return data


def test_publish_fetch_and_apply(collector: dict[str, Any], tmp_path: Path) -> None:
    c = collector
    assert call(c, "GET", token=c["token"])[0] == 404
    v2 = bundle(c, tmp_path, 2)
    status, body, _ = call(c, "PUT", v2, user=c["admin"])
    assert status == 200 and json.loads(body)["version"] == 2
    status, body, headers = call(c, "GET", token=c["token"])
    assert status == 200 and body == v2
    tag = headers["ETag"]
    assert call(c, "GET", token=c["token"], headers={"If-None-Match": tag})[0] == 304
    assert call(c, "GET")[0] == 401
    # the agent applies exactly what it fetched, with its own check of the signature
    engine = FilterEngine(compile_rules(load_ruleset(EXAMPLES)))
    updater = RulesetUpdater(engine, [c["pub"]])
    assert updater.offer(body).applied and updater.rules.version == 2
    log = [json.loads(line) for line in (c["data"] / "audit.log").read_text().splitlines()]
    assert [(e["actor"], e["action"], e["target"]) for e in log if not e["actor"].startswith("cli:")] == [
        ("root", "ruleset_publish", "example v2")]


def test_refusals_keep_the_current_bundle(collector: dict[str, Any], tmp_path: Path) -> None:
    c = collector
    v2 = bundle(c, tmp_path, 2)
    assert call(c, "PUT", v2, user=c["operator"])[0] == 403
    assert call(c, "PUT", v2, user=c["admin"])[0] == 200
    status, body, _ = call(c, "PUT", v2, user=c["admin"])  # a replay of the same version
    assert status == 409 and "not newer" in json.loads(body)["detail"]
    forged = bytearray(bundle(c, tmp_path, 3))
    forged[forged.index(b"manifest.sig") + 512] ^= 1
    status, body, _ = call(c, "PUT", bytes(forged), user=c["admin"])
    assert status == 400 and json.loads(body)["error"] == "bundle_refused"
    write_keypair(tmp_path / "other")
    sign_bundle(EXAMPLES, load_private_key(tmp_path / "other.key"), tmp_path / "o.bundle",
                expires=4_000_000_000)
    status, body, _ = call(c, "PUT", (tmp_path / "o.bundle").read_bytes(), user=c["admin"])
    assert status == 400 and "unknown key" in json.loads(body)["detail"]
    assert call(c, "GET", token=c["token"])[1] == v2
