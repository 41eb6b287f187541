"""Validation of records and batch envelopes against the wire schema; the collector's ingest gate.

What: ``validate_record(rec)`` checks one record and returns it unchanged;
``validate_batch(envelope)`` checks a decoded batch envelope (see ``wire.envelope``) and every
record in it. Both raise ``wire.ValidationError`` (``EnvelopeError`` for the envelope) with a
message naming the record type, the field and, in a batch, the record's index.

Rules for a record (from ``wire.spec.SPECS``, i.e. the TypedDicts of ``wire.records``):
- it is a dict with at most ``MAX_FIELDS`` keys and a known ``type``;
- every key is a field of that type; every required field is present;
- every value has an allowed exact type (``bool`` is not ``int``; ``int`` is accepted for
  ``float`` fields), or is ``None`` where the field is nullable;
- numbers: ints fit int64 or the field's tighter range (ports 0..65535, VLAN ids 0..4095,
  counters >= 0); floats are finite; ``ts`` is within ``MIN_TS..MAX_TS``; durations >= 0;
- strings: at most ``MAX_STRING_LEN`` characters (``alert.snippet``: ``MAX_SNIPPET_LEN``),
  encodable as UTF-8 (no lone surrogates), without NUL (U+0000: C-string consumers of the
  stored text would cut it there; a NUL byte from the wire is written ``\\x00``,
  ``wire.text.wire_text``); enumerated fields hold one of their values;
  addresses are canonical (``wire.addresses``), MACs ``aa:bb:cc:dd:ee:ff``, ``proto`` is
  ``tcp|udp|icmp|icmp6`` or another protocol number 0..255 as decimal text;
- lists: at most ``MAX_LIST_LEN`` items, none null, each of the item type; string items at
  most ``MAX_LIST_ITEM_LEN`` characters, float items finite.

Speed: this is on the collector's ingest hot path. ``validate_record`` first runs the check
generated for the record's type by ``wire.fastpath`` (one inline test per field); only when
that says no does it run ``explain_record``, the readable interpreter of the spec table below
(compiled once into ``field -> (allowed types, checker or None)`` per type), which finds and
words the first problem. Nothing is copied: the record you pass in is the record you get back.

Limits: the checks are per record; there are no cross-field rules (e.g. a ``weird`` record
with a ``uid`` but no addresses passes). Unknown fields are refused, so collectors must be
upgraded before agents that speak a newer minor version.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any, Final, TypedDict

from wire.errors import EnvelopeError, ValidationError
from wire.fastchecks import FAST_CHECKS
from wire.fastpath import utf8_ok
from wire.formats import FORMAT_CHECKS
from wire.limits import (
    INT64_MAX,
    MAX_BATCH_RECORDS,
    MAX_FIELDS,
    MAX_ID_LEN,
    MAX_TS,
    MIN_TS,
)
from wire.spec import SPECS, FieldSpec, RecordSpec
from wire.version import SCHEMA_MAJOR

Checker = Callable[[Any], None]

_FLOAT_MAX: Final = sys.float_info.max
_SURROGATE: Final = "contains a lone surrogate and is not valid UTF-8 text"
_NUL: Final = "contains a NUL character (U+0000)"
_TYPE_NAMES: Final = {str: "str", int: "int", float: "float", bool: "bool", list: "list", type(None): "null"}


def _tname(value: object) -> str:
    t = type(value)
    return _TYPE_NAMES.get(t) or t.__name__


def _short(value: object) -> str:
    """A repr for an error message, clipped so untrusted input cannot flood a log line."""
    try:
        text = repr(value)
    except ValueError:  # an int too long for str() (sys.get_int_max_str_digits)
        return f"<{type(value).__name__} too large to show>"
    return text if len(text) <= 60 else text[:57] + "..."


def _error(rtype: str, name: str, problem: str) -> ValidationError:
    return ValidationError(f"{rtype} record: field {name!r} {problem}", record_type=rtype, field=name)


# --- checker factories: each returns a closure that raises on a bad non-null value ----------


def _str_checker(rtype: str, f: FieldSpec) -> Checker:
    name = f.name
    if f.choices is not None:
        choices = f.choices
        listed = ", ".join(sorted(choices))

        def check_choice(v: str) -> None:
            if v not in choices:
                raise _error(rtype, name, f"must be one of {listed}; got {_short(v)}")

        return check_choice
    if f.fmt is not None:
        matches, wanted = FORMAT_CHECKS[f.fmt]

        def check_format(v: str) -> None:
            if not matches(v):
                raise _error(rtype, name, f"must be {wanted}; got {_short(v)}")

        return check_format
    assert f.max_len is not None
    max_len = f.max_len

    def check_text(v: str) -> None:
        if len(v) > max_len:
            raise _error(rtype, name, f"is longer than {max_len} characters ({len(v)})")
        if "\x00" in v:
            raise _error(rtype, name, _NUL)
        if not v.isascii() and not utf8_ok(v):
            raise _error(rtype, name, _SURROGATE)

    return check_text


def _number_checker(rtype: str, f: FieldSpec) -> Checker:
    name = f.name
    # Any, not float: an int field's bounds and values are ints, and mypyc (setup.py) would
    # convert an int beyond float's exact range, or refuse it, where Python compares exactly.
    lo: Any = -_FLOAT_MAX if f.lo is None else f.lo
    hi: Any = _FLOAT_MAX if f.hi is None else f.hi
    if f.lo is None:
        problem = "must be finite"
    elif f.hi is not None and f.hi >= _FLOAT_MAX:  # a lower bound only (durations)
        problem = f"must be finite and at least {lo!r}"
    else:
        problem = f"must be within {lo!r}..{hi!r}"

    def check_range(v: Any) -> None:
        # One chained comparison rejects NaN, +-inf and out-of-range ints without float().
        if not lo <= v <= hi:
            raise _error(rtype, name, f"{problem}; got {_short(v)}")

    return check_range


def _list_checker(rtype: str, f: FieldSpec) -> Checker:
    name = f.name
    assert f.items is not None and f.max_len is not None
    item_types = frozenset(f.items)
    max_items = f.max_len
    item_max_len = f.item_max_len
    wanted = _TYPE_NAMES[f.items[0]]

    def check_list(v: list[Any]) -> None:
        if len(v) > max_items:
            raise _error(rtype, name, f"has more than {max_items} items ({len(v)})")
        for i, item in enumerate(v):
            t = type(item)
            if t not in item_types:
                raise _error(rtype, f"{name}[{i}]", f"must be {wanted}, got {_tname(item)}")
            if t is str:
                if item_max_len is not None and len(item) > item_max_len:
                    raise _error(
                        rtype, f"{name}[{i}]", f"is longer than {item_max_len} characters ({len(item)})"
                    )
                if "\x00" in item:
                    raise _error(rtype, f"{name}[{i}]", _NUL)
                if not item.isascii() and not utf8_ok(item):
                    raise _error(rtype, f"{name}[{i}]", _SURROGATE)
            elif not -_FLOAT_MAX <= item <= _FLOAT_MAX:
                raise _error(rtype, f"{name}[{i}]", f"must be finite; got {_short(item)}")

    return check_list


def _checker(rtype: str, f: FieldSpec) -> Checker | None:
    kind = f.types[0]
    if kind is str:
        return _str_checker(rtype, f)
    if kind is int or kind is float:
        return _number_checker(rtype, f)
    if kind is list:
        return _list_checker(rtype, f)
    return None  # bool: the exact type check is the whole rule


class _Compiled:
    """One record type's rules in the shape the hot loop wants."""

    __slots__ = ("name", "fields", "required", "n_fields")

    def __init__(self, spec: RecordSpec) -> None:
        self.name = spec.name
        self.fields: dict[str, tuple[frozenset[type], Checker | None]] = {}
        for fname, f in spec.fields.items():
            allowed = frozenset(f.types) | ({type(None)} if f.nullable else set())
            check = None if fname == "type" else _checker(spec.name, f)
            self.fields[fname] = (allowed, check)
        self.required = spec.required
        self.n_fields = len(spec.fields)


