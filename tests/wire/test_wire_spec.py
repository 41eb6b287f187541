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
from wire.meta import FAMILIES
from wire.records import RECORD_TYPES, RECORDS
from wire.spec import SPECS, field_spec, record_spec

SCHEMA_MD = Path(__file__).resolve().parents[3] / "shared" / "SCHEMA.md"
SCHEMA_ADDITIONS = Path(__file__).resolve().parents[2] / "wire" / "SCHEMA-additions.md"
FLOW_FIELDS = ["uid", "proto", "src_ip", "src_port", "dst_ip", "dst_port", "vlan", "inner_vlan"]
#: Every type, as wire.records declares it (once); test_spec_matches_schema_md checks that
#: SCHEMA.md and SCHEMA-additions.md together document exactly these.
ALL_TYPES = set(RECORDS)


def test_schema_version_is_major_minor_string() -> None:
    assert wire.SCHEMA_VERSION == "1.6"
    assert re.fullmatch(r"\d+\.\d+", wire.SCHEMA_VERSION)


def test_every_schema_type_has_a_typeddict_and_a_spec() -> None:
    assert {"session", "http", "dns", "login", "nat", "alert", "registration"} <= ALL_TYPES
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


#: The types whose TypedDict has the flow id (the others: weird/alert may, the rest have none).
FLOW_TYPES = sorted(n for n, m in RECORDS.items() if "uid" in m.typeddict.__required_keys__)


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


@pytest.mark.parametrize("name", sorted(ALL_TYPES - set(FLOW_TYPES) - {"weird", "alert"}))
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
    sections: dict[str, str] = {}
    for i in range(1, len(parts), 2):  # a type extended by several minor versions: every section
        sections[parts[i]] = sections.get(parts[i], "") + parts[i + 1]
    return sections


#: Names SCHEMA.md puts in backticks that are values, not fields.
_VALUES_IN_PROSE = {
    "session": {"session", "http", "dns", "tls", "smtp", "pop3", "imap", "ftp", "radius", "dhcp", "ssh"},
    "alert": {"gbk", "url"},
    "tls": {"TLSv12", "TLSv13"},
}


@pytest.mark.skipif(not SCHEMA_MD.exists(), reason="../shared/SCHEMA.md not present")
def test_spec_matches_schema_md() -> None:
    sections = _schema_sections(SCHEMA_MD.read_text(encoding="utf-8"))
    additions = _schema_sections(SCHEMA_ADDITIONS.read_text(encoding="utf-8"))
    # SCHEMA.md and the additions together document every type (a new type: in the additions)
    assert set(sections) | set(additions) == ALL_TYPES
    for name in ALL_TYPES - set(sections):
        sections[name] = ""  # a type of a minor version: its whole section is in the additions
    for name, body in sections.items():
        fields = SPECS[name].fields
        # Every field of our spec is named in the type's section (flow id, type, ts: by reference),
        # or in the additive minor versions documented in wire/SCHEMA-additions.md.
        words = set(re.findall(r"[A-Za-z_]+", body + additions.get(name, "")))
        for fname in fields:
            if fname not in FLOW_FIELDS and fname not in ("type", "ts"):
                assert fname in words, f"{name}.{fname} is not in SCHEMA.md"
        # Every field SCHEMA.md names (table rows, backticked words) is in our spec.
        named = set(re.findall(r"`(\w+)`", body or additions[name]))
        named |= {n.strip() for m in re.findall(r"^\| ([\w, ]+) \|", body or additions[name], flags=re.M)
                  for n in m.split(",")}
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


def test_record_metadata_names_fields_of_its_type() -> None:
    """wire.spec refuses metadata naming a field the type lacks; here the derived views hold."""
    for name, meta in RECORDS.items():
        assert meta.family in FAMILIES
        fields = SPECS[name].fields
        for f in (*meta.search, *meta.addresses, *meta.accounts, *meta.personal, *meta.detail):
            assert f in fields, (name, f)
        for c in meta.content:
            assert c.name.startswith(name + ".")
    assert [c.name for c in RECORDS["http"].content][:2] == ["http.uri", "http.host"]
    data = json.loads(subprocess.run([sys.executable, "-m", "wire.spec"], check=True, capture_output=True,
                                     text=True).stdout)
    assert set(data["records"]) == ALL_TYPES
    assert data["records"]["registration"]["personal"] == ["id_number", "phone"]  # the name names the guest
    assert data["records"]["nat"]["endpoints"][0] == "inside_ip"


def test_metadata_naming_a_missing_field_is_refused() -> None:
    import dataclasses

    from wire.spec import _check_meta

    bad = dataclasses.replace(RECORDS["dns"], search=("qurey",))
    with pytest.raises(TypeError, match="qurey"):
        _check_meta(SPECS["dns"], bad)
    bad = dataclasses.replace(RECORDS["dns"], content=(dataclasses.replace(RECORDS["dns"].content[0],
                                                                           name="http.query"),))
    with pytest.raises(TypeError, match="http.query"):
        _check_meta(SPECS["dns"], bad)


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
