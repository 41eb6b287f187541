"""agent.enforce.rst: the reset packets, parsed back with dpkt and checked field by field."""

from __future__ import annotations

import socket
import struct

import dpkt
import pytest

from agent.enforce.rst import MAX_BURST, ethernet_frame, reset_packets

C4, S4 = "192.0.2.10", "198.51.100.20"
C6, S6 = "2001:db8::10", "2001:db8:1::20"
MOD = 1 << 32


def ones_sum(data: bytes) -> int:
    """RFC 1071 sum, independent of the module's implementation: a correct checksum field makes it 0xFFFF."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def parse(packet: bytes) -> tuple[dpkt.ip.IP | dpkt.ip6.IP6, dpkt.tcp.TCP]:
    """The packet as dpkt sees it, after checking both checksums over the raw bytes."""
    if packet[0] >> 4 == 4:
        ip = dpkt.ip.IP(packet)
        assert ones_sum(packet[:20]) == 0xFFFF, "IPv4 header checksum"
        pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, 6, len(packet) - 20)
        seg = packet[20:]
        assert ip.len == len(packet) and ip.hl == 5 and ip.p == 6
        assert ip.df and not ip.mf and ip.offset == 0 and ip.id == 0
    else:
        ip = dpkt.ip6.IP6(packet)
        pseudo = ip.src + ip.dst + struct.pack("!I3xB", len(packet) - 40, 6)
        seg = packet[40:]
        assert ip.plen == len(packet) - 40 and ip.nxt == 6 and ip.flow == 0
    assert ones_sum(pseudo + seg) == 0xFFFF, "TCP checksum"
    tcp = ip.data
    assert isinstance(tcp, dpkt.tcp.TCP)
    assert tcp.flags == dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK
    assert tcp.off == 5 and len(tcp.data) == 0 and tcp.win == 0
    return ip, tcp


def addr(ip: dpkt.ip.IP | dpkt.ip6.IP6, raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET, raw)


@pytest.mark.parametrize(("client", "server"), [(C4, S4), (C6, S6)], ids=["ipv4", "ipv6"])
def test_exact_reset_both_ways(client: str, server: str) -> None:
    pkts = reset_packets(client_ip=client, client_port=40000, server_ip=server, server_port=443,
                         client_next_seq=1000, server_next_seq=5000, ttl=61, burst=1)
    assert [d for d, _ in pkts] == ["to_server", "to_client"]
    ip, tcp = parse(pkts[0][1])
    assert (addr(ip, ip.src), tcp.sport, addr(ip, ip.dst), tcp.dport) == (client, 40000, server, 443)
    assert (tcp.seq, tcp.ack) == (1000, 5000)  # what the server expects next; acks the server's bytes
    assert (ip.ttl if isinstance(ip, dpkt.ip.IP) else ip.hlim) == 61
    ip, tcp = parse(pkts[1][1])
    assert (addr(ip, ip.src), tcp.sport, addr(ip, ip.dst), tcp.dport) == (server, 443, client, 40000)
    assert (tcp.seq, tcp.ack) == (5000, 1000)


def test_deterministic() -> None:
    kw = dict(client_ip=C4, client_port=1, server_ip=S4, server_port=2, client_next_seq=3,
              server_next_seq=4, client_window=3000, server_window=6000)
    assert reset_packets(**kw) == reset_packets(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("client", "server"), [(C4, S4), (C6, S6)], ids=["ipv4", "ipv6"])
def test_burst_offsets_within_each_receivers_window(client: str, server: str) -> None:
    pkts = reset_packets(client_ip=client, client_port=40000, server_ip=server, server_port=80,
                         client_next_seq=1000, server_next_seq=5000, client_window=3000,
                         server_window=64000, burst=4)
    to_server = [parse(p)[1] for d, p in pkts if d == "to_server"]
    to_client = [parse(p)[1] for d, p in pkts if d == "to_client"]
    # exact first, then seq + k * (window // burst): all below RCV.NXT + RCV.WND
    assert [t.seq for t in to_server] == [1000, 17000, 33000, 49000]
    assert [t.seq for t in to_client] == [5000, 5750, 6500, 7250]
    assert all(t.ack == 5000 for t in to_server) and all(t.ack == 1000 for t in to_client)
    assert all(t.seq < 1000 + 64000 for t in to_server) and all(t.seq < 5000 + 3000 for t in to_client)
    assert pkts[0][0] == "to_server" and pkts[1][0] == "to_client"  # the exact ones lead


def test_burst_without_known_window_adds_nothing() -> None:
    pkts = reset_packets(client_ip=C4, client_port=1234, server_ip=S4, server_port=80,
                         client_next_seq=1, server_next_seq=2, server_window=50000, burst=3)
    assert [d for d, _ in pkts] == ["to_server", "to_client", "to_server", "to_server"]
    # a window smaller than the burst gives a step of 0: no extra packet either
    pkts = reset_packets(client_ip=C4, client_port=1234, server_ip=S4, server_port=80,
                         client_next_seq=1, server_next_seq=2, client_window=2, burst=3)
    assert len(pkts) == 2


def test_sequence_numbers_wrap_at_2_32() -> None:
    c_seq, s_seq = MOD - 10, MOD - 1
    pkts = reset_packets(client_ip=C6, client_port=5555, server_ip=S6, server_port=25,
                         client_next_seq=c_seq, server_next_seq=s_seq, client_window=30,
                         server_window=60, burst=3)
    to_server = [parse(p)[1].seq for d, p in pkts if d == "to_server"]
    to_client = [parse(p)[1].seq for d, p in pkts if d == "to_client"]
    assert to_server == [c_seq, (c_seq + 20) % MOD, (c_seq + 40) % MOD] == [MOD - 10, 10, 30]
    assert to_client == [s_seq, 9, 19]


@pytest.mark.parametrize("kw", [
    {"client_ip": C4, "server_ip": S6},
    {"client_ip": "not an address"},
    {"client_port": 0},
    {"server_port": 65536},
    {"client_next_seq": MOD},
    {"server_next_seq": -1},
    {"client_window": -1},
    {"server_window": (65535 << 14) + 1},
    {"ttl": 0},
    {"burst": 0},
    {"burst": MAX_BURST + 1},
])
def test_invalid_arguments(kw: dict[str, object]) -> None:
    args: dict[str, object] = dict(client_ip=C4, client_port=1, server_ip=S4, server_port=2,
                                   client_next_seq=0, server_next_seq=0)
    args.update(kw)
    with pytest.raises(ValueError):
        reset_packets(**args)  # type: ignore[arg-type]


def test_ethernet_frame() -> None:
    src, dst = bytes.fromhex("02aa00000001"), bytes.fromhex("02bb00000002")
    (_, p4), _ = reset_packets(client_ip=C4, client_port=1, server_ip=S4, server_port=2,
                               client_next_seq=0, server_next_seq=0, burst=1)
    f = ethernet_frame(p4, src, dst)
    assert len(f) == 60  # 14 + 40, padded to the Ethernet minimum
    eth = dpkt.ethernet.Ethernet(f)
    assert (eth.src, eth.dst, eth.type) == (src, dst, dpkt.ethernet.ETH_TYPE_IP)
    assert f[14:54] == p4 and f[54:] == b"\0" * 6

    (_, p6), _ = reset_packets(client_ip=C6, client_port=1, server_ip=S6, server_port=2,
                               client_next_seq=0, server_next_seq=0, burst=1)
    f = ethernet_frame(p6, src, dst)
    assert len(f) == 74 and f[12:14] == b"\x86\xdd" and f[14:] == p6

    f = ethernet_frame(p4, src, dst, vlan=100)
    eth = dpkt.ethernet.Ethernet(f)
    assert eth.vlan_tags[0].id == 100 and isinstance(eth.data, dpkt.ip.IP)
    assert f[12:14] == b"\x81\x00" and f[16:18] == b"\x08\x00"
    assert f[18:58] == p4


@pytest.mark.parametrize(("packet", "src", "vlan"), [
    (b"", b"\0" * 6, None),
    (b"\x50" + b"\0" * 39, b"\0" * 6, None),
    (b"\x45" + b"\0" * 39, b"\0" * 5, None),
    (b"\x45" + b"\0" * 39, b"\0" * 6, 4095),
])
def test_ethernet_frame_refuses(packet: bytes, src: bytes, vlan: int | None) -> None:
    with pytest.raises(ValueError):
        ethernet_frame(packet, src, b"\0" * 6, vlan=vlan)
