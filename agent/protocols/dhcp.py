"""Sans-IO DHCP tracker: one `dhcp` record per client transaction (Zeek dhcp.log semantics).

Design
------
* Wire format is RFC 2131 section 2 (the BOOTP fixed header, 236 octets:
  op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr,
  chaddr[16], sname[64], file[128]) followed by the magic cookie
  99.130.83.99 and options (RFC 2131 section 3, RFC 2132 section 2: Pad 0,
  End 255, otherwise code, length, value).  Repeated options are concatenated
  (RFC 3396 section 7); Option Overload (RFC 2132 section 9.3) continues the
  options in `file`, then `sname` (RFC 3396 section 5).  A missing End is
  tolerated; an option running past the message, a missing cookie, or a
  fixed-size option of the wrong size raises `DecodeError`.
* Not a per-flow decoder: a transaction crosses several UDP flows (the client
  broadcasts from 0.0.0.0:68 to 255.255.255.255:67, the server answers to the
  offered address or to broadcast), so `DhcpTracker` sees every DHCP message
  with the uid of the flow it came on and joins them by transaction id (xid),
  as Zeek's base/protocols/dhcp/main.zeek does.
* Field rules are main.zeek's `DHCP::aggregate_msgs` (each message overwrites):
  - every message: `uids` += uid, `msg_types` += the type name (option 53,
    RFC 2132 section 9.6 plus RFC 3203/4388/6926/7724 names; "unknown-message-
    type-N" otherwise, N=0 when the option is absent), `duration` = time since
    the first message;
  - client messages: `client_addr` = the source address unless 0.0.0.0 or
    255.255.255.255; `host_name` (12), `client_fqdn` (81, RFC 4702),
    `requested_addr` (50); `mac` from Client Identifier (61, RFC 2132 section
    9.14) when its type is Ethernet (1), else the chaddr is remembered;
  - server messages: when yiaddr is not 0.0.0.0, `server_addr` = the source
    address and `assigned_addr` = yiaddr; `client_addr` = `assigned_addr` if
    still unset; `mac` = chaddr if still unset; `domain` (15), `lease_time`
    (51, RFC 2132 section 9.2);
  - any message: relay agent sub-options (82, RFC 3046 section 2.0): circuit
    id (1), remote id (2), subscriber id (6, RFC 3993), as Zeek's
    policy/protocols/dhcp/sub-opts.zeek;
  - when written, a missing `mac` is filled from the client's chaddr.
  Zeek tells client from server by the connection (originator, ports 67/68);
  we use the BOOTP op field (RFC 2131 section 2: BOOTREQUEST from clients and
  relays, BOOTREPLY from servers), which gives the same answer for every
  message a client or server sends and needs no ports.  Like Zeek's
  `server_addr` rule, ours is the source of the server's reply, so `dst_ip`
  is not needed; it is accepted for symmetry with the flow id.
* When a record is written (Zeek's `join_data` table: `&create_expire=10secs`
  with `join_data_expiration`): `AGGREGATE_INTERVAL` after the first message
  and then every `IDLE_RECHECK` seconds, the transaction is written if no
  message came for more than `IDLE_RECHECK` seconds or it has been watched for
  more than `MAX_WATCH_TIME`; at once when it reaches `MAX_UIDS_PER_RECORD`
  uids or `MAX_MSG_TYPES_PER_RECORD` message types; and at `close`.  Time is
  packet time: `message` runs the due checks first, so records do not depend
  on how often `expire` is called.  A later message with the same xid starts
  a new transaction.
* Deliberate differences from Zeek: trailing NULs are stripped from
  `host_name` (as Zeek already does for `domain`), an all-zero or non-6-octet
  hardware address gives no `mac` (the wire contract allows only EUI-48), and
  text is UTF-8, else GB18030 (SCHEMA convention).
* Records carry the fields of SCHEMA.md / wire.records.DhcpRecord.  Zeek's
  extra columns (`client_fqdn`, `circuit_id`, `agent_remote_id`,
  `subscriber_id`, `duration`) are tracked and added only with `extras=True`,
  for when the wire contract gains them.
* Every table is bounded: `MAX_TRANSACTIONS` open transactions (the oldest is
  written early when it is full; `counters` says how often), at most
  `MAX_UIDS_PER_RECORD` uids and `MAX_MSG_TYPES_PER_RECORD` types per
  transaction, `MAX_TEXT_OCTETS` per text field.
"""

from __future__ import annotations

import functools
import heapq
import struct
from dataclasses import dataclass, field
from typing import cast

from agent.decode.errors import DecodeError
from agent.protocols.base import Record
from agent.protocols.spec import Probe, ProtocolSpec
from wire.addresses import ip_from_packed, mac_from_bytes
from wire.records import DhcpRecord
from wire.text import wire_text