_COMPILED: Final = {name: _Compiled(spec) for name, spec in SPECS.items()}


def _type_error(c: _Compiled, name: str, value: object) -> ValidationError:
    f = SPECS[c.name].fields[name]
    wanted = _TYPE_NAMES[f.types[0]] + (" or null" if f.nullable else "")
    return _error(c.name, name, f"must be {wanted}, got {_tname(value)}")


def _no_type(rec: dict[Any, Any]) -> ValidationError:
    if "type" not in rec:
        return ValidationError("record has no 'type' field", field="type")
    rtype = rec["type"]
    if type(rtype) is not str:
        return ValidationError(f"record field 'type' must be str, got {_tname(rtype)}", field="type")
    return ValidationError(f"unknown record type {_short(rtype)}", field="type")


def validate_record(rec: object) -> dict[str, Any]:
    """Check one record against SCHEMA.md; return it unchanged or raise ``ValidationError``."""
    if type(rec) is dict:
        rtype = rec.get("type")
        if type(rtype) is str:
            fast = FAST_CHECKS.get(rtype)
            if fast is not None and fast(rec):
                return rec
    return explain_record(rec)


def explain_record(rec: object) -> dict[str, Any]:
    """The reference check, field by field: raise the first problem found, else return ``rec``.

    ``validate_record`` calls this only when the generated fast path says no (or for dict
    subclasses), so its speed matters less than its messages.
    """
    if not isinstance(rec, dict):
        raise ValidationError(f"a record must be a map, got {_tname(rec)}")
    rtype = rec.get("type")
    c = _COMPILED.get(rtype) if type(rtype) is str else None
    if c is None:
        raise _no_type(rec)
    if len(rec) > MAX_FIELDS:
        raise ValidationError(
            f"{c.name} record has more than {MAX_FIELDS} fields ({len(rec)})", record_type=c.name
        )
    fields = c.fields
    for key, value in rec.items():
        entry = fields.get(key)
        if entry is None:
            raise ValidationError(
                f"{c.name} record: unknown field {_short(key)}", record_type=c.name, field=str(key)[:60]
            )
        if type(value) not in entry[0]:
            raise _type_error(c, key, value)
        if value is not None and entry[1] is not None:
            entry[1](value)
    if not rec.keys() >= c.required:
        missing = sorted(k for k in c.required if k not in rec)
        plural = "s" if len(missing) > 1 else ""
        raise ValidationError(
            f"{c.name} record: missing field{plural} {', '.join(map(repr, missing))}",
            record_type=c.name,
            field=missing[0],
        )
    return rec


