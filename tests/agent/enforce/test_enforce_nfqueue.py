"""agent.enforce.nfqueue for real: a queue rule in the server namespace, pings from the client.

The server namespace of the e2e harness's veth pair (tests/e2e/netns.py ``veth_pair``)
gets an input rule queueing ICMP to our queue; this test binds the queue with `NfQueue`
from inside that namespace (enforce_lab.inside) and decides, packet by packet or in
batches, what the kernel does with each echo request. The client's ping says what got
through: a reply for exactly the requests we accepted. The kernel's own view
(/proc/net/netfilter/nfnetlink_queue: held, dropped-when-full) checks fail-open and
fail-closed, and a tiny socket buffer shows ENOBUFS counted while reading goes on.

The rule is nftables' ``queue`` statement when the kernel has it (CONFIG_NFT_QUEUE);
otherwise the iptables NFQUEUE target (xtables, which the kernel may have when nft_queue
is missing), for the same kernel queue. Without either the test is skipped.

Parsing is also tested without a kernel: several messages in one datagram, every kind
of malformed input counted and never raised.
"""

from __future__ import annotations

import re
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dpkt
import pytest
from enforce_lab import TIMEOUT, Net, have, inside, run, veth_pair

from agent.enforce.nfqueue import (
    NFNL_SUBSYS_QUEUE,
    NFQA_CAP_LEN,
    NFQA_IFINDEX_INDEV,
    NFQA_MARK,
    NFQA_PACKET_HDR,
    NFQA_PAYLOAD,
    NFQNL_MSG_PACKET,
    NLM_F_ACK_TLVS,
    NLM_F_CAPPED,
    NLMSG_ERROR,
    NfQueue,
    QueuedPacket,
    parse_datagram,
)

QNUM = 7


# -- kernel-shaped messages, for the parser --------------------------------------------------------------


def nlattr(atype: int, value: bytes) -> bytes:
    n = 4 + len(value)
    return struct.pack("=HH", n, atype) + value + b"\0" * (-n % 4)


def packet_msg(packet_id: int, payload: bytes, *, attrs: bytes = b"", family: int = 2, queue: int = QNUM,
               hook: int = 1, length_fix: int = 0) -> bytes:
    """An NFQNL_MSG_PACKET as the kernel builds it (packet header, payload, extra ``attrs``)."""
    body = (struct.pack("!BBH", family, 0, queue)
            + nlattr(NFQA_PACKET_HDR, struct.pack("!IHB", packet_id, 0x0800, hook))
            + attrs + nlattr(NFQA_PAYLOAD, payload))
    return struct.pack("=IHHII", 16 + len(body) + length_fix, NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_PACKET,
                       0, 0, 0) + body


def test_parse_several_messages_in_one_datagram() -> None:
    d = (packet_msg(1, b"\x45" + b"a" * 19, attrs=nlattr(NFQA_MARK, struct.pack("!I", 0x42))
                    + nlattr(NFQA_IFINDEX_INDEV, struct.pack("!I", 5)))
         + packet_msg(2, b"\x45" + b"b" * 20, attrs=nlattr(NFQA_CAP_LEN, struct.pack("!I", 1500)), hook=3))
    res = parse_datagram(d)
    assert not res.malformed and not res.orphans and not res.acks
    assert res.packets == [
        QueuedPacket(1, 0x0800, 1, b"\x45" + b"a" * 19, 0x42, 5, None, 2, 20),
        QueuedPacket(2, 0x0800, 3, b"\x45" + b"b" * 20, 0, None, None, 2, 1500),
    ]


def test_parse_error_message_with_extended_ack() -> None:
    req = struct.pack("=IHHII", 20, 0x302, 5, 9, 0)  # the echoed request: its header (capped)
    body = struct.pack("=i", -1) + req + nlattr(1, b"queue is bound elsewhere\0")
    msg = struct.pack("=IHHII", 16 + len(body), NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 9, 0) + body
    res = parse_datagram(msg)
    assert [(a.seq, a.errno, a.message) for a in res.acks] == [(9, 1, "queue is bound elsewhere")]


