"""Zeek's TCP connection states, history letters and byte counts, from hand-made packets.

Every case is a short conversation built with scapy (explicit flags, sequence
and acknowledgement numbers) and run through the real pipeline. The expected
values are what Zeek writes to conn.log for the same packets: they follow from
Zeek's `TCPSessionAdapter::Process`/`UpdateStateMachine`, `TCP_Endpoint::Size`,
`TCP_Reassembler::Undelivered`/`Gap` and `conn_state()` in
base/protocols/conn/main.zeek, and agree with the corpus baselines
(../shared/corpus/zeek/Baseline/*/conn.log, checked in tests/corpus).

Each run also goes through two other paths that must give identical records:
one packet per `Pipeline.feed` call, and the flow table's slow path alone
(`Decoder.decode` + `FlowTable.process` for every packet, no fast path).
"""

from __future__ import annotations

import socket
from typing import Any

import pytest
from flow_paths import Frame, Record, general_path_sessions, pipeline_records, uid_key
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from agent.flows import tcp as T
from agent.flows.state import Flow

M32 = 0xFFFFFFFF
T0 = 1_700_000_000.0
MAC = {"c": "02:00:00:00:00:0c", "s": "02:00:00:00:00:05"}
CLIENT = ("10.0.0.1", 40000)
SERVER = ("10.0.0.2", 80)  # 80 is a likely server port: Zeek flips a first packet sent from it


class Conv:
    """A hand-made TCP conversation between client `c` and server `s`.

    `send` builds one Ethernet frame; sequence numbers default to the next
    unsent octet of the sender and acknowledgements (when the flags hold A) to
    the next unsent octet of the peer, so a script reads like a packet trace.
    `skip` advances a sender's sequence space without capturing anything: a
    segment the capture lost.
    """

    def __init__(self, client: tuple[str, int] = CLIENT, server: tuple[str, int] = SERVER,
                 isn_c: int = 1000, isn_s: int = 5000, t0: float = T0) -> None:
        self.addr = {"c": client, "s": server}
        self.nxt = {"c": isn_c & M32, "s": isn_s & M32}
        self.t = t0
        self.frames: list[Frame] = []

    def send(self, who: str, flags: str, data: bytes | int = b"", *, seq: int | None = None,
             ack: int | None = None, win: int = 8192, dt: float = 0.1, snap: int = 0) -> Conv:
        peer = "s" if who == "c" else "c"
        payload = b"x" * data if isinstance(data, int) else data
        s = self.nxt[who] if seq is None else seq & M32
        a = ((self.nxt[peer] if ack is None else ack) & M32) if "A" in flags else 0
        (src, sport), (dst, dport) = self.addr[who], self.addr[peer]
        ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
        pkt = Ether(src=MAC[who], dst=MAC[peer]) / ip / TCP(sport=sport, dport=dport, flags=flags, seq=s,
                                                            ack=a, window=win)
        if payload:
            pkt = pkt / Raw(payload)
        frame = bytes(pkt)
        if snap:  # the capture's snap length cut the payload short
            frame = frame[:-snap]
        self.t = round(self.t + dt, 6)
        self.frames.append((self.t, 1, frame))
        if "R" not in flags:
            end = (s + len(payload) + ("S" in flags) + ("F" in flags)) & M32
            if T.seq_delta(end, self.nxt[who]) > 0:
                self.nxt[who] = end
        return self

    def skip(self, who: str, n: int) -> Conv:
        self.nxt[who] = (self.nxt[who] + n) & M32
        return self

    def script(self, steps: list[tuple[Any, ...]]) -> Conv:
        for step in steps:
            who, flags, *rest = step
            self.send(who, flags, *rest)
        return self


def sessions(frames: list[Frame]) -> list[Record]:
    """Session records of `frames` (in emission order), after checking the other paths agree."""
    out = pipeline_records(frames)
    got = [r for r in out if r["type"] == "session"]
    single = [r for r in pipeline_records(frames, one_by_one=True) if r["type"] == "session"]
    assert sorted(single, key=uid_key) == sorted(got, key=uid_key), "one packet per feed() differs"
    assert sorted(general_path_sessions(frames), key=uid_key) == sorted(got, key=uid_key), "slow path differs"
    return got


