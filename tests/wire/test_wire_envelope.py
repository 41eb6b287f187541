"""The batch envelope: round trips, every envelope rule, zstd bombs, hostile msgpack."""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
import tracemalloc
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import ANY_RECORD, all_examples, example

import wire
from wire import EnvelopeError, ValidationError, decode_batch, encode_batch
from wire.envelope import ZSTD_MAGIC, decode_batch_spans, decompress_bounded, records_digest
from wire.limits import MAX_BATCH_DECOMPRESSED, MAX_BATCH_RECORDS, MAX_ID_LEN

CREATED = 1700000100.25


def _envelope(**over: Any) -> dict[str, Any]:
    env: dict[str, Any] = {
        "v": "1.1", "agent_id": "agent-7", "unit_id": "unit-3", "batch_seq": 42, "created": CREATED,
        "records": all_examples(),
    }
    env.update(over)
    return env


def _pack(obj: Any, **zopts: Any) -> bytes:
    payload = msgpack.packb(obj, use_bin_type=True)
    return bytes(zstandard.ZstdCompressor(**zopts).compress(payload))


def _stream_compress(data: bytes | Any, *, chunks: int = 1, **zopts: Any) -> bytes:
    """Compress without a content size in the frame header (as a streaming encoder would)."""
    buf = io.BytesIO()
    with zstandard.ZstdCompressor(**zopts).stream_writer(buf, closefd=False) as w:
        for _ in range(chunks):
            w.write(data)
    return buf.getvalue()


# --- round trips -----------------------------------------------------------------------------


def test_round_trip_every_record_type() -> None:
    records = all_examples()
    body = encode_batch("agent-7", "unit-3", 42, records, created=CREATED)
    assert body[:4] == ZSTD_MAGIC
    batch = decode_batch(body)
    assert batch == {"v": wire.SCHEMA_VERSION, "agent_id": "agent-7", "unit_id": "unit-3", "batch_seq": 42,
                     "created": CREATED, "records": records}
    assert {r["type"] for r in batch["records"]} == set(wire.SPECS)


@settings(max_examples=50, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    records=st.lists(ANY_RECORD, max_size=20),
    seq=st.integers(0, 2**63 - 1),
    agent=st.text(st.characters(codec="utf-8", blacklist_characters="\x00"), min_size=1, max_size=MAX_ID_LEN),
)
def test_round_trip_generated_batches(records: list[dict[str, Any]], seq: int, agent: str) -> None:
    batch = decode_batch(encode_batch(agent, "单位-1", seq, records, created=CREATED))
    assert batch["records"] == records
    assert batch["batch_seq"] == seq and batch["agent_id"] == agent and batch["unit_id"] == "单位-1"
    for got, want in zip(batch["records"], records, strict=True):
        for k, v in want.items():
            assert type(got[k]) is type(v)  # floats stay floats, ints stay ints


def test_created_defaults_to_now() -> None:
    before = time.time()
    batch = decode_batch(encode_batch("a", "u", 0, []))
    assert before <= batch["created"] <= time.time()
    assert batch["records"] == []


def test_frames_without_content_size_and_multiple_frames_are_accepted() -> None:
    payload = msgpack.packb(_envelope(), use_bin_type=True)
    one = _stream_compress(payload)
    assert zstandard.get_frame_parameters(one).content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert decode_batch(one)["records"] == all_examples()
    half = len(payload) // 2
    cctx = zstandard.ZstdCompressor()
    two = cctx.compress(payload[:half]) + cctx.compress(payload[half:])
    assert decode_batch(two)["batch_seq"] == 42
    checksummed = zstandard.ZstdCompressor(write_checksum=True, level=19).compress(payload)
    assert decode_batch(checksummed)["batch_seq"] == 42


def test_a_newer_minor_version_is_accepted() -> None:
    assert decode_batch(_pack(_envelope(v="1.7")))["v"] == "1.7"


def test_int_created_and_bytearray_input_are_accepted() -> None:
    body = _pack(_envelope(created=1700000000))
    assert decode_batch(bytearray(body))["created"] == 1700000000
    assert decode_batch(memoryview(body))["batch_seq"] == 42


