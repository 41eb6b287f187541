"""Coverage-guided fuzzing (atheris, libFuzzer) of the batch decoder and every protocol decoder.

What: one fuzz target per decoder an attacker can feed: `batch` (the collector's ingest worker,
`collector.ingest.decoding.decode_packed`: zstd, msgpack envelope, validation, granule packing)
and one per registered protocol (`agent.protocols.registry.specs()`: the TCP stream decoders
fed both directions in chunks with a gap, the UDP ones datagram by datagram, the DHCP tracker,
the PPPoE link decoder). Each target runs in its own process for `--seconds` (default 600,
the issue's 10 minutes) and may raise only what its contract documents: `DecodeError` from a
protocol decoder (it becomes a `weird`), nothing from `decode_packed` (a refusal comes back as
its message). Anything else is a crash: libFuzzer stops, keeps the input under
`bench/out/fuzz/<target>/crash-*`, and the summary says so; a crash found becomes a regression
test in tests/ (the input as bytes in the test).

Seeds: the corpus captures (../shared/corpus) are read with the agent's own packet decoder;
each TCP connection's two directions (in sequence order) and each UDP datagram or PPPoE frame go
to the seed directory of the protocol `agent.flows.classify` names them; the batch target's
seeds are real batch payloads of those captures' records. Inputs the fuzzer finds are kept in
`bench/out/fuzz/<target>/corpus`, so a later run starts where the last one stopped.

Input format of a stream target: byte 0 picks the chunk size, byte 1 the options (bit 0: a gap
after the first originator chunk, bit 1: the responder speaks first); the rest is the
originator's bytes, `SPLIT`, the responder's. Datagram targets: datagrams separated by `SPLIT`.

Runs interpreted (atheris instruments Python bytecode; the compiled build is the same source).
Needs atheris (`.venv/bin/pip install atheris`: bench-only, not a test dependency).

    .venv/bin/python bench/fuzz_decoders.py                      # every target, 600 s each
    .venv/bin/python bench/fuzz_decoders.py --seconds 30 --targets http,batch --jobs 2
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out" / "fuzz"
CORPUS = REPO.parent / "shared" / "corpus"
SPLIT = b"\x00EAFZ\x00"  # between the directions (stream) or the datagrams
CHUNKS = (1, 2, 3, 7, 16, 64, 512, 1460, 1 << 16)
MAX_SEED = 1 << 16
sys.path.insert(0, str(REPO))


# -- the targets ----------------------------------------------------------------------------------


def stream_target(service: str) -> Callable[[bytes], None]:
    from agent.decode.errors import DecodeError
    from agent.protocols.registry import decoder_kind

    kind = decoder_kind(service, "tcp", body_keep=4096)
    assert kind is not None

    def one(data: bytes) -> None:
        if len(data) < 2:
            return
        chunk = CHUNKS[data[0] % len(CHUNKS)]
        opts = data[1]
        orig, _, resp = data[2:].partition(SPLIT)
        dec = kind.factory()
        ts = 1.0
        try:
            sides = [(False, resp), (True, orig)] if opts & 2 else [(True, orig), (False, resp)]
            pos = [0, 0]
            gap = bool(opts & 1)
            while pos[0] < len(sides[0][1]) or pos[1] < len(sides[1][1]):
                for i, (is_orig, buf) in enumerate(sides):
                    if pos[i] < len(buf):
                        dec.feed(is_orig, buf[pos[i]:pos[i] + chunk], ts)
                        pos[i] += chunk
                        ts += 0.01
                        if gap and is_orig:
                            dec.gap(True, 100, ts)
                            gap = False
            dec.close(ts)
        except DecodeError:
            pass

    return one


def datagram_target(service: str) -> Callable[[bytes], None]:
    from agent.decode.errors import DecodeError
    from agent.protocols.registry import decoder_kind

    kind = decoder_kind(service, "udp")
    assert kind is not None

    def one(data: bytes) -> None:
        dec = kind.factory()
        ts = 1.0
        try:
            for i, d in enumerate(data.split(SPLIT)):
                dec.feed(i % 2 == 0, d, ts)
                ts += 0.01
            dec.close(ts)
        except DecodeError:
            pass

    return one


def dhcp_target() -> Callable[[bytes], None]:
    from agent.decode.errors import DecodeError
    from agent.protocols.registry import trackers

    def one(data: bytes) -> None:
        tracker = trackers()["dhcp"]
        ts = 1.0
        for i, d in enumerate(data.split(SPLIT)):
            with contextlib.suppress(DecodeError):
                tracker.message(ts, f"C{i}", d, "0.0.0.0" if i % 2 == 0 else "192.0.2.1", "255.255.255.255")
            ts += 1.0
            tracker.expire(ts)
        tracker.close(ts + 3600)

    return one


def pppoe_target() -> Callable[[bytes], None]:
    from agent.decode.errors import DecodeError
    from agent.protocols.registry import link_decoders

    def one(data: bytes) -> None:
        dec = link_decoders()[0]
        ts = 1.0
        for i, d in enumerate(data.split(SPLIT)):
            macs = ("02:00:00:00:00:01", "02:00:00:00:00:02")[:: 1 if i % 2 == 0 else -1]
            try:
                if d[:1] == b"\x00" or len(d) < 3:  # a discovery frame's payload
                    dec.discovery(ts, macs[0], macs[1], d[1:])
                else:  # session traffic: 2 bytes of PPP protocol, then its payload
                    dec.session_control(ts, macs[0], macs[1], 1, struct.unpack("!H", d[1:3])[0], d[3:])
            except DecodeError:
                pass
            dec.auth_events()
            ts += 0.5

    return one


def batch_target() -> Callable[[bytes], None]:
    import zstandard

    from collector.ingest.decoding import decode_packed

    compress = zstandard.ZstdCompressor(level=1).compress

    def one(data: bytes) -> None:
        decode_packed(compress(data))  # a refusal is returned as its message, never raised

    return one


def targets() -> dict[str, Callable[[], Callable[[bytes], None]]]:
    from agent.protocols.registry import specs

    found: dict[str, Callable[[], Callable[[bytes], None]]] = {"batch": batch_target}
    for spec in specs():
        name = spec.name
        if spec.decoder is not None and "tcp" in spec.transports:
            found[name] = lambda n=name: stream_target(n)  # type: ignore[misc]
        if spec.decoder is not None and "udp" in spec.transports:
            found[f"{name}-udp"] = lambda n=name: datagram_target(n)  # type: ignore[misc]
    found["dhcp"] = dhcp_target
    found["pppoe"] = pppoe_target
    return found


# -- seeds from the corpus ------------------------------------------------------------------------


def _frames(path: Path) -> Iterator[tuple[float, int, bytes]]:
    import dpkt

    with path.open("rb") as fh:
        try:
            reader: Any = dpkt.pcapng.Reader(fh) if path.suffix == ".pcapng" else dpkt.pcap.Reader(fh)
        except ValueError:
            fh.seek(0)
            reader = dpkt.pcapng.Reader(fh)
        linktype = reader.datalink()
        for ts, frame in reader:
            yield float(ts), linktype, bytes(frame)


def write_seeds() -> dict[str, int]:
    """Seed files for every target from the corpus captures; returns the count per target."""
    from agent.decode.packet import Decoder
    from agent.flows.classify import classifier

    classify = classifier()
    streams: dict[tuple[bytes, int, bytes, int], dict[int, bytes]] = {}
    first: dict[tuple[bytes, int, bytes, int], bool] = {}  # connection key -> the originator's direction
    seeds: dict[str, list[bytes]] = {}
    records: list[dict[str, Any]] = []
    for path in sorted(CORPUS.rglob("*.pcap*")):
        dec = Decoder()
        try:
            frames = list(_frames(path))
        except (ValueError, OSError, struct.error):
            continue
        for ts, linktype, frame in frames:
            if len(frame) > 14 and frame[12:14] in (b"\x88\x63", b"\x88\x64"):
                body = frame[14:]
                seed = b"\x00" + body if frame[13] == 0x63 else b"\x01" + body[6:]
                seeds.setdefault("pppoe", []).append(seed)
                continue
            try:
                pkt = dec.decode(ts, linktype, frame)
            except Exception:  # noqa: BLE001 - a seed extractor skips what it cannot read
                continue
            if pkt is None:
                continue
            src, dst, proto, _iplen, buf, off, l4len, *_ = pkt
            seg = bytes(buf[off:off + l4len])
            if proto == 17 and len(seg) > 8:
                sport, dport = struct.unpack("!HH", seg[:4])
                svc = classify.datagram(seg[8:], sport, dport)
                if svc is not None:
                    seeds.setdefault(svc if svc == "dhcp" else f"{svc}-udp", []).append(seg[8:])
            elif proto == 6 and len(seg) >= 20:
                sport, dport, seq, _ack, offflags = struct.unpack("!HHIIH", seg[:14])
                data = seg[(offflags >> 10) & 0x3C:]
                key = (src, sport, dst, dport)
                rkey = (dst, dport, src, sport)
                conn = key if key in first or rkey not in first else rkey
                first.setdefault(conn, True)
                if data:
                    streams.setdefault(key, {}).setdefault(seq, data)
    for (src, sport, dst, dport) in first:
        o = _stream(streams.get((src, sport, dst, dport), {}))
        r = _stream(streams.get((dst, dport, src, sport), {}))
        svc = classify.stream(o[:256], True, dport) or classify.stream(r[:256], False, dport) \
            or classify.pair(o[:256], r[:256])
        if svc is not None and (o or r):
            seeds.setdefault(svc, []).append(bytes([5, 0]) + o[:MAX_SEED] + SPLIT + r[:MAX_SEED])
    records = _corpus_records()
    if records:
        seeds["batch"] = [_batch_payload(records[i:i + 50], i) for i in range(0, min(len(records), 5000), 50)]
    counts = {}
    known = targets()
    for target, items in seeds.items():
        if target not in known:
            continue
        d = OUT / target / "corpus"
        d.mkdir(parents=True, exist_ok=True)
        for item in items[:500]:
            (d / hashlib.sha1(item).hexdigest()).write_bytes(item)
        counts[target] = min(len(items), 500)
    return counts


def _stream(segments: dict[int, bytes]) -> bytes:
    if not segments:
        return b""
    base = min(segments)
    out = bytearray()
    for seq in sorted(segments):
        rel = (seq - base) & 0xFFFFFFFF
        data = segments[seq]
        if rel + len(data) > len(out):
            out += data[max(0, len(out) - rel):]
    return bytes(out)


def _corpus_records() -> list[dict[str, Any]]:
    """Records of a few corpus captures, as the agent makes them."""
    import tempfile

    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, path in enumerate(sorted(CORPUS.rglob("*.pcap"))[:40]):
            jsonl = Path(tmp) / f"{i}.jsonl"
            subprocess.run([sys.executable, "-m", "agent.cli", "replay", str(path), "--jsonl", str(jsonl)],
                           cwd=REPO, capture_output=True, timeout=120)
            if jsonl.exists():
                out += [json.loads(line) for line in jsonl.read_text().splitlines() if line.startswith("{")]
    return out


def _batch_payload(records: list[dict[str, Any]], seq: int) -> bytes:
    import msgpack

    from wire.version import SCHEMA_VERSION

    return bytes(msgpack.packb({"v": SCHEMA_VERSION, "agent_id": "fuzz", "unit_id": "u", "batch_seq": seq,
                                "created": 1.0, "records": records}, use_bin_type=True))


# -- running ---------------------------------------------------------------------------------------


def run_one(name: str) -> None:
    """Inside the child: fuzz `name` with libFuzzer's arguments from the command line."""
    import atheris

    fn = targets()[name]()  # (imports every decoder module, then they are all instrumented)
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], *sys.argv[3:]], fn)
    atheris.Fuzz()