def only(frames: list[Frame]) -> Record:
    recs = sessions(frames)
    assert len(recs) == 1, recs
    return recs[0]


def check(rec: Record, **want: Any) -> None:
    got = {k: rec[k] for k in want}
    if "duration" in want:
        assert rec["duration"] == pytest.approx(want["duration"], abs=1e-6)
        got["duration"] = want["duration"]
    assert got == want


HANDSHAKE = [("c", "S"), ("s", "SA"), ("c", "A")]
DATA = [("c", "PA", 100), ("s", "A"), ("s", "PA", 200), ("c", "A")]
# packets, IP bytes (20 + 20 + payload) after HANDSHAKE + DATA: orig S A D A, resp SA A D
ORIG_PKTS, ORIG_IPB, RESP_PKTS, RESP_IPB = 4, 260, 3, 320


# (name, script, expected record fields); client 10.0.0.1:40000, server 10.0.0.2:80
STATES: list[tuple[str, list[tuple[Any, ...]], dict[str, Any]]] = [
    ("S0", [("c", "S")],
     dict(conn_state="S0", history="S", orig_pkts=1, resp_pkts=0, orig_ip_bytes=40, resp_ip_bytes=0,
          orig_bytes=0, resp_bytes=0, duration=0.0)),
    ("REJ", [("c", "S"), ("s", "RA")],
     dict(conn_state="REJ", history="Sr", orig_pkts=1, resp_pkts=1, orig_ip_bytes=40, resp_ip_bytes=40,
          orig_bytes=0, resp_bytes=0, duration=0.1)),
    ("S1", HANDSHAKE + DATA,
     dict(conn_state="S1", history="ShADad", orig_pkts=ORIG_PKTS, resp_pkts=RESP_PKTS,
          orig_ip_bytes=ORIG_IPB, resp_ip_bytes=RESP_IPB, orig_bytes=100, resp_bytes=200, duration=0.6)),
    # the final ACK after both FINs counts as a packet but not in the duration (Zeek stops the
    # connection's clock once both sides closed)
    ("SF", HANDSHAKE + DATA + [("c", "FA"), ("s", "FA"), ("c", "A")],
     dict(conn_state="SF", history="ShADadFf", orig_pkts=ORIG_PKTS + 2, resp_pkts=RESP_PKTS + 1,
          orig_ip_bytes=ORIG_IPB + 80, resp_ip_bytes=RESP_IPB + 40, orig_bytes=100, resp_bytes=200,
          duration=0.8)),
    ("S2", HANDSHAKE + DATA + [("c", "FA")],
     dict(conn_state="S2", history="ShADadF", orig_pkts=ORIG_PKTS + 1, resp_pkts=RESP_PKTS,
          orig_bytes=100, resp_bytes=200)),
    ("S3", HANDSHAKE + DATA + [("s", "FA")],
     dict(conn_state="S3", history="ShADadf", orig_pkts=ORIG_PKTS, resp_pkts=RESP_PKTS + 1,
          orig_bytes=100, resp_bytes=200)),
    ("SH", [("c", "S"), ("c", "F")],
     dict(conn_state="SH", history="SF", orig_pkts=2, resp_pkts=0, orig_bytes=0, resp_bytes=0)),
    # the first packet comes from port 80: Zeek flips the roles ('^'), the client is the originator
    ("SHR", [("s", "SA"), ("s", "FA")],
     dict(conn_state="SHR", history="^hf", orig_pkts=0, resp_pkts=2, resp_ip_bytes=80, orig_bytes=0,
          resp_bytes=0, src_port=40000, dst_port=80)),
    ("RSTO", HANDSHAKE + DATA + [("c", "R")],
     dict(conn_state="RSTO", history="ShADadR", orig_pkts=ORIG_PKTS + 1, resp_pkts=RESP_PKTS,
          orig_bytes=100, resp_bytes=200)),
    ("RSTR", HANDSHAKE + DATA + [("s", "R")],
     dict(conn_state="RSTR", history="ShADadr", orig_pkts=ORIG_PKTS, resp_pkts=RESP_PKTS + 1,
          orig_bytes=100, resp_bytes=200)),
    ("RSTOS0", [("c", "S"), ("c", "R")],
     dict(conn_state="RSTOS0", history="SR", orig_pkts=2, resp_pkts=0, orig_bytes=0)),
    ("RSTRH", [("s", "SA"), ("s", "R")],
     dict(conn_state="RSTRH", history="^hr", orig_pkts=0, resp_pkts=2, src_port=40000, dst_port=80)),
    # no SYN at all: a partial connection, both sides PARTIAL
    ("OTH", [("c", "PA", 100), ("s", "A")],
     dict(conn_state="OTH", history="Da", orig_pkts=1, resp_pkts=1, orig_ip_bytes=140, resp_ip_bytes=40,
          orig_bytes=100, resp_bytes=0)),
    # a partial connection that closes both ways is SF in Zeek too
    ("SF-partial", [("c", "PA", 100), ("s", "PA", 200), ("c", "FA"), ("s", "FA"), ("c", "A")],
     dict(conn_state="SF", history="DdFfA", orig_pkts=3, resp_pkts=2, orig_bytes=100, resp_bytes=200)),
]


