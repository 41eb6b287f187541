"""Minimal classic-pcap writer (little-endian, microsecond timestamps, Ethernet link type).

Design: records are queued as (header, frame) byte pairs and written with one
``writelines`` per :data:`FLUSH_RECORDS` records, which costs far less per
packet than two ``write`` calls. Timestamps are float seconds; the
microsecond part is truncated, matching the reference generator.
"""

from __future__ import annotations

import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

PCAP_MAGIC_USEC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1
SNAPLEN = 65535
FLUSH_RECORDS = 8192

_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")


class PcapWriter:
    """Writes Ethernet frames to a pcap file; use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self._f: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()/__exit__
        self._f.write(_FILE_HEADER.pack(PCAP_MAGIC_USEC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_ETHERNET))
        self._pending: list[bytes] = []

    def write(self, ts: float, frame: bytes) -> None:
        sec = int(ts)
        n = len(frame)
        pending = self._pending
        pending.append(_RECORD_HEADER.pack(sec, int((ts - sec) * 1e6), n, n))
        pending.append(frame)
        if len(pending) >= 2 * FLUSH_RECORDS:
            self.flush()

    def flush(self) -> None:
        self._f.writelines(self._pending)
        self._pending.clear()

    def close(self) -> None:
        if not self._f.closed:
            self.flush()
            self._f.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
