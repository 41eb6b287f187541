"""The machine-readable field spec table, derived from the TypedDicts in ``wire.records``.

What: ``SPECS`` maps each record type name to a ``RecordSpec``, whose ``fields`` map each field
name to a ``FieldSpec``: the exact Python types a non-null value may have, whether null is
allowed, whether the field must be present, and its value rule (numeric range, length limit,
enum choices, text format, list item types). ``wire.validate`` compiles this table into
its checks; ``python -m wire.spec`` prints it as JSON for other implementations.

Why derived: the TypedDict annotations (with the ``Annotated`` markers of
``wire.constraints``) are the only place a field is declared, so the type checker's view and
the validator's view cannot drift apart.

Limits: types are matched exactly (``type(v) in types``): ``bool`` is not an ``int``, and
subclasses of ``str``/``int``/``list``/``dict`` are refused, since their serialisation is not
guaranteed to be the plain one. Only the annotation shapes used in ``wire.records`` are
understood; anything else fails loudly at import time.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import (
    Annotated,
    Any,
    Literal,
    NotRequired,
    Required,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from wire.constraints import Format, MaxLen, Range
from wire.limits import (
    INT64_MAX,
    INT64_MIN,
    MAX_LIST_ITEM_LEN,
    MAX_LIST_LEN,
    MAX_STRING_LEN,
)
from wire.meta import CONTENT_KINDS, FAMILIES, FLOW_ENDPOINTS, RecordMeta
from wire.records import RECORDS

_NONE_TYPE = type(None)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """The rule for one field of one record type.

    ``types``: exact Python types of a non-null value (``float`` fields list ``(float, int)``).
    ``nullable``: ``None`` is allowed. ``required``: the key must be present.
    ``lo``/``hi``: inclusive bounds for numbers (``None`` = unbounded, floats must be finite).
    ``max_len``: most characters of a ``str``, or most items of a ``list``.
    ``items``/``item_max_len``: element types and element length limit of a ``list`` field.
    ``choices``: the allowed values of an enumerated ``str`` field.
    ``fmt``: the text syntax of a ``str`` field (address, MAC, protocol, community id).
    """

    name: str
    types: tuple[type, ...]
    nullable: bool
    required: bool
    # int | float, not float: an int field's bounds are ints, and a float annotation lets
    # mypyc (the compiled build, setup.py) turn them into floats where the messages show them
    lo: int | float | None = None
    hi: int | float | None = None
    max_len: int | None = None
    items: tuple[type, ...] | None = None
    item_max_len: int | None = None
    choices: frozenset[str] | None = None
    fmt: Format | None = None

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable description of this rule."""
        out: dict[str, Any] = {
            "types": [t.__name__ for t in self.types],
            "nullable": self.nullable,
            "required": self.required,
        }
        for key in ("lo", "hi", "max_len", "item_max_len"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.items is not None:
            out["items"] = [t.__name__ for t in self.items]
        if self.choices is not None:
            out["choices"] = sorted(self.choices)
        if self.fmt is not None:
            out["format"] = self.fmt.value
        return out


@dataclass(frozen=True, slots=True)
class RecordSpec:
    """The rules of one record type: its TypedDict, its fields, which ones must be present."""

    name: str
    typeddict: type
    fields: Mapping[str, FieldSpec]
    required: frozenset[str]
    meta: RecordMeta | None = None  # wire.records.RECORDS' entry (None: a TypedDict on its own)

    def describe(self) -> dict[str, Any]:
        return {name: f.describe() for name, f in self.fields.items()}


def _split_optional(hint: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); ``X`` -> (X, False)."""
    if get_origin(hint) in (Union, types.UnionType):
        args = get_args(hint)
        rest = [a for a in args if a is not _NONE_TYPE]
        if len(rest) != 1:
            raise TypeError(f"unsupported union in record schema: {hint!r}")
        return rest[0], len(rest) != len(args)
    return hint, False


def _unwrap_annotated(hint: Any) -> tuple[Any, tuple[Any, ...]]:
    if get_origin(hint) is Annotated:
        base, *meta = get_args(hint)
        return base, tuple(meta)
    return hint, ()


def _scalar_rule(hint: Any, where: str) -> dict[str, Any]:
    """The FieldSpec keyword arguments for a scalar annotation (no None, no list)."""
    base, meta = _unwrap_annotated(hint)
    rule: dict[str, Any] = {}
    if get_origin(base) is Literal:
        values = get_args(base)
        if not all(type(v) is str for v in values):
            raise TypeError(f"{where}: only str literals are supported")
        rule["types"] = (str,)
        rule["choices"] = frozenset(values)
    elif base is str:
        rule["types"] = (str,)
        rule["max_len"] = MAX_STRING_LEN
    elif base is int:
        rule.update(types=(int,), lo=INT64_MIN, hi=INT64_MAX)
    elif base is float:
        rule["types"] = (float, int)
    elif base is bool:
        rule["types"] = (bool,)
    else:
        raise TypeError(f"{where}: unsupported annotation {hint!r}")
    for m in meta:
        if isinstance(m, Range) and rule["types"][0] in (int, float):
            rule["lo"], rule["hi"] = m.lo, m.hi
        elif isinstance(m, MaxLen) and base is str:
            rule["max_len"] = m.n
        elif isinstance(m, Format) and base is str:
            rule["fmt"] = m
        else:
            raise TypeError(f"{where}: marker {m!r} does not apply to {base!r}")
    return rule


def field_spec(name: str, hint: Any, required: bool, where: str = "") -> FieldSpec:
    """Build the FieldSpec of one TypedDict annotation."""
    where = f"{where}.{name}" if where else name
    if get_origin(hint) in (NotRequired, Required):
        (hint,) = get_args(hint)
    hint, nullable = _split_optional(hint)
    if get_origin(hint) is list:
        (item,) = get_args(hint)
        item_rule = _scalar_rule(item, where + "[]")
        if set(item_rule) - {"types", "max_len"}:
            raise TypeError(f"{where}: list items may only be plain str or float")
        return FieldSpec(
            name=name,
            types=(list,),
            nullable=nullable,
            required=required,
            max_len=MAX_LIST_LEN,
            items=item_rule["types"],
            item_max_len=MAX_LIST_ITEM_LEN if item_rule["types"] == (str,) else None,
        )
    return FieldSpec(name=name, nullable=nullable, required=required, **_scalar_rule(hint, where))


def record_spec(typeddict: type) -> RecordSpec:
    """Build the RecordSpec of one record TypedDict (its ``type`` must be a one-value Literal)."""
    if not is_typeddict(typeddict):
        raise TypeError(f"{typeddict!r} is not a TypedDict")
    hints = get_type_hints(typeddict, include_extras=True)
    type_values = get_args(hints["type"])
    if get_origin(hints["type"]) is not Literal or len(type_values) != 1:
        raise TypeError(f"{typeddict.__name__}.type must be a Literal of one name")
    name = type_values[0]
    required_keys: frozenset[str] = typeddict.__required_keys__  # type: ignore[attr-defined]
    order = ["type", "ts"] + [k for k in hints if k not in ("type", "ts")]
    fields = {key: field_spec(key, hints[key], key in required_keys, name) for key in order}
    return RecordSpec(name=name, typeddict=typeddict, fields=fields, required=frozenset(required_keys))


def _check_meta(spec: RecordSpec, meta: RecordMeta) -> None:
    """Every field the metadata names is a field of the type (fails loudly at import)."""
    named = [*meta.search, *meta.addresses, *meta.accounts, *meta.personal, *meta.detail]
    if meta.app_user is not None:
        named.append(meta.app_user)
    if meta.endpoints != FLOW_ENDPOINTS:  # a flow id's endpoints: nat_* only in session
        named += meta.endpoints
    if meta.stamped:
        named.append("account")
    for f in named:
        if f not in spec.fields:
            raise TypeError(f"RECORDS[{spec.name!r}] names {f!r}, which is not a field of the type")
    for c in meta.content:
        if not c.name.startswith(spec.name + ".") or c.kind not in CONTENT_KINDS:
            raise TypeError(f"RECORDS[{spec.name!r}]: content field {c.name!r} ({c.kind}) must be "
                            f"named {spec.name}.<part> and be one of {', '.join(CONTENT_KINDS)}")
    if meta.family not in FAMILIES:
        raise TypeError(f"RECORDS[{spec.name!r}]: unknown family {meta.family!r}")


def _build() -> dict[str, RecordSpec]:
    specs: dict[str, RecordSpec] = {}
    for name, meta in RECORDS.items():
        spec = record_spec(meta.typeddict)
        if spec.name != name:
            raise TypeError(f"RECORDS[{name!r}] declares type {spec.name!r}")
        _check_meta(spec, meta)
        specs[name] = dataclasses.replace(spec, meta=meta)
    return specs


#: Record type name -> RecordSpec, for every type of the schema.
SPECS: Mapping[str, RecordSpec] = _build()


def describe_all() -> dict[str, Any]:
    """The whole table as JSON-serialisable data (what ``python -m wire.spec`` prints)."""
    from wire.version import SCHEMA_VERSION

    return {"schema_version": SCHEMA_VERSION, "types": {n: s.describe() for n, s in SPECS.items()},
            "records": {n: describe_meta(m) for n, m in RECORDS.items()}}


def describe_meta(meta: RecordMeta) -> dict[str, Any]:
    """One type's metadata as JSON-serialisable data (``GET /api/v1/schema``, the web UI)."""
    return {
        "family": meta.family, "search": list(meta.search), "addresses": list(meta.addresses),
        "accounts": list(meta.accounts), "stamped": meta.stamped, "app_user": meta.app_user,
        "content": [{"name": c.name, "kind": c.kind} for c in meta.content],
        "personal": list(meta.personal), "detail": list(meta.detail),
        "endpoints": list(meta.endpoints), "listed": meta.listed,
    }


if __name__ == "__main__":
    print(json.dumps(describe_all(), indent=2, ensure_ascii=False))
