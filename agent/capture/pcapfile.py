"""Capture-file reader: classic pcap and pcapng files -> ``(ts, linktype, frame)``.

What
    ``CaptureFile(path)`` memory-maps a capture file and yields packets as
    ``(timestamp seconds as float, link type, frame bytes)`` tuples, one at a
    time (``iter``) or in lists (``batches``), which is the shape every
    edgeaudit capture source produces (DESIGN.md, "The agent's data path" 1).
    Formats:

    * classic pcap, either byte order, microsecond (magic 0xa1b2c3d4) and
      nanosecond (0xa1b23c4d) timestamps;
    * pcapng: any number of sections, each in its own byte order; Interface
      Description Blocks with per-interface link type, ``if_tsresol`` (decimal
      and binary powers) and ``if_tsoffset``; Enhanced, Simple and the obsolete
      Packet Blocks.  Every other block type (statistics, name resolution,
      decryption secrets, custom) is skipped and counted.

Why
    Replaying a file must give the same records as live capture, and it feeds
    the same pure-Python pipeline at line rate, so the classic-pcap loop is the
    hot path: one precompiled ``struct.Struct.unpack_from`` on the mmap per
    record, locals only, the frame sliced straight from the mmap to ``bytes``,
    and no per-packet bounds checks (see ``_pcap_batches`` for how truncation
    is still caught exactly).  dpkt and scapy are not used here: their
    per-packet objects cost several times more (dpkt.pcap.Reader alone runs at
    about a fifth of this reader's rate).

Errors
    Damage raises ``CaptureError(path, offset, message)`` naming the byte
    offset of the bad record or block, but only after every complete packet
    before it has been yielded, so a caller keeps everything up to the damage.
    A file that is not a capture at all (or is empty, or shorter than its
    header) fails in the constructor with offset 0.  ``CaptureFile.offset`` is
    the number of bytes consumed so far, for progress reporting; after an
    error it stays at the bad record, so iterating again raises again.

Limits
    * Regular files only (mmap): no pipes or stdin, and a file that is still
      being written is read up to the size it had when opened.
    * Timestamps are Python floats (about 0.24 us resolution at today's epoch
      seconds): microseconds survive (``f"{ts:.6f}"`` gives them back exactly),
      nanoseconds do not.  Every format computes ``seconds + fraction / units``
      (a correctly rounded int/int division, then one addition), which is
      libpcap's and Zeek's ``tv_sec + tv_usec / 1e6``: bit-identical floats to
      theirs for a microsecond file, and one float for one instant whether it
      is stored in pcap or pcapng at the same resolution.
    * The classic header's ``thiszone``/``sigfigs`` are ignored (libpcap does
      too), and so are the FCS bits of its link-type field.
    * A Simple Packet Block has no timestamp; it gets the timestamp of the
      previous packet in the file (0.0 if none) so time never runs backwards,
      and is counted in ``counters["spb_packets"]``.
    * Classic records longer than ``max(snaplen, 262144)`` bytes (libpcap's
      limit) are treated as damage, as libpcap does.
    * One pass: a second ``iter``/``batches`` resumes where the last one stopped,
      like a file object; open the file again to re-read it.
"""

from __future__ import annotations

import mmap
import os
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import repeat
from types import TracebackType
from typing import TYPE_CHECKING, Final

from librt.strings import read_i32_le

if TYPE_CHECKING:
    from agent.decode.packet import Packet as DecodedPacket

__all__ = ["CaptureError", "CaptureFile", "Packet", "PcapRegion", "open_capture"]

Packet = tuple[float, int, bytes]
"""One captured frame: (timestamp in seconds since the epoch, link type, frame bytes)."""

# --- classic pcap --------------------------------------------------------------------------------

_MAGIC_USEC: Final = 0xA1B2C3D4
_MAGIC_NSEC: Final = 0xA1B23C4D
# Alexey Kuznetzov's patched libpcap wrote 8 extra bytes per record header; long obsolete, so it
# is recognised only to give a better error than "not a capture file".
_MAGIC_KUZNETZOV: Final = 0xA1B2CD34
_PCAP_HEADER_LEN: Final = 24
_PCAP_RECORD_LEN: Final = 16
# libpcap's MAXIMUM_SNAPLEN: a longer record is taken as a corrupt header, not as a real frame.
_PCAP_MAX_CAPLEN: Final = 262144
# Upper 6 bits of the classic link-type field carry FCS information (LT_FCS_* in libpcap).
_LINKTYPE_MASK: Final = 0x03FFFFFF

