"""Sans-IO DNS decoder: one `dns` record per query/response pair (SCHEMA.md).

Design
------
* Wire format is RFC 1035 section 4.1: a 12-byte header (4.1.1), the
  question section (4.1.2) and three resource-record sections (4.1.3).
  Domain names are label sequences (3.1, 2.3.4: labels <= 63 octets, names
  <= 255 octets) that may be compressed with pointers (4.1.4).  Pointers must
  point strictly backwards (as Zeek requires), which rules out loops; the
  number of pointer jumps is also bounded (`MAX_POINTER_JUMPS`).
* Transport (RFC 1035 section 4.2): over UDP (4.2.1) each `feed` is one
  datagram; over TCP (4.2.2) each message is preceded by a two-byte length
  and the stream is buffered per direction, bounded by `MAX_TCP_BUFFER`.
* Query or response is decided by the QR bit, not by direction, as Zeek does.
  Responses are paired with the oldest pending query carrying the same
  transaction id and, when the response repeats the question, the same
  question.  The pending table is bounded by `MAX_PENDING`; the oldest
  query is flushed as unanswered when it overflows.
* Multicast DNS (RFC 6762): answers carry no question (section 6) and
  multicast queries use ID zero (section 18.1), so a response with ID 0 and
  no question is never paired with a query (Zeek's "mdns-no-assoc"
  behaviour); it becomes a record of its own.  The cache-flush /
  unicast-response top bit of the class (sections 10.2, 5.4) is kept as-is.
* Zeek dns.log semantics: names are lower-cased (ASCII) as Zeek's name
  extraction does; `query` is the question name from the query (for a
  response seen without its query, the owner name of its first answer, as
  Zeek's `do_reply`); `qclass`/`qtype`/`TC`/`RD` come from the
  query only; `rcode`, `AA` and `RA` from the response header (Zeek sets
  AA/RA only while logging an answer RR, so a NODATA or REFUSED response
  would show them false although the server set them; Suricata and the wire
  say what the header says); only the answer section is rendered into `answers`/`ttls`,
  using Zeek's renderings (address, name, MX exchange, SOA mname, SRV target,
  "TXT <len> <text>" per string joined by spaces, "RRSIG <type> <signer>",
  "<unknown type=N>", ...).  `rejected` follows Zeek's `dns_rejected` event
  (a response with a question and no RRs at all) and `set_session` (rcode
  != 0 with no question).
* Malformed input raises `DecodeError` with Zeek's weird names.
"""

from __future__ import annotations

from typing import Final, cast

from librt.strings import read_i16_be, read_i32_be

from agent.decode.errors import DecodeError
from agent.protocols.base import Content, ContentSource, Record
from agent.protocols.spec import Probe, ProtocolSpec
from wire.addresses import ip_from_packed
from wire.limits import MAX_LIST_ITEM_LEN
from wire.records import DnsFields
from wire.text import wire_text

# -- limits -----------------------------------------------------------------
HEADER_LEN: Final = 12  # RFC 1035 4.1.1
MAX_LABEL_LEN: Final = 63  # RFC 1035 2.3.4
MAX_NAME_LEN: Final = 255  # RFC 1035 2.3.4 (wire octets)
# A legal name has at most 127 labels, each reachable by at most one pointer;
# anything beyond this is an attack on the decoder, not a name.
MAX_POINTER_JUMPS: Final = 128
# TCP framing: one whole message (16-bit length) plus its prefix is the most a
# direction ever needs to hold before the message can be parsed.
MAX_TCP_BUFFER = 2 + 0xFFFF
# Outstanding queries per flow: mDNS/resolver flows can carry many queries;
# beyond this the oldest are logged as unanswered (bounded memory).
MAX_PENDING: Final = 256
# At most this many answer RRs are rendered per response (bounded record size).
MAX_ANSWERS: Final = 512

