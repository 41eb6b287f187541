"""InlineAgent's verdicts and resets, packet by packet, without a kernel queue: the packet that
completes a block match is dropped, so is everything after it on that connection, and the two
RSTs carry the sequence numbers each end expects (checked by parsing them back)."""

from __future__ import annotations

import socket
import struct
from typing import Any

import dpkt
import pytest

from agent.enforce.inline import InlineAgent, packet_key
from agent.filter.compiled import compile_rules
from agent.pipeline import Pipeline
from rulesets.model import Category, Phrase, Ruleset

pytestmark = pytest.mark.usefixtures("keyword_engine")  # each test with each keyword engine

CLIENT, SERVER = "192.0.2.10", "198.51.100.80"


class RecordingInjector:
    """A fake injector: keeps what it is asked to send (the real one is tested in namespaces)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, packet: bytes) -> None:
        self.sent.append(packet)

    def close(self) -> None:
        pass


def rules(action: str) -> Any:
    cat = Category(id="drugs", action=action, severity=5,  # type: ignore[arg-type]
                   keywords=[Phrase("冰毒", "d.txt", 1), Phrase("casino", "d.txt", 2)])
    return compile_rules(Ruleset(name="t", version=1, categories=[cat]))


def tcp(src: str, dst: str, sport: int, dport: int, flags: int, seq: int, ack: int,
        data: bytes = b"") -> bytes:
    t = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=65535, data=data)
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=6, ttl=64, data=t)
    ip.len = len(ip)
    return bytes(ip)


def agent(action: str = "block") -> tuple[InlineAgent, RecordingInjector, list[dict[str, Any]]]:
    out: list[dict[str, Any]] = []
    inj = RecordingInjector()
    pipeline = Pipeline(out.extend, rules=rules(action))
    a = InlineAgent(pipeline, inj, clock=lambda: 1_700_000_000.0)  # type: ignore[arg-type]
    return a, inj, out


S, A = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK
SA, PA = S | A, dpkt.tcp.TH_PUSH | A


def test_the_completing_packet_is_dropped_and_both_ends_reset() -> None:
    a, inj, out = agent()
    ci, si = 1000, 900000
    head = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\n"
    second = "卖冰毒!".encode() + b"xxxx"
    first = b"hello "
    assert len(first) + len(second) == 20
    verdicts = [
        a.handle(tcp(CLIENT, SERVER, 40000, 80, S, ci, 0)),
        a.handle(tcp(SERVER, CLIENT, 80, 40000, SA, si, ci + 1)),
        a.handle(tcp(CLIENT, SERVER, 40000, 80, A, ci + 1, si + 1)),
        a.handle(tcp(CLIENT, SERVER, 40000, 80, PA, ci + 1, si + 1, head + first)),
        a.handle(tcp(SERVER, CLIENT, 80, 40000, A, si + 1, ci + 1 + len(head) + len(first))),
        a.handle(tcp(CLIENT, SERVER, 40000, 80, PA, ci + 1 + len(head) + len(first), si + 1, second)),
        # anything after it on that connection, either way, is dropped unseen
        a.handle(tcp(CLIENT, SERVER, 40000, 80, PA, ci + 1 + len(head) + 20, si + 1, b"more")),
        a.handle(tcp(SERVER, CLIENT, 80, 40000, A, si + 1, ci + 1 + len(head) + 20)),
    ]
    assert verdicts == [True, True, True, True, True, False, False, False]
    assert a.counters["connections_blocked"] == 1 and a.counters["dropped_blocked"] == 2
    # another connection goes on being inspected and accepted
    assert a.handle(tcp(CLIENT, SERVER, 40001, 80, S, 5, 0))
    rsts = [dpkt.ip.IP(p) for p in inj.sent]
    to_server = [p for p in rsts if socket.inet_ntoa(p.dst) == SERVER]
    to_client = [p for p in rsts if socket.inet_ntoa(p.dst) == CLIENT]
    assert len(to_server) == 1 and len(to_client) == 1
    # the server never got the dropped segment: it expects that segment's own sequence number
    assert to_server[0].data.seq == ci + 1 + len(head) + len(first)
    assert (to_server[0].data.sport, to_server[0].data.dport) == (40000, 80)
    # the client expects the server's next byte
    assert to_client[0].data.seq == si + 1 and to_client[0].data.ack == ci + 1 + len(head) + len(first)
    for p in rsts:
        assert p.data.flags & dpkt.tcp.TH_RST
    [alert] = [r for r in out if r["type"] == "alert"]
    assert (alert["keyword"], alert["action"], alert["blocked"]) == ("冰毒", "block", True)


def test_an_alert_rule_never_drops() -> None:
    a, inj, out = agent("alert")
    req = b"GET /casino HTTP/1.1\r\nHost: h\r\n\r\n"
    assert a.handle(tcp(CLIENT, SERVER, 40002, 80, S, 1, 0))
    assert a.handle(tcp(SERVER, CLIENT, 80, 40002, SA, 7, 2))
    assert a.handle(tcp(CLIENT, SERVER, 40002, 80, A, 2, 8))
    assert a.handle(tcp(CLIENT, SERVER, 40002, 80, PA, 2, 8, req))
    assert inj.sent == [] and a.counters["dropped"] == 0
    [alert] = [r for r in out if r["type"] == "alert"]
    assert alert["blocked"] is False


def test_a_dns_query_for_a_blocked_name_is_dropped() -> None:
    a, inj, out = agent()
    q = struct.pack("!HHHHHH", 7, 0x0100, 1, 0, 0, 0)
    for label in (b"www", b"casino", b"example"):
        q += bytes([len(label)]) + label
    q += b"\x00" + struct.pack("!HH", 1, 1)
    u = dpkt.udp.UDP(sport=53000, dport=53, data=q)
    u.ulen = len(u)
    ip = dpkt.ip.IP(src=socket.inet_aton(CLIENT), dst=socket.inet_aton("198.51.100.53"), p=17, data=u)
    ip.len = len(ip)
    assert a.handle(bytes(ip)) is False
    assert inj.sent == []  # UDP: nothing to reset
    [alert] = [r for r in out if r["type"] == "alert"]
    assert (alert["field"], alert["blocked"]) == ("dns.query", True)


def test_packet_key() -> None:
    pkt = tcp(CLIENT, SERVER, 1234, 80, S, 1, 0)
    assert packet_key(pkt) == (socket.inet_aton(CLIENT), socket.inet_aton(SERVER), 1234, 80, 6)
    assert packet_key(b"\x45\x00") is None
    assert packet_key(b"\x70" + b"\x00" * 40) is None
