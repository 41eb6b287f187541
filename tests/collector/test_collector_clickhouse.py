"""`edgeaudit-collector serve --storage clickhouse` end to end: batches posted over HTTP land in a
real clickhouse-server (started by the test on loopback) and come back through the records
query. Skipped when clickhouse-server is not installed."""

from __future__ import annotations

import base64
import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_server import post, serve

from wire.envelope import encode_batch

sys.path.insert(0, str(Path(__file__).parent / "storage"))
from clickhouse_server import ClickHouseServer, find_binary  # noqa: E402


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[dict[str, Any]]:
    if find_binary() is None:
        pytest.skip("clickhouse-server is not installed (apt-get install clickhouse-server)")
    ch = ClickHouseServer.start(tmp_path / "ch")
    try:
        yield from serve(tmp_path, extra=("--storage", "clickhouse", "--clickhouse-url", ch.url,
                                          "--clickhouse-database", "e2e"))
    finally:
        ch.stop()


def test_batches_land_in_clickhouse_and_come_back(collector: dict[str, Any]) -> None:
    c = collector
    recs = [{"type": "weird", "ts": 1_700_000_000.0 + i, "name": "e2e", "detail": f"d{i}"} for i in range(20)]
    body = encode_batch("gw1", "unit-42", 5, recs)
    assert post(c["url"], body, c["token"]) == (200, {"accepted": 20, "duplicate": False})
    assert post(c["url"], body, c["token"]) == (200, {"accepted": 20, "duplicate": True})
    user, password = c["operator"]
    req = urllib.request.Request(c["url"] + "/api/v1/query/records?type=weird&limit=100")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    with urllib.request.urlopen(req, timeout=60) as resp:
        got = json.loads(resp.read())["records"]
    assert [r["detail"] for r in got] == [f"d{i}" for i in range(20)]
    assert {r["_agent"] for r in got} == {"gw1"}
