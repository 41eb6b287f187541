"""Inline mode: packets held by the kernel in an NFQUEUE, released or dropped by us.

What: `NfQueue` speaks the nfnetlink_queue protocol (linux/netfilter/nfnetlink_queue.h,
linux/netfilter/nfnetlink.h; netlink(7)) over ``socket(AF_NETLINK, SOCK_RAW,
NETLINK_NETFILTER)`` with nothing but `struct`: a ruleset rule such as
``meta l4proto tcp queue num 3 bypass`` hands each packet to queue 3; the kernel sends
us a copy (NFQNL_MSG_PACKET) and holds the packet until we answer with a verdict
(NFQNL_MSG_VERDICT accept/drop, or NFQNL_MSG_VERDICT_BATCH for every packet up to an
id). The agent inspects the copy; the packet that completes a `block` match is dropped
and the connection reset (DESIGN.md data path step 8, `agent.enforce.rst`).

Why no library: libnetfilter_queue's Python bindings are not packaged for us, and the
protocol is a handful of fixed structs and 4-byte aligned TLV attributes.

The protocol, as implemented here:
- every message is ``struct nlmsghdr`` (host byte order) with type
  ``NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_*``, then ``struct nfgenmsg`` (family, version
  NFNETLINK_V0, res_id = queue number, big-endian), then attributes (``struct nlattr``:
  u16 length, u16 type, host order; the value's integers big-endian; each attribute
  padded to 4 bytes; the type's top two bits are the NESTED/NET_BYTEORDER flags).
- setup: NFQNL_MSG_CONFIG with NFQA_CFG_CMD = {NFQNL_CFG_CMD_BIND, pf} binds the queue
  to this socket. The PF_UNBIND/PF_BIND commands older tools send first are no-ops
  since Linux 3.8 (the kernel returns at once), so we do not send them; on older
  kernels PF_UNBIND would also take the family away from every other queue user.
  Then one NFQNL_MSG_CONFIG with NFQA_CFG_PARAMS = {copy_range, NFQNL_COPY_PACKET}
  (copy up to copy_range bytes of each packet; 0 = the kernel's maximum),
  NFQA_CFG_QUEUE_MAXLEN (how many packets the kernel holds for us) and
  NFQA_CFG_FLAGS + NFQA_CFG_MASK (both are required) carrying NFQA_CFG_F_FAIL_OPEN.
  Setup messages ask for an ACK (NLM_F_ACK) so a refusal is raised where it happens:
  EPERM means no CAP_NET_ADMIN, or another socket already bound this queue number.
- packets: NFQA_PACKET_HDR {packet_id, hw_protocol, hook}, NFQA_MARK, NFQA_IFINDEX_INDEV,
  NFQA_IFINDEX_OUTDEV, NFQA_CAP_LEN (original length when the copy was cut short),
  NFQA_PAYLOAD (the IP packet, starting at the IP header). A datagram may hold several
  messages; each is parsed on its own.
- verdicts are sent without NLM_F_ACK (one message per packet is the hot path); the
  kernel still reports a failed one (e.g. ENOENT for an unknown id) as an NLMSG_ERROR,
  which `recv` counts in ``errors``.

Fail-open, the trade-off (``fail_open=True``, the default): when our queue already
holds ``max_len`` packets, or the kernel cannot put a message in our socket buffer,
the kernel ACCEPTS the packet instead of dropping it. A slow or stalled agent then
lets some traffic through uninspected (it is still counted by the kernel, and our
``enobufs`` counter shows socket-buffer overruns) instead of cutting the unit off the
internet. ``fail_open=False`` is fail-closed: nothing passes uninspected, and an
overloaded agent drops traffic. Neither covers an agent that is not running: with no
socket bound to the queue the kernel drops the packets, unless the rule says
``queue ... bypass`` (deploy it that way for fail-open). Packets still waiting for a
verdict when the socket closes are dropped by the kernel, so `close` first gives them
the default verdict (accept when fail-open).

Malformed input (truncated datagrams, bad lengths, unknown message types) never
raises out of `recv`/`handle`: it is counted in ``malformed``; when the packet id of a
broken packet message could still be read, that packet gets the default verdict at
once, so it does not hold a slot of the queue until we close.

Limits: ``RECV_BATCH`` datagrams per `recv` call (so one call cannot starve the
caller's other work); a datagram larger than ``RECV_BUFFER`` is counted malformed and
its packet left to the kernel; socket receive buffer ``DEFAULT_RCVBUF`` (set with
SO_RCVBUFFORCE when permitted, else SO_RCVBUF which net.core.rmem_max caps); queue
numbers are per network namespace (the socket's). Socket-buffer overruns (ENOBUFS) are
counted and reading goes on: the packets lost from the socket were accepted or
dropped by the kernel per the fail-open setting.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import socket
import struct
from types import TracebackType
from typing import Final, NamedTuple

NETLINK_NETFILTER: Final = 12
SOL_NETLINK: Final = 270
NETLINK_CAP_ACK: Final = 10  # error messages do not echo our whole request back
NETLINK_EXT_ACK: Final = 11  # error messages carry the kernel's explanation (NLMSGERR_ATTR_MSG)
SO_RCVBUFFORCE: Final = 33

NLMSG_NOOP: Final = 1
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLMSG_OVERRUN: Final = 4
NLM_F_REQUEST: Final = 0x01
NLM_F_ACK: Final = 0x04
NLM_F_CAPPED: Final = 0x100  # in an NLMSG_ERROR: the echoed request is only its header
NLM_F_ACK_TLVS: Final = 0x200  # in an NLMSG_ERROR: extended-ack attributes follow
NLMSGERR_ATTR_MSG: Final = 1
NLA_TYPE_MASK: Final = 0x3FFF  # without NLA_F_NESTED (0x8000) and NLA_F_NET_BYTEORDER (0x4000)

NFNL_SUBSYS_QUEUE: Final = 3
NFNETLINK_V0: Final = 0
NFQNL_MSG_PACKET: Final = 0
NFQNL_MSG_VERDICT: Final = 1
NFQNL_MSG_CONFIG: Final = 2
NFQNL_MSG_VERDICT_BATCH: Final = 3

NFQNL_CFG_CMD_BIND: Final = 1
NFQNL_CFG_CMD_UNBIND: Final = 2
NFQNL_COPY_PACKET: Final = 2

NFQA_PACKET_HDR: Final = 1
NFQA_VERDICT_HDR: Final = 2
NFQA_MARK: Final = 3
NFQA_IFINDEX_INDEV: Final = 5
NFQA_IFINDEX_OUTDEV: Final = 6
NFQA_PAYLOAD: Final = 10
NFQA_CAP_LEN: Final = 13

NFQA_CFG_CMD: Final = 1
NFQA_CFG_PARAMS: Final = 2
NFQA_CFG_QUEUE_MAXLEN: Final = 3
NFQA_CFG_MASK: Final = 4
NFQA_CFG_FLAGS: Final = 5
NFQA_CFG_F_FAIL_OPEN: Final = 1 << 0

NF_DROP: Final = 0
NF_ACCEPT: Final = 1

MAX_COPY_RANGE: Final = 0xFFFF  # the kernel caps a copy at 0xFFFF minus an attribute header
MAX_QUEUE_LEN: Final = 1 << 20  # beyond this the kernel holds more memory for us than is sane
RECV_BUFFER: Final = MAX_COPY_RANGE + 4096  # one message: a whole copy plus its headers and attributes
RECV_BATCH: Final = 256  # datagrams read per recv() call before returning to the caller
DEFAULT_RCVBUF: Final = 8 << 20  # socket buffer: absorbs bursts while a verdict is being decided
REQUEST_TIMEOUT: Final = 5.0  # seconds to wait for the kernel to acknowledge a setup message

_NLMSGHDR: Final = struct.Struct("=IHHII")
_NLATTR: Final = struct.Struct("=HH")
_NFGENMSG: Final = struct.Struct("!BBH")
_PACKET_HDR: Final = struct.Struct("!IHB")
_U32: Final = struct.Struct("!I")
_ERRNO: Final = struct.Struct("=i")
_NLMSG_ERROR_LEN: Final = _ERRNO.size + _NLMSGHDR.size
_SEQ_HALF: Final = 1 << 31


class QueuedPacket(NamedTuple):
    """One packet the kernel holds for our verdict.

    ``hw_protocol``: the link-layer protocol (0x0800 IPv4, 0x86DD IPv6); ``hook``: the
    netfilter hook (0 prerouting, 1 input, 2 forward, 3 output, 4 postrouting);
    ``payload``: the IP packet (at most ``copy_range`` bytes of it); ``indev`` /
    ``outdev``: interface indexes, None where the hook has none; ``family``: the
    nfgenmsg family (2 IPv4, 10 IPv6, 7 bridge); ``orig_len``: the packet's full length.
    """

    packet_id: int
    hw_protocol: int
    hook: int
    payload: bytes
    mark: int
    indev: int | None
    outdev: int | None
    family: int = 0
    orig_len: int = 0


class NetlinkError(NamedTuple):
    """An NLMSG_ERROR message: ``errno`` 0 is an acknowledgment."""

    seq: int
    errno: int
    message: str


class ParseResult(NamedTuple):
    """What one datagram from the kernel held."""

    packets: list[QueuedPacket]
    acks: list[NetlinkError]
    malformed: list[str]  # one reason per malformed message
    orphans: list[int]  # ids of packets whose message was malformed: they still need a verdict


def _attr(atype: int, value: bytes) -> bytes:
    n = _NLATTR.size + len(value)
    return _NLATTR.pack(n, atype) + value + b"\0" * (-n % 4)


def _message(msg: int, queue_num: int, attrs: bytes, flags: int, seq: int) -> bytes:
    body = _NFGENMSG.pack(socket.AF_UNSPEC, NFNETLINK_V0, queue_num) + attrs
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), NFNL_SUBSYS_QUEUE << 8 | msg,
                          NLM_F_REQUEST | flags, seq, 0) + body


def _attrs(data: bytes | memoryview, off: int, end: int) -> dict[int, tuple[int, int]] | str:
    """Attribute type -> (value offset, value length) for ``data[off:end]``, or why it is malformed."""
    out: dict[int, tuple[int, int]] = {}
    while off + _NLATTR.size <= end:
        alen, atype = _NLATTR.unpack_from(data, off)
        if alen < _NLATTR.size or off + alen > end:
            return f"attribute type {atype & NLA_TYPE_MASK} has length {alen}, {end - off} bytes left"
        out[atype & NLA_TYPE_MASK] = (off + _NLATTR.size, alen - _NLATTR.size)
        off += (alen + 3) & ~3
    if off < end and end - off >= 4:  # fewer than 4 bytes left can only be the last padding
        return f"{end - off} stray bytes after the attributes"
    return out


def _parse_packet(data: bytes | memoryview, off: int, end: int
                  ) -> tuple[QueuedPacket | None, str | None, int | None]:
    """(packet, None, None), or (None, why malformed, packet id if it could be read)."""
    if end - off < _NFGENMSG.size:
        return None, "packet message shorter than its nfgenmsg", None
    family = data[off]
    attrs = _attrs(data, off + _NFGENMSG.size, end)
    if isinstance(attrs, str):
        return None, f"packet message: {attrs}", None
    hdr = attrs.get(NFQA_PACKET_HDR)
    if hdr is None or hdr[1] < _PACKET_HDR.size:
        return None, "packet message without a packet header", None
    packet_id, hw_protocol, hook = _PACKET_HDR.unpack_from(data, hdr[0])

    def u32(atype: int) -> int | None:
        a = attrs.get(atype)
        if a is None:
            return None
        if a[1] < 4:
            raise ValueError(atype)
        return int(_U32.unpack_from(data, a[0])[0])

    try:
        mark, indev, outdev, cap_len = (u32(NFQA_MARK), u32(NFQA_IFINDEX_INDEV),
                                        u32(NFQA_IFINDEX_OUTDEV), u32(NFQA_CAP_LEN))
    except ValueError as e:
        return None, f"packet {packet_id}: attribute type {e.args[0]} shorter than 4 bytes", packet_id
    pl = attrs.get(NFQA_PAYLOAD)
    payload = bytes(data[pl[0]:pl[0] + pl[1]]) if pl is not None else b""
    return (QueuedPacket(packet_id, hw_protocol, hook, payload, mark or 0, indev, outdev, family,
                         cap_len if cap_len is not None else len(payload)), None, None)


def _parse_error(data: bytes | memoryview, off: int, end: int, seq: int, flags: int) -> NetlinkError | str:
    if end - off < _ERRNO.size:
        return "error message shorter than its error code"
    err = -int(_ERRNO.unpack_from(data, off)[0])
    text = ""
    if flags & NLM_F_ACK_TLVS and end - off >= _NLMSG_ERROR_LEN:
        # the echoed request: its header only when capped, else the whole of it
        echoed = _NLMSGHDR.size if flags & NLM_F_CAPPED else _NLMSGHDR.unpack_from(data, off + 4)[0]
        start = off + _ERRNO.size + ((echoed + 3) & ~3)
        attrs = _attrs(data, start, end) if start <= end else {}
        if isinstance(attrs, dict) and NLMSGERR_ATTR_MSG in attrs:
            a_off, a_len = attrs[NLMSGERR_ATTR_MSG]
            text = bytes(data[a_off:a_off + a_len]).rstrip(b"\0").decode("utf-8", "replace")
    return NetlinkError(seq, err, text)


def parse_datagram(data: bytes | memoryview) -> ParseResult:
    """Every message of one datagram from the kernel; never raises on malformed input."""
    res = ParseResult([], [], [], [])
    off, n = 0, len(data)
    while off < n:
        if n - off < _NLMSGHDR.size:
            res.malformed.append(f"{n - off} bytes left, too few for a netlink header")
            break
        length, mtype, flags, seq, _pid = _NLMSGHDR.unpack_from(data, off)
        if length < _NLMSGHDR.size or off + length > n:
            res.malformed.append(f"netlink message of length {length} with {n - off} bytes left")
            break
        body, end = off + _NLMSGHDR.size, off + length
        if mtype == NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_PACKET:
            pkt, why, orphan = _parse_packet(data, body, end)
            if pkt is not None:
                res.packets.append(pkt)
            else:
                res.malformed.append(why or "packet message")
                if orphan is not None:
                    res.orphans.append(orphan)
        elif mtype == NLMSG_ERROR:
            err = _parse_error(data, body, end, seq, flags)
            if isinstance(err, str):
                res.malformed.append(err)
            else:
                res.acks.append(err)
        elif mtype not in (NLMSG_NOOP, NLMSG_DONE, NLMSG_OVERRUN):
            res.malformed.append(f"unexpected message type {mtype:#x}")
        off += (length + 3) & ~3
    return res


def _after(a: int, b: int) -> bool:
    """Packet id ``a`` comes after ``b`` (32-bit ids wrap, as the kernel compares them)."""
    return 0 < (a - b) % (1 << 32) < _SEQ_HALF


class NfQueue:
    """One NFQUEUE queue bound to a netlink socket in the current network namespace."""

    def __init__(self, queue_num: int, *, copy_range: int = MAX_COPY_RANGE, max_len: int = 1024,
                 fail_open: bool = True, rcvbuf: int = DEFAULT_RCVBUF) -> None:
        if not 0 <= queue_num <= 0xFFFF:
            raise ValueError(f"queue number {queue_num} is not 0..65535")
        if not 0 <= copy_range <= MAX_COPY_RANGE:
            raise ValueError(f"copy_range {copy_range} is not 0..{MAX_COPY_RANGE}")
        if not 1 <= max_len <= MAX_QUEUE_LEN:
            raise ValueError(f"max_len {max_len} is not 1..{MAX_QUEUE_LEN}")
        self.queue_num = queue_num
        self.fail_open = fail_open
        # counters (Standards 3 and 6): in, out, and dropped with the reason
        self.received = 0  # packet messages parsed
        self.accepted = 0  # packets we accepted (batches: the outstanding ones they covered)
        self.dropped = 0  # packets we dropped
        self.enobufs = 0  # socket-buffer overruns: messages the kernel could not give us
        self.malformed = 0  # messages that could not be parsed (truncated datagrams included)
        self.errors = 0  # error messages from the kernel after setup (e.g. a verdict for an unknown id)
        self.last_error = ""
        self._seq = 0
        self._outstanding: set[int] = set()  # ids received and not yet given a verdict
        self._stash: list[QueuedPacket] = []  # packets that arrived while we waited for an ACK
        self._buf = bytearray(RECV_BUFFER)
        self._sock: socket.socket | None = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                                         NETLINK_NETFILTER)
        try:
            self._setup(copy_range, max_len, rcvbuf)
        except BaseException:
            self._sock.close()
            self._sock = None
            raise
        self._poll = select.poll()
        self._poll.register(self._sock.fileno(), select.POLLIN)

    # -- setup --------------------------------------------------------------------------------

    def _setup(self, copy_range: int, max_len: int, rcvbuf: int) -> None:
        sock = self._socket()
        sock.bind((0, 0))  # the kernel picks our port id
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except PermissionError:  # no CAP_NET_ADMIN: the ordinary option, capped by rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        for opt in (NETLINK_CAP_ACK, NETLINK_EXT_ACK):
            with contextlib.suppress(OSError):  # older kernels: plain error codes are enough
                sock.setsockopt(SOL_NETLINK, opt, 1)
        self._request(_attr(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, socket.AF_UNSPEC)),
                      "binding")
        flags = NFQA_CFG_F_FAIL_OPEN if self.fail_open else 0
        self._request(_attr(NFQA_CFG_PARAMS, struct.pack("!IB", copy_range, NFQNL_COPY_PACKET))
                      + _attr(NFQA_CFG_QUEUE_MAXLEN, _U32.pack(max_len))
                      + _attr(NFQA_CFG_FLAGS, _U32.pack(flags))
                      + _attr(NFQA_CFG_MASK, _U32.pack(NFQA_CFG_F_FAIL_OPEN)), "configuring")

    def _request(self, attrs: bytes, what: str) -> None:
        """Send a config message and wait for its ACK; packets arriving meanwhile are kept."""
        self._seq += 1
        seq = self._seq
        sock = self._socket()
        sock.send(_message(NFQNL_MSG_CONFIG, self.queue_num, attrs, NLM_F_ACK, seq))
        poll = select.poll()
        poll.register(sock.fileno(), select.POLLIN)
        while True:
            if not poll.poll(int(REQUEST_TIMEOUT * 1000)):
                raise TimeoutError(f"{what} NFQUEUE {self.queue_num}: no answer from the kernel "
                                   f"in {REQUEST_TIMEOUT:.0f} s")
            try:
                n = sock.recv_into(self._buf, len(self._buf), socket.MSG_TRUNC)
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.enobufs += 1
                    continue
                raise
            for ack in self._take(n):
                if ack.seq != seq:
                    continue
                if ack.errno == 0:
                    return
                detail = f" ({ack.message})" if ack.message else ""
                if ack.errno == errno.EPERM:
                    raise PermissionError(ack.errno, f"{what} NFQUEUE {self.queue_num}: operation not "
                                          f"permitted{detail}: it needs CAP_NET_ADMIN, and the queue "
                                          "must not be bound by another socket")
                raise OSError(ack.errno, f"{what} NFQUEUE {self.queue_num}: {os.strerror(ack.errno)}"
                              f"{detail}")

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise ValueError(f"NFQUEUE {self.queue_num} is closed")
        return self._sock

    # -- receiving ----------------------------------------------------------------------------

    def _take(self, n: int) -> list[NetlinkError]:
        """Parse ``n`` bytes just received into ``_buf``: stash packets, count, return the acks."""
        if n > len(self._buf):
            self.malformed += 1  # MSG_TRUNC told us the real size: the message was cut off
            return []
        res = parse_datagram(memoryview(self._buf)[:n])
        self.malformed += len(res.malformed)
        for pid in res.orphans:
            self.verdict(pid, self.fail_open)
        for p in res.packets:
            self._outstanding.add(p.packet_id)
        self.received += len(res.packets)
        self._stash.extend(res.packets)
        return res.acks

    def handle(self, data: bytes | memoryview) -> list[QueuedPacket]:
        """Parse one datagram read from `fileno` elsewhere (e.g. an event loop); like `recv`."""
        self._count_errors(self._take_bytes(data))
        out, self._stash = self._stash, []
        return out

    def _take_bytes(self, data: bytes | memoryview) -> list[NetlinkError]:
        n = len(data)
        if n > len(self._buf):
            self.malformed += 1
            return []
        self._buf[:n] = data
        return self._take(n)

    def _count_errors(self, acks: list[NetlinkError]) -> None:
        for a in acks:
            if a.errno:
                self.errors += 1
                self.last_error = f"seq {a.seq}: {os.strerror(a.errno)}" + (
                    f" ({a.message})" if a.message else "")

    def recv(self, timeout: float | None = None) -> list[QueuedPacket]:
        """The packets waiting now; waits up to ``timeout`` s (None: until one comes) when none is.

        Each returned packet needs a `verdict` (or a `verdict_batch` covering it).
        """
        sock = self._socket()
        if not self._stash:
            ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
            if not self._poll.poll(ms):
                return []
        for _ in range(RECV_BATCH):
            try:
                n = sock.recv_into(self._buf, len(self._buf), socket.MSG_DONTWAIT | socket.MSG_TRUNC)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno != errno.ENOBUFS:
                    raise
                # the kernel could not queue a message for us: that packet was accepted
                # (fail-open) or dropped; the socket is readable again, go on reading
                self.enobufs += 1
                continue
            self._count_errors(self._take(n))
        out, self._stash = self._stash, []
        return out

    # -- verdicts -----------------------------------------------------------------------------

    def verdict(self, packet_id: int, accept: bool, *, mark: int | None = None) -> None:
        """Release (``accept``) or drop one packet; ``mark`` sets its fwmark on the way."""
        self._send_verdict(NFQNL_MSG_VERDICT, packet_id, accept, mark)
        if accept:
            self.accepted += 1
        else:
            self.dropped += 1
        self._outstanding.discard(packet_id)

    def verdict_batch(self, max_id: int, accept: bool, *, mark: int | None = None) -> None:
        """One verdict for every packet still held with an id up to ``max_id``."""
        self._send_verdict(NFQNL_MSG_VERDICT_BATCH, max_id, accept, mark)
        covered = [i for i in self._outstanding if not _after(i, max_id)]
        self._outstanding.difference_update(covered)
        if accept:
            self.accepted += len(covered)
        else:
            self.dropped += len(covered)

    def _send_verdict(self, msg: int, packet_id: int, accept: bool, mark: int | None) -> None:
        if not 0 <= packet_id <= 0xFFFFFFFF:
            raise ValueError(f"packet id {packet_id} is not a 32-bit number")
        attrs = _attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT if accept else NF_DROP, packet_id))
        if mark is not None:
            attrs += _attr(NFQA_MARK, _U32.pack(mark & 0xFFFFFFFF))
        self._seq += 1
        self._socket().send(_message(msg, self.queue_num, attrs, 0, self._seq))

    # -- the rest -----------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """The counters, for the agent's `stats` record."""
        return {"received": self.received, "accepted": self.accepted, "dropped": self.dropped,
                "enobufs": self.enobufs, "malformed": self.malformed, "errors": self.errors,
                "outstanding": len(self._outstanding)}

    def fileno(self) -> int:
        return self._socket().fileno()

    def close(self) -> None:
        """Give held packets the default verdict (accept when fail-open), then close the socket."""
        if self._sock is None:
            return
        try:
            if self._outstanding:
                # the newest id covers all older ones; ids wrap, so compare as the kernel does
                newest = next(iter(self._outstanding))
                for i in self._outstanding:
                    if _after(i, newest):
                        newest = i
                self.verdict_batch(newest, self.fail_open)
        except OSError:
            pass  # closing anyway: the kernel drops what is still held
        finally:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> NfQueue:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
