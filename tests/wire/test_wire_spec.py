"""The record definitions and the field spec table: complete, consistent with SCHEMA.md."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal, TypedDict

import pytest
from wire_strategies import all_examples

import wire
from wire.records import RECORD_TYPES
from wire.spec import SPECS, field_spec, record_spec

SCHEMA_MD = Path(__file__).resolve().parents[3] / "shared" / "SCHEMA.md"
SCHEMA_ADDITIONS = Path(__file__).resolve().parents[2] / "wire" / "SCHEMA-additions.md"
FLOW_FIELDS = ["uid", "proto", "src_ip", "src_port", "dst_ip", "dst_port", "vlan", "inner_vlan"]
ALL_TYPES = {
    "session", "http", "dns", "tls", "smtp", "mailbox", "ftp", "dhcp", "radius", "pppoe", "login",
    "nat", "alert", "weird", "audit", "registration", "stats",
}


def test_schema_version_is_major_minor_string() -> None:
    assert wire.SCHEMA_VERSION == "1.2"
    assert re.fullmatch(r"\d+\.\d+", wire.SCHEMA_VERSION)


def test_every_schema_type_has_a_typeddict_and_a_spec() -> None:
    assert set(RECORD_TYPES) == ALL_TYPES
    assert set(SPECS) == ALL_TYPES
    for name in ALL_TYPES:
        td = getattr(wire, name.capitalize() + "Record")
        assert RECORD_TYPES[name] is td
        assert SPECS[name].typeddict is td


def test_public_api_exports() -> None:
    for name in wire.__all__:
        assert hasattr(wire, name), name
    for name in ("validate_record", "validate_batch", "encode_batch", "decode_batch", "JsonlWriter",
                 "read_jsonl", "ValidationError", "EnvelopeError", "SCHEMA_VERSION"):
        assert name in wire.__all__
    assert issubclass(wire.EnvelopeError, wire.ValidationError)
    assert issubclass(wire.ValidationError, ValueError)


@pytest.mark.parametrize("name", sorted(ALL_TYPES))
def test_type_and_ts_required_everywhere(name: str) -> None:
    spec = SPECS[name]
    assert list(spec.fields)[:2] == ["type", "ts"]
    assert spec.fields["type"].choices == frozenset({name})
    ts = spec.fields["ts"]
    assert ts.required and not ts.nullable and ts.types == (float, int)
    assert ts.lo == wire.limits.MIN_TS and ts.hi == wire.limits.MAX_TS


FLOW_TYPES = ["session", "http", "dns", "tls", "smtp", "mailbox", "ftp", "radius"]


@pytest.mark.parametrize("name", FLOW_TYPES)
def test_flow_id_is_shared_and_required(name: str) -> None:
    fields = SPECS[name].fields
    for fname in FLOW_FIELDS:
        assert fields[fname] == SPECS["session"].fields[fname]
        assert fields[fname].required
    assert not fields["uid"].nullable and fields["vlan"].nullable and fields["inner_vlan"].nullable
    assert fields["src_port"].lo == 0 and fields["src_port"].hi == 65535


@pytest.mark.parametrize("name", ["weird", "alert"])
def test_weird_and_alert_flow_id_may_be_null_or_absent(name: str) -> None:
    fields = SPECS[name].fields
    for fname in FLOW_FIELDS:
        assert not fields[fname].required and fields[fname].nullable


@pytest.mark.parametrize("name", ["dhcp", "pppoe", "login", "nat", "audit", "registration", "stats"])
def test_records_without_a_connection_have_no_flow_id(name: str) -> None:
    assert not (set(FLOW_FIELDS) - {"proto"}) & set(SPECS[name].fields)


def test_bool_is_never_an_int_and_floats_accept_ints() -> None:
    for spec in SPECS.values():
        for f in spec.fields.values():
            if int in f.types and float not in f.types:
                assert bool not in f.types
            if float in f.types:
                assert f.types == (float, int)
            if f.types == (list,):
                assert f.items in ((str,), (float, int)) and not f.nullable


def test_login_type_covers_both_events() -> None:
    assert SPECS["login"].fields["event"].choices == frozenset({"login", "logout"})


def _schema_sections(text: str) -> dict[str, str]:
    parts = re.split(r"^### `(\w+)`", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


#: Names SCHEMA.md puts in backticks that are values, not fields.
_VALUES_IN_PROSE = {
    "session": {"session", "http", "dns", "tls", "smtp", "pop3", "imap", "ftp", "radius", "dhcp", "ssh"},
    "alert": {"gbk", "url"},
    "tls": {"TLSv12", "TLSv13"},
}


@pytest.mark.skipif(not SCHEMA_MD.exists(), reason="../shared/SCHEMA.md not present")
def test_spec_matches_schema_md() -> None:
    sections = _schema_sections(SCHEMA_MD.read_text(encoding="utf-8"))
    assert set(sections) == ALL_TYPES
    additions = _schema_sections(SCHEMA_ADDITIONS.read_text(encoding="utf-8"))
    assert set(additions) <= ALL_TYPES
    for name, body in sections.items():
        fields = SPECS[name].fields
        # Every field of our spec is named in the type's section (flow id, type, ts: by reference),
        # or in the additive minor versions documented in wire/SCHEMA-additions.md.
        words = set(re.findall(r"[A-Za-z_]+", body + additions.get(name, "")))
        for fname in fields:
            if fname not in FLOW_FIELDS and fname not in ("type", "ts"):
                assert fname in words, f"{name}.{fname} is not in SCHEMA.md"
        # Every field SCHEMA.md names (table rows, backticked words) is in our spec.
        named = set(re.findall(r"`(\w+)`", body))
        named |= {n.strip() for m in re.findall(r"^\| ([\w, ]+) \|", body, flags=re.M) for n in m.split(",")}
        values = {c for f in fields.values() for c in (f.choices or ())} | _VALUES_IN_PROSE.get(name, set())
        extra = named - set(fields) - values - {"field", "flow id"}
        assert not extra, f"{name}: SCHEMA.md names {sorted(extra)} which the spec lacks"


def test_spec_table_is_printable_json() -> None:
    cmd = [sys.executable, "-m", "wire.spec"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    data = json.loads(out)
    assert data["schema_version"] == wire.SCHEMA_VERSION
    assert set(data["types"]) == ALL_TYPES
    assert data["types"]["session"]["src_ip"]["format"] == "ip"
    assert data["types"]["dns"]["answers"] == {
        "types": ["list"], "nullable": False, "required": True, "max_len": 1024, "items": ["str"],
        "item_max_len": 1024,
    }
    assert data["types"]["alert"]["snippet"]["max_len"] == 200
    assert data["types"]["weird"]["uid"]["required"] is False


def test_examples_cover_every_type() -> None:
    assert {r["type"] for r in all_examples()} == ALL_TYPES


def test_spec_builder_refuses_unknown_annotations() -> None:
    with pytest.raises(TypeError):
        field_spec("x", dict[str, int], True)
    with pytest.raises(TypeError):
        field_spec("x", int | str, True)

    class NoLiteral(TypedDict):
        type: str
        ts: float

    with pytest.raises(TypeError):
        record_spec(NoLiteral)

    class Good(TypedDict):
        type: Literal["x"]
        ts: float

    assert record_spec(Good).required == {"type", "ts"}