# -- limits and Zeek's timing (base/protocols/dhcp/main.zeek) -----------------
FIXED_LEN = 236  # RFC 2131 section 2: the BOOTP header before the options
MAGIC_COOKIE = b"\x63\x82\x53\x63"  # RFC 2131 section 3
AGGREGATE_INTERVAL = 10.0  # join_data &create_expire=10secs
IDLE_RECHECK = 5.0  # join_data_expiration: idle > 5 s writes, else check again in 5 s
MAX_WATCH_TIME = 30.0  # DHCP::max_txid_watch_time
MAX_UIDS_PER_RECORD = 10  # DHCP::max_uids_per_log_entry
MAX_MSG_TYPES_PER_RECORD = 50  # DHCP::max_msg_types_per_log_entry
# Open transactions.  Each lives about 10-30 s; a busy campus segment sees a
# few hundred per second at boot storms.  Beyond this the oldest is written early.
MAX_TRANSACTIONS = 65536
# Text taken from one option (after RFC 3396 concatenation, which can reach
# the size of a datagram): names are at most 255 octets (RFC 1035 2.3.4), so
# more is noise; cut to keep records small.
MAX_TEXT_OCTETS = 1024

MESSAGE_TYPES: dict[int, str] = {  # Zeek's DHCP::message_types
    1: "DISCOVER",
    2: "OFFER",
    3: "REQUEST",
    4: "DECLINE",
    5: "ACK",
    6: "NAK",
    7: "RELEASE",
    8: "INFORM",
    9: "FORCERENEW",
    10: "LEASEQUERY",
    11: "LEASEUNASSIGNED",
    12: "LEASEUNKNOWN",
    13: "LEASEACTIVE",
    14: "BULKLEASEQUERY",
    15: "LEASEQUERYDONE",
    16: "ACTIVELEASEQUERY",
    17: "LEASEQUERYSTATUS",
    18: "TLS",
}

BOOTREQUEST = 1
O_PAD, O_END = 0, 255
O_HOST_NAME = 12
O_DOMAIN = 15
O_REQUESTED = 50
O_LEASE = 51
O_OVERLOAD = 52
O_MSG_TYPE = 53
O_CLIENT_ID = 61
O_FQDN = 81
O_RELAY = 82
_SIZES = {O_REQUESTED: 4, O_LEASE: 4, O_OVERLOAD: 1, O_MSG_TYPE: 1}  # fixed sizes (RFC 2132)
_MIN_SIZES = {O_CLIENT_ID: 2, O_FQDN: 3}  # RFC 2132 9.14, RFC 4702 2


def type_name(t: int) -> str:
    return MESSAGE_TYPES.get(t, f"unknown-message-type-{t}")


@dataclass
class Message:
    """The parts of one DHCP message the log uses."""

    op: int
    xid: int
    yiaddr: str
    chaddr: str | None  # EUI-48 text, None when absent or not representable
    msg_type: int  # 0 when option 53 is absent (as Zeek)
    options: dict[int, bytes]


def _chaddr(htype: int, hlen: int, raw: bytes) -> str | None:
    # Zeek's fmt_mac() on the 16-octet field: EUI-48 when octets 6-7 are zero.
    if (htype == 1 and hlen == 6) or raw[6:8] == b"\0\0":
        mac = raw[:6]
        if mac != b"\0" * 6:
            return mac_from_bytes(mac)
    return None


def _walk(area: bytes, where: str, into: dict[int, bytearray]) -> None:
    pos = 0
    while pos < len(area):
        code = area[pos]
        if code == O_END:
            return
        if code == O_PAD:
            pos += 1
            continue
        if pos + 1 >= len(area):
            raise DecodeError("DHCP_option_past_end", f"option {code} length missing in {where}")
        n = area[pos + 1]
        if pos + 2 + n > len(area):
            raise DecodeError("DHCP_option_past_end", f"option {code} of {n} octets in {where}")
        into.setdefault(code, bytearray()).extend(area[pos + 2 : pos + 2 + n])
        pos += 2 + n


