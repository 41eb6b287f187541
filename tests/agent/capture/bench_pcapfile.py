"""Benchmark: packets per second of CaptureFile.batches() over a classic pcap.

What: writes a synthetic classic pcap (default 1,000,000 packets with a mix of frame sizes
from 54 to 1514 bytes, ~490 bytes on average, or all of --frame-size) and times full passes with
``CaptureFile.batches()``, printing the best pass (least disturbed by other load).

Why: the file reader feeds a 1 Gbit/s pipeline in pure Python; this is the number to watch
when the hot loop changes.  Not collected by pytest (the name does not start with test_);
test_capture_pcapfile.py runs it once on a small file to keep it working.

    .venv/bin/python tests/agent/capture/bench_pcapfile.py [--packets N] [--repeat R]
        [--frame-size BYTES] [--file PATH]
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import time

from agent.capture import CaptureFile

# A plausible edge mix: ACKs, DNS, mid-size, full-size frames.
_SIZES = (54, 60, 74, 342, 590, 1200, 1514, 66)


def write_pcap(path: str, packets: int, frame_size: int | None = None) -> None:
    """Write ``packets`` records of the size mix (or all of ``frame_size`` bytes)."""
    record = struct.Struct("<IIII")
    payload = bytes(range(256)) * 6
    sizes = _SIZES if frame_size is None else (frame_size,)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        chunk: list[bytes] = []
        for i in range(packets):
            size = sizes[i % len(sizes)]
            chunk.append(record.pack(1_700_000_000 + i // 1000, (i * 37) % 1_000_000, size, size))
            chunk.append(payload[:size])
            if len(chunk) >= 20_000:
                f.write(b"".join(chunk))
                chunk.clear()
        f.write(b"".join(chunk))


def one_pass(path: str) -> tuple[int, float, float]:
    """(packets, wall seconds, CPU seconds) for one full pass over batches()."""
    with CaptureFile(path) as cf:
        wall, cpu = time.perf_counter(), time.process_time()
        count = 0
        for batch in cf.batches():
            count += len(batch)
        return count, time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--frame-size", type=int, help="every frame this size (default: the mix)")
    parser.add_argument("--file", help="where to write the capture (default: a temporary file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.file or os.path.join(tmp, "bench.pcap")
        write_pcap(path, args.packets, args.frame_size)
        one_pass(path)  # warm the page cache so passes measure the reader, not the disk
        best_wall = best_cpu = float("inf")
        count = 0
        for _ in range(args.repeat):
            count, wall, cpu = one_pass(path)
            best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
        size = os.path.getsize(path)
    print(
        f"{count} packets ({size / 1e6:.0f} MB): best of {args.repeat}: "
        f"{count / best_wall:,.0f} packets/s wall, {count / best_cpu:,.0f} packets/s CPU, "
        f"{size * 8 / best_wall / 1e9:.2f} Gbit/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