# --- pcapng --------------------------------------------------------------------------------------

_SHB: Final = 0x0A0D0D0A  # palindromic: reads the same in both byte orders
_IDB: Final = 0x00000001
_PB: Final = 0x00000002  # obsolete Packet Block
_SPB: Final = 0x00000003
_EPB: Final = 0x00000006
_BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D
_SHB_MIN_LEN: Final = 28  # type, length, BOM, major, minor, section length, trailing length
_IDB_MIN_LEN: Final = 20
_EPB_MIN_LEN: Final = 32
_PB_MIN_LEN: Final = 32
_SPB_MIN_LEN: Final = 16
_OPT_ENDOFOPT: Final = 0
_OPT_IF_TSRESOL: Final = 9
_OPT_IF_TSOFFSET: Final = 14
_DEFAULT_TS_DIVISOR: Final = 1_000_000  # if_tsresol absent: microseconds

_GZIP_MAGIC: Final = b"\x1f\x8b"


#: Bytes of the file's map copied out at a time by `read_records` (a record longer is copied whole).
READ_CHUNK: Final = 1 << 20
# compiled by mypyc: librt's single loads beat a struct unpack's tuple of boxed integers
COMPILED: Final = not __file__.endswith(".py")


class CaptureError(Exception):
    """A capture file is not a capture, or is damaged at ``offset``.

    ``str(e)`` is the single line ``"<path>: offset <offset>: <message>"``.
    """

    path: str
    offset: int
    message: str

    def __init__(self, path: str, offset: int, message: str) -> None:
        # One line whatever the message, so logs and stats stay line-oriented.
        message = message.replace("\r", " ").replace("\n", " ")
        # Passing all three to Exception keeps the error picklable (worker processes).
        super().__init__(path, offset, message)
        self.path = path
        self.offset = offset
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: offset {self.offset}: {self.message}"


class _Oversize(Exception):
    """Internal: a classic record's captured length is beyond any sane snaplen."""


class _NgStructs:
    """Precompiled structs for one pcapng byte order, so no format string is parsed per block."""

    __slots__ = ("head", "u32", "epb", "pb", "idb", "opt", "i64", "version")

    def __init__(self, order: str) -> None:
        self.head = struct.Struct(order + "II")  # block type, block total length
        self.u32 = struct.Struct(order + "I")
        # An EPB's fixed part from its start: type, length, if id, ts high, ts low, caplen, original len.
        self.epb = struct.Struct(order + "IIIIIII")
        self.pb = struct.Struct(order + "HHIIII")  # if id, drops, ts high, ts low, caplen, original len
        self.idb = struct.Struct(order + "HHI")  # link type, reserved, snaplen
        self.opt = struct.Struct(order + "HH")  # option code, option length
        self.i64 = struct.Struct(order + "q")
        self.version = struct.Struct(order + "HH")


_NG_STRUCTS: Final = {"<": _NgStructs("<"), ">": _NgStructs(">")}

# One pcapng interface: (link type, timestamp units per second, if_tsoffset seconds, snaplen).
_Interface = tuple[int, int, int, int]


@dataclass(frozen=True)
class PcapRegion:
    """The unread records of a classic pcap file, for a consumer that parses them in place.

    `read_records` reads record headers and
    frames from megabyte copies of the map, so a packet on its fast path is
    never sliced into a `bytes` object of its own or wrapped in a tuple. It consumes complete,
    sane records only and reports how far it got with `CaptureFile.consumed`;
    `batches()` then resumes there, so damage at the end of a file is found and
    reported exactly as usual.
    """

    buf: mmap.mmap
    start: int  # offset of the first unread record header
    end: int  # file size
    linktype: int
    record: struct.Struct  # the record header: seconds, fraction, captured length, original length
    ts_divisor: int  # fractions per second (10**6 or 10**9)
    max_caplen: int  # a longer captured length is damage, not a packet


