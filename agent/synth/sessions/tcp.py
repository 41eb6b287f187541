"""One TCP connection's packet script: handshake, MSS segmentation, delayed ACKs, teardown.

Design: :class:`TcpConn` tracks both sides' sequence numbers and timestamp
clocks and turns application messages into frames. Protocol scripts
(``http``, ``tls``, ``smtp``) drive it with ``yield from conn.send(...)``, so a
session is a plain generator of frames the scheduler can interleave.

Behaviour (matches the reference generator): SYN and SYN/ACK carry MSS 1460,
SACK-permitted, timestamps and window scale; every later segment carries the
timestamp option; data is cut at :data:`~agent.synth.frames.MSS`; the receiver
ACKs every second segment and the last one; ~0.3% of data segments are sent
twice (a retransmission, same bytes); ~3% of connections end with RST/ACK
instead of the FIN exchange.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

from agent.synth.frames import ACK, FIN, MSS, PROTO_TCP, PSH, RST, SYN, Direction, FrameBuilder, MacPair

RETRANSMIT_PROBABILITY = 0.003
RESET_CLOSE_PROBABILITY = 0.03
CLIENT_TTL = 64
SERVER_TTLS = (46, 50, 52, 54, 55, 56, 57, 58, 118, 240)  # hops already taken off 64/128/255
CLIENT_WINDOW, SERVER_WINDOW = 502, 509

_MASK32 = 0xFFFFFFFF
# MSS 1460, SACK permitted, then the timestamp option is packed in between, then NOP + window scale.
_SYN_OPTS_HEAD = b"\x02\x04\x05\xb4\x04\x02\x08\x0a"
_CLIENT_WSCALE = b"\x01\x03\x03\x07"
_SERVER_WSCALE = b"\x01\x03\x03\x09"


class TcpConn:
    """Sequence/ACK/timestamp state of one connection; methods yield complete Ethernet frames."""

    __slots__ = ("b", "rng", "c2s", "s2c", "cseq", "sseq", "cts", "sts")

    def __init__(
        self,
        b: FrameBuilder,
        rng: random.Random,
        macs: MacPair,
        cip: bytes,
        sip: bytes,
        cport: int,
        sport: int,
    ) -> None:
        self.b, self.rng = b, rng
        self.cseq = rng.randrange(1 << 32)
        self.sseq = rng.randrange(1 << 32)
        self.cts = rng.randrange(1 << 31)
        self.sts = rng.randrange(1 << 31)
        sttl = rng.choice(SERVER_TTLS)
        self.c2s = Direction(macs.from_client, cip, sip, cport, sport, CLIENT_TTL, PROTO_TCP)
        self.s2c = Direction(macs.to_client, sip, cip, sport, cport, sttl, PROTO_TCP)

    def pkt(self, from_client: bool, flags: int, payload: bytes = b"") -> bytes:
        """A segment with the timestamp option; advances the sender's sequence number."""
        # Both clocks tick per packet so TSval is monotonic on each side.
        cts = self.cts = (self.cts + 1) & _MASK32
        sts = self.sts = (self.sts + 1) & _MASK32
        advance = len(payload) + (1 if flags & (SYN | FIN) else 0)
        if from_client:
            seq = self.cseq
            self.cseq = (seq + advance) & _MASK32
            return self.b.tcp_ts(
                self.c2s, seq, self.sseq if flags & ACK else 0, flags, CLIENT_WINDOW, cts, sts, payload
            )
        seq = self.sseq
        self.sseq = (seq + advance) & _MASK32
        return self.b.tcp_ts(self.s2c, seq, self.cseq, flags, SERVER_WINDOW, sts, cts, payload)

    def handshake(self) -> Iterator[bytes]:
        b = self.b
        syn_opts = _SYN_OPTS_HEAD + struct.pack("!II", self.cts, 0) + _CLIENT_WSCALE
        yield b.tcp(self.c2s, self.cseq, 0, SYN, CLIENT_WINDOW, syn_opts, b"")
        self.cseq = (self.cseq + 1) & _MASK32
        sa_opts = _SYN_OPTS_HEAD + struct.pack("!II", self.sts, self.cts) + _SERVER_WSCALE
        yield b.tcp(self.s2c, self.sseq, self.cseq, SYN | ACK, SERVER_WINDOW, sa_opts, b"")
        self.sseq = (self.sseq + 1) & _MASK32
        yield self.pkt(True, ACK)

    def send(self, from_client: bool, data: bytes) -> Iterator[bytes]:
        """Segment ``data`` at MSS; the peer sends a delayed ACK every 2 segments and after the last."""
        rand = self.rng.random
        pkt = self.pkt
        n = len(data)
        for count, off in enumerate(range(0, n, MSS), 1):
            last = off + MSS >= n
            p = pkt(from_client, (ACK | PSH) if last else ACK, data[off : off + MSS])
            yield p
            if rand() < RETRANSMIT_PROBABILITY:
                yield p
            if last or not count & 1:
                yield pkt(not from_client, ACK)

    def close(self, client_first: bool = True) -> Iterator[bytes]:
        if self.rng.random() < RESET_CLOSE_PROBABILITY:
            yield self.pkt(client_first, RST | ACK)
            return
        yield self.pkt(client_first, FIN | ACK)
        yield self.pkt(not client_first, FIN | ACK)
        yield self.pkt(client_first, ACK)