# -- Zeek's tables (base/protocols/dns/consts.zeek) --------------------------
# fmt: off
QUERY_TYPES: dict[int, str] = {
    1: "A", 2: "NS", 3: "MD", 4: "MF", 5: "CNAME", 6: "SOA", 7: "MB", 8: "MG",
    9: "MR", 10: "NULL", 11: "WKS", 12: "PTR", 13: "HINFO", 14: "MINFO",
    15: "MX", 16: "TXT", 17: "RP", 18: "AFSDB", 19: "X25", 20: "ISDN",
    21: "RT", 22: "NSAP", 23: "NSAP-PTR", 24: "SIG", 25: "KEY", 26: "PX",
    27: "GPOS", 28: "AAAA", 29: "LOC", 30: "EID", 31: "NIMLOC", 32: "NB",
    33: "SRV", 34: "ATMA", 35: "NAPTR", 36: "KX", 37: "CERT", 38: "A6",
    39: "DNAME", 40: "SINK", 41: "OPT", 42: "APL", 43: "DS", 44: "SSHFP",
    45: "IPSECKEY", 46: "RRSIG", 47: "NSEC", 48: "DNSKEY", 49: "DHCID",
    50: "NSEC3", 51: "NSEC3PARAM", 52: "TLSA", 53: "SMIMEA", 55: "HIP",
    56: "NINFO", 57: "RKEY", 58: "TALINK", 59: "CDS", 60: "CDNSKEY",
    61: "OPENPGPKEY", 62: "CSYNC", 63: "ZONEMD", 64: "SVCB", 65: "HTTPS",
    99: "SPF", 100: "UINFO", 101: "UID", 102: "GID", 103: "UNSPEC",
    104: "NID", 105: "L32", 106: "L64", 107: "LP", 108: "EUI48", 109: "EUI64",
    249: "TKEY", 250: "TSIG", 251: "IXFR", 252: "AXFR", 253: "MAILB",
    254: "MAILA", 255: "*", 256: "URI", 257: "CAA", 32768: "TA", 32769: "DLV",
}

RCODES: dict[int, str] = {
    0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP",
    5: "REFUSED", 6: "YXDOMAIN", 7: "YXRRSET", 8: "NXRRSET", 9: "NOTAUTH",
    10: "NOTZONE", 16: "BADVERS", 17: "BADKEY", 18: "BADTIME", 19: "BADMODE",
    20: "BADNAME", 21: "BADALG", 22: "BADTRUNC",
}
# fmt: on


def _u16(b: bytes, pos: int) -> int:
    return int(read_i16_be(b, pos)) & 0xFFFF


def qtype_name(qtype: int) -> str:
    return QUERY_TYPES.get(qtype, f"query-{qtype}")


def rcode_name(rcode: int) -> str:
    return RCODES.get(rcode, f"unknown-{rcode}")


def read_name(msg: bytes, off: int) -> tuple[str, int]:
    """Decode the (possibly compressed) name at `off`; return it and the offset
    just past it in the original position (RFC 1035 4.1.4)."""
    labels: list[bytes] = []
    wire_len = 1  # the terminating root label
    end: int | None = None
    jumps = 0
    pos = off
    while True:
        if pos >= len(msg):
            raise DecodeError("DNS_label_len_gt_pkt", f"name runs past the message at {pos}")
        length = msg[pos]
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= len(msg):
                raise DecodeError("DNS_label_len_gt_pkt", "truncated compression pointer")
            target = ((length & 0x3F) << 8) | msg[pos + 1]
            if end is None:
                end = pos + 2
            if target >= pos:
                raise DecodeError("DNS_label_forward_compress_offset", f"pointer at {pos} to {target}")
            jumps += 1
            if jumps > MAX_POINTER_JUMPS:
                raise DecodeError("DNS_label_too_many_pointers", f"{jumps} jumps")
            pos = target
            continue
        if kind != 0:
            # 0x40 / 0x80: extended label types (RFC 6891 obsoleted them).
            raise DecodeError("DNS_label_too_long", f"label length octet {length:#x}")
        if length == 0:
            if end is None:
                end = pos + 1
            break
        if length > MAX_LABEL_LEN:
            raise DecodeError("DNS_label_too_long", f"{length} octets")
        if pos + 1 + length > len(msg):
            raise DecodeError("DNS_label_len_gt_pkt", f"label of {length} at {pos}")
        wire_len += 1 + length
        if wire_len > MAX_NAME_LEN:
            raise DecodeError("DNS_NAME_too_long", f"more than {MAX_NAME_LEN} octets")
        labels.append(msg[pos + 1 : pos + 1 + length])
        pos += 1 + length
    # Zeek lower-cases every name it extracts (ASCII only, like C tolower()).
    return wire_text(b".".join(labels).lower()), end


