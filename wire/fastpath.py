"""Generated per-type check functions: the fast path of ``wire.validate.validate_record``.

What: for each record type, ``fast_check_source(spec)`` writes the source of a function
``fast_<type>(rec) -> bool`` that reads every field of the spec by name and tests it with one
inline boolean expression. ``module_source()`` writes them all as one module,
``wire/fastchecks.py`` (checked in; ``python -m wire.fastpath`` rewrites it, ``--check``
tells whether it is current, and a test fails when it is not), whose ``FAST_CHECKS`` maps
each type to its function. The function only answers "valid or not"; when it says no,
``validate_record`` runs the readable table interpreter in ``wire.validate`` to find the
first problem and word the error.

Why: the interpreter loop costs a dict lookup, a set lookup and a closure call per field;
the generated code does one dict read and one inline test per field, about 2-3x faster on
the collector's ingest hot path (a full ``session`` record in a few microseconds). A file,
not ``exec``: the built collector compiles it to machine code with mypyc (setup.py), which
halves it again. Keeping error reporting out of the generated code keeps it small enough to
read: ``fast_check_source(SPECS["session"])`` returns one function.

Correctness: the generated test must accept exactly what the interpreter accepts; the tests
check this on random valid and mutated records. If they ever disagreed, a record the fast
path rejects but the interpreter accepts is still accepted (the interpreter is the
reference); the opposite direction is what the agreement tests guard.

Limits: only the annotation shapes ``wire.spec`` produces are supported; field names are
emitted with ``repr`` so no field name can inject code (names come from our own TypedDicts).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Final

from wire.constraints import Format
from wire.formats import FORMAT_CHECKS
from wire.spec import SPECS, FieldSpec, RecordSpec

_FLOAT_MAX: Final = sys.float_info.max


def utf8_ok(v: str) -> bool:
    """True when ``v`` encodes as UTF-8 (has no lone surrogate)."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def str_list_ok(v: list[Any], max_items: int, max_len: int) -> bool:
    if len(v) > max_items:
        return False
    return all(type(x) is str and len(x) <= max_len and "\x00" not in x and (x.isascii() or utf8_ok(x))
               for x in v)


def float_list_ok(v: list[Any], max_items: int) -> bool:
    if len(v) > max_items:
        return False
    return all((type(x) is float or type(x) is int) and -_FLOAT_MAX <= x <= _FLOAT_MAX for x in v)


_FORMAT_NAMES: Final = {fmt: f"is_{fmt.value}" for fmt in Format}
#: The character no string may hold (``wire.validate``).
_NUL: Final = "\x00"


def _value_test(f: FieldSpec, consts: dict[str, Any]) -> str:
    """A Python expression over ``v`` that is true iff ``v`` is a valid value of field ``f``."""
    kind = f.types[0]
    if kind is str:
        if f.choices is not None:
            const = f"CHOICES_{len(consts)}"
            consts[const] = f.choices
            test = f"(type(v) is str and v in {const})"
        elif f.fmt is not None:
            test = f"(type(v) is str and {_FORMAT_NAMES[f.fmt]}(v))"
        else:
            test = (f"(type(v) is str and len(v) <= {f.max_len!r} and {_NUL!r} not in v"
                    " and (v.isascii() or utf8_ok(v)))")
    elif kind is int:
        test = f"(type(v) is int and {f.lo!r} <= v <= {f.hi!r})"
    elif kind is float:
        lo = -_FLOAT_MAX if f.lo is None else f.lo
        hi = _FLOAT_MAX if f.hi is None else f.hi
        test = f"((type(v) is float or type(v) is int) and {lo!r} <= v <= {hi!r})"
    elif kind is bool:
        test = "(type(v) is bool)"
    elif kind is list and f.items == (str,):
        test = f"(type(v) is list and str_list_ok(v, {f.max_len!r}, {f.item_max_len!r}))"
    elif kind is list:
        test = f"(type(v) is list and float_list_ok(v, {f.max_len!r}))"
    else:
        raise TypeError(f"no fast test for field {f.name!r} of types {f.types!r}")
    return f"(v is None or {test})" if f.nullable else test


def fast_check_source(spec: RecordSpec, consts: dict[str, Any] | None = None) -> str:
    """The source of the generated check function for one record type."""
    consts = {} if consts is None else consts
    n_all, n_required = len(spec.fields), len(spec.required)
    lines = [f"def fast_{spec.name}(rec: dict[Any, Any]) -> bool:"]
    if n_all == n_required:
        lines.append(f"    if len(rec) != {n_all}:")
    else:
        lines += [f"    if len(rec) > {n_all}:"]
    lines += ["        return False", "    n = 0", "    try:"]
    for name, f in spec.fields.items():
        if name == "type":  # the dispatch on rec["type"] already checked it
            continue
        test = _value_test(f, consts)
        if f.required:
            lines += [f"        v = rec[{name!r}]", f"        if not {test}:", "            return False"]
        else:
            lines += [
                f"        v = rec.get({name!r}, MISSING)",
                "        if v is not MISSING:",
                "            n += 1",
                f"            if not {test}:",
                "                return False",
            ]
    lines += ["    except KeyError:", "        return False"]
    # All required keys were read; with n optional keys present, any other key is unknown.
    lines.append(f"    return len(rec) == {n_required} + n")
    return "\n".join(lines) + "\n"


GENERATED: Final = Path(__file__).with_name("fastchecks.py")


def module_source() -> str:
    """The source of ``wire/fastchecks.py``: every type's check, typed for mypyc."""
    consts: dict[str, Any] = {}
    funcs = [fast_check_source(spec, consts) for spec in SPECS.values()]
    imports = sorted(
        f"from {pred.__module__} import {pred.__name__} as {_FORMAT_NAMES[fmt]}"
        if pred.__name__ != _FORMAT_NAMES[fmt] else f"from {pred.__module__} import {pred.__name__}"
        for fmt, (pred, _) in FORMAT_CHECKS.items()
    )
    lines = [
        '"""GENERATED by ``python -m wire.fastpath`` from ``wire.spec``: do not edit'
        ' (see ``wire.fastpath``)."""',
        "",
        "from __future__ import annotations",
        "",
        "from collections.abc import Callable",
        "from typing import Any, Final",
        "",
        *imports,
        "from wire.fastpath import float_list_ok, str_list_ok, utf8_ok",
        "",
        "MISSING: Final = object()",
        *(f"{name}: Final = frozenset({sorted(value)!r})" for name, value in consts.items()),
    ]
    body = "\n".join(lines) + "\n"
    for fn in funcs:
        body += "\n\n" + fn
    table = ", ".join(f"{name!r}: fast_{name}" for name in SPECS)
    body += f"\n\nFAST_CHECKS: Final[dict[str, Callable[[dict[Any, Any]], bool]]] = {{{table}}}\n"
    return body


def write_generated(path: Path, source: str, command: str, argv: list[str] | None = None) -> int:
    """A generator's command line: write ``source`` to ``path`` if it differs; with
    ``--check`` in ``argv`` only tell whether it is current (exit 1, naming ``command``, if not)."""
    args = sys.argv[1:] if argv is None else argv
    current = path.read_text() if path.exists() else None
    if "--check" in args:
        if current != source:
            print(f"{path} is stale: run {command}", file=sys.stderr)
            return 1
        return 0
    if current != source:
        path.write_text(source)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Write ``wire/fastchecks.py`` (``--check``: only say whether it is current)."""
    return write_generated(GENERATED, module_source(), "python -m wire.fastpath", argv)


if __name__ == "__main__":
    sys.exit(main())