@pytest.mark.parametrize(("data", "orphans"), [
    (b"\x10\x00", []),  # shorter than a netlink header
    (packet_msg(1, b"x", length_fix=8), []),  # header claims more than the datagram holds
    (struct.pack("=IHHII", 8, 0x300, 0, 0, 0), []),  # length shorter than the header itself
    (struct.pack("=IHHII", 18, 0x300, 0, 0, 0) + b"\0\0", []),  # no room for the nfgenmsg
    (packet_msg(3, b"x", attrs=struct.pack("=HH", 200, NFQA_MARK)), []),  # attribute overruns
    (packet_msg(4, b"x", attrs=struct.pack("=HH", 2, NFQA_MARK)), []),  # attribute below 4 bytes
    (packet_msg(5, b"x", attrs=nlattr(NFQA_MARK, b"\0\0")), [5]),  # short mark: id still known
    (struct.pack("=IHHII", 20, 0x300, 0, 0, 0) + struct.pack("!BBH", 2, 0, 7), []),  # no packet header
    (struct.pack("=IHHII", 16, 0x1234, 0, 0, 0), []),  # a message type nobody sends us
    (struct.pack("=IHHII", 18, NLMSG_ERROR, 0, 0, 0) + b"\0\0", []),  # error without its code
])
def test_parse_malformed_is_counted_not_raised(data: bytes, orphans: list[int]) -> None:
    res = parse_datagram(data)
    assert len(res.malformed) == 1 and not res.packets
    assert res.orphans == orphans


def test_parse_keeps_good_messages_before_a_bad_one() -> None:
    res = parse_datagram(packet_msg(1, b"ok") + b"\x01\x02\x03")
    assert [p.packet_id for p in res.packets] == [1] and len(res.malformed) == 1


# -- the real thing -------------------------------------------------------------------------------------


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    if have("ping") is None:
        pytest.skip("ping (iputils-ping) is not installed")
    with veth_pair(tmp_path / "net") as n:
        yield n


def queue_icmp(ns: str, qnum: int = QNUM) -> str:
    """Queue every ICMP packet reaching ``ns``'s input hook to ``qnum``; returns the backend used."""
    if have("nft") is not None:
        rules = ("table inet eaq {\n chain c {\n  type filter hook input priority 0; policy accept;\n"
                 f"  meta l4proto icmp queue num {qnum}\n }}\n}}\n")
        res = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules,
                             capture_output=True, text=True, timeout=TIMEOUT)
        if res.returncode == 0:
            return "nft"
        if "Could not process rule" not in res.stderr:
            pytest.fail(f"nft: {res.stderr}")
        # this kernel has nf_tables without its queue expression (CONFIG_NFT_QUEUE unset)
    if have("iptables") is None:
        pytest.skip("no NFQUEUE rule possible: the kernel lacks nft's queue and iptables is not installed")
    run("iptables", "-A", "INPUT", "-p", "icmp", "-j", "NFQUEUE", "--queue-num", str(qnum), ns=ns)
    return "iptables"


