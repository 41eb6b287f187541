"""Zeek's TCP connection state machine, per packet, without payload.

What: `tcp_packet(conn, is_orig, flags, seq, ack, window, payload_len, ts)`
updates the two `TcpEndpoint`s of a connection exactly the way Zeek's
`TCPSessionAdapter::Process` does, so that `conn_state`, `history`,
`orig_bytes`/`resp_bytes` (from sequence numbers) and `missed_bytes` come out
as in Zeek's conn.log:

- endpoint states INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED,
  CLOSED, RESET and the transitions of `UpdateStateMachine`;
- history letters: S H A D F R once per direction (S/H/F/R again when their
  sequence number changes), I and Q for inconsistent flag combinations, T
  (retransmission), W (zero window) and G (content gap) scaled 1, 10, 100...
- sizes from the highest sequence number sent or acknowledged, minus the SYN
  and FIN octets (`TCP_Endpoint::Size`);
- gaps: when the peer acknowledges data this side never showed us, the
  missing bytes count into `missed_bytes`, as Zeek's reassembler reports them
  through `content_gap`, one G per hole (only when both sides are established
  or closed straight from established, not for the faked first octet of a
  partial connection, and never again for a direction once more than
  `MAX_ABOVE_HOLE_WITHOUT_ACKS` bytes waited above a hole before any of its
  data was acknowledged).

Sequence numbers are widened from 32 to 64 bits relative to the last value
seen on the same side, so wrap-around in multi-GB connections is handled.

Limits: out-of-order data above a hole is remembered as at most
`MAX_OOO_BLOCKS` ranges per direction (beyond that the oldest range is
dropped and counted by the caller via `ooo_dropped`); payload bytes are not
kept here (the reassembler of the protocol decoders does that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, cast

from agent.flows.side import Side
from wire.records import ConnState

if TYPE_CHECKING:
    from agent.flows.state import Flow

# Endpoint states (Zeek's TCP_ENDPOINT_*).
INACTIVE: Final = 0
SYN_SENT: Final = 1
SYN_ACK_SENT: Final = 2
PARTIAL: Final = 3
ESTABLISHED: Final = 4
CLOSED: Final = 5
RESET: Final = 6

FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20

# Zeek: TOO_LARGE_SEQ_DELTA; SYN/RST sequence jumps beyond this are not trusted.
TOO_LARGE_SEQ_DELTA: Final = 1048576
# Out-of-order ranges kept per direction to compute gaps; real streams rarely
# have more than a handful of holes in flight.
MAX_OOO_BLOCKS: Final = 64
# Zeek's tcp_max_above_hole_without_any_acks: when more than this waits above a hole and none
# of the direction's data was acknowledged yet, Zeek's reassembler gives up on the direction
# (skip_deliveries) and never reports its gaps.
MAX_ABOVE_HOLE_WITHOUT_ACKS: Final = 16384

_M32 = 0xFFFFFFFF
_WRAP: Final = 1 << 32

# history bits (one per letter and direction) for "record once" letters
H_SYN: Final = 1
H_ACK: Final = 2
H_DATA: Final = 4
H_FIN: Final = 8
H_RST: Final = 16
H_MULTI: Final = 32
H_FINRST: Final = 64


def seq_delta(a: int, b: int) -> int:
    """Signed 32-bit difference a - b, as Zeek's seq_delta."""
    d = (a - b) & _M32
    return d - _WRAP if d & 0x80000000 else d


class TcpEndpoint(Side):
    """One side of a TCP connection. Sequence fields are 64-bit widened values."""

    __slots__ = (
        "state", "prev_state", "start", "last", "ack", "fin_cnt", "rst_cnt", "fin_seq",
        "did_close", "last_syn", "last_fin", "last_rst", "scaled", "trim", "contig", "blocks", "next32",
        "skip",
    )

    def __init__(self, flow: Flow, hist_bit: int) -> None:
        super().__init__(flow, hist_bit)
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.start = 0
        self.last = 0
        self.ack = 0
        self.fin_cnt = 0
        self.rst_cnt = 0
        self.fin_seq = 0  # relative
        self.did_close = False
        self.last_syn = -1
        self.last_fin = -1
        self.last_rst = -1
        # counters of the letters Zeek scales (T, W, G): letter -> [count, next threshold];
        # created on first use because most connections never retransmit or stall
        self.scaled: dict[str, list[int]] | None = None
        # reassembly bookkeeping, relative sequence numbers
        self.trim = 0  # everything below has been acknowledged (and counted if missing)
        self.contig = 1  # data seen contiguously up to here
        self.blocks: list[list[int]] = []  # [start, end) ranges seen above contig
        self.skip = False  # Zeek's skip_deliveries: gave up on this direction's gaps
        # the 32-bit sequence number of the next in-order segment while everything sent so far has
        # been seen (no hole), else -1: the flow table's fast path accepts exactly these segments
        self.next32 = -1

    def set_state(self, st: int) -> None:
        if st != self.state:
            self.prev_state = self.state
            self.state = st

    def init_seqs(self, start32: int, last32: int) -> None:
        base = start32 + _WRAP  # keep widened values positive even for start32 - 1
        self.start = base
        self.ack = base
        self.last = base + seq_delta(last32, start32)
        self.contig = 1
        self.trim = 0
        self.blocks = []

    def sync_next(self) -> None:
        self.next32 = self.last & _M32 if self.contig == self.last - self.start else -1

    def no_data_acked(self) -> bool:
        """Zeek's NoDataAcked: nothing beyond the (possible) SYN octet has been acknowledged."""
        return self.ack - self.start <= 1

    def widen(self, v: int, ref: int) -> int:
        return ref + seq_delta(v, ref & _M32)

    def size(self, peer: TcpEndpoint) -> int:
        if (self.prev_state == SYN_SENT and self.state == RESET and peer.state == INACTIVE
                and not self.no_data_acked()):
            return 0
        top = self.last if self.last > self.ack else self.ack
        n = top - self.start
        if n > 0:
            n -= 1
        if self.fin_cnt > 0 and n > 0:
            n -= 1
        return n if n > 0 else 0