class _Message:
    """One parsed message (a plain class: compiled, it is built without interpreted code)."""

    def __init__(self, trans_id: int, qr: bool, opcode: int, aa: bool, tc: bool, rd: bool, ra: bool,
                 rcode: int, qdcount: int, ancount: int, nscount: int, arcount: int,
                 question: tuple[str, int, int] | None) -> None:
        self.trans_id = trans_id
        self.qr = qr
        self.opcode = opcode
        self.aa = aa
        self.tc = tc
        self.rd = rd
        self.ra = ra
        self.rcode = rcode
        self.qdcount = qdcount
        self.ancount = ancount
        self.nscount = nscount
        self.arcount = arcount
        self.question = question  # (lower-cased name, qtype, qclass)
        self.answer_owner: str | None = None
        self.answers: list[str] = []
        self.ttls: list[float] = []


def _char_strings(rdata: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while pos < len(rdata):
        n = rdata[pos]
        if pos + 1 + n > len(rdata):
            raise DecodeError("DNS_TXT_char_str_past_rdlen", f"string of {n} at {pos}")
        out.append(rdata[pos + 1 : pos + 1 + n])
        pos += 1 + n
    return out


def _need(rdata: bytes, n: int, what: str) -> None:
    if len(rdata) < n:
        raise DecodeError("DNS_RR_bad_length", f"{what} rdata of {len(rdata)} octets")


def render_rdata(msg: bytes, rtype: int, start: int, rdlen: int, owner: str) -> str:
    """Render one answer as Zeek's base/protocols/dns/main.zeek does ("" = not logged)."""
    rdata = msg[start : start + rdlen]
    if rtype == 1:
        if rdlen != 4:
            raise DecodeError("DNS_RR_bad_length", f"A rdata of {rdlen} octets")
        return ip_from_packed(rdata)  # canonical text, without the ipaddress module's objects
    if rtype == 28:
        if rdlen != 16:
            raise DecodeError("DNS_RR_bad_length", f"AAAA rdata of {rdlen} octets")
        return ip_from_packed(rdata)
    if rtype in (2, 5, 12, 39):  # NS, CNAME, PTR, DNAME
        return read_name(msg, start)[0]
    if rtype == 15:  # MX: Zeek logs the exchange only
        _need(rdata, 3, "MX")
        return read_name(msg, start + 2)[0]
    if rtype == 6:  # SOA: Zeek logs the mname
        return read_name(msg, start)[0]
    if rtype == 33:  # SRV: the target
        _need(rdata, 7, "SRV")
        return read_name(msg, start + 6)[0]
    if rtype in (16, 99):  # TXT, SPF
        kind = "TXT" if rtype == 16 else "SPF"
        return " ".join(f"{kind} {len(s)} {wire_text(s)}" for s in _char_strings(rdata))
    if rtype == 46:  # RRSIG
        _need(rdata, 19, "RRSIG")
        type_covered = _u16(rdata, 0)
        signer = read_name(msg, start + 18)[0]
        return f"RRSIG {type_covered} {signer}"
    if rtype == 48:  # DNSKEY
        _need(rdata, 4, "DNSKEY")
        return f"DNSKEY {rdata[3]}"
    if rtype == 43:  # DS
        _need(rdata, 4, "DS")
        return f"DS {rdata[2]} {rdata[3]}"
    if rtype == 47:  # NSEC
        return f"NSEC {owner} {read_name(msg, start)[0]}"
    if rtype == 50:
        return "NSEC3"
    if rtype == 51:
        return "NSEC3PARAM"
    if rtype == 257:  # CAA: flags tag value
        _need(rdata, 2, "CAA")
        taglen = rdata[1]
        _need(rdata, 2 + taglen, "CAA")
        tag = wire_text(rdata[2 : 2 + taglen])
        return f"{rdata[0]} {tag} {wire_text(rdata[2 + taglen :])}"
    if rtype == 13:  # HINFO
        strs = _char_strings(rdata)
        return " ".join(wire_text(s) for s in strs)
    if rtype in (11, 41):  # WKS, OPT: Zeek logs nothing
        return ""
    return f"<unknown type={rtype}>"


def parse_message(msg: bytes) -> _Message:
    if len(msg) < HEADER_LEN:
        raise DecodeError("DNS_truncated_len_lt_hdr_len", f"{len(msg)} octets")
    # librt reads: compiled, each is a machine load (a struct unpack builds a tuple of objects)
    tid = _u16(msg, 0)
    flags = _u16(msg, 2)
    qd = _u16(msg, 4)
    an = _u16(msg, 6)
    ns = _u16(msg, 8)
    ar = _u16(msg, 10)
    m = _Message(
        trans_id=tid,
        qr=bool(flags & 0x8000),
        opcode=(flags >> 11) & 0xF,
        aa=bool(flags & 0x0400),
        tc=bool(flags & 0x0200),
        rd=bool(flags & 0x0100),
        ra=bool(flags & 0x0080),
        rcode=flags & 0xF,
        qdcount=qd,
        ancount=an,
        nscount=ns,
        arcount=ar,
        question=None,
    )
    pos = HEADER_LEN
    for _ in range(qd):
        name, pos = read_name(msg, pos)
        if pos + 4 > len(msg):
            raise DecodeError("DNS_truncated_quest_too_short", f"question at {pos}")
        qtype = _u16(msg, pos)
        qclass = _u16(msg, pos + 2)
        pos += 4
        if m.question is None:
            m.question = (name, qtype, qclass)
    # Only the answer section is logged (Zeek: DNS_ANS); authority and
    # additional sections are not decoded.
    for _ in range(an):
        owner, pos = read_name(msg, pos)
        if pos + 10 > len(msg):
            raise DecodeError("DNS_truncated_ans_too_short", f"RR at {pos}")
        rtype = _u16(msg, pos)
        ttl = int(read_i32_be(msg, pos + 4)) & 0xFFFFFFFF
        rdlen = _u16(msg, pos + 8)
        pos += 10
        if pos + rdlen > len(msg):
            raise DecodeError("DNS_truncated_RR_rdlength_lt_len", f"rdlength {rdlen} > {len(msg) - pos}")
        if m.answer_owner is None:
            m.answer_owner = owner
        if rtype != 41 and len(m.answers) < MAX_ANSWERS:
            reply = render_rdata(msg, rtype, pos, rdlen, owner)
            if reply:
                m.answers.append(reply[:MAX_LIST_ITEM_LEN])  # (long TXT data: the wire's item limit)
                m.ttls.append(float(ttl))
        pos += rdlen
    return m


class _Pending:
    """A query waiting for its response."""

    def __init__(self, ts: float, msg: _Message) -> None:
        self.ts = ts
        self.msg = msg


class DnsDecoder:
    """DNS over UDP (one datagram per `feed`) or TCP (length-prefixed stream)."""

    name = "dns"

    def __init__(self, transport: str) -> None:
        # pieces for the keyword filter (agent.protocols.base.Content); None: no filter runs
        self.content: list[Content] | None = None
        self._queries = 0  # queries seen, numbering them for the filter
        if transport not in ("udp", "tcp"):
            raise ValueError(f"transport must be 'udp' or 'tcp', not {transport!r}")
        self.transport = transport
        self._pending: list[_Pending] = []
        self._buf: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
        self._lost: dict[bool, bool] = {True: False, False: False}

    # -- StreamDecoder ---------------------------------------------------------
    def feed(self, is_orig: bool, data: bytes, ts: float) -> list[Record]:
        if self.transport == "udp":
            return self._message(parse_message(bytes(data)), ts)
        if self._lost[is_orig]:
            return []  # framing lost after a gap; cannot resynchronise
        buf = self._buf[is_orig]
        buf += data
        out: list[Record] = []
        while len(buf) >= 2:
            n = (buf[0] << 8) | buf[1]
            if len(buf) < 2 + n:
                break
            msg = bytes(buf[2 : 2 + n])
            del buf[: 2 + n]
            out.extend(self._message(parse_message(msg), ts))
        if len(buf) > MAX_TCP_BUFFER:  # cannot happen: a partial message is smaller
            raise DecodeError("DNS_tcp_buffer_overflow", f"{len(buf)} octets buffered")
        return out

    def gap(self, is_orig: bool, length: int, ts: float) -> list[Record]:
        if self.transport == "tcp":
            self._buf[is_orig].clear()
            self._lost[is_orig] = True
        return []

    def close(self, ts: float) -> list[Record]:
        out = [self._record(p.ts, p.msg, None) for p in self._pending]
        self._pending.clear()
        for d in (True, False):
            self._buf[d].clear()
        return out

    # -- pairing -----------------------------------------------------------------
    def _message(self, m: _Message, ts: float) -> list[Record]:
        if not m.qr:
            if self.content is not None and m.question is not None:
                self._queries += 1
                self.content.append(Content("dns.query", m.question[0].encode("utf-8", "surrogateescape"),
                                            self._queries, True))
            out: list[Record] = []
            if len(self._pending) >= MAX_PENDING:
                old = self._pending.pop(0)
                out.append(self._record(old.ts, old.msg, None))
            self._pending.append(_Pending(ts, m))
            return out
        unsolicited = m.trans_id == 0 and m.qdcount == 0  # mDNS, RFC 6762 s6/s18.1
        if not unsolicited:
            for i, p in enumerate(self._pending):
                if p.msg.trans_id != m.trans_id:
                    continue
                if m.question is not None and p.msg.question != m.question:
                    continue
                del self._pending[i]
                return [self._record(p.ts, p.msg, m)]
        return [self._record(ts, None, m)]

    @staticmethod
    def _record(ts: float, q: _Message | None, r: _Message | None) -> Record:
        query: str | None = None
        qclass = qtype = None
        tc = rd = False
        if q is not None:
            tc, rd = q.tc, q.rd
            if q.question is not None:
                query, qtype, qclass = q.question
        if query is None and r is not None and r.answer_owner is not None:
            query = r.answer_owner
        rejected = False
        if r is not None:
            no_rrs = r.ancount == 0 and r.nscount == 0 and r.arcount == 0
            rejected = (r.qdcount > 0 and no_rrs) or (r.rcode != 0 and r.qdcount == 0)
        trans_id = q.trans_id if q is not None else r.trans_id if r is not None else 0
        rec: DnsFields = {
            "type": "dns",
            "ts": ts,
            "trans_id": trans_id,
            "query": query,
            "qclass": qclass,
            "qtype": qtype,
            "qtype_name": qtype_name(qtype) if qtype is not None else None,
            "rcode": r.rcode if r is not None else None,
            "rcode_name": rcode_name(r.rcode) if r is not None else None,
            "AA": bool(r.aa) if r is not None else False,
            "TC": tc,
            "RD": rd,
            "RA": bool(r.ra) if r is not None else False,
            "answers": list(r.answers) if r is not None else [],
            "ttls": list(r.ttls) if r is not None else [],
            "rejected": rejected,
        }
        return cast(Record, rec)


_PORTS: Final = frozenset({53, 137, 5353, 5355})


def plausible_header(p: bytes, off: int = 0) -> bool:
    """The probe's test: a DNS header at `off` with a known opcode and a sane question count."""
    if len(p) - off < 12:
        return False
    opcode = (_u16(p, off + 2) >> 11) & 0xF
    return opcode in (0, 1, 2, 4, 5) and _u16(p, off + 4) <= 16


def opens_tcp(p: bytes, is_orig: bool, resp_port: int) -> bool:
    """The probe over TCP (asked on DNS ports only): a client's stream starting with a whole
    length-prefixed message (RFC 1035 4.2.2) with a plausible header."""
    return is_orig and len(p) >= 14 and 12 <= _u16(p, 0) <= len(p) - 2 and plausible_header(p, 2)


#: What this module decodes (agent.protocols.spec; listed in agent.protocols.registry).
SPEC = ProtocolSpec(
    "dns", ("tcp", "udp"), DnsDecoder, records=("dns",), ports=_PORTS,
    probe=Probe(stream=opens_tcp, stream_on_port=True, datagram=plausible_header),
    capabilities=(ContentSource,), takes_transport=True,
)