@pytest.mark.parametrize("steps,want", [s[1:] for s in STATES], ids=[s[0] for s in STATES])
def test_conn_state(steps: list[tuple[Any, ...]], want: dict[str, Any]) -> None:
    rec = only(Conv().script(steps).frames)
    check(rec, missed_bytes=0, proto="tcp", src_ip="10.0.0.1", dst_ip="10.0.0.2", **want)


def test_every_conn_state_is_covered() -> None:
    covered = {want["conn_state"] for _, _, want in STATES}
    assert covered == {"S0", "S1", "SF", "REJ", "S2", "S3", "RSTO", "RSTR", "RSTOS0", "RSTRH", "SH", "SHR",
                       "OTH"}


def test_record_fields_of_a_full_connection() -> None:
    conv = Conv().script(HANDSHAKE + DATA + [("c", "FA"), ("s", "FA"), ("c", "A")])
    rec = only(conv.frames)
    check(rec, type="session", ts=conv.frames[0][0], src_ip="10.0.0.1", src_port=40000, dst_ip="10.0.0.2",
          dst_port=80, vlan=None, inner_vlan=None, src_mac=MAC["c"], dst_mac=MAC["s"], interim=False,
          nat_ip=None, account=None, blocked=False)
    assert rec["uid"].startswith("C") and len(rec["uid"]) >= 12
    assert rec["community_id"].startswith("1:") and len(rec["community_id"]) == 30


def test_ipv6_connection_takes_the_slow_path_with_the_same_results() -> None:
    conv = Conv(client=("2001:db8::1", 40000), server=("2001:db8::2", 80))
    rec = only(conv.script(HANDSHAKE + DATA + [("c", "FA"), ("s", "FA"), ("c", "A")]).frames)
    # IPv6 header is 40 bytes: every packet 20 bytes more than over IPv4
    check(rec, conn_state="SF", history="ShADadFf", src_ip="2001:db8::1", orig_bytes=100, resp_bytes=200,
          orig_pkts=6, resp_pkts=4, orig_ip_bytes=340 + 6 * 20, resp_ip_bytes=360 + 4 * 20)


# -- attempts, retransmitted SYNs and reuse --------------------------------------------------------

def test_syn_retransmitted_within_attempt_delay_is_one_flow() -> None:
    conv = Conv().send("c", "S").send("c", "S", seq=1000, dt=3.0)
    rec = only(conv.frames)
    # same sequence number: no second 'S'
    check(rec, conn_state="S0", history="S", orig_pkts=2, duration=3.0)


def test_syn_retransmitted_after_attempt_delay_is_a_new_flow() -> None:
    conv = Conv().send("c", "S").send("c", "S", seq=1000, dt=6.0)
    first, second = sessions(conv.frames)
    check(first, conn_state="S0", history="S", orig_pkts=1, duration=0.0, ts=conv.frames[0][0])
    check(second, conn_state="S0", history="S", orig_pkts=1, duration=0.0, ts=conv.frames[1][0])
    assert first["uid"] != second["uid"]
    assert first["community_id"] == second["community_id"]


def test_syn_with_another_isn_during_an_attempt_is_a_new_flow() -> None:
    # Zeek's IsReuse: a SYN whose sequence number differs from the first (SYN_seq_jump) starts over
    conv = Conv().send("c", "S").send("c", "S", seq=777_777, dt=1.0)
    first, second = sessions(conv.frames)
    check(first, history="S", orig_pkts=1)
    check(second, history="S", orig_pkts=1)