def _scaled(conn: Flow, endpoint: TcpEndpoint, letter: str) -> None:
    """Zeek's ScaledHistoryEntry: record the letter at the 1st, 10th, 100th... event."""
    if endpoint.scaled is None:
        endpoint.scaled = {}
    c = endpoint.scaled.setdefault(letter, [0, 1])
    c[0] += 1
    if c[0] == c[1]:
        conn.history.append(letter if endpoint.hist_bit == 0 else letter.lower())
        c[1] *= 10


def _check_history(conn: Flow, ep: TcpEndpoint, bit: int, letter: str) -> bool:
    """Record `letter` the first time; True when it had been seen before (Zeek's CheckHistory)."""
    if ep.hist & bit:
        return True
    ep.hist |= bit
    conn.history.append(letter if ep.hist_bit == 0 else letter.lower())
    return False


def _add_history(conn: Flow, ep: TcpEndpoint, letter: str) -> None:
    conn.history.append(letter if ep.hist_bit == 0 else letter.lower())


def _ooo_add(ep: TcpEndpoint, start: int, end: int) -> None:
    """Note that [start, end) was seen; advance `contig` over anything now contiguous."""
    if end <= ep.contig:
        return
    if start <= ep.contig:
        ep.contig = end
        blocks = ep.blocks
        while blocks and blocks[0][0] <= ep.contig:
            if blocks[0][1] > ep.contig:
                ep.contig = blocks[0][1]
            blocks.pop(0)
        return
    blocks = ep.blocks
    # insert keeping order; merge overlaps
    i = 0
    n = len(blocks)
    while i < n and blocks[i][1] < start:
        i += 1
    if i < n and blocks[i][0] <= end:
        b = blocks[i]
        b[0] = min(b[0], start)
        b[1] = max(b[1], end)
        while i + 1 < len(blocks) and blocks[i + 1][0] <= b[1]:
            b[1] = max(b[1], blocks[i + 1][1])
            blocks.pop(i + 1)
    else:
        blocks.insert(i, [start, end])
        if len(blocks) > MAX_OOO_BLOCKS:
            blocks.pop()  # forget the highest range: at worst a later gap is over-counted


def _is_clean(ep: TcpEndpoint) -> bool:
    """Zeek's is_clean (TCP_Reassembler.cc): established, or closed straight from established."""
    return ep.state == ESTABLISHED or (ep.state == CLOSED and ep.prev_state == ESTABLISHED)


def ack_received(conn: Flow, ep: TcpEndpoint, rel_ack: int) -> None:
    """The peer acknowledged `ep`'s data up to `rel_ack` (Zeek: TCP_Reassembler::AckReceived)."""
    if ep.fin_cnt > 0 and rel_ack >= ep.fin_seq:
        rel_ack = ep.fin_seq - 1
    if rel_ack <= ep.trim:
        return
    missing = holes = 0
    if rel_ack > ep.contig:
        # bytes in [contig, rel_ack) that no out-of-order block covers; Zeek's Undelivered
        # reports each hole as one Gap
        lo = ep.contig
        for b in ep.blocks:
            if b[0] >= rel_ack:
                break
            if b[0] > lo:
                missing += b[0] - lo
                holes += 1
            lo = max(lo, b[1])
        if lo < rel_ack:
            missing += rel_ack - lo
            holes += 1
        # everything below the ack is now history
        ep.contig = max(lo, rel_ack)
        ep.blocks = [b for b in ep.blocks if b[1] > ep.contig]
        for b in ep.blocks:
            if b[0] < ep.contig:
                b[0] = ep.contig
        if ep.blocks and ep.blocks[0][0] <= ep.contig:
            _ooo_add(ep, ep.contig, ep.contig)
    ep.trim = rel_ack
    ep.sync_next()
    if missing > 0 and not ep.skip:
        if rel_ack <= 2 and conn.is_partial:
            return  # the faked SYN octet of a partial connection is not a hole
        peer = cast(TcpEndpoint, conn.resp if ep is conn.orig else conn.orig)
        if _is_clean(ep) and _is_clean(peer):
            conn.missed += missing
            for _ in range(holes):
                _scaled(conn, ep, "G")