def ping(net: Net, count: int, interval: float = 0.05, wait: float = 1.0) -> subprocess.Popen[str]:
    return subprocess.Popen(net.client.argv("ping", "-n", "-c", str(count), "-i", str(interval), "-W",
                                            str(wait), net.server.addr),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def replies(p: subprocess.Popen[str]) -> set[int]:
    """The icmp_seq numbers that got an echo reply, once ping has finished."""
    out, _ = p.communicate(timeout=TIMEOUT)
    return {int(m) for m in re.findall(r"icmp_seq=(\d+)", out)}


def icmp_seq(pkt: QueuedPacket) -> int:
    ip = dpkt.ip.IP(pkt.payload)
    assert isinstance(ip.data, dpkt.icmp.ICMP) and ip.data.type == dpkt.icmp.ICMP_ECHO
    return int(ip.data.data.seq)


def collect(q: NfQueue, n: int, have_: list[QueuedPacket] | None = None) -> list[QueuedPacket]:
    """Read from the queue until ``n`` packets in all have come (fails after TIMEOUT)."""
    got = list(have_ or [])
    deadline = time.monotonic() + TIMEOUT
    while len(got) < n:
        if time.monotonic() > deadline:
            pytest.fail(f"only {len(got)} of {n} packets reached the queue: {q.stats()}")
        got += q.recv(timeout=0.5)
    return got


def kernel_view(ns: str, qnum: int = QNUM) -> dict[str, int]:
    """The kernel's line for the queue in /proc/net/netfilter/nfnetlink_queue."""
    for line in run("cat", "/proc/net/netfilter/nfnetlink_queue", ns=ns).stdout.splitlines():
        f = line.split()
        if int(f[0]) == qnum:
            return {"held": int(f[2]), "dropped_full": int(f[5]), "dropped_user": int(f[6]),
                    "last_id": int(f[7])}
    pytest.fail(f"queue {qnum} is not bound in {ns}")


def ifindex(ns: str, dev: str) -> int:
    return int(run("ip", "-n", ns, "-o", "link", "show", "dev", dev).stdout.split(":", 1)[0])


def test_accept_and_drop_each_packet(net: Net) -> None:
    queue_icmp(net.server.ns)
    with inside(net.server.ns):
        q = NfQueue(QNUM)
    with q:
        p = ping(net, 4)
        pkts = collect(q, 4)
        for pkt in pkts:
            q.verdict(pkt.packet_id, accept=icmp_seq(pkt) % 2 == 1)
        assert replies(p) == {1, 3}
        first = pkts[0]
        assert (first.hw_protocol, first.hook, first.family) == (0x0800, 1, 2)  # IPv4, input hook
        assert first.indev == ifindex(net.server.ns, net.server.ifname) and first.outdev is None
        ip = dpkt.ip.IP(first.payload)
        assert ip.src == bytes(map(int, net.client.addr.split("."))) and first.orig_len == len(ip)
        assert q.stats() == {"received": 4, "accepted": 2, "dropped": 2, "enobufs": 0, "malformed": 0,
                             "errors": 0, "outstanding": 0}


def test_verdict_sets_the_mark(net: Net) -> None:
    if have("nft") is None:
        pytest.skip("nft is not installed")
    queue_icmp(net.server.ns)
    # a later input chain counts the packets carrying our mark
    run("nft", "add table inet eam; add chain inet eam c { type filter hook input priority 10; };"
        " add rule inet eam c meta mark 0x42 counter", ns=net.server.ns)
    with inside(net.server.ns):
        q = NfQueue(QNUM)
    with q:
        p = ping(net, 2)
        for pkt in collect(q, 2):
            q.verdict(pkt.packet_id, True, mark=0x42 if icmp_seq(pkt) == 1 else None)
        assert replies(p) == {1, 2}
    listing = run("nft", "list table inet eam", ns=net.server.ns).stdout
    assert "counter packets 1 " in listing, listing


def test_verdict_batch(net: Net) -> None:
    queue_icmp(net.server.ns)
    with inside(net.server.ns):
        q = NfQueue(QNUM)
    with q:
        p = ping(net, 4)
        got: list[QueuedPacket] = []
        while not {1, 2} <= {icmp_seq(x) for x in got}:
            got = collect(q, len(got) + 1, got)
        # ids grow in arrival order: the largest id of requests 1 and 2 covers just those two
        q.verdict_batch(max(x.packet_id for x in got if icmp_seq(x) <= 2), accept=False)
        assert q.dropped == 2
        got = collect(q, 4, got)
        q.verdict_batch(max(x.packet_id for x in got), accept=True)
        assert replies(p) == {3, 4}
        assert (q.accepted, q.dropped, q.stats()["outstanding"]) == (2, 2, 0)


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail_open", "fail_closed"])
def test_full_queue_fail_open_or_closed(net: Net, fail_open: bool) -> None:
    """max_len=1 and nobody reading: the first request is held; what of the next two?"""
    queue_icmp(net.server.ns)
    with inside(net.server.ns):
        q = NfQueue(QNUM, max_len=1, fail_open=fail_open)
    with q:
        got = replies(ping(net, 3))
        k = kernel_view(net.server.ns)
        assert k["held"] == 1
        if fail_open:
            # the kernel let the two it had no room for through, uninspected
            assert got == {2, 3} and k["dropped_full"] == 0
        else:
            assert got == set() and k["dropped_full"] == 2
        held = collect(q, 1)
        assert [icmp_seq(x) for x in held] == [1]
        q.verdict(held[0].packet_id, False)


def test_enobufs_is_counted_and_reading_goes_on(net: Net) -> None:
    queue_icmp(net.server.ns)
    with inside(net.server.ns):
        q = NfQueue(QNUM, rcvbuf=1)  # the kernel's minimum: room for a message or two
    with q:
        count = 40
        got = replies(ping(net, count, interval=0.002))
        held = q.recv(timeout=1)
        assert q.enobufs >= 1 and 0 < len(held) < count
        # what did not fit in our socket was let through by the kernel (fail-open)
        assert len(got) == count - len(held)
        q.verdict_batch(max(x.packet_id for x in held), accept=True)
        p = ping(net, 1, wait=3)
        for pkt in collect(q, 1):
            q.verdict(pkt.packet_id, True)
        assert replies(p) == {1}
        assert q.accepted == len(held) + 1 and q.errors == 0


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail_open", "fail_closed"])
def test_close_gives_held_packets_the_default_verdict(net: Net, fail_open: bool) -> None:
    queue_icmp(net.server.ns)
    with inside(net.server.ns):
        q = NfQueue(QNUM, fail_open=fail_open)
    p = ping(net, 1, wait=2 if fail_open else 0.3)
    with q:
        collect(q, 1)
    assert (q.accepted, q.dropped) == ((1, 0) if fail_open else (0, 1))
    assert replies(p) == ({1} if fail_open else set())


def test_queue_bound_twice_is_refused(net: Net) -> None:
    with inside(net.server.ns):
        q = NfQueue(QNUM)
        with q, pytest.raises(PermissionError, match="bound by another socket"):
            NfQueue(QNUM)


def test_malformed_message_counted_and_its_packet_released(net: Net) -> None:
    """A broken copy of a held packet's message: counted, and the packet gets the default verdict."""
    queue_icmp(net.server.ns)
    with inside(net.server.ns):
        q = NfQueue(QNUM, fail_open=True)
    with q:
        p = ping(net, 1, wait=5)
        (held,) = collect(q, 1)
        broken = packet_msg(held.packet_id, held.payload, attrs=nlattr(NFQA_MARK, b"\0\0"))
        assert q.handle(broken) == []
        assert q.handle(b"\x07\x00\x00") == []  # not even a header
        assert q.malformed == 2 and q.accepted == 1
        assert replies(p) == {1}  # the default verdict (fail-open: accept) released it
        # a verdict for a packet the kernel does not hold: its error comes back, counted
        q.verdict(held.packet_id + 1000, True)
        deadline = time.monotonic() + TIMEOUT
        while q.errors == 0 and time.monotonic() < deadline:
            q.recv(timeout=0.5)
        assert q.errors == 1 and "No such file or directory" in q.last_error


def test_arguments_checked() -> None:
    for kw in ({"copy_range": 0x10000}, {"max_len": 0}):
        with pytest.raises(ValueError):
            NfQueue(QNUM, **kw)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        NfQueue(0x10000)