def test_validate_records_false_leaves_records_to_the_caller() -> None:
    bad = {**example("http"), "status_code": "200"}
    body = _pack(_envelope(records=[example("dns"), bad]))
    with pytest.raises(ValidationError):
        decode_batch(body)
    batch = decode_batch(body, validate_records=False)
    assert batch["records"][1] == bad
    with pytest.raises(EnvelopeError):
        decode_batch(_pack(_envelope(records={"a": 1})), validate_records=False)


# --- encode_batch refuses what decode_batch would refuse ----------------------------------------


def test_encode_validates_records_and_envelope() -> None:
    with pytest.raises(ValidationError, match=r"records\[1\]: dns record: field 'qtype'"):
        encode_batch("a", "u", 1, [example("dns"), {**example("dns"), "qtype": -1}], created=CREATED)
    with pytest.raises(EnvelopeError, match="'agent_id' must be 1..256 characters"):
        encode_batch("", "u", 1, [], created=CREATED)
    with pytest.raises(EnvelopeError, match="'batch_seq' must be within"):
        encode_batch("a", "u", -1, [], created=CREATED)
    with pytest.raises(EnvelopeError, match="'created' must be within"):
        encode_batch("a", "u", 1, [], created=float("nan"))


def test_encode_without_validation_still_refuses_unencodable_values() -> None:
    with pytest.raises(EnvelopeError, match="cannot be encoded"):
        encode_batch("a", "u", 1, [{"type": "weird", "x": object()}], created=CREATED, validate=False)


# --- envelope rules -----------------------------------------------------------------------------

ENVELOPE_BAD: list[tuple[str, Any, str]] = [
    ("not a map", [1, 2], "batch envelope: must be a map, got list"),
    ("missing v", {k: v for k, v in _envelope().items() if k != "v"}, "missing key 'v'"),
    ("missing records", {k: v for k, v in _envelope().items() if k != "records"}, "missing key 'records'"),
    ("extra key", _envelope(token="s3cret"), "unknown key 'token'"),
    ("v not str", _envelope(v=1.0), "'v' must be str, got float"),
    ("v without minor", _envelope(v="1"), "'v' must be 'major.minor'"),
    ("v with patch", _envelope(v="1.0.0"), "'v' must be 'major.minor'"),
    ("v garbage", _envelope(v="one.zero"), "'v' must be 'major.minor'"),
    ("major 2", _envelope(v="2.0"), "unsupported schema version 2.0"),
    ("major 0", _envelope(v="0.9"), "unsupported schema version 0.9"),
    ("agent_id int", _envelope(agent_id=7), "'agent_id' must be str, got int"),
    ("agent_id empty", _envelope(agent_id=""), "'agent_id' must be 1..256 characters"),
    ("agent_id long", _envelope(agent_id="a" * (MAX_ID_LEN + 1)), "'agent_id' must be 1..256 characters"),
    ("unit_id null", _envelope(unit_id=None), "'unit_id' must be str, got null"),
    ("agent_id NUL", _envelope(agent_id="gw1\x00"), "'agent_id' contains a NUL character"),
    ("batch_seq str", _envelope(batch_seq="42"), "'batch_seq' must be int, got str"),
    ("batch_seq bool", _envelope(batch_seq=True), "'batch_seq' must be int, got bool"),
    ("batch_seq float", _envelope(batch_seq=42.0), "'batch_seq' must be int, got float"),
    ("batch_seq negative", _envelope(batch_seq=-1), "'batch_seq' must be within 0.."),
    ("batch_seq uint64", _envelope(batch_seq=2**64 - 1), "'batch_seq' must be within 0.."),
    ("created str", _envelope(created="now"), "'created' must be float, got str"),
    ("created bool", _envelope(created=True), "'created' must be float, got bool"),
    ("created nan", _envelope(created=float("nan")), "'created' must be within"),
    ("created ms", _envelope(created=1.7e12), "'created' must be within"),
    ("records map", _envelope(records={"0": example("dns")}), "'records' must be a list, got dict"),
    ("records null", _envelope(records=None), "'records' must be a list, got null"),
]


