"""The spool drain and batches the collector refuses (issue 18): a batch refused for good goes to
the spool's quarantine and the next batch goes through; 401, 408, 429 and 503 are retried, not
quarantined; a 403 asks the collector who the agent is before it quarantines; the quarantine
survives a restart, shows in `spool stats`, `spool quarantine`, the `stats` record and
`/metrics`; `spool requeue` sends it again, under a new batch number, and it is stored once.

Against a real collector on loopback (`tests/collector/collector_server.py`). Refusals the
collector cannot produce on demand (409, 413 from a proxy, 415, 422, 401/408/429/503 at a chosen
moment) come from `Gate`: a real aiohttp server on loopback in front of the collector that
answers scripted refusals and forwards everything else.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "collector"))
from collector_server import free_port, serve  # noqa: E402

from agent.cli import main as agent_main  # noqa: E402
from agent.config import load_config  # noqa: E402
from agent.run.supervisor import Supervisor, open_spool  # noqa: E402
from agent.run.worker import GatewayConsumer  # noqa: E402
from agent.spool.store import Spool  # noqa: E402
from agent.uploader.client import CollectorClient  # noqa: E402
from agent.uploader.drain import SpoolDrain  # noqa: E402
from wire.envelope import decode_batch  # noqa: E402
from wire.validate import validate_record  # noqa: E402

#: The drain's refusal and backoff waits in these tests (seconds): retries come at once.
FAST = 0.01


def rec(n: int, marker: str = "q") -> dict[str, Any]:
    return {"type": "weird", "ts": time.time(), "name": "quarantine_test", "detail": f"{marker}{n}"}


class Gate:
    """A real HTTP server on loopback in front of the collector: the next POSTs of a batch get
    the scripted answers (status, error name; error None: a proxy's HTML page), everything else
    is forwarded. ``posts`` lists (batch_seq, record details, status answered) of every POST."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.script: list[tuple[int, str | None]] = []
        self.posts: list[tuple[int, list[str], int]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seq, details = -1, []
        if request.method == "POST" and request.path == "/api/v1/batches":
            batch = decode_batch(body)
            seq, details = batch["batch_seq"], [str(r.get("detail")) for r in batch["records"]]
            if self.script:
                status, error = self.script.pop(0)
                self.posts.append((seq, details, status))
                if error is None:
                    return web.Response(status=status, text="<html><body>refused</body></html>",
                                        content_type="text/html")
                return web.json_response({"error": error, "detail": f"scripted {status}"}, status=status)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("authorization", "content-type", "content-encoding", "accept")}
        async with ClientSession(auto_decompress=False) as s, \
                s.request(request.method, self.upstream + request.path_qs, data=body, headers=headers) as r:
            answer = await r.read()
        if seq >= 0:
            self.posts.append((seq, details, r.status))
        return web.Response(status=r.status, body=answer, content_type=r.content_type)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, auto_decompress=False)  # forwards the zstd body as it came
        self._loop.run_until_complete(self._runner.setup())
        self._loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
        self._ready.set()
        self._loop.run_forever()

    def start(self) -> Gate:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[dict[str, Any]]:
    yield from serve(tmp_path)


@pytest.fixture
def gate(collector: dict[str, Any]) -> Iterator[Gate]:
    g = Gate(collector["url"]).start()
    try:
        yield g
    finally:
        g.stop()


