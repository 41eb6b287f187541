"""The ingest decoder: worker processes pack granules, refusals keep their message, and a
dead worker costs one batch a 503 (the agent resends it), not the collector."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent / "storage"))
from storage_records import MIDNIGHT, dns, http, login, nat, session  # noqa: E402

from collector.ingest.decoding import Decoder, DecoderUnavailable  # noqa: E402
from collector.storage.granules import unpack  # noqa: E402
from wire import ValidationError, decode_batch, encode_batch  # noqa: E402


def _records() -> list[dict[str, Any]]:
    return [session(MIDNIGHT + i, f"C{i}") for i in range(300)] + [
        http(MIDNIGHT + 1, "C1"), dns(MIDNIGHT + 2, "C2", "a.example"),
        login(MIDNIGHT + 3, "login", "10.0.0.5", "al"),
        nat(MIDNIGHT + 4, "create", ("10.0.0.5", 50000), ("198.51.100.7", 40000)),
        http(MIDNIGHT - 5, "C9"),  # the day before
    ]


def test_workers_pack_granules_of_the_records() -> None:
    recs = _records()
    body = encode_batch("gw", "u", 7, recs)

    async def run() -> Any:
        decoder = Decoder(packed=True, workers=2)
        try:
            await decoder.start()
            return await decoder.decode(body)
        finally:
            decoder.close()

    out = asyncio.run(run())
    assert (out.agent_id, out.unit_id, out.batch_seq, out.count) == ("gw", "u", 7, len(recs))
    assert out.records is None
    assert out.granules is not None
    assert {(g.day, g.family) for g in out.granules} == {
        ("2024-02-29", "app"), ("2024-03-01", "flow"), ("2024-03-01", "app"), ("2024-03-01", "identity"),
        ("2024-03-01", "nat")}
    assert sum(g.n for g in out.granules) == len(recs)
    assert sorted(map(repr, (r for g in out.granules for r in unpack(g.data)))) == sorted(map(repr, recs))


def test_a_refusal_keeps_its_message() -> None:
    bad = encode_batch("gw", "u", 1, [{**http(MIDNIGHT, "C1"), "status_code": "ok"}], validate=False)
    with pytest.raises(ValidationError) as want:
        decode_batch(bad)

    async def run() -> None:
        decoder = Decoder(packed=True, workers=1)
        try:
            await decoder.decode(bad)
        finally:
            decoder.close()

    with pytest.raises(ValidationError) as got:
        asyncio.run(run())
    assert str(got.value) == str(want.value)


def test_a_dead_worker_fails_one_batch_then_a_new_pool_serves() -> None:
    body = encode_batch("gw", "u", 1, _records())

    async def run() -> tuple[bool, int]:
        decoder = Decoder(packed=True, workers=1)
        try:
            await decoder.start()
            pool = decoder._pool
            assert pool is not None
            for pid in list(pool._processes):  # type: ignore[attr-defined]
                os.kill(pid, signal.SIGKILL)
            failed = False
            for _ in range(50):  # until the pool notices the death
                try:
                    await decoder.decode(body)
                except DecoderUnavailable:
                    failed = True
                    break
                await asyncio.sleep(0.05)
            again = await decoder.decode(body)
            return failed, again.count
        finally:
            decoder.close()

    failed, count = asyncio.run(run())
    assert failed and count == len(_records())


def test_without_workers_records_come_back() -> None:
    recs = _records()

    async def run() -> Any:
        decoder = Decoder(packed=False)
        try:
            return await decoder.decode(encode_batch("gw", "u", 2, recs))
        finally:
            decoder.close()

    out = asyncio.run(run())
    assert out.granules is None and out.records == recs
