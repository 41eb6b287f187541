"""Helpers the protocol decoder tests share: split feeding and Zeek log rows."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent.protocols.base import StreamDecoder

Seg = tuple[bool, bytes]  # (from the originator, bytes)


def feed_split(dec: StreamDecoder, segs: list[Seg], mode: str = "whole", seed: int = 0,
               max_piece: int = 17) -> list[dict[str, Any]]:
    """Feed (is_orig, bytes) segments, each cut per `mode`: whole, bytes, or random pieces; then close."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i, (is_orig, data) in enumerate(segs):
        ts = float(i + 1)
        if mode == "whole":
            pieces = [data]
        elif mode == "bytes":
            pieces = [data[j : j + 1] for j in range(len(data))]
        else:
            pieces, j = [], 0
            while j < len(data):
                n = rng.randint(1, max_piece)
                pieces.append(data[j : j + n])
                j += n
        for p in pieces:
            out += dec.feed(is_orig, p, ts)
    out += dec.close(float(len(segs) + 1))
    return out


def zeek_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a Zeek ASCII log as dicts of the raw column text."""
    fields: list[str] = []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"), strict=False)))
    return rows


def state_of(obj: object) -> dict[str, object]:
    """An object's attribute values, also for classes compiled by mypyc (they have no __dict__):
    what the no-secrets tests search for a password a decoder must not keep."""
    try:
        return dict(vars(obj))
    except TypeError:
        out: dict[str, object] = {}
        for name in dir(obj):
            if name.startswith("__"):
                continue
            try:
                value = getattr(obj, name)
            except AttributeError:
                continue
            if not callable(value):
                out[name] = value
        return out


def client_line(line: str) -> Seg:
    """A command line from the originator, CRLF-terminated."""
    return (True, line.encode() + b"\r\n")


def server_lines(text: str) -> Seg:
    """Reply lines from the responder: every line end becomes CRLF."""
    return (False, text.encode().replace(b"\n", b"\r\n") + b"\r\n")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def one_mailbox_record(make: Callable[[], Any], protocol: str, segs: list[Seg]) -> tuple[dict[str, Any], Any]:
    """The one `mailbox` record of a POP3/IMAP session, and its decoder (fed whole): the same
    records and TLS switch fed byte by byte and in random pieces, and no flow id fields."""
    dec = make()
    base = feed_split(dec, segs, max_piece=7)
    for mode, seed in [("bytes", 0)] + [("random", s) for s in range(6)]:
        d2 = make()
        assert feed_split(d2, segs, mode, seed, max_piece=7) == base, (mode, seed)
        assert d2.tls == dec.tls
    assert len(base) == 1
    rec = base[0]
    assert rec["type"] == "mailbox" and rec["protocol"] == protocol
    assert not any(k in rec for k in ("uid", "src_ip", "dst_port", "proto", "password"))
    return rec, dec