# --- batch envelope ------------------------------------------------------------------------


class Batch(TypedDict):
    """A decoded, validated batch envelope (the msgpack map described in ``wire.envelope``)."""

    v: str
    agent_id: str
    unit_id: str
    batch_seq: int
    created: float
    records: list[dict[str, Any]]


ENVELOPE_KEYS: Final = frozenset(Batch.__required_keys__)
_VERSION_RE: Final = re.compile(r"([0-9]{1,6})\.([0-9]{1,6})")


def _env_error(problem: str, key: str | None = None) -> EnvelopeError:
    return EnvelopeError(f"batch envelope: {problem}", field=key)


def _check_id(env: dict[Any, Any], key: str) -> None:
    value = env[key]
    if type(value) is not str:
        raise _env_error(f"{key!r} must be str, got {_tname(value)}", key)
    if not 0 < len(value) <= MAX_ID_LEN:
        raise _env_error(f"{key!r} must be 1..{MAX_ID_LEN} characters, got {len(value)}", key)
    if not value.isascii() and not utf8_ok(value):
        raise _env_error(f"{key!r} contains a lone surrogate", key)
    if "\x00" in value:
        raise _env_error(f"{key!r} {_NUL}", key)


def validate_batch(
    envelope: object, *, max_records: int = MAX_BATCH_RECORDS, validate_records: bool = True
) -> Batch:
    """Check a decoded batch envelope and (unless ``validate_records`` is false) each record.

    Returns the same dict, typed as ``Batch``. Envelope problems raise ``EnvelopeError``; a bad
    record raises ``ValidationError`` whose message starts with ``records[i]:``. With
    ``validate_records=False`` only the envelope is checked (``records`` must still be a list
    of at most ``max_records`` items) and the caller validates records one by one, e.g. to
    keep the good ones.
    """
    if not isinstance(envelope, dict):
        raise _env_error(f"must be a map, got {_tname(envelope)}")
    keys = envelope.keys()
    if keys != ENVELOPE_KEYS:
        missing = sorted(k for k in ENVELOPE_KEYS if k not in keys)
        if missing:
            raise _env_error(f"missing key {missing[0]!r}", missing[0])
        extra = sorted(_short(k) for k in keys - ENVELOPE_KEYS)
        raise _env_error(f"unknown key {extra[0]}")
    v = envelope["v"]
    if type(v) is not str:
        raise _env_error(f"'v' must be str, got {_tname(v)}", "v")
    m = _VERSION_RE.fullmatch(v)
    if m is None:
        raise _env_error(f"'v' must be 'major.minor', got {_short(v)}", "v")
    if int(m.group(1)) != SCHEMA_MAJOR:
        raise _env_error(
            f"unsupported schema version {v} (this side speaks {SCHEMA_MAJOR}.x)", "v"
        )
    _check_id(envelope, "agent_id")
    _check_id(envelope, "unit_id")
    seq = envelope["batch_seq"]
    if type(seq) is not int:
        raise _env_error(f"'batch_seq' must be int, got {_tname(seq)}", "batch_seq")
    if not 0 <= seq <= INT64_MAX:
        raise _env_error(f"'batch_seq' must be within 0..{INT64_MAX}, got {seq}", "batch_seq")
    created = envelope["created"]
    if type(created) not in (float, int):
        raise _env_error(f"'created' must be float, got {_tname(created)}", "created")
    if not MIN_TS <= created <= MAX_TS:
        raise _env_error(f"'created' must be within {MIN_TS!r}..{MAX_TS!r}, got {_short(created)}", "created")
    records = envelope["records"]
    if type(records) is not list:
        raise _env_error(f"'records' must be a list, got {_tname(records)}", "records")
    if len(records) > max_records:
        raise _env_error(f"too many records ({len(records)} > {max_records})", "records")
    if validate_records:
        for i, rec in enumerate(records):
            try:
                validate_record(rec)
            except ValidationError as e:
                raise e.at_index(i) from None
    return envelope  # type: ignore[return-value]