def test_connection_reuse_after_close_gives_a_second_record() -> None:
    conv = Conv().script(HANDSHAKE + DATA + [("c", "FA"), ("s", "FA"), ("c", "A")])
    conv.send("c", "S", seq=90_000, dt=1.0)  # within the 5 s close delay: IsReuse says new connection
    conv.send("s", "SA", seq=70_000)
    conv.send("c", "A")
    first, second = sessions(conv.frames)
    check(first, conn_state="SF", history="ShADadFf", orig_pkts=6, resp_pkts=4)
    check(second, conn_state="S1", history="ShA", orig_pkts=2, resp_pkts=1, ts=conv.frames[10][0])
    assert first["uid"] != second["uid"]


def test_packet_after_close_delay_starts_a_new_flow() -> None:
    conv = Conv().script(HANDSHAKE + DATA + [("c", "FA"), ("s", "FA")])
    conv.send("c", "A", dt=6.0)  # the last ACK, 6 s late: the closed connection is gone
    first, second = sessions(conv.frames)
    check(first, conn_state="SF", history="ShADadFf", orig_pkts=5)
    check(second, conn_state="OTH", history="A", orig_pkts=1, resp_pkts=0)


def test_late_ack_within_close_delay_joins_the_closed_flow() -> None:
    conv = Conv().script(HANDSHAKE + DATA + [("c", "FA"), ("s", "FA")])
    conv.send("c", "A", dt=4.0)
    rec = only(conv.frames)
    # counted, but the connection's clock stopped at the second FIN
    check(rec, conn_state="SF", orig_pkts=6, duration=0.8)


def test_synack_after_syn_from_the_same_side_adds_no_letter() -> None:
    # Zeek keeps one history bit for 'S' and 'H' (HIST_SYN_PKT): a SYN-ACK after a SYN with the same
    # sequence number from the same side adds nothing
    conv = Conv().send("c", "S").send("c", "SA", seq=1000, ack=7000)
    check(only(conv.frames), conn_state="S0", history="S", orig_pkts=2)


def test_responders_bare_syn_during_an_attempt_is_a_new_connection() -> None:
    # IsReuse: a SYN (no ACK) whose sequence number is not the originator's ISN starts over; the new
    # connection's originator is the sender of that SYN
    first, second = sessions(Conv().send("c", "S").send("s", "S").frames)
    check(first, history="S", conn_state="S0", src_port=40000, orig_pkts=1, resp_pkts=0)
    check(second, history="S", conn_state="S0", src_ip="10.0.0.2", src_port=80, dst_port=40000,
          orig_pkts=1, resp_pkts=0)


# -- flips -------------------------------------------------------------------------------------------

def test_midstream_pickup_from_server_port_flips() -> None:
    conv = Conv().send("s", "PA", 200).send("c", "A")
    check(only(conv.frames), history="^dA", conn_state="OTH", src_ip="10.0.0.1", src_port=40000,
          dst_port=80, orig_pkts=1, resp_pkts=1, orig_bytes=0, resp_bytes=200, src_mac=MAC["c"],
          dst_mac=MAC["s"])


def test_midstream_pickup_from_client_port_does_not_flip() -> None:
    conv = Conv().send("c", "PA", 100).send("s", "PA", 300)
    check(only(conv.frames), history="Dd", conn_state="OTH", src_port=40000, orig_bytes=100, resp_bytes=300)


def test_both_ports_likely_servers_flip_only_towards_the_lower_port() -> None:
    # Zeek: both plausible servers -> flip when the sender's port is the lower one (dest > src)
    conv = Conv(client=("10.0.0.1", 8080), server=("10.0.0.2", 443)).send("s", "PA", 50)
    check(only(conv.frames), history="^d", src_port=8080, dst_port=443)
    conv = Conv(client=("10.0.0.1", 443), server=("10.0.0.2", 8080)).send("s", "PA", 50)
    check(only(conv.frames), history="D", src_port=8080, dst_port=443)


