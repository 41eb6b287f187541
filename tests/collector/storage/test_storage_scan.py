"""The generated scanners give exactly what the generic path gives (``record_columns`` then
``record_keys``): index entries, end time and search text, for every record type, valid
records and records whose fields hold values of the wrong type."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

sys.path.insert(0, str(Path(__file__).parents[2] / "wire"))
from wire_strategies import ANY_RECORD, all_examples  # noqa: E402

from collector.storage.keys import CHUNK_KINDS, INDEX_BITS, kind_of, record_keys  # noqa: E402
from collector.storage.rows import record_columns  # noqa: E402
from collector.storage.scan import GENERATED, module_source, scanner_source  # noqa: E402
from collector.storage.scanners import SCANNERS  # noqa: E402
from wire.spec import SPECS  # noqa: E402

WRONG: list[Any] = [None, "", "x", "10.0.0.9", 0, -5, 70000, 1.5, float("nan"), float("inf"), True, ["a"],
                    [1.0]]


IDX = 77  # the record's index in its granule


def _generic(rec: dict[str, Any]) -> tuple[set[int], float, str | None]:
    cols = record_columns(0, rec)
    return {(k << INDEX_BITS) | IDX for k in record_keys(cols[0], cols)}, cols[2], cols[12]


def _scanned(rec: dict[str, Any]) -> tuple[set[int], float, str | None]:
    entries: list[int] = []
    chunk_entries: list[int] = []
    end, text = SCANNERS[rec["type"]](rec, float(rec["ts"]), IDX, entries, chunk_entries)
    assert all(kind_of(e >> INDEX_BITS) not in CHUNK_KINDS for e in entries)
    assert all(kind_of(e >> INDEX_BITS) in CHUNK_KINDS for e in chunk_entries)
    return set(entries) | set(chunk_entries), end, text


def test_every_schema_type_has_a_scanner() -> None:
    assert set(SCANNERS) == set(SPECS)
    assert "if type(p) is int" in scanner_source("nat") and "duration" in scanner_source("session")
    assert GENERATED.read_text() == module_source(), "stale: run python -m collector.storage.scan"


@pytest.mark.parametrize("rec", all_examples(), ids=lambda r: str(r["type"]))
def test_examples_and_every_wrong_typed_field(rec: dict[str, Any]) -> None:
    assert _scanned(rec) == _generic(rec)
    for field in rec:
        if field in ("type", "ts"):
            continue
        for bad in WRONG:
            mutated = {**rec, field: bad}
            assert _scanned(mutated) == _generic(mutated), (field, bad)


def test_a_record_missing_its_fields() -> None:
    for rtype in SPECS:
        rec = {"type": rtype, "ts": 1_700_000_000.5}
        assert _scanned(rec) == _generic(rec)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_RECORD)
def test_generated_records(rec: dict[str, Any]) -> None:
    assert _scanned(rec) == _generic(rec)