@pytest.mark.parametrize(
    ("env", "fragment"), [(e, f) for _, e, f in ENVELOPE_BAD], ids=[i for i, _, _ in ENVELOPE_BAD]
)
def test_envelope_rule_violations(env: Any, fragment: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_batch(_pack(env))
    assert fragment in str(info.value)
    with pytest.raises(EnvelopeError):
        wire.validate_batch(env)


def test_bad_record_is_named_by_index() -> None:
    records = all_examples()
    records[5] = {**records[5], "tls": "yes"}
    with pytest.raises(ValidationError) as info:
        decode_batch(_pack(_envelope(records=records)))
    assert not isinstance(info.value, EnvelopeError)
    assert str(info.value) == "records[5]: mailbox record: field 'tls' must be bool, got str"
    assert info.value.index == 5 and info.value.record_type == "mailbox" and info.value.field == "tls"


def test_record_that_is_not_a_map() -> None:
    with pytest.raises(ValidationError, match=r"records\[0\]: a record must be a map, got list"):
        decode_batch(_pack(_envelope(records=[["type", "dns"]])))


def test_too_many_records() -> None:
    body = _pack(_envelope(records=[example("weird")] * 11))
    with pytest.raises(EnvelopeError, match=r"too many records \(11 > 10\)"):
        decode_batch(body, max_records=10)
    with pytest.raises(EnvelopeError, match=r"too many records \(11 > 10\)"):
        wire.validate_batch(_envelope(records=[example("weird")] * 11), max_records=10)
    assert len(decode_batch(body, max_records=11)["records"]) == 11


def test_default_record_limit() -> None:
    body = _pack(_envelope(records=[example("weird")] * (MAX_BATCH_RECORDS + 1)))
    with pytest.raises(EnvelopeError):
        decode_batch(body)


# --- zstd layer ------------------------------------------------------------------------------


def test_compressed_size_limit_is_checked_first() -> None:
    with pytest.raises(EnvelopeError, match="larger than 100 bytes"):
        decode_batch(b"\x28\xb5\x2f\xfd" + b"\x00" * 200, max_compressed=100)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "not a zstd frame"),
        (b"\x82\xa1v\xa31.0", "not a zstd frame"),  # raw msgpack, not compressed
        (b"\x28\xb5\x2f\xfd", "truncated in its header"),
        (b"\x28\xb5\x2f\xfd" + b"\xff" * 64, "reserved bit"),
        (b"\x28\xb5\x2f\xfd" + b"\x00\x40" + b"\xff" * 64, "reserved block type"),
        (b"\x28\xb5\x2f\xfd" + b"\x00\x40" + b"\x00\x00\x00", "truncated"),  # a non-last empty block
        (b"\x28\xb5\x2f\xfd" + b"\x00\x40" + b"\x25\x00\x00" + b"\xff" * 4, "not valid zstd"),  # bad block
        (b"\x50\x2a\x4d\x18" + b"\x00" * 8, "skippable zstd frames are not accepted"),
    ],
)
def test_not_zstd(body: bytes, fragment: str) -> None:
    with pytest.raises(EnvelopeError, match=fragment):
        decode_batch(body)


@pytest.mark.parametrize("checksum", [False, True])
def test_every_truncation_is_refused(checksum: bool) -> None:
    payload = msgpack.packb(_envelope(records=all_examples() * 30))
    body = zstandard.ZstdCompressor(write_checksum=checksum).compress(payload)
    second = _stream_compress(payload)
    for cut in range(len(body)):
        with pytest.raises(EnvelopeError):
            decode_batch(body[:cut])
    for cut in range(len(body) + 1, len(body) + len(second)):
        with pytest.raises(EnvelopeError):
            decode_batch((body + second)[:cut])


@pytest.mark.parametrize(
    ("tail", "fragment"),
    [
        (b"garbage!", "bytes after its last zstd frame"),
        (b"\x00", "stray bytes after its last zstd frame"),
        (b"\x28\xb5\x2f\xfd", "truncated in its header"),
    ],
)
def test_trailing_bytes_after_frame(tail: bytes, fragment: str) -> None:
    body = encode_batch("a", "u", 1, [], created=CREATED)
    with pytest.raises(EnvelopeError, match=fragment):
        decode_batch(body + tail)


def test_corrupted_checksum_is_refused() -> None:
    body = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(msgpack.packb(_envelope())))
    body[-1] ^= 0xFF
    with pytest.raises(EnvelopeError, match="not valid zstd"):
        decode_batch(bytes(body))


