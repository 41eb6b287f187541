"""``decode_batch_spans``: the same verdict as ``decode_batch`` on every input, plus each
record's msgpack bytes, which decode to exactly the validated record."""

from __future__ import annotations

from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_wire_envelope import ENVELOPE_BAD, _envelope
from wire_strategies import ANY_RECORD, all_examples, example

from wire import ValidationError, decode_batch
from wire.envelope import decode_batch_spans


def _z(payload: bytes) -> bytes:
    return bytes(zstandard.ZstdCompressor().compress(payload))


def _verdict(decode: Any, body: bytes) -> tuple[str, Any]:
    try:
        out = decode(body)
    except ValidationError as e:
        return type(e).__name__, str(e)
    return "ok", out if isinstance(out, dict) else out[0]


def _same(body: bytes) -> tuple[str, Any]:
    """Both decoders agree on ``body``; the spans (when given) are the records' bytes."""
    want = _verdict(decode_batch, body)
    assert _verdict(decode_batch_spans, body) == want
    if want[0] == "ok":
        batch, payload, offsets = decode_batch_spans(body)
        if offsets is not None:
            assert len(offsets) == len(batch["records"]) + 1
            for i, rec in enumerate(batch["records"]):
                assert msgpack.unpackb(payload[offsets[i]:offsets[i + 1]], raw=False) == rec
    return want


def test_spans_of_every_record_type() -> None:
    body = _z(msgpack.packb(_envelope(records=all_examples()), use_bin_type=True))
    assert _same(body)[0] == "ok"
    assert decode_batch_spans(body)[2] is not None


@pytest.mark.parametrize("order", [["records", "v"], ["v", "records"]])
def test_records_anywhere_in_the_map(order: list[str]) -> None:
    env = _envelope(records=[example("dns"), example("nat")])
    keys = order + [k for k in env if k not in order]
    body = _z(msgpack.packb({k: env[k] for k in keys}))
    assert _same(body)[0] == "ok"
    assert decode_batch_spans(body)[2] is not None


@pytest.mark.parametrize("payload", [
    msgpack.packb(_envelope()) + b"\xc0",  # trailing bytes
    msgpack.packb(_envelope())[:-3],  # truncated
    msgpack.packb(_envelope(records={"0": example("dns")})),  # records not an array
    msgpack.packb(_envelope(records=None)),
    msgpack.packb("just a string"),
    msgpack.packb(_envelope(records=[["type", "dns"]])),
    msgpack.packb(_envelope(records=[{**example("session"), "src_port": True}])),
], ids=["trailing", "truncated", "records-map", "records-null", "not-a-map",
        "record-list", "bad-field"])
def test_refusals_are_the_same(payload: bytes) -> None:
    assert _same(_z(payload))[0] != "ok"


def test_a_key_twice_falls_back_to_the_reference_parser() -> None:
    # msgpack keeps the last value of a repeated key; the span parser leaves that to it
    body = _z(b"\x87" + msgpack.packb(_envelope())[1:] + msgpack.packb("v") + msgpack.packb("1.1"))
    assert _same(body)[0] == "ok"
    assert decode_batch_spans(body)[2] is None


@pytest.mark.parametrize(("env", "fragment"), [(e, f) for _, e, f in ENVELOPE_BAD],
                         ids=[i for i, _, _ in ENVELOPE_BAD])
def test_envelope_rules_are_the_same(env: Any, fragment: str) -> None:
    kind, message = _same(_z(msgpack.packb(env, use_bin_type=True)))
    assert kind == "EnvelopeError" and fragment in message


def test_too_many_records_is_the_same() -> None:
    body = _z(msgpack.packb(_envelope(records=[example("weird")] * 11)))
    with pytest.raises(ValidationError, match=r"too many records \(11 > 10\)"):
        decode_batch_spans(body, max_records=10)


@settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(ANY_RECORD, max_size=20))
def test_generated_batches(records: list[dict[str, Any]]) -> None:
    assert _same(_z(msgpack.packb(_envelope(records=records), use_bin_type=True)))[0] == "ok"


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_corrupted_batches(data: st.DataObject) -> None:
    payload = bytearray(msgpack.packb(_envelope(records=all_examples()[:4])))
    for _ in range(data.draw(st.integers(1, 5))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    _same(_z(bytes(payload)))
