"""Tests for live capture: agent.capture.afpacket (TPACKET_V3 ring), bpf (filters), workers (fanout).

Real things only: each test creates its own veth pair (unique names), opens the ring on
one end and sends frames built here on the other end with a raw AF_PACKET socket, then
checks what the ring delivered byte for byte. IPv6 is disabled on the pair before it is
brought up, so the kernel itself sends nothing (no router solicitations, no MLD) and the
only traffic is the test's. Waiting is on the ring (poll) with a deadline, never a sleep.

Needs root (veth, AF_PACKET); every test that does skips with the reason otherwise. The
BPF text parser tests run anywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.capture import linktypes
from agent.capture.afpacket import AfPacketSource, Batch, CaptureOpenError
from agent.capture.bpf import BpfError, compile_filter, parse_ddd
from agent.capture.workers import CaptureConfig, WorkerPool

IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT or shutil.which("ip") is None,
                                reason="live capture needs root (veth pairs, AF_PACKET) and iproute2")

DEADLINE_S = 10.0  # generous: a loaded CI machine; the tests finish as soon as frames arrive

MAC_A = bytes.fromhex("020000000a01")
MAC_B = bytes.fromhex("020000000b01")


# ---------------------------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------------------------

def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes, ident: int = 1) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, 64, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + payload


def udp(src: str, sport: int, dst: str, dport: int, data: bytes) -> bytes:
    return ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data)


def tcp(src: str, sport: int, dst: str, dport: int, seq: int, flags: int, data: bytes = b"") -> bytes:
    return ipv4(src, dst, 6, struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 0x50, flags, 65535, 0, 0) + data)


def eth(ip: bytes, src: bytes = MAC_A, dst: bytes = MAC_B, tags: tuple[tuple[int, int], ...] = ()) -> bytes:
    out = dst + src
    for tpid, tci in tags:
        out += struct.pack("!HH", tpid, tci)
    return out + b"\x08\x00" + ip


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------

class Veth:
    """A veth pair: send on `a`, capture on `b`."""

    def __init__(self, tag: str) -> None:
        base = f"ea{os.getpid() % 100000}{tag}"
        self.a, self.b = base + "a", base + "b"
        subprocess.run(["ip", "link", "add", self.a, "type", "veth", "peer", "name", self.b], check=True)
        for name in (self.a, self.b):
            Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").write_text("1")
            subprocess.run(["ip", "link", "set", name, "up"], check=True)
        self.tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.tx.bind((self.a, 0))

    def send(self, frames: list[bytes]) -> None:
        for f in frames:
            self.tx.send(f)

    def close(self) -> None:
        self.tx.close()
        subprocess.run(["ip", "link", "del", self.a], check=False)


_counter = iter(range(1000))


@pytest.fixture
def veth() -> Iterator[Veth]:
    v = Veth(str(next(_counter)))
    try:
        yield v
    finally:
        v.close()


def collect(src: AfPacketSource, n: int) -> Batch:
    """Read batches until `n` frames arrived (or the deadline: the caller's assert reports it)."""
    out: Batch = []
    deadline = time.monotonic() + DEADLINE_S
    while len(out) < n and time.monotonic() < deadline:
        src.wait(50)
        batch = src.read_block()
        if batch:
            out.extend(batch)
    return out


def small_ring(veth: Veth, **kw: Any) -> AfPacketSource:
    kw.setdefault("block_size", 1 << 16)
    kw.setdefault("block_nr", 8)
    kw.setdefault("retire_ms", 5)
    return AfPacketSource(veth.b, **kw)


# ---------------------------------------------------------------------------------------------
# the ring
# ---------------------------------------------------------------------------------------------

@needs_root
def test_every_frame_arrives_intact_with_sane_timestamps(veth: Veth) -> None:
    frames = [eth(udp("10.0.0.1", 1000 + i % 7, "10.0.0.2", 53, struct.pack("!I", i) + bytes(i % 1400)))
              for i in range(3000)]
    with small_ring(veth, block_nr=64) as src:  # 4 MiB: room for all of them, sent before any is read
        assert src.linktype == linktypes.ETHERNET
        t0 = time.time()
        veth.send(frames)
        got = collect(src, len(frames))
        t1 = time.time()
        assert [f for _, _, f in got] == frames  # every frame, in order, byte for byte
        assert {lt for _, lt, _ in got} == {linktypes.ETHERNET}
        ts = [t for t, _, _ in got]
        assert t0 - 0.001 <= ts[0] and ts[-1] <= t1 + 0.001
        assert ts == sorted(ts)
        c = src.read_kernel_stats()
        assert c["packets"] == len(frames)
        assert c["bytes"] == sum(map(len, frames))
        assert c["blocks"] >= sum(map(len, frames)) // (1 << 16)  # several blocks were walked
        assert c["kernel_drops"] == 0 and c["snapped"] == 0
        assert c["kernel_packets"] == len(frames)


@needs_root
def test_stripped_vlan_tags_are_put_back(veth: Veth) -> None:
    ip = udp("10.0.1.1", 1111, "10.0.1.2", 2222, b"vlan")
    frames = [
        eth(ip, tags=((0x8100, 0x2064),)),  # PCP 1, VID 100
        eth(ip, tags=((0x88A8, 0x0007), (0x8100, 0x0C8))),  # QinQ: outer 802.1ad, inner 802.1Q
        eth(ip),
    ]
    with small_ring(veth) as src:
        veth.send(frames)
        got = collect(src, len(frames))
        assert [f for _, _, f in got] == frames
        assert src.counters["vlan_restored"] == 2


@needs_root
def test_snaplen_truncates_and_block_overflow_is_counted(veth: Veth) -> None:
    frames = [eth(udp("10.0.2.1", 5, "10.0.2.2", 6, bytes(1000)))]
    with small_ring(veth, snaplen=64) as src:
        veth.send(frames)
        got = collect(src, 1)
        assert got[0][2] == frames[0][:64]


@needs_root
def test_kernel_drops_rise_when_the_ring_overflows_and_accumulate(veth: Veth) -> None:
    frame = eth(udp("10.0.3.1", 7, "10.0.3.2", 8, bytes(1400)))
    with AfPacketSource(veth.b, block_size=4096, block_nr=2, retire_ms=1) as src:
        veth.send([frame] * 200)  # nobody reads: two one-frame blocks fill, the rest is dropped
        first = dict(src.read_kernel_stats())
        assert first["kernel_drops"] > 150
        assert first["kernel_packets"] == 200  # the kernel counts the dropped ones as received
        again = dict(src.read_kernel_stats())  # the kernel reset its counters: ours keep the total
        assert again["kernel_drops"] == first["kernel_drops"]
        veth.send([frame] * 100)
        third = src.read_kernel_stats()
        assert third["kernel_drops"] == first["kernel_drops"] + 100
        assert third["kernel_packets"] == 300
        got = collect(src, 2)  # what did fit is still delivered intact
        assert got and all(f == frame for _, _, f in got)


@needs_root
def test_open_errors_are_clear() -> None:
    with pytest.raises(CaptureOpenError, match="no such network interface"):
        AfPacketSource("ea-no-such-if")
    with pytest.raises(CaptureOpenError, match="page size"):
        AfPacketSource("lo", block_size=5000)


# ---------------------------------------------------------------------------------------------
# fanout
# ---------------------------------------------------------------------------------------------

def _flow_of(frame: bytes) -> tuple[bytes, ...]:
    ip = frame[14:]
    a, b = ip[12:16] + ip[20:22], ip[16:20] + ip[22:24]
    return (min(a, b), max(a, b))  # direction-free


@needs_root
def test_fanout_hash_keeps_each_flow_in_one_socket(veth: Veth) -> None:
    frames = []
    for i in range(64):
        c, s = f"10.1.{i // 200}.{i % 200 + 1}", "10.9.0.1"
        for k in range(5):  # both directions, interleaved with the other flows' packets
            frames.append(eth(tcp(c, 40000 + i, s, 443, k, 0x10, b"x" * k)))
            frames.append(eth(tcp(s, 443, c, 40000 + i, k, 0x10), src=MAC_B, dst=MAC_A))
    group = os.getpid() & 0xFFFF
    with small_ring(veth, fanout_group=group) as s1, small_ring(veth, fanout_group=group) as s2:
        veth.send(frames)
        got1: Batch = []
        got2: Batch = []
        deadline = time.monotonic() + DEADLINE_S
        while len(got1) + len(got2) < len(frames) and time.monotonic() < deadline:
            for src, got in ((s1, got1), (s2, got2)):
                src.wait(10)
                batch = src.read_block()
                if batch:
                    got.extend(batch)
        assert len(got1) + len(got2) == len(frames)
        flows1 = {_flow_of(f) for _, _, f in got1}
        flows2 = {_flow_of(f) for _, _, f in got2}
        assert flows1 and flows2  # both sockets got work
        assert not flows1 & flows2  # and no flow was split between them
        assert len(flows1 | flows2) == 64


# ---------------------------------------------------------------------------------------------
# BPF
# ---------------------------------------------------------------------------------------------

def test_parse_ddd_reads_tcpdump_output_and_refuses_garbage() -> None:
    assert parse_ddd("2\n40 0 0 12\n6 0 0 262144\n") == ((40, 0, 0, 12), (6, 0, 0, 262144))
    for bad in ("", "x\n", "2\n40 0 0 12\n", "1\n40 0 0\n", "1\n40 0 0 99999999999\n"):
        with pytest.raises(BpfError):
            parse_ddd(bad)


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_bad_filter_expression_reports_tcpdump_message() -> None:
    with pytest.raises(BpfError, match="nonsense"):
        compile_filter("tcp port nonsense")


@needs_root
@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump is not installed")
def test_bpf_filter_drops_what_it_should(veth: Veth) -> None:
    prog = compile_filter("udp port 53", ifname=veth.b)
    keep = [eth(udp("10.0.4.1", 3333, "10.0.4.2", 53, b"q%d" % i)) for i in range(20)]
    drop = ([eth(udp("10.0.4.1", 3333, "10.0.4.2", 54, b"x"))] * 20
            + [eth(tcp("10.0.4.1", 3333, "10.0.4.2", 53, 1, 0x02))] * 20)
    with small_ring(veth, bpf=prog) as src:
        mixed = [f for pair in zip(keep, drop[:20], drop[20:], strict=True) for f in pair]
        veth.send(mixed)
        veth.send([keep[0]])  # a last kept frame: once it is read, everything before it was decided
        got = collect(src, len(keep) + 1)
        assert [f for _, _, f in got] == keep + [keep[0]]
        assert src.read_kernel_stats()["kernel_packets"] == len(keep) + 1  # filtered before counting


# ---------------------------------------------------------------------------------------------
# workers
# ---------------------------------------------------------------------------------------------

class _JsonlPipeline:
    """A real Pipeline whose sink appends records to one file per worker (the test reads them)."""

    def __init__(self, index: int, out: Path) -> None:
        from agent.pipeline import Pipeline

        self.path = out / f"worker-{index}.jsonl"
        self.f = self.path.open("w")
        self.p = Pipeline(self.sink, decoders=False)

    def sink(self, records: list[dict[str, Any]]) -> None:
        for r in records:
            self.f.write(json.dumps(r) + "\n")

    def feed(self, batch: Batch, nbytes: int | None = None) -> None:
        self.p.feed(batch, nbytes)

    def finish(self) -> None:
        self.p.finish()
        self.f.write(json.dumps({"type": "done", "packets": self.p.packets}) + "\n")
        self.f.close()


@needs_root
def test_workers_share_flows_and_flush_on_sigterm(veth: Veth, tmp_path: Path) -> None:
    flows = 40
    frames = []
    for i in range(flows):
        c, s = f"10.2.0.{i + 1}", "10.9.9.9"
        frames.append(eth(tcp(c, 50000 + i, s, 80, 100, 0x02)))  # SYN
        frames.append(eth(tcp(s, 80, c, 50000 + i, 500, 0x12), src=MAC_B, dst=MAC_A))  # SYN-ACK
        frames.append(eth(tcp(c, 50000 + i, s, 80, 101, 0x18, b"hello %d" % i)))  # data, never closed
    cfg = CaptureConfig(veth.b, block_size=1 << 16, block_nr=8, retire_ms=5, stats_interval=0.2)
    pool = WorkerPool(cfg, lambda i, src: _JsonlPipeline(i, tmp_path), workers=2)
    pool.start()
    try:
        veth.send(frames)
        deadline = time.monotonic() + DEADLINE_S
        while pool.counters()["packets"] < len(frames) and time.monotonic() < deadline:
            time.sleep(0.02)  # polling shared counters for a condition, not a stand-in for sync
        assert pool.counters()["packets"] == len(frames)
    finally:
        codes = pool.stop(timeout=20)
    assert codes == [0, 0], pool.errors
    sessions = []
    done = 0
    per_worker_sessions = []
    for i in range(2):
        recs = [json.loads(ln) for ln in (tmp_path / f"worker-{i}.jsonl").read_text().splitlines()]
        assert recs[-1]["type"] == "done"  # finish() ran: the SIGTERM flushed
        done += recs[-1]["packets"]
        mine = [r for r in recs if r["type"] == "session"]
        per_worker_sessions.append(len(mine))
        sessions += mine
    assert done == len(frames)
    assert len(sessions) == flows  # every open flow flushed once, none split between workers
    assert all(n > 0 for n in per_worker_sessions)
    assert pool.counters()["kernel_drops"] == 0


@needs_root
def test_worker_failure_to_open_is_reported() -> None:
    pool = WorkerPool(CaptureConfig("ea-no-such-if"), lambda i, src: _JsonlPipeline(i, Path("/nonexistent")),
                      workers=1)
    with pytest.raises(RuntimeError, match="no such network interface"):
        pool.start()
    assert pool.join(5) == [1]


@needs_root
def test_worker_sigterm_with_a_silent_interface_exits_promptly(veth: Veth, tmp_path: Path) -> None:
    pool = WorkerPool(CaptureConfig(veth.b, block_size=1 << 16, block_nr=2, stats_interval=3600),
                      lambda i, src: _JsonlPipeline(i, tmp_path), workers=1)
    pool.start()
    t0 = time.monotonic()
    os.kill(pool.pids()[0], signal.SIGTERM)
    assert pool.join(10) == [0]
    assert time.monotonic() - t0 < 0.9  # the wake-up pipe ends the poll: no idle timeout waited out
