"""Helpers the protocol decoder tests share: split feeding and Zeek log rows."""

from __future__ import annotations

import base64
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from agent.protocols.base import StreamDecoder
from wire.addresses import ip_from_packed

Seg = tuple[bool, bytes]  # (from the originator, bytes)
Key = tuple[str, int, str, int]  # originator address and port, responder address and port


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


# -- TCP streams out of corpus captures ---------------------------------------------------


def tcp_packets(path: Path) -> Iterator[tuple[float, Any]]:
    import dpkt

    with path.open("rb") as f:
        try:
            rd: Any = dpkt.pcap.Reader(f)
        except ValueError:
            f.seek(0)
            rd = dpkt.pcapng.Reader(f)
        dl = rd.datalink()
        for ts, buf in rd:
            try:
                if dl == 1:
                    ip = dpkt.ethernet.Ethernet(buf).data
                elif dl == 113:
                    ip = dpkt.sll.SLL(buf).data
                elif dl == 0:
                    ip = dpkt.loopback.Loopback(buf).data
                else:
                    ip = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
            except (dpkt.UnpackError, IndexError):
                continue
            if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6) and isinstance(ip.data, dpkt.tcp.TCP):
                yield float(ts), ip


def tcp_streams(path: Path, ports: tuple[int, ...]) -> dict[Key, list[tuple[float, bool, bytes]]]:
    """The TCP connections to `ports`: each direction put in seq order (stopping at a gap),
    the pieces interleaved in capture order, as the flow table would feed them."""
    import dpkt

    conns: dict[Key, list[tuple[int, float, bool, int, bytes, bool]]] = {}
    for n, (ts, ip) in enumerate(tcp_packets(path)):
        tcp = ip.data
        if tcp.dport not in ports and tcp.sport not in ports:
            continue
        is_orig = tcp.dport in ports
        a, b = (ip_from_packed(ip.src), tcp.sport), (ip_from_packed(ip.dst), tcp.dport)
        key = a + b if is_orig else b + a
        conns.setdefault(key, []).append(
            (n, ts, is_orig, tcp.seq, bytes(tcp.data), bool(tcp.flags & dpkt.tcp.TH_SYN))
        )
    out: dict[Key, list[tuple[float, bool, bytes]]] = {}
    for key, pkts in conns.items():
        segs: list[tuple[int, float, bool, bytes]] = []
        for d in (True, False):
            mine = [p for p in pkts if p[2] == d]
            isn = next((p[3] for p in mine if p[5]), None)
            data = [p for p in mine if p[4]]
            if not data:
                continue
            base = (isn + 1) & 0xFFFFFFFF if isn is not None else min(p[3] for p in data)
            pos = 0
            for p in sorted(data, key=lambda p: ((p[3] - base) & 0xFFFFFFFF, p[0])):
                start = (p[3] - base) & 0xFFFFFFFF
                if start > pos:
                    break  # gap: stop this direction
                chunk = p[4][pos - start :]
                if chunk:
                    segs.append((p[0], p[1], d, chunk))
                    pos += len(chunk)
        segs.sort(key=lambda x: x[0])
        out[key] = [(ts, d, chunk) for _, ts, d, chunk in segs]
    return out