def tcp_packet(conn: Flow, is_orig: bool, flags: int, seq: int, ack: int, window: int,
               plen: int, captured: bool = True) -> bool:
    """Process one TCP segment. Returns True when this packet closed the connection completely.

    `captured` is False when the capture cut the payload short (snap length):
    such data was never seen, so acknowledging it reveals a gap, as in Zeek.
    """
    ep = cast(TcpEndpoint, conn.orig if is_orig else conn.resp)
    peer = cast(TcpEndpoint, conn.resp if is_orig else conn.orig)
    syn = flags & SYN
    fin = flags & FIN
    rst = flags & RST
    ackf = flags & ACK

    # SetPartialStatus (before the first packet of each side is marked seen)
    seg_len = plen + (1 if syn else 0) + (1 if fin else 0) - (plen if rst else 0)
    one_past = (seq + seg_len) & _M32

    # init_endpoint
    st = ep.state
    if st == INACTIVE:
        if syn:
            ep.init_seqs(seq, one_past)
        else:
            ep.init_seqs((seq - 1) & _M32, seq)
    elif syn and (
        (st in (SYN_SENT, SYN_ACK_SENT) and seq != ep.start & _M32)
        or st in (ESTABLISHED, PARTIAL)
        or (st == RESET and ep.prev_state == INACTIVE)
    ):
        ep.init_seqs(seq, one_past)

    wseq = ep.widen(seq, ep.last)
    rel_seq = wseq - ep.start
    underflow = rel_seq < 0

    # update_history
    bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
    if bits > 1:
        if fin and rst:
            _check_history(conn, ep, H_FINRST, "I")
        else:
            _check_history(conn, ep, H_MULTI, "Q")
    elif bits == 1:
        if syn:
            code = "H" if ackf else "S"
            # one bit for both letters, as Zeek's HIST_SYN_PKT
            if _check_history(conn, ep, H_SYN, code) and rel_seq != ep.last_syn:
                _add_history(conn, ep, code)
            ep.last_syn = rel_seq
        if fin:
            if _check_history(conn, ep, H_FIN, "F") and rel_seq + plen != ep.last_fin:
                _add_history(conn, ep, "F")
            ep.last_fin = rel_seq + plen
        if rst:
            if _check_history(conn, ep, H_RST, "R") and rel_seq != ep.last_rst:
                _add_history(conn, ep, "R")
            ep.last_rst = rel_seq
    elif plen:
        _check_history(conn, ep, H_DATA, "D")
    elif ackf:
        _check_history(conn, ep, H_ACK, "A")

    # update_window: only the zero-window history matters for the record
    if window == 0 and not rst and peer.state != CLOSED and ep.state != RESET:
        _scaled(conn, ep, "W")

    if fin:
        ep.fin_cnt += 1
        ep.fin_seq = rel_seq + seg_len
    if rst:
        ep.rst_cnt += 1

    rel_ack = 0
    if ackf:
        if peer.state == INACTIVE:
            rel_ack = 1
            peer.init_seqs((ack - 1) & _M32, (ack - 1) & _M32)
        else:
            wack = peer.widen(ack, peer.ack)
            rel_ack = wack - peer.start
            if rel_ack < 0:
                rel_ack = 0
            elif not rst:
                d = seq_delta(ack, peer.ack & _M32)
                if not (ack == 0 and d > TOO_LARGE_SEQ_DELTA) and d > 0:
                    peer.ack = wack

    # update_last_seq
    delta_last = seq_delta(one_past, ep.last & _M32)
    if (syn or rst) and (delta_last > TOO_LARGE_SEQ_DELTA or delta_last < -TOO_LARGE_SEQ_DELTA):
        pass
    elif fin and ep.last == ep.start + 1:
        ep.last = ep.widen(one_past, ep.last)
    elif ep.state == RESET:
        pass
    elif delta_last > 0:
        ep.last += delta_last
    elif plen > 0:
        _scaled(conn, ep, "T")

    do_close, gen_event = _update_state_machine(conn, ep, peer, seq, ack, plen, delta_last, is_orig, flags)

    if ackf:
        ack_received(conn, peer, rel_ack)

    if plen > 0 and captured and not rst and not underflow:
        start = rel_seq + 1 if syn else rel_seq
        _ooo_add(ep, start, start + plen)
        if (ep.blocks and not ep.skip and ep.blocks[-1][1] - ep.contig > MAX_ABOVE_HOLE_WITHOUT_ACKS
                and ep.no_data_acked()):
            ep.skip = True  # (the ranges stay: `contig` keeps serving the fast path)

    ep.sync_next()
    peer.sync_next()
    if do_close:
        return _connection_closed(ep, peer, gen_event)
    return False


