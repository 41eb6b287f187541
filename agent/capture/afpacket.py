"""Live capture: an AF_PACKET socket with a TPACKET_V3 memory-mapped receive ring.

What
    ``AfPacketSource(ifname)`` opens a raw packet socket on one interface, maps a
    TPACKET_V3 ring (``PACKET_RX_RING`` with a ``tpacket_req3``) and yields the
    captured frames as batches of ``(timestamp, link type, frame bytes)``: one batch
    per block the kernel retired, the shape ``Pipeline.feed`` takes (DESIGN.md, "The
    agent's data path" 1).  Optionally the socket joins a ``PACKET_FANOUT`` group
    (hash of the flow, IP fragments reassembled first, so every packet of a flow lands
    in the same socket; ``agent.capture.workers`` runs one per process) and gets a
    classic BPF filter (``agent.capture.bpf``).  The kernel's own counters
    (``PACKET_STATISTICS``) are read and accumulated into ``counters``.

Why
    Per-packet ``recv()`` costs a system call and an allocation per frame (about 3x
    the ring's cost in pure Python), scapy's ``sniff`` about 200x.  With TPACKET_V3
    the kernel writes frames back to back into blocks of shared memory and hands a
    whole block over at once (when it is full or after ``retire_ms``); one ``poll()``
    wakes the reader for thousands of frames, and the per-packet work is one
    ``struct.unpack_from`` of the ``tpacket3_hdr`` and one slice that copies the
    frame out.  The block goes back to the kernel (``block_status =
    TP_STATUS_KERNEL``) as soon as its frames are copied, *before* the batch is
    processed, so the ring is free to fill while the pipeline works.

How (``linux/if_packet.h``)
    * socket(AF_PACKET, SOCK_RAW, 0): no traffic until the ring and filter are in
      place; then PACKET_VERSION = TPACKET_V3, PACKET_RX_RING, mmap, SO_ATTACH_FILTER,
      bind(ifname, ETH_P_ALL), and last PACKET_FANOUT (the kernel wants a bound socket).
    * Block descriptor (``tpacket_block_desc``/``tpacket_hdr_v1``): block_status at
      byte 8, num_pkts at 12, offset_to_first_pkt at 16.  Frames
      (``tpacket3_hdr``): tp_next_offset, tp_sec, tp_nsec, tp_snaplen, tp_len,
      tp_status, tp_mac, tp_net, then tp_rxhash, tp_vlan_tci, tp_vlan_tpid.
    * VLAN: the receive path takes the outer 802.1Q/802.1ad tag off the frame
      (``skb_vlan_untag``, hardware offload or not) and reports it in tp_vlan_tci
      with ``TP_STATUS_VLAN_VALID`` (and its TPID with ``TP_STATUS_VLAN_TPID_VALID``).
      The decoders expect the tag inline (``agent.decode.link``: ethertype 0x8100 or
      0x88a8 after the MAC addresses, as in a pcap written by libpcap, which does the
      same re-insertion), so it is put back: dst, src, TPID, TCI, rest of the frame.
      Counted in ``counters["vlan_restored"]``.
    * Link type from ``/sys/class/net/IF/type`` (ARPHRD_*): Ethernet and loopback ->
      LINKTYPE_ETHERNET; ARPHRD_NONE, RAWIP and IP tunnels -> LINKTYPE_RAW.  Other
      device types are refused (``CaptureOpenError``) rather than mis-decoded.
    * Timestamps: ``tp_sec + tp_nsec / 1e9`` (software receive time of each frame).

Counters (``counters``, cumulative; DESIGN.md standard 6: dropped-with-reason)
    packets, bytes (captured bytes), blocks, snapped (frame longer than what the ring
    kept: tp_snaplen < tp_len), vlan_restored, kernel_packets, kernel_drops (frames the
    kernel could not put in the ring: the reader was too slow), kernel_freeze_q (times
    the ring was full).  The kernel *resets* its statistics on every read, so
    ``read_kernel_stats()`` adds them up here; it is called on every ``poll`` that
    times out and by ``close()``, and callers may call it at any time (e.g. before a
    ``stats`` record).

Limits
    * Linux only, CAP_NET_RAW needed.  One interface per source (no "any").
    * Ring memory per socket = block_size x blocks (defaults 1 MiB x 32 = 32 MiB, page
      aligned); a frame longer than a block minus its headers is truncated (counted as
      ``snapped``).  ``snaplen`` truncates on purpose (the frame is still counted).
    * With fanout, the few frames that arrive between ``bind`` and joining the group go
      to this socket alone (hash placement starts when the group is joined).
    * Timestamps are Python floats: microseconds survive, nanoseconds do not.
    * Only the outermost VLAN tag is stripped by the kernel; inner tags (QinQ) stay in
      the frame, where the decoder reads them.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import socket
import struct
from collections.abc import Iterator
from types import TracebackType
from typing import Final

from agent.capture import linktypes
from agent.capture.bpf import BpfProgram, attach_filter

__all__ = [
    "DEFAULT_BLOCK_NR",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_RETIRE_MS",
    "AfPacketSource",
    "Batch",
    "CaptureOpenError",
]

Batch = list[tuple[float, int, bytes]]

# --- linux/if_packet.h, linux/if_ether.h -------------------------------------------------------

SOL_PACKET: Final = 263
PACKET_ADD_MEMBERSHIP: Final = 1
PACKET_RX_RING: Final = 5
PACKET_STATISTICS: Final = 6
PACKET_VERSION: Final = 10
PACKET_FANOUT: Final = 18
PACKET_MR_PROMISC: Final = 1
TPACKET_V3: Final = 2

PACKET_FANOUT_HASH: Final = 0
PACKET_FANOUT_FLAG_ROLLOVER: Final = 0x1000
PACKET_FANOUT_FLAG_DEFRAG: Final = 0x8000

ETH_P_ALL: Final = 0x0003

TP_STATUS_KERNEL: Final = 0
TP_STATUS_USER: Final = 1
TP_STATUS_VLAN_VALID: Final = 1 << 4
TP_STATUS_VLAN_TPID_VALID: Final = 1 << 6

ETH_P_8021Q: Final = 0x8100

# ARPHRD_* (linux/if_arp.h) -> link type of the frames the ring delivers (SOCK_RAW)
ARPHRD_LINKTYPES: Final[dict[int, int]] = {
    1: linktypes.ETHERNET,  # ARPHRD_ETHER
    772: linktypes.ETHERNET,  # ARPHRD_LOOPBACK (zero MAC addresses, ethertype set)
    0xFFFE: linktypes.RAW,  # ARPHRD_NONE: tun devices, wireguard
    519: linktypes.RAW,  # ARPHRD_RAWIP
    768: linktypes.RAW,  # ARPHRD_TUNNEL (ipip)
    769: linktypes.RAW,  # ARPHRD_TUNNEL6
    776: linktypes.RAW,  # ARPHRD_SIT
}

# tpacket_req3: block size, block nr, frame size, frame nr, retire_blk_tov (ms), sizeof_priv,
# feature_req_word
_REQ3: Final = struct.Struct("=7I")
# tpacket_hdr_v1 inside the block descriptor: block_status, num_pkts, offset_to_first_pkt
_BLOCK: Final = struct.Struct("=III")
_BLOCK_STATUS_OFF: Final = 8
# tpacket3_hdr up to tp_mac: next_offset, sec, nsec, snaplen, len, status, mac
_HDR: Final = struct.Struct("=6IH")
_VLAN_OFF: Final = 32  # tp_vlan_tci (u32), then tp_vlan_tpid (u16)
_VLAN: Final = struct.Struct("=IH")
_STATS_V3: Final = struct.Struct("=3I")  # tp_packets, tp_drops, tp_freeze_q_cnt
_U32: Final = struct.Struct("=I")
_KERNEL_STATUS: Final = _U32.pack(TP_STATUS_KERNEL)

# Defaults: 32 blocks of 1 MiB. A block holds ~1,100 frames of the generated gateway mix
# (~900 bytes each), so at 150,000 packets/s a block retires every ~7 ms and the ring buffers
# ~0.2 s of traffic at that rate for a worker that falls behind (a GC pause, a burst).
DEFAULT_BLOCK_SIZE: Final = 1 << 20
DEFAULT_BLOCK_NR: Final = 32
DEFAULT_RETIRE_MS: Final = 10  # a block is handed over after 10 ms even if not full
FRAME_SIZE: Final = 2048  # V3 ignores it for placement, but the kernel checks block % frame == 0


class CaptureOpenError(Exception):
    """The interface cannot be captured on (missing, wrong type, no permission, bad ring size).

    `errno` is the system error behind it, if any (EPERM: not root; ENOMEM: ring too big).
    Not an OSError subclass, so that mypyc can compile the module.
    """

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


def interface_linktype(ifname: str) -> int:
    """The link type of frames captured on `ifname`, from its ARPHRD type in sysfs."""
    try:
        with open(f"/sys/class/net/{ifname}/type") as f:
            arphrd = int(f.read().strip())
    except (OSError, ValueError) as e:
        raise CaptureOpenError(f"{ifname}: no such network interface ({e})") from e
    lt = ARPHRD_LINKTYPES.get(arphrd)
    if lt is None:
        raise CaptureOpenError(f"{ifname}: device type ARPHRD {arphrd} is not supported for capture")
    return lt


class AfPacketSource:
    """One AF_PACKET TPACKET_V3 ring on one interface; iterate `batches()` for captured frames."""

    def __init__(self, ifname: str, *, block_size: int = DEFAULT_BLOCK_SIZE,
                 block_nr: int = DEFAULT_BLOCK_NR, retire_ms: int = DEFAULT_RETIRE_MS,
                 fanout_group: int | None = None, fanout_flags: int = PACKET_FANOUT_FLAG_DEFRAG,
                 bpf: BpfProgram | None = None, promisc: bool = False, snaplen: int = 0) -> None:
        if block_size < FRAME_SIZE or block_size % mmap.PAGESIZE:
            raise CaptureOpenError(f"block size {block_size}: must be a multiple of the page size "
                                   f"({mmap.PAGESIZE}) and at least {FRAME_SIZE}")
        if block_nr < 1:
            raise CaptureOpenError(f"block count {block_nr}: must be at least 1")
        if fanout_group is not None and not 0 <= fanout_group <= 0xFFFF:
            raise CaptureOpenError(f"fanout group {fanout_group}: must be 0..65535")
        self.ifname = ifname
        self.linktype = interface_linktype(ifname)
        self.block_size = block_size
        self.block_nr = block_nr
        self.snaplen = snaplen  # 0 = whole frame (as far as the block holds it)
        self.counters: dict[str, int] = {
            "packets": 0, "bytes": 0, "blocks": 0, "snapped": 0, "vlan_restored": 0,
            "kernel_packets": 0, "kernel_drops": 0, "kernel_freeze_q": 0,
        }
        self._block = 0  # next block to read
        self._closed = False
        try:
            ifindex = socket.if_nametoindex(ifname)
        except OSError as e:
            raise CaptureOpenError(f"{ifname}: no such network interface") from e
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: receives nothing yet
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            req = _REQ3.pack(block_size, block_nr, FRAME_SIZE, block_size // FRAME_SIZE * block_nr,
                             retire_ms, 0, 0)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self._mm = mmap.mmap(sock.fileno(), block_size * block_nr, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
            if bpf is not None:
                attach_filter(sock, bpf)
            sock.bind((ifname, ETH_P_ALL))
            if promisc:
                # packet_mreq: ifindex, type, alen, address[8]; dropped with the socket
                mreq = struct.pack("=iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            if fanout_group is not None:
                arg = fanout_group | ((PACKET_FANOUT_HASH | fanout_flags) << 16)
                sock.setsockopt(SOL_PACKET, PACKET_FANOUT, _U32.pack(arg))  # > INT_MAX with DEFRAG
        except OSError as e:
            self._abandon(sock)
            msg = f"{ifname}: cannot open the capture ring: {e.strerror or e}"
            raise CaptureOpenError(msg, e.errno) from e
        except BaseException:
            self._abandon(sock)
            raise
        self.sock = sock
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN | select.POLLERR)

    def _abandon(self, sock: socket.socket) -> None:
        mm = getattr(self, "_mm", None)
        if mm is not None:
            mm.close()
        sock.close()

    # --- reading ------------------------------------------------------------------------------

    def fileno(self) -> int:
        return self.sock.fileno()

    def ready(self) -> bool:
        """The next block is the reader's (a `read_block` would return frames)."""
        return bool(_U32.unpack_from(self._mm, self._block * self.block_size + _BLOCK_STATUS_OFF)[0]
                    & TP_STATUS_USER)

    def wait(self, timeout_ms: int) -> bool:
        """Wait until a block is ready or `timeout_ms` passed (-1: forever); True if ready.

        A timeout also folds the kernel's statistics into `counters`. Signals interrupt
        the wait only if their handler raises (PEP 475); see `workers` for a wake-up fd.
        """
        if self.ready():
            return True
        self._poll.poll(timeout_ms)
        if self.ready():
            return True
        self.read_kernel_stats()
        return False

    def read_block(self) -> Batch | None:
        """Copy the frames of the next retired block out and give the block back; None if not ready."""
        mm = self._mm
        base = self._block * self.block_size
        status, num, off = _BLOCK.unpack_from(mm, base + _BLOCK_STATUS_OFF)
        if not status & TP_STATUS_USER:
            return None
        hdr = _HDR.unpack_from
        lt = self.linktype
        snaplen = self.snaplen
        batch: Batch = []
        add = batch.append
        pos = base + off
        nbytes = 0
        snapped = 0
        vlans = 0
        for _ in range(num):
            nxt, sec, nsec, caplen, wirelen, st, mac = hdr(mm, pos)
            start = pos + mac
            if snaplen and caplen > snaplen:
                caplen = snaplen
            elif caplen < wirelen:
                snapped += 1
            if st & TP_STATUS_VLAN_VALID:
                tci, tpid = _VLAN.unpack_from(mm, pos + _VLAN_OFF)
                if not st & TP_STATUS_VLAN_TPID_VALID:
                    tpid = ETH_P_8021Q
                frame = b"".join((mm[start:start + 12], struct.pack("!HH", tpid, tci & 0xFFFF),
                                  mm[start + 12:start + caplen]))
                vlans += 1
            else:
                frame = mm[start:start + caplen]
            add((sec + nsec / 1e9, lt, frame))
            nbytes += len(frame)
            pos += nxt
        # every frame is copied: give the block back to the kernel before the batch is processed
        mm[base + _BLOCK_STATUS_OFF:base + _BLOCK_STATUS_OFF + 4] = _KERNEL_STATUS
        self._block = (self._block + 1) % self.block_nr
        c = self.counters
        c["blocks"] += 1
        c["packets"] += num
        c["bytes"] += nbytes
        if snapped:
            c["snapped"] += snapped
        if vlans:
            c["vlan_restored"] += vlans
        return batch

    def batches(self, timeout_ms: int = 100) -> Iterator[Batch]:
        """Yield one batch per retired block, forever; an empty batch after `timeout_ms` of silence.

        The empty batch lets a caller check a stop flag or write a stats record between
        blocks; it is never passed on to the kernel's accounting.
        """
        while True:
            batch = self.read_block()
            if batch is None:
                self.wait(timeout_ms)
                batch = self.read_block()
                if batch is None:
                    yield []
                    continue
            yield batch

    def drain(self) -> Iterator[Batch]:
        """Yield the blocks already retired to the reader, without waiting (for a final flush)."""
        while True:
            batch = self.read_block()
            if batch is None:
                return
            yield batch

    # --- kernel statistics ----------------------------------------------------------------------

    def read_kernel_stats(self) -> dict[str, int]:
        """Read PACKET_STATISTICS (which resets them in the kernel) and add them to `counters`."""
        if self._closed:
            return self.counters
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS_V3.size)
        packets, drops, freeze = _STATS_V3.unpack(raw)
        c = self.counters
        # tp_packets counts received frames including the dropped ones (packet_getsockopt adds
        # tp_drops to it); kernel_packets keeps the kernel's meaning
        c["kernel_packets"] += packets
        c["kernel_drops"] += drops
        c["kernel_freeze_q"] += freeze
        return c

    # --- life cycle ---------------------------------------------------------------------------

    def close(self) -> None:
        if self._closed:
            return
        with contextlib.suppress(OSError):
            self.read_kernel_stats()
        self._closed = True
        self._poll.unregister(self.sock.fileno())
        self._mm.close()
        self.sock.close()

    def __enter__(self) -> AfPacketSource:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def default_fanout_group() -> int:
    """A fanout group id unique to this process tree (the parent's pid, folded to 16 bits)."""
    return os.getpid() & 0xFFFF