def test_missing_syn_handshake_established_from_synack() -> None:
    # like core.tcp.missing-syn: SYN-ACK first from port 80, then the client's ACK establishes it
    conv = Conv().script([("s", "SA"), ("c", "A"), ("c", "PA", 100), ("s", "PA", 200), ("c", "FA"),
                          ("s", "FA"), ("c", "A")])
    check(only(conv.frames), history="^hADdFf", conn_state="SF", src_port=40000, orig_bytes=100,
          resp_bytes=200, orig_pkts=4, resp_pkts=3, missed_bytes=0)


def test_synack_before_syn_reordered_capture() -> None:
    # like handshake-reorder.pcap: the SYN-ACK was captured before the SYN
    conv = Conv()
    conv.send("s", "SA", ack=1001).send("c", "S").script(
        [("c", "A"), ("c", "PA", 100), ("s", "A"), ("s", "PA", 200), ("c", "FA"), ("s", "FA"), ("c", "A")])
    check(only(conv.frames), history="^hSADadFf", conn_state="SF", src_port=40000, dst_port=80,
          orig_bytes=100, resp_bytes=200, orig_pkts=5, resp_pkts=4)


def test_synack_first_between_high_ports_ends_with_the_client_as_originator() -> None:
    conv = Conv(client=("10.0.0.1", 40000), server=("10.0.0.2", 50000))
    conv.script([("s", "SA"), ("c", "A"), ("c", "PA", 100), ("s", "PA", 200), ("c", "FA"), ("s", "FA"),
                 ("c", "A")])
    rec = only(conv.frames)
    check(rec, src_port=40000, dst_port=50000, conn_state="SF", orig_bytes=100, resp_bytes=200)
    assert "^" in rec["history"]


def _tcp_flow() -> Flow:
    a, b = socket.inet_aton("10.0.0.2"), socket.inet_aton("10.0.0.1")
    key = (a, 80, b, 40000, 6, None, None)
    return Flow("Ctest", key, None, None, T0, 300.0)


def test_syn_synack_reversal_in_the_state_machine() -> None:
    """UpdateInactiveState's SYN/SYN-ACK reversal: a conn whose originator sent the SYN-ACK gets
    the matching SYN from its responder -> FlipRoles, both sides established."""
    f = _tcp_flow()
    server, client = f.orig, f.resp
    assert isinstance(server, T.TcpEndpoint) and isinstance(client, T.TcpEndpoint)
    steps = [  # (endpoint, flags, seq, ack, payload length)
        (server, T.SYN | T.ACK, 5000, 1001, 0),
        (client, T.SYN, 1000, 0, 0),
        (client, T.ACK, 1001, 5001, 0),
        (client, T.ACK | T.PSH, 1001, 5001, 100),
        (server, T.ACK | T.PSH, 5001, 1101, 200),
        (client, T.FIN | T.ACK, 1101, 5201, 0),
        (server, T.FIN | T.ACK, 5201, 1102, 0),
    ]
    for ep, flags, seq, ack, plen in steps:
        T.tcp_packet(f, ep is f.orig, flags, seq, ack, 8192, plen)
    assert f.orig is client and f.flipped
    hist = "".join(f.history)
    assert hist == "Hs^ADdFf"
    assert T.conn_state(f.orig, f.resp, hist) == "SF"
    assert (client.size(server), server.size(client)) == (100, 200)


# -- history letters ---------------------------------------------------------------------------------

def test_retransmission_T_and_t() -> None:
    conv = Conv().script(HANDSHAKE)
    conv.send("c", "PA", 100).send("c", "PA", 100, seq=1001)  # same segment again
    conv.send("s", "PA", 200).send("s", "PA", 200, seq=5001)
    conv.send("c", "A")
    check(only(conv.frames), history="ShADTdt", orig_bytes=100, resp_bytes=200, missed_bytes=0,
          orig_pkts=5, resp_pkts=3)


def test_retransmissions_are_scaled_1_10_100() -> None:
    conv = Conv().script(HANDSHAKE).send("c", "PA", 100)
    for _ in range(12):
        conv.send("c", "PA", 100, seq=1001)
    # 'T' at the 1st and the 10th retransmission, not at the others
    check(only(conv.frames), history="ShADTT", orig_pkts=3 + 12)


def test_zero_window_W_and_w() -> None:
    conv = Conv().script(HANDSHAKE)
    conv.send("s", "PA", 200).send("c", "A", win=0)  # client's receive window is full
    conv.send("c", "PA", 10).send("s", "A", win=0)
    for _ in range(9):  # the 10th zero window of the responder gives a second 'w'
        conv.send("s", "A", win=0)
    check(only(conv.frames), history="ShAdWDaww", orig_bytes=10, resp_bytes=200)


