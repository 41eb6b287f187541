"""JsonlWriter / read_jsonl: exact round trips, the byte format, buffering, error reporting."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire_strategies import ANY_RECORD, TIMESTAMPS, all_examples, example

from wire import JsonlWriter, ValidationError, read_jsonl
from wire.jsonl import encode_line


def test_round_trip_every_record_type(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    records = all_examples()
    with JsonlWriter(path) as w:
        assert w.write_many(records) == len(records)
    assert list(read_jsonl(path, validate=True)) == records
    assert list(read_jsonl(str(path))) == records


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(records=st.lists(ANY_RECORD, max_size=15))
def test_round_trip_generated_records(records: list[dict[str, Any]]) -> None:
    buf = io.BytesIO()
    with JsonlWriter(buf, buffer_size=64) as w:
        w.write_many(records)
    buf.seek(0)
    back = list(read_jsonl(buf, validate=True))
    assert back == records
    for got, want in zip(back, records, strict=True):
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
        assert list(got) == list(want)  # key order kept


def test_format_is_compact_utf8_one_object_per_line(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    rec = {"type": "weird", "ts": 1700000000.5, "name": "中文 name", "detail": None}
    with JsonlWriter(path) as w:
        w.write(rec)
        w.write(example("dns"))
    raw = path.read_bytes()
    first, second, rest = raw.split(b"\n")
    assert rest == b"" and raw.endswith(b"\n")
    assert first == '{"type":"weird","ts":1700000000.5,"name":"中文 name","detail":null}'.encode()
    assert b", " not in second and b": " not in second and b"\\u" not in raw
    assert json.loads(second) == example("dns")


CHINESE = [
    "中华人民共和国网络安全法",
    "会议通知：请于下午三点到会议室",
    "繁體中文與简体中文混排 mixed with English, emoji 😀 and 〇〡〢",
]


@pytest.mark.parametrize("text", CHINESE)
def test_chinese_text(text: str) -> None:
    rec = {**example("smtp"), "subject": text, "to": [text], "from": text}
    line = encode_line(rec)
    assert text.encode("utf-8") in line
    assert next(read_jsonl(io.BytesIO(line), validate=True)) == rec


@pytest.mark.parametrize(
    "raw",
    [
        "你好".encode("gbk"),
        b"\x81\x30\x81\x30\xfe\xfe",  # GB18030 four-byte sequence
        b"caf\xe9 \xff\xfe\x00\x01",  # neither UTF-8 nor GB18030
        b"\xed\xa0\x80",  # a UTF-8-encoded surrogate: invalid UTF-8
        b"\xc0\xaf\x80",  # overlong encoding
    ],
)
def test_strings_decoded_from_invalid_bytes_round_trip(raw: bytes) -> None:
    """SCHEMA.md: undecodable bytes become GB18030 text or backslash escapes, never surrogates
    (and a NUL byte \\x00, as ``wire.text.wire_text`` writes it)."""
    for decoded in (raw.decode("utf-8", "backslashreplace"), raw.decode("gb18030", "backslashreplace")):
        text = decoded.replace("\x00", "\\x00")
        rec = {**example("http"), "uri": text, "user_agent": text}
        back = next(read_jsonl(io.BytesIO(encode_line(rec)), validate=True))
        assert back == rec


def test_lone_surrogates_are_refused_not_written() -> None:
    buf = io.BytesIO()
    w = JsonlWriter(buf)
    with pytest.raises(ValidationError, match="lone surrogate"):
        w.write({**example("http"), "uri": b"/a\xff".decode("utf-8", "surrogateescape")})
    w.write(example("weird"))
    w.close()
    assert buf.getvalue().count(b"\n") == 1 and w.records_written == 1


def test_nan_and_unencodable_values_are_refused() -> None:
    with pytest.raises(ValidationError, match="cannot be written as JSON"):
        encode_line({**example("session"), "duration": float("nan")})
    with pytest.raises(ValidationError, match="cannot be written as JSON"):
        encode_line({**example("session"), "duration": object()})


@given(TIMESTAMPS)
def test_timestamps_keep_microseconds(ts: float) -> None:
    line = encode_line({"type": "weird", "ts": ts, "name": "x", "detail": None})
    back = next(read_jsonl(io.BytesIO(line)))["ts"]
    assert back == ts
    assert round(back * 1e6) == round(ts * 1e6)


def test_microsecond_timestamp_text() -> None:
    line = encode_line({"type": "weird", "ts": 1700000000.000001, "name": "x", "detail": None})
    assert b'"ts":1700000000.000001' in line


def test_validate_option_on_write() -> None:
    w = JsonlWriter(io.BytesIO(), validate=True)
    with pytest.raises(ValidationError, match="dns record: field 'qtype'"):
        w.write({**example("dns"), "qtype": "A"})
    JsonlWriter(io.BytesIO()).write({"not": "a record"})  # without validate, anything JSON goes


class CountingFile:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.flushes = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.writes.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True


def test_writes_are_buffered() -> None:
    f = CountingFile()
    w = JsonlWriter(f, buffer_size=10_000)
    line_len = len(encode_line(example("session")))
    for _ in range(1000):
        w.write(example("session"))
    assert 0 < len(f.writes) <= (1000 * line_len) // 10_000
    assert all(10_000 <= len(chunk) < 10_000 + line_len for chunk in f.writes)
    w.flush()
    assert f.flushes == 1
    assert sum(len(c) for c in f.writes) == 1000 * line_len
    w.close()
    assert not f.closed  # a file object passed in is not ours to close


def test_nothing_reaches_the_file_before_the_buffer_fills() -> None:
    f = CountingFile()
    w = JsonlWriter(f)
    w.write_many(all_examples())
    assert f.writes == []
    w.close()
    assert len(f.writes) == 1 and w.records_written == len(all_examples())


def test_close_is_idempotent_and_write_after_close_fails(tmp_path: Path) -> None:
    w = JsonlWriter(tmp_path / "x.jsonl")
    w.write(example("weird"))
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write(example("weird"))
    assert (tmp_path / "x.jsonl").read_bytes().count(b"\n") == 1


def test_context_manager_flushes_on_error(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    with pytest.raises(RuntimeError), JsonlWriter(path) as w:
        w.write(example("weird"))
        raise RuntimeError("boom")
    assert list(read_jsonl(path)) == [example("weird")]


def test_many_records(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    records = all_examples()
    with JsonlWriter(path) as w:
        for i in range(20_000):
            w.write(records[i % len(records)])
    assert sum(1 for _ in read_jsonl(path)) == 20_000


# --- read_jsonl errors -------------------------------------------------------------------------


def test_blank_lines_are_skipped() -> None:
    data = b"\n" + encode_line(example("weird")) + b"\n  \n" + encode_line(example("audit"))
    assert [r["type"] for r in read_jsonl(io.BytesIO(data))] == ["weird", "audit"]


def test_missing_final_newline_is_fine() -> None:
    data = encode_line(example("weird")).rstrip(b"\n")
    assert list(read_jsonl(io.BytesIO(data))) == [example("weird")]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b'{"type":"weird"}\n{"type":\n', "line 2: not a UTF-8 JSON line"),
        (b'[1,2]\n', "line 1: expected a JSON object, got list"),
        (b'"text"\n', "line 1: expected a JSON object, got str"),
        (b'{"type":"weird","ts":NaN}\n', "line 1: not a UTF-8 JSON line: NaN is not JSON"),
        (b'{"type":"weird","ts":Infinity}\n', "line 1: not a UTF-8 JSON line"),
        (b'{"name":"\xff"}\n', "line 1: not a UTF-8 JSON line"),
    ],
)
def test_bad_lines_name_their_line_number(data: bytes, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        list(read_jsonl(io.BytesIO(data)))


def test_validate_on_read_names_line_and_field() -> None:
    data = encode_line(example("weird")) + encode_line({**example("tls"), "established": "yes"})
    assert len(list(read_jsonl(io.BytesIO(data)))) == 2
    with pytest.raises(ValidationError) as info:
        list(read_jsonl(io.BytesIO(data), validate=True))
    assert str(info.value) == "line 2: tls record: field 'established' must be bool, got str"
    assert info.value.record_type == "tls" and info.value.field == "established"


def test_escaped_surrogates_in_input_are_caught_by_validation() -> None:
    data = b'{"type":"weird","ts":1.0,"name":"\\udc80","detail":null}\n'
    assert next(read_jsonl(io.BytesIO(data)))["name"] == "\udc80"
    with pytest.raises(ValidationError, match="lone surrogate"):
        list(read_jsonl(io.BytesIO(data), validate=True))