class RecordSink:
    """What `read_records` hands a classic pcap's records to: the flow table
    (`agent.flows.table.FlowTable` subclasses it). A native base class, not a Protocol:
    compiled, the per-packet calls through it are direct vtable calls."""

    def __init__(self, fast_path: bool) -> None:
        self.fast_path = fast_path  # False: every packet through `process`
        self.next_scan = 0.0  # packet time at which `scan` is next due

    def scan(self, ts: float) -> None:
        """Time reached `ts` (>= next_scan): time flows out, write interim records."""
        raise NotImplementedError

    def fast(self, ts: float, buf: bytes, p: int, caplen: int) -> bool:
        """Take the Ethernet frame at `buf[p:p + caplen]` on the fast path, or say False."""
        raise NotImplementedError

    def process(self, ts: float, pkt: DecodedPacket) -> None:
        """A decoded packet the fast path did not take."""
        raise NotImplementedError


def read_records(region: PcapRegion, table: RecordSink,
                 decode: Callable[[float, int, bytes], DecodedPacket | None],
                 max_packets: int) -> tuple[int, int, int, int, float | None, float | None]:
    """Run up to `max_packets` records of a classic pcap file through `table`.

    The file's map is copied out `READ_CHUNK` bytes at a time into a `bytes`
    object, which the compiled fast path reads with single machine loads
    (`librt.strings`); a frame on the fast path is never sliced out on its
    own. The others are sliced for the general decoder. Stops before the
    first record that is incomplete or implausible, leaving it to the
    reader to report. Returns (offset reached, packets, frame bytes,
    snapped records, first and last timestamp).
    """
    mm = region.buf
    end = region.end
    linktype = region.linktype
    rec = region.record.unpack_from
    little = region.record.format.startswith("<")
    # float division of the exact integers: the same correctly rounded value as libpcap's
    # sec + usec / 1e6 and as the reader's int / int, at a fraction of the cost
    div = float(region.ts_divisor)
    max_caplen = region.max_caplen
    use_fast = linktype == 1 and table.fast_path
    slow = table.process
    next_scan = table.next_scan
    off = region.start
    n = nbytes = snapped = 0
    first_ts: float | None = None
    ts = 0.0
    sec: int
    frac: int
    caplen: int
    wirelen: int
    chunk = b""  # mm[base:base + len(chunk)]
    base = off
    clen = 0
    while n < max_packets:
        if off + 16 > end:
            break
        lo = off - base
        if lo + 16 > clen:
            chunk = mm[off:off + READ_CHUNK]
            base = off
            lo = 0
            clen = len(chunk)
        if little and COMPILED:
            sec = int(read_i32_le(chunk, lo)) & 0xFFFFFFFF
            frac = int(read_i32_le(chunk, lo + 4)) & 0xFFFFFFFF
            caplen = int(read_i32_le(chunk, lo + 8)) & 0xFFFFFFFF
            wirelen = int(read_i32_le(chunk, lo + 12)) & 0xFFFFFFFF
        else:
            sec, frac, caplen, wirelen = rec(chunk, lo)
        nxt = off + 16 + caplen
        if nxt > end or caplen > max_caplen:
            break
        if lo + 16 + caplen > clen:  # the record runs past the copy: copy again from it
            chunk = mm[off:off + max(READ_CHUNK, 16 + caplen)]
            base = off
            lo = 0
            clen = len(chunk)
        p = lo + 16
        ts = sec + frac / div
        if first_ts is None:
            first_ts = ts
        if ts >= next_scan:
            table.scan(ts)
            next_scan = table.next_scan
        n += 1
        nbytes += caplen
        if caplen < wirelen:
            snapped += 1
        off = nxt
        if use_fast and table.fast(ts, chunk, p, caplen):  # (not a bound method: a direct call)
            continue
        pkt = decode(ts, linktype, chunk[p:p + caplen])
        if pkt is not None:
            slow(ts, pkt)
    return off, n, nbytes, snapped, first_ts, (ts if n else None)