def test_gap_in_the_middle_G_and_missed_bytes() -> None:
    conv = Conv().script(HANDSHAKE)
    conv.send("c", "PA", 100).skip("c", 100).send("c", "PA", 100)  # 1101..1200 never captured
    conv.send("s", "A")  # acks 1301: everything, including the hole
    check(only(conv.frames), history="ShADaG", missed_bytes=100, orig_bytes=300, conn_state="S1",
          orig_pkts=4, resp_pkts=2)


def test_ack_above_data_never_seen_is_a_gap() -> None:
    # like core.tcp.miss-end-data: the peer acknowledges data the capture never showed
    conv = Conv().script(HANDSHAKE)
    conv.send("c", "PA", 100).skip("c", 250).send("s", "A")
    check(only(conv.frames), history="ShADaG", missed_bytes=250, orig_bytes=350)


def test_responder_gap_is_lower_case_g() -> None:
    conv = Conv().script(HANDSHAKE)
    conv.send("s", "PA", 200).skip("s", 300).send("c", "A")
    check(only(conv.frames), history="ShAdg", missed_bytes=300, resp_bytes=500)


def test_snaplen_truncated_payload_is_a_gap_when_acked() -> None:
    conv = Conv().script(HANDSHAKE)
    conv.send("c", "PA", 100, snap=60)  # captured 40 of its 100 payload bytes
    conv.send("s", "A")
    # the whole segment is missing for the reassembler; IP bytes come from the IP header
    check(only(conv.frames), history="ShADaG", missed_bytes=100, orig_bytes=100, orig_ip_bytes=40 + 40 + 140)


def test_gap_letter_counts_each_hole() -> None:
    # ten holes revealed by one ACK: Zeek's Undelivered reports one Gap per hole, so the 10th
    # gives a second 'G' (ScaledHistoryEntry 1, 10, 100 ...)
    conv = Conv().script(HANDSHAKE)
    for _ in range(10):
        conv.skip("c", 10).send("c", "PA", 10)
    conv.send("s", "A")
    check(only(conv.frames), history="ShADaGG", missed_bytes=100, orig_bytes=200)


def test_out_of_order_data_is_no_gap_but_counts_as_retransmission() -> None:
    conv = Conv().script(HANDSHAKE)
    conv.send("c", "PA", 100, seq=1101).send("c", "PA", 100, seq=1001)  # reordered, both captured
    conv.send("s", "A", ack=1201)
    # Zeek's update_last_seq: data below the highest sequence seen is a retransmission ('T')
    check(only(conv.frames), history="ShADTa", missed_bytes=0, orig_bytes=200)


def test_gap_at_close_of_a_partial_connection_is_not_reported() -> None:
    # current Zeek reports gaps only while both sides are ESTABLISHED or CLOSED coming from
    # ESTABLISHED; a mid-stream pickup never got there
    conv = Conv()
    conv.send("c", "PA", 100).send("s", "PA", 200).skip("s", 100).send("s", "FA")
    conv.send("c", "FA").send("s", "A")
    check(only(conv.frames), history="DdfFa", conn_state="SF", missed_bytes=0, resp_bytes=300)


def test_gap_at_close_after_handshake_is_reported() -> None:
    conv = Conv().script(HANDSHAKE)
    conv.send("c", "PA", 100).send("s", "PA", 200).skip("s", 100).send("s", "FA")
    conv.send("c", "FA").send("s", "A")
    check(only(conv.frames), history="ShADdfFga", conn_state="SF", missed_bytes=100, resp_bytes=300)


def test_multi_flag_packets_Q_and_I() -> None:
    check(only(Conv().send("c", "SF").frames), history="Q", conn_state="SH", orig_bytes=0)
    conv = Conv().script(HANDSHAKE + DATA).send("c", "FR")
    check(only(conv.frames), history="ShADadI", conn_state="RSTO", orig_bytes=100)
    # SYN+RST with the originator's own ISN: no reuse; the SYN re-initialises its sequence space
    # (Zeek's init_endpoint), so the 100 bytes it sent are forgotten
    conv = Conv().script(HANDSHAKE + DATA).send("c", "SR", seq=1000)
    check(only(conv.frames), history="ShADadQ", conn_state="RSTO", orig_bytes=0, resp_bytes=200)