def test_dictionary_frames_are_refused() -> None:
    samples = [msgpack.packb(_envelope(batch_seq=i)) for i in range(200)]
    dictionary = zstandard.train_dictionary(4096, samples)
    body = zstandard.ZstdCompressor(dict_data=dictionary).compress(samples[0])
    with pytest.raises(EnvelopeError, match="dictionary"):
        decode_batch(body)


def test_declared_content_size_over_the_limit_is_refused_before_decoding() -> None:
    body = zstandard.ZstdCompressor(level=1).compress(b"\x00" * (8 << 20))
    assert zstandard.get_frame_parameters(body).content_size == 8 << 20
    t0 = time.perf_counter()
    with pytest.raises(EnvelopeError, match="more than 1048576 bytes"):
        decode_batch(body, max_decompressed=1 << 20)
    assert time.perf_counter() - t0 < 0.05


def test_too_many_frames() -> None:
    from wire.zstdframe import scan_frames

    frame = zstandard.ZstdCompressor().compress(b"")
    assert len(scan_frames(frame * 10)) == 10
    with pytest.raises(EnvelopeError, match="more than 5 zstd frames"):
        scan_frames(frame * 6, max_frames=5)


def test_large_valid_batch_near_the_limits() -> None:
    rec = {**example("http"), "uri": "/" + "汉字abc" * 1600, "user_agent": "u" * 8000}
    body = encode_batch("a", "u", 1, [rec] * 700, created=CREATED, level=19)
    batch = decode_batch(body)
    assert len(batch["records"]) == 700 and batch["records"][699] == rec


def test_non_bytes_input() -> None:
    with pytest.raises(EnvelopeError, match="must be bytes, got str"):
        decode_batch("(\xb5/\xfd")  # type: ignore[arg-type]


def test_bomb_with_declared_content_size() -> None:
    body = zstandard.ZstdCompressor(level=1).compress(b"\x00" * (MAX_BATCH_DECOMPRESSED + 1))
    assert len(body) < 10_000
    with pytest.raises(EnvelopeError, match=f"more than {MAX_BATCH_DECOMPRESSED} bytes"):
        decode_batch(body)


def test_bomb_without_content_size_is_stopped_with_bounded_memory() -> None:
    limit = 1 << 20
    body = _stream_compress(b"\x00" * (1 << 20), chunks=256, level=1)  # 256 MiB of zeros
    assert zstandard.get_frame_parameters(body).content_size == zstandard.CONTENTSIZE_UNKNOWN
    assert len(body) < 100_000
    tracemalloc.start()
    try:
        with pytest.raises(EnvelopeError, match=f"more than {limit} bytes"):
            decode_batch(body, max_decompressed=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * limit


def test_bomb_spread_over_many_frames() -> None:
    frame = zstandard.ZstdCompressor(level=1).compress(b"\x00" * (1 << 20))
    with pytest.raises(EnvelopeError, match="more than"):
        decode_batch(frame * 40, max_decompressed=32 << 20)


def test_exactly_at_the_decompressed_limit_is_fine() -> None:
    data = b"x" * 1000
    assert decompress_bounded(zstandard.ZstdCompressor().compress(data), 1000) == data
    with pytest.raises(EnvelopeError):
        decompress_bounded(zstandard.ZstdCompressor().compress(data), 999)


def test_window_larger_than_8_mib_is_refused_before_allocating() -> None:
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=27)
    body = _stream_compress(msgpack.packb(_envelope()), compression_params=params)
    assert zstandard.get_frame_parameters(body).window_size == 1 << 27
    with pytest.raises(EnvelopeError, match="asks for a 134217728-byte window"):
        decode_batch(body)


# --- hostile msgpack -----------------------------------------------------------------------------