class CaptureFile:
    """A classic pcap or pcapng file, read through mmap.

    Use as a context manager (or call ``close``).  Iterate for packets, or call
    ``batches(n)`` for lists of up to ``n`` packets, the cheaper form.

    Attributes:
        path: the file name as given (``os.fspath``).
        size: file size in bytes.
        offset: bytes consumed so far (headers and yielded records); ``offset / size``
            is the progress.  After a CaptureError it is the bad record's offset.
        counters: ``packets``, ``bytes`` (captured bytes yielded), ``truncated_records``
            (captured length < original length, i.e. snapped: normal, only counted),
            ``caplen_gt_wirelen``, and for pcapng ``sections``, ``interfaces``,
            ``blocks_skipped``, ``spb_packets``.  Updated once per batch.
        format: ``"pcap"`` or ``"pcapng"``.
        linktype: the classic file's link type; None for pcapng, where each packet
            carries its interface's.
    """

    path: str
    size: int
    offset: int
    counters: dict[str, int]
    format: str
    linktype: int | None

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.offset = 0
        # Fixed key set, so a stats reporter sees the same keys for every file.
        self.counters = {
            "packets": 0,  # packets yielded
            "bytes": 0,  # captured frame bytes yielded
            "truncated_records": 0,  # caplen < original length (snapped by snaplen): normal, counted
            "caplen_gt_wirelen": 0,  # caplen > original length: writer bug, frame still yielded
            "sections": 0,  # pcapng sections seen
            "interfaces": 0,  # pcapng interface description blocks seen
            "blocks_skipped": 0,  # pcapng blocks of types that carry no packets
            "spb_packets": 0,  # packets from Simple Packet Blocks (no timestamp of their own)
        }
        self.format = ""
        self.linktype = None
        self._mm: mmap.mmap | None = None
        # classic pcap state
        self._record = struct.Struct("<IIII")
        self._ts_divisor = _DEFAULT_TS_DIVISOR
        self._max_caplen = _PCAP_MAX_CAPLEN
        # pcapng state, carried between calls to batches()
        self._order = "<"
        self._interfaces: list[_Interface] = []
        self._last_ts = 0.0

        fobj = open(self.path, "rb")  # noqa: SIM115 -- kept open for the mmap's lifetime, closed in close()
        try:
            st = os.fstat(fobj.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise CaptureError(self.path, 0, "not a regular file (only regular files can be mapped)")
            self.size = st.st_size
            if self.size == 0:
                raise CaptureError(self.path, 0, "empty file: no capture header")
            # No madvise(MADV_SEQUENTIAL): measured 15% slower on a cached file (Linux 6.x).
            # No MAP_POPULATE either: measured no faster than faulting pages in as the reader
            # advances, and it would read a file larger than memory in before the first packet.
            self._mm = mmap.mmap(fobj.fileno(), 0, access=mmap.ACCESS_READ)
            self._read_file_header()
        except BaseException:
            if self._mm is not None:
                self._mm.close()
                self._mm = None
            fobj.close()
            raise
        self._file = fobj

    # --- public API ----------------------------------------------------------------------------

    def __enter__(self) -> CaptureFile:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Unmap and close the file; idempotent."""
        if self._mm is not None:
            self._mm.close()
            self._mm = None
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._mm is None

    def __iter__(self) -> Iterator[Packet]:
        for batch in self.batches():
            yield from batch

    def pcap_region(self) -> PcapRegion | None:
        """The unread records for in-place parsing (classic pcap only; None for pcapng or closed)."""
        if self._mm is None or self.format != "pcap" or self.linktype is None:
            return None
        return PcapRegion(self._mm, self.offset, self.size, self.linktype, self._record, self._ts_divisor,
                          self._max_caplen)

    def consumed(self, offset: int, packets: int, nbytes: int, snapped: int = 0) -> None:
        """A `pcap_region` consumer processed `packets` whole records (`nbytes` frame bytes) up to `offset`.

        `snapped`: how many of them were cut by the snap length (captured < original length).
        """
        self.offset = offset
        self.counters["packets"] += packets
        self.counters["bytes"] += nbytes
        self.counters["truncated_records"] += snapped

    def batches(self, n: int = 4096) -> Iterator[list[Packet]]:
        """Yield lists of up to ``n`` packets (the last may be shorter; none is empty)."""
        if n < 1:
            raise ValueError(f"batch size must be at least 1, got {n}")
        if self._mm is None:
            raise ValueError("I/O operation on closed capture file")
        if self.format == "pcap":
            return self._pcap_batches(n)
        return self._pcapng_batches(n)

    def __repr__(self) -> str:
        state = "closed" if self._mm is None else f"offset {self.offset} of {self.size}"
        return f"<CaptureFile {self.path!r} {self.format} {state}>"

    # --- opening -------------------------------------------------------------------------------

    def _error(self, offset: int, message: str) -> CaptureError:
        return CaptureError(self.path, offset, message)

    def _read_file_header(self) -> None:
        mm = self._mm
        assert mm is not None
        if self.size < 4:
            raise self._error(0, f"file too short for a capture header ({self.size} bytes)")
        (magic,) = struct.unpack_from("<I", mm, 0)
        if magic == _SHB:
            self.format = "pcapng"
            self.offset = self._read_section_header(0)
            return
        for order in ("<", ">"):
            (m,) = struct.unpack_from(order + "I", mm, 0)
            if m in (_MAGIC_USEC, _MAGIC_NSEC):
                self._read_pcap_header(order, nanosecond=m == _MAGIC_NSEC)
                return
            if m == _MAGIC_KUZNETZOV:
                raise self._error(0, "unsupported pcap variant (Kuznetzov modified pcap, magic 0xa1b2cd34)")
        if mm[:2] == _GZIP_MAGIC:
            raise self._error(0, "not a capture file: gzip-compressed (decompress it first)")
        raise self._error(0, f"not a capture file: unknown magic 0x{magic:08x}")

    def _read_pcap_header(self, order: str, *, nanosecond: bool) -> None:
        mm = self._mm
        assert mm is not None
        if self.size < _PCAP_HEADER_LEN:
            raise self._error(
                0, f"truncated pcap file header: {self.size} of {_PCAP_HEADER_LEN} bytes present"
            )
        major, minor, _thiszone, _sigfigs, snaplen, network = struct.unpack_from(order + "HHiIII", mm, 4)
        if major != 2:
            raise self._error(0, f"unsupported pcap version {major}.{minor}")
        self.format = "pcap"
        self.linktype = network & _LINKTYPE_MASK
        self._record = struct.Struct(order + "IIII")
        self._ts_divisor = 1_000_000_000 if nanosecond else 1_000_000
        self._max_caplen = max(snaplen, _PCAP_MAX_CAPLEN)
        self.offset = _PCAP_HEADER_LEN

    # --- classic pcap: the hot loop ------------------------------------------------------------

    def _pcap_batches(self, n: int) -> Iterator[list[Packet]]:
        # Everything the loop touches is a local: attribute and global lookups cost as much as the
        # arithmetic.  The loop has no bounds checks of its own:
        #  * unpack_from raises struct.error once fewer than 16 bytes remain at `off`, which ends
        #    the file (off == size) or reveals a truncated header (off < size);
        #  * slicing past the end of the mmap silently returns short bytes, so a record whose data
        #    runs past EOF leaves off > size; it can only be the last one appended, and it is taken
        #    back out after the loop.
        mm = self._mm
        assert mm is not None
        size = self.size
        unpack_from = self._record.unpack_from
        linktype = self.linktype
        assert linktype is not None
        div = self._ts_divisor
        max_caplen = self._max_caplen
        counters = self.counters
        off = self.offset
        caplen = wirelen = 0
        while True:
            batch_start = off
            batch: list[Packet] = []
            append = batch.append
            snapped = 0
            oversnapped = 0
            error: CaptureError | None = None
            done = False
            try:
                for _ in repeat(None, n):
                    sec, frac, caplen, wirelen = unpack_from(mm, off)
                    if caplen > max_caplen:
                        raise _Oversize
                    if caplen != wirelen:
                        if caplen < wirelen:
                            snapped += 1
                        else:
                            oversnapped += 1
                    start = off + 16
                    off = start + caplen
                    # The libpcap/Zeek formula (double(sec) + usec / 1e6): bit-identical timestamps
                    # to theirs for microsecond files; int / int is a correctly rounded division.
                    append((sec + frac / div, linktype, mm[start:off]))
            except struct.error:
                done = True
                if off < size:
                    error = self._error(
                        off, f"truncated record header: {size - off} of {_PCAP_RECORD_LEN} bytes present"
                    )
            except _Oversize:
                error = self._error(
                    off, f"record captured length {caplen} exceeds the maximum {max_caplen} (corrupt header?)"
                )
            if off > size:
                # The last record appended ran past EOF: take it back and report it.
                batch.pop()
                off -= _PCAP_RECORD_LEN + caplen
                if caplen < wirelen:
                    snapped -= 1
                elif caplen > wirelen:
                    oversnapped -= 1
                error = self._error(
                    off,
                    f"truncated record: {caplen} bytes of packet data expected, "
                    f"{size - off - _PCAP_RECORD_LEN} present",
                )
            count = len(batch)
            counters["packets"] += count
            counters["bytes"] += off - batch_start - _PCAP_RECORD_LEN * count
            counters["truncated_records"] += snapped
            counters["caplen_gt_wirelen"] += oversnapped
            self.offset = off
            if count:
                yield batch
            if error is not None:
                raise error
            if done:
                return

    # --- pcapng --------------------------------------------------------------------------------

    def _read_section_header(self, off: int) -> int:
        """Parse the Section Header Block at ``off``; start a new section; return the offset after it."""
        mm = self._mm
        assert mm is not None
        size = self.size
        if off + 12 > size:
            raise self._error(off, f"truncated section header block: {size - off} bytes present")
        (bom,) = struct.unpack_from("<I", mm, off + 8)
        if bom == _BYTE_ORDER_MAGIC:
            order = "<"
        elif bom == 0x4D3C2B1A:  # _BYTE_ORDER_MAGIC byte-swapped
            order = ">"
        else:
            raise self._error(off, f"section header block has bad byte-order magic 0x{bom:08x}")
        s = _NG_STRUCTS[order]
        blen: int = s.u32.unpack_from(mm, off + 4)[0]
        if blen < _SHB_MIN_LEN or blen % 4:
            raise self._error(off, f"invalid section header block length {blen}")
        self._check_block_fits(off, blen, s)
        major, minor = s.version.unpack_from(mm, off + 12)
        if major != 1:
            raise self._error(off, f"unsupported pcapng version {major}.{minor}")
        # A new section starts a new interface numbering and may switch byte order.
        self._order = order
        self._interfaces = []
        self.counters["sections"] += 1
        return off + blen

    def _check_block_fits(self, off: int, blen: int, s: _NgStructs) -> None:
        """Raise unless a block of length ``blen`` fits the file and its trailing length matches."""
        mm = self._mm
        assert mm is not None
        left = self.size - off
        if blen > left:
            raise self._error(off, f"truncated block: length {blen}, {left} bytes present")
        (trailer,) = s.u32.unpack_from(mm, off + blen - 4)
        if trailer != blen:
            raise self._error(off, f"block length mismatch: {blen} at start, {trailer} at end")

    def _read_interface(self, off: int, blen: int, s: _NgStructs) -> None:
        mm = self._mm
        assert mm is not None
        if blen < _IDB_MIN_LEN:
            raise self._error(off, f"interface description block too short ({blen} bytes)")
        linktype, _reserved, snaplen = s.idb.unpack_from(mm, off + 8)
        divisor = _DEFAULT_TS_DIVISOR
        tsoffset = 0
        p = off + 16
        stop = off + blen - 4
        while p + 4 <= stop:
            code, olen = s.opt.unpack_from(mm, p)
            p += 4
            if code == _OPT_ENDOFOPT:
                break
            if p + olen > stop:
                raise self._error(off, f"interface option {code} (length {olen}) runs past the block end")
            if code == _OPT_IF_TSRESOL:
                if olen != 1:
                    raise self._error(off, f"if_tsresol option has length {olen}, expected 1")
                resol = mm[p]
                # MSB clear: 10^-n seconds; MSB set: 2^-n seconds.
                divisor = 1 << (resol & 0x7F) if resol & 0x80 else 10**resol
            elif code == _OPT_IF_TSOFFSET:
                if olen != 8:
                    raise self._error(off, f"if_tsoffset option has length {olen}, expected 8")
                (tsoffset,) = s.i64.unpack_from(mm, p)
            p += (olen + 3) & ~3  # option values are padded to 32 bits
        self._interfaces.append((linktype, divisor, tsoffset, snaplen))
        self.counters["interfaces"] += 1

    def _pcapng_batches(self, n: int) -> Iterator[list[Packet]]:
        # Same shape as _pcap_batches, one block per turn.  Enhanced Packet Blocks dominate real
        # files, so the first unpack reads an EPB's whole fixed part (type .. original length)
        # at once; other block types use only the first two fields of it.
        mm = self._mm
        assert mm is not None
        size = self.size
        counters = self.counters
        error_ = self._error
        off = self.offset
        s = _NG_STRUCTS[self._order]
        head, u32, epb = s.head.unpack_from, s.u32.unpack_from, s.epb.unpack_from
        interfaces = self._interfaces
        last_ts = self._last_ts
        while True:
            batch: list[Packet] = []
            append = batch.append
            nbytes = 0
            snapped = 0
            oversnapped = 0
            skipped = 0
            spb = 0
            left = n
            error: CaptureError | None = None
            done = False
            try:
                while left:
                    if off + _EPB_MIN_LEN - 4 <= size:
                        btype, blen, ifid, hi, lo, caplen, wirelen = epb(mm, off)
                    elif off + 12 <= size:
                        # Too little left for an EPB's fixed part; the length checks below reject
                        # an EPB here before its other fields are used.
                        btype, blen = head(mm, off)
                        ifid = hi = lo = caplen = wirelen = 0
                    else:
                        done = True
                        if off < size:
                            raise error_(off, f"truncated block header: {size - off} of 12 bytes present")
                        break
                    if btype == _SHB:
                        # May switch byte order: rebind everything derived from it.
                        off = self._read_section_header(off)
                        s = _NG_STRUCTS[self._order]
                        head, u32, epb = s.head.unpack_from, s.u32.unpack_from, s.epb.unpack_from
                        interfaces = self._interfaces
                        continue
                    if blen < 12 or blen % 4:
                        raise error_(off, f"invalid block length {blen} (block type 0x{btype:08x})")
                    end = off + blen
                    if end > size:
                        raise error_(off, f"truncated block: length {blen}, {size - off} bytes present")
                    if u32(mm, end - 4)[0] != blen:
                        raise error_(
                            off, f"block length mismatch: {blen} at start, {u32(mm, end - 4)[0]} at end"
                        )
                    if btype in (_EPB, _PB):
                        # The obsolete Packet Block has the EPB's layout but a 16-bit interface id
                        # followed by a 16-bit drop count.
                        if btype == _EPB:
                            if blen < _EPB_MIN_LEN:
                                raise error_(off, f"enhanced packet block too short ({blen} bytes)")
                            min_len = _EPB_MIN_LEN
                        else:
                            if blen < _PB_MIN_LEN:
                                raise error_(off, f"packet block too short ({blen} bytes)")
                            ifid, _drops, hi, lo, caplen, wirelen = s.pb.unpack_from(mm, off + 8)
                            min_len = _PB_MIN_LEN
                        if caplen > blen - min_len:
                            raise error_(off, f"captured length {caplen} exceeds block length {blen}")
                        try:
                            linktype, div, tsoffset, _snaplen = interfaces[ifid]
                        except IndexError:
                            raise error_(off, f"packet refers to undefined interface {ifid}") from None
                        # Same formula as classic pcap, so one instant gives one float in both formats.
                        sec, frac = divmod((hi << 32) | lo, div)
                        last_ts = (sec + tsoffset) + frac / div
                        append((last_ts, linktype, mm[off + 28 : off + 28 + caplen]))
                    elif btype == _SPB:
                        if blen < _SPB_MIN_LEN:
                            raise error_(off, f"simple packet block too short ({blen} bytes)")
                        if not interfaces:
                            raise error_(off, "simple packet block before any interface description block")
                        linktype, _div, _tsoffset, snaplen = interfaces[0]
                        (wirelen,) = u32(mm, off + 8)
                        # The SPB has no captured length: it is the original length cut to the snaplen.
                        caplen = min(wirelen, snaplen) if snaplen else wirelen
                        if caplen > blen - _SPB_MIN_LEN:
                            raise error_(
                                off, f"simple packet block length {blen} too short for {caplen} bytes of data"
                            )
                        spb += 1
                        append((last_ts, linktype, mm[off + 12 : off + 12 + caplen]))
                    elif btype == _IDB:
                        self._read_interface(off, blen, s)
                        off = end
                        continue
                    else:
                        skipped += 1
                        off = end
                        continue
                    # Only packet blocks get here.
                    nbytes += caplen
                    if caplen != wirelen:
                        if caplen < wirelen:
                            snapped += 1
                        else:
                            oversnapped += 1
                    left -= 1
                    off = end
            except CaptureError as exc:
                error = exc
            counters["packets"] += len(batch)
            counters["bytes"] += nbytes
            counters["truncated_records"] += snapped
            counters["caplen_gt_wirelen"] += oversnapped
            counters["blocks_skipped"] += skipped
            counters["spb_packets"] += spb
            self.offset = off
            self._last_ts = last_ts
            if batch:
                yield batch
            if error is not None:
                raise error
            if done:
                return


def open_capture(path: str | os.PathLike[str]) -> CaptureFile:
    """Open a classic pcap or pcapng file; raises CaptureError if it is not one."""
    return CaptureFile(path)