def test_repeated_fin_with_new_sequence_adds_a_letter() -> None:
    conv = Conv().script(HANDSHAKE + DATA).send("c", "FA").send("c", "FA", seq=1101)  # same FIN again
    check(only(conv.frames), history="ShADadF", orig_bytes=100)
    conv = Conv().script(HANDSHAKE + DATA).send("c", "FA").send("c", "PA", 50, seq=1101)
    conv.send("c", "FA", seq=1151)  # a FIN at another sequence number
    assert only(conv.frames)["history"].endswith("FF")


# -- byte counts from sequence numbers -----------------------------------------------------------------

def test_bytes_come_from_sequence_numbers_not_payload_seen() -> None:
    conv = Conv().script(HANDSHAKE)
    conv.send("c", "PA", 100).send("c", "PA", 100, seq=1001).send("c", "PA", 50)  # retransmission
    conv.send("s", "A").send("c", "FA").send("s", "FA").send("c", "A")
    # SYN and FIN octets are not payload; the retransmitted 100 count once
    check(only(conv.frames), orig_bytes=150, resp_bytes=0, conn_state="SF", history="ShADTaFf")


@pytest.mark.parametrize("side", ["c", "s"])
def test_sequence_wraparound(side: str) -> None:
    isn = {"c": (2**32 - 50, 5000), "s": (1000, 2**32 - 10)}[side]
    conv = Conv(isn_c=isn[0], isn_s=isn[1]).script(HANDSHAKE)
    for _ in range(3):
        conv.send(side, "PA", 100)
    conv.send("s" if side == "c" else "c", "A")
    conv.script([("c", "FA"), ("s", "FA"), ("c", "A")])
    rec = only(conv.frames)
    check(rec, orig_bytes=300 if side == "c" else 0, resp_bytes=300 if side == "s" else 0, missed_bytes=0,
          conn_state="SF")
    assert "T" not in rec["history"].upper()


def test_long_connection_crossing_2_32_bytes_of_sequence_space() -> None:
    # sequence advances of 600 MB at a time (the capture lost nearly all of it): sizes and gaps
    # beyond 32 bits come out right
    conv = Conv().script(HANDSHAKE)
    step = 600_000_000
    for _ in range(9):
        conv.send("c", "PA", 100, dt=1.0).send("s", "A").skip("c", step - 100)
    conv.send("c", "PA", 100).send("s", "A")
    rec = only(conv.frames)
    check(rec, orig_bytes=9 * step + 100, missed_bytes=9 * (step - 100), resp_bytes=0, history="ShADaG")


def test_data_far_above_a_hole_before_any_ack_stops_gap_reports() -> None:
    # Zeek's reassembler gives up on a direction (skip_deliveries) when more than
    # tcp_max_above_hole_without_any_acks (16384) bytes wait above a hole and none of its data was
    # acknowledged yet: the hole is never reported
    conv = Conv().script(HANDSHAKE)
    conv.send("c", "PA", 100).skip("c", 1000)
    for _ in range(17):  # 1000 missing + 17000 above > 16384
        conv.send("c", "PA", 1000)
    conv.send("s", "A")
    check(only(conv.frames), history="ShADa", missed_bytes=0, orig_bytes=18_100)


def test_data_above_a_hole_within_the_limit_is_reported() -> None:
    conv = Conv().script(HANDSHAKE)
    conv.send("c", "PA", 100).skip("c", 1000)
    for _ in range(15):  # 1000 missing + 15000 above: 16000 <= 16384
        conv.send("c", "PA", 1000)
    conv.send("s", "A")
    check(only(conv.frames), history="ShADaG", missed_bytes=1000, orig_bytes=16_100)


def test_rst_after_unacked_syn_data_counts_the_data() -> None:
    # Size()'s special case applies only when data beyond the SYN octet was acknowledged
    # (NoDataAcked: ack == start or start + 1); here the responder acked just the SYN
    conv = Conv().send("c", "S").send("c", "PA", 100).send("s", "A", seq=5000, ack=1001).send("c", "R")
    check(only(conv.frames), conn_state="RSTOS0", history="SDaR", orig_bytes=100)