def _compress(payload: bytes) -> bytes:
    return bytes(zstandard.ZstdCompressor().compress(payload))


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"", "not valid msgpack"),
        (b"\xc1", "not valid msgpack"),  # reserved byte
        (msgpack.packb(_envelope()) + b"\xc0", "bytes after the msgpack map"),
        (msgpack.packb(_envelope())[:-3], "not valid msgpack"),
        (b"\xdd\xff\xff\xff\xff", "not valid msgpack"),  # array32 claiming 4 G items
        (b"\xdf\xff\xff\xff\xff", "not valid msgpack"),  # map32 claiming 4 G pairs
        (b"\xdb\xff\xff\xff\xff", "not valid msgpack"),  # str32 claiming 4 GiB
        (b"\x91" * 100_000 + b"\xc0", "not valid msgpack"),  # nesting 100 000 deep
        (b"\x81\xa1v\xa4\xff\xfe\xfd\xfc", "not valid msgpack"),  # invalid UTF-8 in a str
        (msgpack.packb({1: "x"}), "not valid msgpack"),  # int map key
        (msgpack.packb(_envelope(agent_id=b"agent")), "not valid msgpack"),  # bin
        (msgpack.packb(_envelope(created=msgpack.Timestamp(1))), "not valid msgpack"),  # ext timestamp
        (msgpack.packb(_envelope(unit_id=msgpack.ExtType(5, b"xx"))), "not valid msgpack"),  # ext
        (msgpack.packb(_envelope(records=[{**example("weird"), "detail": "x" * 40_000}])), "valid msgpack"),
        (msgpack.packb(_envelope(records=[{f"k{i}": i for i in range(100)}])), "not valid msgpack"),
        (msgpack.packb("just a string"), "must be a map, got str"),
        (msgpack.packb(None), "must be a map, got null"),
    ],
)
def test_hostile_msgpack(payload: bytes, fragment: str) -> None:
    with pytest.raises(EnvelopeError, match=fragment):
        decode_batch(_compress(payload))


def test_wrong_types_inside_records() -> None:
    rec = {**example("session"), "orig_bytes": 1.5, "src_port": True}
    with pytest.raises(ValidationError, match=r"records\[0\]: session record: field '(orig_bytes|src_port)'"):
        decode_batch(_pack(_envelope(records=[rec])))
    rec = {**example("dns"), "answers": [{"a": 1}]}
    with pytest.raises(ValidationError, match=r"records\[0\]: dns record: field 'answers\[0\]' must be str"):
        decode_batch(_pack(_envelope(records=[rec])))
    rec = {**example("session"), "orig_bytes": 2**64 - 1}  # uint64 is valid msgpack, not int64
    with pytest.raises(ValidationError, match="field 'orig_bytes' must be within"):
        decode_batch(_pack(_envelope(records=[rec])))
    rec = {**example("session"), "ts": float("nan")}
    with pytest.raises(ValidationError, match="field 'ts' must be within"):
        decode_batch(_pack(_envelope(records=[rec])))


def test_float32_is_accepted_where_a_float_is_expected() -> None:
    env = _envelope(records=[{**example("stats"), "interval": 60.0}])
    payload = msgpack.packb(env, use_single_float=True)
    batch = decode_batch(_compress(payload))
    assert batch["records"][0]["interval"] == 60.0


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_payloads_raise_only_envelope_errors(payload: bytes) -> None:
    for body in (ZSTD_MAGIC + payload, _compress(payload), payload):
        with contextlib.suppress(ValidationError):
            decode_batch(body)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_corrupted_valid_batches(data: st.DataObject) -> None:
    payload = bytearray(msgpack.packb(_envelope(records=all_examples()[:4])))
    for _ in range(data.draw(st.integers(1, 5))):
        i = data.draw(st.integers(0, len(payload) - 1))
        payload[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ValidationError):
        decode_batch(_compress(bytes(payload)))


def test_the_digest_is_of_the_records_as_sent() -> None:
    """``records_digest``: the records' bytes, not the envelope (``created`` changes when an
    agent rebuilds a batch to resend it); the same for the bytes received and the records."""
    records = all_examples()
    one = encode_batch("gw1", "unit-1", 7, records, created=1.0)
    again = encode_batch("gw1", "unit-1", 7, records, created=2.0)
    assert one != again

    def digest(body: bytes) -> bytes:
        batch, payload, offsets = decode_batch_spans(body)
        return records_digest(batch["records"], payload, offsets)

    assert digest(one) == digest(again) == records_digest(records)
    assert len(digest(one)) == 32
    other = [*records[:-1], {**records[-1], "ts": records[-1]["ts"] + 1}]
    assert digest(encode_batch("gw1", "unit-1", 7, other)) != digest(one)
    assert digest(encode_batch("gw1", "unit-1", 7, records[:-1])) != digest(one)
    assert records_digest([]) == hashlib.sha256().digest()