def fuzz(name: str, seconds: int) -> dict[str, Any]:
    d = OUT / name
    corpus = d / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run", name, f"-max_total_time={seconds}",
           "-print_final_stats=1", f"-artifact_prefix={d}/", "-rss_limit_mb=4096", "-timeout=20", str(corpus)]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - t0
    (d / "log.txt").write_text(proc.stderr[-200_000:])
    stats = dict(re.findall(r"stat::(\w+):\s+(\d+)", proc.stderr))
    cov = re.findall(r"cov: (\d+) ft: (\d+)", proc.stderr)
    crashes = sorted(p.name for p in d.glob("crash-*")) + sorted(p.name for p in d.glob("timeout-*"))
    exc = re.findall(r"=== Uncaught Python exception: ===\n(.+)", proc.stderr)
    return {"target": name, "seconds": round(wall), "exit": proc.returncode,
            "execs": int(stats.get("number_of_executed_units", 0)), "coverage": int(cov[-1][0]) if cov else 0,
            "features": int(cov[-1][1]) if cov else 0, "corpus": len(list(corpus.iterdir())),
            "crashes": crashes, "exception": exc[-1] if exc else None}


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--run":
        run_one(sys.argv[2])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=600, help="per target (default 600)")
    ap.add_argument("--targets", default="", help="comma-separated (default: all)")
    ap.add_argument("--jobs", type=int, default=1, help="targets fuzzed at once")
    ap.add_argument("--no-seeds", action="store_true", help="do not (re)write the corpus seeds")
    a = ap.parse_args()
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("fuzz_decoders: atheris is not installed (.venv/bin/pip install atheris)", file=sys.stderr)
        return 2
    names = [t for t in (a.targets.split(",") if a.targets else targets())]
    unknown = set(names) - set(targets())
    if unknown:
        print(f"fuzz_decoders: unknown targets {sorted(unknown)}; known: {sorted(targets())}",
              file=sys.stderr)
        return 2
    if not a.no_seeds and CORPUS.is_dir():
        print(f"seeds: {write_seeds()}", flush=True)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(a.jobs) as pool:
        results = list(pool.map(lambda n: fuzz(n, a.seconds), names))
    print(f"\n{'target':12} {'s':>5} {'execs':>10} {'cov':>6} {'corpus':>7}  result")
    for r in results:
        verdict = "ok" if not r["crashes"] and r["exit"] == 0 else f"CRASH {r['crashes']} {r['exception']}"
        print(f"{r['target']:12} {r['seconds']:>5} {r['execs']:>10,} {r['coverage']:>6} {r['corpus']:>7}"
              f"  {verdict}")
    (OUT / "summary.json").write_text(json.dumps(results, indent=2) + "\n")
    return 1 if any(r["crashes"] or r["exit"] for r in results) else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