def parse_message(data: bytes) -> Message:
    """Parse one DHCP message (RFC 2131 section 2-3, RFC 2132, RFC 3396)."""
    if len(data) < FIXED_LEN + 4:
        raise DecodeError("DHCP_truncated", f"{len(data)} octets")
    if data[FIXED_LEN : FIXED_LEN + 4] != MAGIC_COOKIE:
        raise DecodeError("DHCP_bad_cookie", data[FIXED_LEN : FIXED_LEN + 4].hex())
    op, htype, hlen, _hops, xid = struct.unpack_from("!BBBBI", data)
    opts: dict[int, bytearray] = {}
    _walk(data[FIXED_LEN + 4 :], "options", opts)
    overload = opts.get(O_OVERLOAD)
    if overload is not None and len(overload) == 1:
        if overload[0] & 1:
            _walk(data[108:236], "file", opts)
        if overload[0] & 2:
            _walk(data[44:108], "sname", opts)
    options = {k: bytes(v) for k, v in opts.items()}
    for code, size in _SIZES.items():
        if code in options and len(options[code]) != size:
            raise DecodeError("DHCP_bad_option_length", f"option {code} of {len(options[code])} octets")
    for code, size in _MIN_SIZES.items():
        if code in options and len(options[code]) < size:
            raise DecodeError("DHCP_bad_option_length", f"option {code} of {len(options[code])} octets")
    mtype = options[O_MSG_TYPE][0] if O_MSG_TYPE in options else 0
    return Message(
        op=op,
        xid=xid,
        yiaddr=ip_from_packed(data[16:20]),
        chaddr=_chaddr(htype, hlen, data[28:44]),
        msg_type=mtype,
        options=options,
    )