def config(tmp_path: Path, url: str, token: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(f'[capture]\ninterfaces = ["lo"]\n[collector]\nurl = "{url}"\ntoken = "{token}"\n'
                    f'[spool]\npath = "{tmp_path / "spool"}"\n[metrics]\nlisten = "127.0.0.1:{free_port()}"\n'
                    '[unit]\nname = "test unit"\n')
    return path


def drain_all(drain: SpoolDrain, timeout: float = 10.0) -> None:
    """Send everything spooled; fail if a batch holds the queue (the drain never finishes)."""
    stop = threading.Event()
    t = threading.Thread(target=drain.drain, args=(stop,), daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        stop.set()
        t.join(10)
        pytest.fail(f"the drain did not finish in {timeout}s: a refused batch holds the queue "
                    f"(counters {drain.counters})")


def drain_for(spool: Spool, url: str, token: str) -> SpoolDrain:
    return SpoolDrain(spool, CollectorClient(url, token), batch_records=3, refused_retry_s=FAST,
                      backoff_cap_s=FAST)


def stored(c: dict[str, Any]) -> Counter[str]:
    """The details of the weird records the collector holds (its query API, as an operator)."""
    user, password = c["operator"]
    req = urllib.request.Request(c["url"] + "/api/v1/query/records?type=weird&limit=1000")
    req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    with urllib.request.urlopen(req, timeout=30) as resp:
        return Counter(str(r["detail"]) for r in json.loads(resp.read())["records"])


def test_an_invalid_batch_is_quarantined_and_the_next_one_goes_through(
        tmp_path: Path, collector: dict[str, Any]) -> None:
    path = tmp_path / "spool.sqlite"
    spool = Spool(path)
    careless = Spool(path, validate=False)  # as an agent whose checks are older than the collector's
    spool.append([rec(0), rec(1)])
    careless.append([{**rec(2), "unknown_field": 1}])
    careless.close()
    spool.append(rec(n) for n in range(3, 8))
    drain = drain_for(spool, collector["url"], collector["token"])
    drain_all(drain)
    assert stored(collector) == Counter(f"q{n}" for n in range(3, 8))  # nothing of the refused batch
    [q] = spool.quarantined()
    assert (q.records, q.status, q.error) == (3, 400, "invalid_batch")
    assert (q.maybe_stored, q.requeued_from) == (False, None)
    assert "unknown_field" in q.detail
    st = spool.stats()
    assert (st.quarantined_batches, st.quarantined_records, st.unsent_records) == (1, 3, 0)
    assert drain.counters["quarantined"] == 1 and drain.counters["batches"] == 2
    spool.close()

    # a restart: the quarantine is still there, and nothing of it is sent again by itself
    spool = Spool(path)
    assert spool.quarantined() == [q]
    spool.append([rec(8)])
    drain = drain_for(spool, collector["url"], collector["token"])
    drain_all(drain)
    assert stored(collector)["q8"] == 1 and drain.counters["batches"] == 1
    # requeued without a fix: refused again, alone (not with the records spooled meanwhile),
    # under a new number that names the old one
    spool.requeue([q.batch_seq])
    spool.append([rec(9)])
    drain_all(drain)
    [again] = spool.quarantined()
    assert again.batch_seq > q.batch_seq and again.requeued_from == q.batch_seq and again.records == 3
    assert stored(collector) == Counter(f"q{n}" for n in range(3, 10))
    assert spool.stats().quarantined_total == 6 and spool.stats().requeued_total == 3
    spool.close()


@pytest.mark.parametrize(("status", "error"), [(409, "batch_conflict"), (413, None),
                                               (415, "unsupported_encoding"), (422, "too_far_in_future")])
def test_refused_for_good_is_quarantined_with_the_answer(tmp_path: Path, collector: dict[str, Any],
                                                         gate: Gate, status: int, error: str | None) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    spool.append(rec(n) for n in range(6))
    gate.script = [(503, "storage_unavailable"), (status, error)]  # a try without an answer first
    drain = drain_for(spool, gate.url, collector["token"])
    drain_all(drain)
    assert [p[2] for p in gate.posts] == [503, status, 200]  # not sent again: the next batch went
    assert stored(collector) == Counter(f"q{n}" for n in range(3, 6))
    [q] = spool.quarantined()
    assert (q.status, q.error) == (status, error or f"http_{status}")
    assert q.maybe_stored  # the 503 try: the collector might have committed it


def test_401_408_429_and_503_are_retried_not_quarantined(tmp_path: Path, collector: dict[str, Any],
                                                         gate: Gate) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    spool.append(rec(n) for n in range(3))
    gate.script = [(401, "unauthenticated"), (408, None), (429, "throttled"), (503, "storage_unavailable"),
                   (404, None), (400, None)]
    drain = drain_for(spool, gate.url, collector["token"])
    drain_all(drain)
    assert [p[2] for p in gate.posts] == [401, 408, 429, 503, 404, 400, 200]
    assert len({p[0] for p in gate.posts}) == 1  # the same batch, under its number, each time
    assert stored(collector) == Counter(f"q{n}" for n in range(3))
    # 401, a 404 and a 400 that are not the collector's answer (a proxy in the way) say nothing
    # about the batch: refused, retried; 408, 429, 503: transient
    assert (drain.counters["refused"], drain.counters["retries"]) == (3, 3)
    assert drain.counters["quarantined"] == 0
    assert spool.quarantined() == [] and spool.stats().quarantined_total == 0


def test_403_asks_who_the_agent_is_before_quarantining(tmp_path: Path, collector: dict[str, Any],
                                                       gate: Gate) -> None:
    spool = Spool(tmp_path / "spool.sqlite")
    spool.append(rec(n) for n in range(6))
    drain = drain_for(spool, collector["url"], collector["token"])
    drain.identity = ("gw2", "unit-7")  # what the collector called this agent before (renamed since)
    drain_all(drain)
    assert spool.quarantined() == [] and drain.identity == ("gw1", "unit-42")
    assert stored(collector) == Counter(f"q{n}" for n in range(6))
    # a 403 although the collector still knows the agent by the name it sends: quarantined
    spool.append(rec(n) for n in range(6, 9))
    gate.script = [(403, "wrong_agent")]
    drain = drain_for(spool, gate.url, collector["token"])
    drain_all(drain)
    [q] = spool.quarantined()
    assert (q.status, q.error, q.records) == (403, "wrong_agent", 3)


def test_spool_stats_metrics_and_stats_record_show_the_quarantine_and_requeue_stores_it_once(
        tmp_path: Path, collector: dict[str, Any], gate: Gate, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = config(tmp_path, gate.url, collector["token"])
    cfg = load_config(cfg_path)
    spool = open_spool(cfg)
    spool.append(rec(n) for n in range(6))
    gate.script = [(422, "too_far_in_future")]
    drain_all(drain_for(spool, gate.url, collector["token"]))
    assert stored(collector) == Counter(f"q{n}" for n in range(3, 6))
    [refused_seq] = [p[0] for p in gate.posts if p[2] == 422]

    # the capture worker's `stats` record carries it (and is valid: schema 1.4)
    worker = GatewayConsumer("lo-0", spool, depth=16384, roster=None, rules=None, rules_path=None, pubkeys=[])
    worker.finish()
    stats_rec = spool.newest()
    assert stats_rec is not None and stats_rec["type"] == "stats" and stats_rec["quarantined_records"] == 3
    validate_record(stats_rec)

    # /metrics of the running agent, over HTTP
    sup = Supervisor(cfg)
    sup.spool = spool
    server = threading.Thread(target=sup._metrics, daemon=True)
    server.start()
    try:
        text = _get_metrics(cfg.metrics_listen)
    finally:
        sup.stop.set()
        server.join(5)
    assert "edgeaudit_spool_quarantined_batches 1\n" in text
    assert "edgeaudit_spool_quarantined_records 3\n" in text
    assert "edgeaudit_spool_quarantined_records_total 3\n" in text
    spool.close()

    # `spool stats` and `spool quarantine` (the agent stopped, or running: WAL readers)
    assert agent_main(["spool", "stats", "--config", str(cfg_path)]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["quarantined_batches"], figures["quarantined_records"]) == (1, 3)
    assert agent_main(["spool", "quarantine", "--config", str(cfg_path)]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["batch_seq"], listed["status"], listed["error"]) == (refused_seq, 422, "too_far_in_future")
    assert agent_main(["spool", "requeue", "--config", str(cfg_path)]) == 2  # --all or numbers
    assert agent_main(["spool", "requeue", "12345", "--config", str(cfg_path)]) == 1
    assert "not in the quarantine: 12345" in capsys.readouterr().err

    # the cause fixed, requeued: sent again under a new number and stored once
    assert agent_main(["spool", "requeue", str(refused_seq), "--config", str(cfg_path)]) == 0
    assert f"batch {refused_seq}: 3 records back" in capsys.readouterr().out
    spool = open_spool(cfg)
    drain_all(drain_for(spool, gate.url, collector["token"]))
    resent = [p for p in gate.posts if p[2] == 200 and set(p[1]) == {"q0", "q1", "q2"}]
    assert len(resent) == 1 and resent[0][0] > refused_seq
    assert stored(collector) == Counter(f"q{n}" for n in range(6))  # each exactly once
    st = spool.stats()
    assert (st.quarantined_batches, st.unsent_records, st.requeued_total) == (0, 0, 3)
    spool.close()
    assert agent_main(["spool", "requeue", "--all", "--config", str(cfg_path)]) == 0
    assert "the quarantine is empty" in capsys.readouterr().out


def _get_metrics(listen: str) -> str:
    deadline = time.monotonic() + 10
    while True:  # the endpoint's thread binds its socket: polled, with a deadline
        try:
            with urllib.request.urlopen(f"http://{listen}/metrics", timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
