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


def _record_twice(key: str, first: Any, second: Any, rtype: str = "weird") -> bytes:
    """A record's msgpack map holding ``key`` twice (msgpack would keep ``second``)."""
    rec = {k: v for k, v in example(rtype).items() if k != key}
    n = len(rec) + 2
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")
    return bytes(head + b"".join(msgpack.packb(k) + msgpack.packb(v) for k, v in rec.items()) + (
        msgpack.packb(key) + msgpack.packb(first) + msgpack.packb(key) + msgpack.packb(second)))


def _with_records(*records: bytes) -> bytes:
    """An envelope whose records array holds ``records`` (raw msgpack) as they are."""
    head = bytes(msgpack.packb(_envelope(records=[])))
    assert head.endswith(b"\x90")  # the empty records array ends the map
    return head[:-1] + bytes([0x90 | len(records)]) + b"".join(records)


def test_a_key_twice_in_the_envelope_is_refused() -> None:
    # msgpack keeps the last value of a repeated key; another reader may keep the first
    body = _z(b"\x87" + msgpack.packb(_envelope())[1:] + msgpack.packb("v") + msgpack.packb("1.1"))
    assert _same(body) == ("EnvelopeError", "batch payload has a map holding the key 'v' twice")


@pytest.mark.parametrize(("key", "first", "second"), [
    ("detail", "the first", "the second"), ("name", "x", "x"), ("ts", 1.0, 2.0)])
def test_a_key_twice_in_a_record_is_refused(key: str, first: Any, second: Any) -> None:
    """Stored as sent, such a record would carry both values; which one a reader takes
    is the reader's choice. Refused, even when both values are equal."""
    good = msgpack.packb(example("weird"))
    body = _z(_with_records(good, _record_twice(key, first, second)))
    assert _same(body) == ("EnvelopeError", f"batch payload has a map holding the key {key!r} twice")
    assert _same(_z(_with_records(good, good)))[0] == "ok"


def test_a_key_twice_in_a_nested_map_is_refused_like_the_reference() -> None:
    nested = b"\x82" + msgpack.packb("a") + b"\x01" + msgpack.packb("a") + b"\x02"
    rec = msgpack.packb({**example("weird"), "detail": None})
    bad = rec[:-1] + nested  # the last value (detail: nil) replaced by the map
    assert _same(_z(_with_records(bad)))[0] == "EnvelopeError"


def test_maps_of_16_keys_and_more_are_counted() -> None:
    session = example("session")  # 29 keys: a map 16 header
    assert len(session) > 15
    assert _same(_z(_with_records(msgpack.packb(session))))[0] == "ok"
    twice = _record_twice("uid", "C1", "C2", "session")
    assert _same(_z(_with_records(twice)))[1] == "batch payload has a map holding the key 'uid' twice"


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