def relay_suboptions(value: bytes) -> dict[int, bytes]:
    """RFC 3046 section 2.0: sub-options of the Relay Agent Information option (last wins, as Zeek)."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(value):
        if pos + 2 > len(value) or pos + 2 + value[pos + 1] > len(value):
            raise DecodeError("DHCP_relay_suboption_past_end", f"sub-option at {pos}")
        n = value[pos + 1]
        out[value[pos]] = value[pos + 2 : pos + 2 + n]
        pos += 2 + n
    return out


def _fqdn(value: bytes) -> str:
    """RFC 4702 section 2: flags, two rcodes, then the name (wire format when E is set)."""
    name = value[3:]
    if value[0] & 0x04:  # E: canonical wire format (RFC 1035 3.1), uncompressed
        labels, pos = [], 0
        while pos < len(name) and name[pos] != 0:
            n = name[pos]
            labels.append(name[pos + 1 : pos + 1 + n])
            pos += 1 + n
        name = b".".join(labels)
    return _text(name)


def _text(raw: bytes) -> str:
    return wire_text(raw.rstrip(b"\0")[:MAX_TEXT_OCTETS])


@dataclass
class _Txn:
    ts: float
    seq: int
    uids: list[str] = field(default_factory=list)
    last: float = 0.0
    next_check: float = 0.0
    client_addr: str | None = None
    server_addr: str | None = None
    mac: str | None = None
    client_chaddr: str | None = None
    host_name: str | None = None
    client_fqdn: str | None = None
    domain: str | None = None
    requested_addr: str | None = None
    assigned_addr: str | None = None
    lease_time: float | None = None
    msg_types: list[str] = field(default_factory=list)
    circuit_id: str | None = None
    agent_remote_id: str | None = None
    subscriber_id: str | None = None


_UNSPECIFIED = ("0.0.0.0", "255.255.255.255")


class DhcpTracker:
    """Joins DHCP messages from all flows into per-transaction `dhcp` records."""

    name = "dhcp"

    def __init__(self, *, extras: bool = False) -> None:
        self.extras = extras
        self._txns: dict[int, _Txn] = {}  # by xid, in creation order
        self._checks: list[tuple[float, int, int]] = []  # (next_check, seq, xid) min-heap
        self._seq = 0
        self.counters: dict[str, int] = {"transactions_evicted": 0, "written_at_cap": 0}

    # -- public API ----------------------------------------------------------------
    def message(
        self, ts: float, uid: str, payload: bytes, src_ip: str | None, dst_ip: str | None
    ) -> list[Record]:
        """One DHCP message seen at `ts` on flow `uid`, sent by `src_ip` to `dst_ip`."""
        msg = parse_message(bytes(payload))
        out = self.expire(ts)
        txn = self._txns.get(msg.xid)
        if txn is None:
            if len(self._txns) >= MAX_TRANSACTIONS:
                oldest = next(iter(self._txns))
                self.counters["transactions_evicted"] += 1
                out.append(self._write(oldest))
            self._seq += 1
            txn = _Txn(ts=ts, seq=self._seq, next_check=ts + AGGREGATE_INTERVAL)
            self._txns[msg.xid] = txn
            heapq.heappush(self._checks, (txn.next_check, txn.seq, msg.xid))
        self._apply(txn, ts, uid, msg, src_ip)
        if len(txn.uids) >= MAX_UIDS_PER_RECORD or len(txn.msg_types) >= MAX_MSG_TYPES_PER_RECORD:
            self.counters["written_at_cap"] += 1
            out.append(self._write(msg.xid))
        return out

    def expire(self, ts: float) -> list[Record]:
        """Write the transactions Zeek's expiration would have written by `ts`."""
        out: list[Record] = []
        while self._checks and self._checks[0][0] <= ts:
            t, seq, xid = heapq.heappop(self._checks)
            txn = self._txns.get(xid)
            if txn is None or txn.seq != seq:
                continue  # already written
            if t - txn.last > IDLE_RECHECK or t - txn.ts > MAX_WATCH_TIME:
                out.append(self._write(xid))
            else:
                txn.next_check = t + IDLE_RECHECK
                heapq.heappush(self._checks, (txn.next_check, seq, xid))
        return out

    def close(self, ts: float) -> list[Record]:
        """Write everything still open (Zeek's zeek_done), oldest first."""
        out = [self._write(xid) for xid in list(self._txns)]
        self._checks.clear()
        return out

    # -- Zeek's DHCP::aggregate_msgs -------------------------------------------------
    def _apply(self, txn: _Txn, ts: float, uid: str, msg: Message, src_ip: str | None) -> None:
        o = msg.options
        txn.last = ts
        if uid not in txn.uids:
            txn.uids.append(uid)
        txn.msg_types.append(type_name(msg.msg_type))
        if msg.op == BOOTREQUEST:
            if src_ip is not None and src_ip not in _UNSPECIFIED:
                txn.client_addr = src_ip
            if O_HOST_NAME in o:
                txn.host_name = _text(o[O_HOST_NAME])
            if O_FQDN in o:
                txn.client_fqdn = _fqdn(o[O_FQDN])
            cid = o.get(O_CLIENT_ID)
            cid_mac = (
                mac_from_bytes(cid[1:7]) if cid is not None and cid[0] == 1 and _eui48(cid[1:]) else None
            )
            if cid_mac is not None:
                txn.mac = cid_mac
            else:
                txn.client_chaddr = msg.chaddr
            if O_REQUESTED in o:
                txn.requested_addr = ip_from_packed(o[O_REQUESTED])
        else:
            if msg.yiaddr != "0.0.0.0":
                if src_ip is not None:
                    txn.server_addr = src_ip
                txn.assigned_addr = msg.yiaddr
            if msg.chaddr is not None and txn.mac is None:
                txn.mac = msg.chaddr
            if txn.client_addr is None and txn.assigned_addr is not None:
                txn.client_addr = txn.assigned_addr
            if O_DOMAIN in o:
                txn.domain = _text(o[O_DOMAIN])
            if O_LEASE in o:
                txn.lease_time = float(struct.unpack("!I", o[O_LEASE])[0])
        if O_RELAY in o:
            subs = relay_suboptions(o[O_RELAY])
            if 1 in subs:
                txn.circuit_id = wire_text(subs[1])
            if 2 in subs:
                txn.agent_remote_id = wire_text(subs[2])
            if 6 in subs:
                txn.subscriber_id = wire_text(subs[6])

    def _write(self, xid: int) -> Record:
        txn = self._txns.pop(xid)
        rec: DhcpRecord = {
            "type": "dhcp",
            "ts": txn.ts,
            "uids": list(txn.uids),
            "client_addr": txn.client_addr,
            "server_addr": txn.server_addr,
            "mac": txn.mac if txn.mac is not None else txn.client_chaddr,
            "host_name": txn.host_name,
            "domain": txn.domain,
            "requested_addr": txn.requested_addr,
            "assigned_addr": txn.assigned_addr,
            "lease_time": txn.lease_time,
            "msg_types": list(txn.msg_types),
        }
        if self.extras:
            rec["client_fqdn"] = txn.client_fqdn
            rec["circuit_id"] = txn.circuit_id
            rec["agent_remote_id"] = txn.agent_remote_id
            rec["subscriber_id"] = txn.subscriber_id
            rec["duration"] = max(0.0, txn.last - txn.ts)  # (a clock stepped back: never negative)
        return cast(Record, rec)


def _eui48(hwaddr: bytes) -> bool:
    # Zeek's fmt_mac(): 6 octets, or 8+ octets whose 7th and 8th are zero
    return (len(hwaddr) == 6 or (len(hwaddr) >= 8 and hwaddr[6:8] == b"\0\0")) and hwaddr[:6] != b"\0" * 6


#: What this module decodes (agent.protocols.spec; listed in agent.protocols.registry).
def has_cookie(p: bytes) -> bool:
    """The probe: a BOOTP message long enough to hold the DHCP magic cookie, and holding it."""
    return len(p) >= 240 and p[236:240] == b"\x63\x82\x53\x63"


SPEC = ProtocolSpec(
    "dhcp", ("udp",), None, records=("dhcp",), ports=frozenset({67, 68}),
    probe=Probe(datagram=has_cookie),
    tracker=functools.partial(DhcpTracker, extras=True),
)
