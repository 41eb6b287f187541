"""QUIC-like flows over UDP/443: opaque datagrams sized like QUIC, no real QUIC framing.

4–60 datagrams per flow; 35% go client→server (the first of which is a
1200–1350 byte Initial-sized datagram, later ones 30–80 byte ACK-sized),
65% server→client at 1200–1350 bytes. Payloads are binary corpus bytes, so a
QUIC decoder will (correctly) reject them; they exist to load flow tracking
and byte counters with the share of UDP/443 a real gateway sees.
"""

from __future__ import annotations

from collections.abc import Iterator

from agent.synth.frames import PROTO_UDP, Direction
from agent.synth.sessions.base import Client, SessionContext

CLIENT_TTL = 64
SERVER_TTL = 55
CLIENT_SHARE = 0.35


def quic_session(ctx: SessionContext, client: Client, cport: int) -> Iterator[bytes]:
    rng, c, b = ctx.rng, ctx.content, ctx.builder
    sip = c.ip_for(c.domain())
    up = Direction(client.macs.from_client, client.ip, sip, cport, 443, CLIENT_TTL, PROTO_UDP)
    down = Direction(client.macs.to_client, sip, client.ip, 443, cport, SERVER_TTL, PROTO_UDP)
    for i in range(rng.randint(4, 60)):
        if rng.random() < CLIENT_SHARE:
            # Only datagram 0 is Initial-sized; the reference generator keys this on the
            # loop index, so a flow whose first datagram goes down sends only small ones up.
            size = rng.randint(1200, 1350) if i == 0 else rng.randint(30, 80)
            yield b.udp(up, c.slice_bin(size))
        else:
            yield b.udp(down, c.slice_bin(rng.randint(1200, 1350)))
