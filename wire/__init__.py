"""``wire``: the contract between the edgeaudit agent and collector (SCHEMA.md, v1).

What lives where:
- ``wire.records``     one TypedDict per record type with its metadata (``RECORDS``), the flow id,
                       ``Record``, ``RECORD_TYPES``
- ``wire.meta``        ``RecordMeta``: what storage, search, the filter and the UI know of a type
- ``wire.constraints`` the ``Annotated`` markers (ranges, formats, lengths) the TypedDicts use
- ``wire.spec``        the field spec table derived from them (``SPECS``; ``python -m wire.spec``)
- ``wire.validate``    ``validate_record``, ``validate_batch``, the ``Batch`` envelope type
- ``wire.fastpath``    generates ``wire.fastchecks``, the per-type checks behind ``validate_record``
- ``wire.formats``     address/MAC/proto/community-id predicates; ``wire.addresses`` formatters
- ``wire.text``        ``wire_text``: SCHEMA.md's UTF-8, else GB18030, else escaped decoding of strings
- ``wire.envelope``    ``encode_batch`` / ``decode_batch``: msgpack + zstd, the upload format
- ``wire.zstdframe``   zstd frame-header walker used to refuse truncated or odd bodies early
- ``wire.jsonl``       ``JsonlWriter`` / ``read_jsonl``: the offline ``--jsonl`` output
- ``wire.limits``      every size and range limit, with its reason
- ``wire.errors``      ``ValidationError`` and ``EnvelopeError``

Why one package: both sides import the same definitions, so a field cannot be renamed on one
side only. Records are plain dicts at runtime; the TypedDicts exist for type checking.
Dependencies: the standard library, ``msgpack`` and ``zstandard``, nothing else.
"""

from typing import TYPE_CHECKING, Any

from wire.errors import EnvelopeError, ValidationError
from wire.version import SCHEMA_VERSION

if TYPE_CHECKING:
    from wire.envelope import decode_batch, encode_batch
    from wire.jsonl import JsonlWriter, read_jsonl
    from wire.records import RECORD_TYPES, RECORDS, FlowId, MaybeFlowId, Record
    from wire.spec import SPECS, FieldSpec, RecordSpec
    from wire.validate import Batch, validate_batch, validate_record

# Lazy attributes (PEP 562): the agent's hot start-up path imports only ``wire.jsonl``; building the
# validation tables (``wire.spec``, ``wire.fastpath``) costs ~100 ms and is needed only where
# records are validated (the collector, tests, ``--validate``).
_LAZY = {
    "decode_batch": "wire.envelope", "encode_batch": "wire.envelope",
    "JsonlWriter": "wire.jsonl", "read_jsonl": "wire.jsonl",
    "SPECS": "wire.spec", "FieldSpec": "wire.spec", "RecordSpec": "wire.spec",
    "Batch": "wire.validate", "validate_batch": "wire.validate", "validate_record": "wire.validate",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        if name in _RECORD_NAMES or name.endswith("Record"):
            module = "wire.records"
        else:
            raise AttributeError(f"module 'wire' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "RECORDS",
    "RECORD_TYPES",
    "SCHEMA_VERSION",
    "SPECS",
    "Batch",
    "EnvelopeError",
    "FieldSpec",
    "FlowId",
    "JsonlWriter",
    "MaybeFlowId",
    "Record",
    "RecordSpec",
    "ValidationError",
    "decode_batch",
    "encode_batch",
    "read_jsonl",
    "validate_batch",
    "validate_record",
]

# The record TypedDicts (``HttpRecord``...) are found in ``wire.records`` by name, so a type
# added there needs no line here.
_RECORD_NAMES = frozenset({"RECORDS", "RECORD_TYPES", "FlowId", "MaybeFlowId", "Record"})
