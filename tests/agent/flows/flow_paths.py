"""Helpers the flow tests share: the same frames through the pipeline and through the general path."""

from __future__ import annotations

from typing import Any

from agent.decode.packet import Decoder
from agent.flows.table import FlowTable
from agent.pipeline import Pipeline
from wire.validate import validate_record

Record = dict[str, Any]
Frame = tuple[float, int, bytes]


def pipeline_records(frames: list[Frame], *, one_by_one: bool = False, **kw: Any) -> list[Record]:
    """Every record of `frames` through Pipeline, as one batch or one packet per feed().

    Sessions only unless `decoders=True` is passed: these tests are about flows.
    """
    out: list[Record] = []
    kw.setdefault("decoders", False)
    p = Pipeline(out.extend, **kw)
    if one_by_one:
        for fr in frames:
            p.feed([fr])
    else:
        p.feed(frames)
    p.finish()
    return out


def four_ways(timed: list[Frame], **kw: Any) -> tuple[list[Record], dict[str, int]]:
    """Every record of `timed` through Pipeline with its decoders, and the inspector's counters,
    fed as one batch and one packet per feed() on the fast and on the general path: all four
    must agree exactly; each record valid on the wire."""
    results: list[tuple[list[Record], dict[str, int]]] = []
    for fast in (True, False):
        for one_by_one in (False, True):
            out: list[Record] = []
            p = Pipeline(out.extend, decoders=True, fast_path=fast, **kw)
            if one_by_one:
                for fr in timed:
                    p.feed([fr])
            else:
                p.feed(timed)
            p.finish()
            counters = {k: v for k, v in p.counters().items() if k.startswith("inspect_")}
            results.append((out, counters))
    for other in results[1:]:
        assert other == results[0]
    for r in results[0][0]:
        validate_record(r)
    return results[0]


def both_paths(frames: list[bytes], t0: float, **kw: Any) -> list[Record]:
    """Every record of Ethernet `frames` (10 ms apart from `t0`) through the pipeline on the fast
    and on the general path, which must agree; each record valid on the wire."""
    results = []
    for fast in (True, False):
        out: list[Record] = []
        p = Pipeline(out.extend, fast_path=fast, **kw)
        p.feed([(t0 + i * 0.01, 1, f) for i, f in enumerate(frames)])
        p.finish()
        results.append(out)
    assert results[0] == results[1]
    for r in results[0]:
        validate_record(r)
    return results[0]


def general_path_sessions(frames: list[Frame]) -> list[Record]:
    """Session records from the general decoder and FlowTable.process alone (no fast path, no scans)."""
    dec = Decoder()
    table = FlowTable(tunnel_hook=dec.decode_teredo)
    for ts, linktype, fr in frames:
        pkt = dec.decode(ts, linktype, fr)
        if pkt is not None:
            table.process(ts, pkt)
    table.flush()
    return [r for r in table.outbox.records if r["type"] == "session"]


def uid_key(r: Record) -> tuple[str, bool]:
    return r["uid"], r["interim"]