def _update_state_machine(conn: Flow, ep: TcpEndpoint, peer: TcpEndpoint, seq: int, ack: int,
                          plen: int, delta_last: int, is_orig: bool, flags: int) -> tuple[bool, bool]:
    syn = flags & SYN
    fin = flags & FIN
    rst = flags & RST
    ackf = flags & ACK
    do_close = gen_event = False
    st = ep.state
    if st == INACTIVE:
        if syn:
            if is_orig:
                ep.set_state(SYN_ACK_SENT if ackf else SYN_SENT)
            else:
                if not ackf and peer.state == SYN_ACK_SENT and (seq == ep.start & _M32):
                    # SYN/SYN-ACK reversal: flip the endpoints and establish
                    conn.is_partial = False
                    conn.flip_roles()
                    peer.set_state(ESTABLISHED)
                if peer.state == SYN_SENT:
                    peer.set_state(ESTABLISHED)
                ep.set_state(ESTABLISHED)
        if fin:
            ep.set_state(CLOSED)
            do_close = gen_event = True
        if rst:
            ep.set_state(RESET)
            is_reject = False
            if is_orig:
                if peer.state == ESTABLISHED:
                    is_reject = True
            elif peer.state == SYN_SENT or peer.state == SYN_ACK_SENT:
                is_reject = True
            do_close = True
            gen_event = not is_reject
        if ep.state == INACTIVE:
            orig_state = cast(TcpEndpoint, conn.orig).state
            if not is_orig and plen == 0 and orig_state == SYN_SENT:
                pass
            elif ackf and peer.state == ESTABLISHED:
                ep.set_state(ESTABLISHED)
                conn.is_partial = False
            else:
                ep.set_state(PARTIAL)
    elif st in (SYN_SENT, SYN_ACK_SENT):
        if fin:
            ep.set_state(CLOSED)
            do_close = gen_event = True
        if rst:
            ep.set_state(RESET)
            do_close = True
    elif st in (ESTABLISHED, PARTIAL):
        if syn and st == PARTIAL and peer.state == INACTIVE and not ackf:
            ep.set_state(SYN_SENT)
        if fin and not rst:
            ep.set_state(CLOSED)
            if peer.state == RESET and peer.prev_state == CLOSED:
                peer.set_state(CLOSED)
            do_close = gen_event = True
        if rst:
            ep.set_state(RESET)
            do_close = True
    elif st == CLOSED and rst and peer.state != CLOSED:
        ep.set_state(RESET)
        if not ep.did_close:
            do_close = True
    return do_close, gen_event


def _connection_closed(ep: TcpEndpoint, peer: TcpEndpoint, gen_event: bool) -> bool:
    """Zeek's ConnectionClosed: True when the close is complete (the flow may be retired)."""
    if ep.did_close:
        return False
    ep.did_close = True
    return ep.state == RESET or peer.did_close or peer.state == INACTIVE


def conn_state(orig: TcpEndpoint, resp: TcpEndpoint, history: str) -> ConnState:
    """Zeek's conn_state for TCP (base/protocols/conn/main.zeek)."""
    os_, rs = orig.state, resp.state
    o_inactive = os_ in (INACTIVE, PARTIAL)
    r_inactive = rs in (INACTIVE, PARTIAL)
    if rs == RESET:
        if os_ in (SYN_SENT, SYN_ACK_SENT) or os_ == RESET and orig.size(resp) == 0 and resp.size(orig) == 0:
            return "REJ"
        if o_inactive:
            return "RSTRH"
        return "RSTR"
    if os_ == RESET:
        if r_inactive:
            h = history[1:] if history.startswith("^") else history
            if h.startswith("S"):
                i = 1
                while i < len(h) and h[i] not in "HAFGIQR":
                    i += 1
                if i < len(h) and h[i] == "R":
                    return "RSTOS0"
            return "OTH"
        return "RSTO"
    if rs == CLOSED and os_ == CLOSED:
        return "SF"
    if os_ == CLOSED:
        return "SH" if r_inactive else "S2"
    if rs == CLOSED:
        return "SHR" if o_inactive else "S3"
    if os_ == SYN_SENT and rs == INACTIVE:
        return "S0"
    if os_ == ESTABLISHED and rs == ESTABLISHED:
        return "S1"
    return "OTH"
