"""NAT logs from a separate router over syslog -> `nat` records (mirror-port deployments).

What: when the agent sees the traffic on a mirror port instead of being the gateway, the
unit's router does the translation and only its logs know the mapping. ``SyslogNatListener``
receives syslog on a configured host:port over UDP (RFC 5426: one message per datagram) and
TCP (RFC 6587: octet-counting ``LEN SP MSG`` frames, or non-transparent framing where each
message ends with LF; chosen per frame by its first byte, a digit meaning octet counting).
``SyslogNatParser`` (pure, no sockets) parses each message and keeps the little state the
vendor format needs.

Headers tolerated:
* RFC 5424: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]``, TIMESTAMP in RFC
  3339 (with offset or Z) or ``-``; structured data ``-`` or ``[...]`` elements (with escaped
  ``\\]``); a UTF-8 BOM before MSG is dropped.
* RFC 3164 (BSD): ``<PRI>Mmm dd hh:mm:ss HOST MSG``; also the Cisco ASA variants
  ``<PRI>Mmm dd yyyy hh:mm:ss: MSG`` / ``<PRI>Mmm dd yyyy hh:mm:ss HOST : MSG`` and a message
  with no timestamp at all. BSD timestamps have no zone and (mostly) no year: they are read
  in ``tz`` (default UTC, a constructor argument) and in the year that puts them nearest
  the receipt time.
The record's ``ts`` is the router's timestamp when the header has one, else the receipt time.

The NAT line format: Cisco ASA connection messages (the ASA/FTD "Built/Teardown
connection" syslog IDs; Cisco, "ASA Series Syslog Messages", 302013-302021). Unlike the
xlate messages 305011/305012 they name the remote endpoint, which the `nat` record needs::

  %ASA-6-302013: Built outbound TCP connection 4711 for outside:198.51.100.9/443
      (198.51.100.9/443) to inside:10.0.0.5/51234 (203.0.113.7/40001)
  %ASA-6-302014: Teardown TCP connection 4711 for outside:198.51.100.9/443 to
      inside:10.0.0.5/51234 duration 0:00:31 bytes 6120 TCP FINs
  %ASA-6-302015: Built outbound UDP connection 4712 for outside:192.0.2.53/53
      (192.0.2.53/53) to inside:10.0.0.5/5353 (203.0.113.7/5353)
  %ASA-6-302016: Teardown UDP connection 4712 for outside:192.0.2.53/53 to
      inside:10.0.0.5/5353 duration 0:00:01 bytes 120
  %ASA-6-302020: Built outbound ICMP connection for faddr 198.51.100.9/0 gaddr
      203.0.113.7/21 laddr 10.0.0.5/21 type 8 code 0
  %ASA-6-302021: Teardown ICMP connection for faddr 198.51.100.9/0 gaddr 203.0.113.7/21
      laddr 10.0.0.5/21 type 0 code 0

(each one line in reality). In 302013/302015 the "for" endpoint is the remote host and
the "to" endpoint the inside host followed by its mapped (public) address and port, for
inbound and outbound connections alike: inside = the "to" real address, outside = its
mapped address, remote = the "for" real address. A connection whose mapped address equals
its real one was not translated and yields nothing (as untranslated conntrack entries).
302014/302016 do not repeat the mapped address: the parser remembers each translated
connection by (router, connection id) from its Built message and emits the `destroy` from
that; a teardown of an unknown id is counted (``teardown_unknown``), not guessed. ICMP
(302020/302021): the "port" is the echo identifier; the remote port is ``None``. Optional
trailers (idfw user names in parentheses, ``type/code``, flags) are ignored. Other
messages (other ASA ids, other programs) are counted as ``ignored``.

Malformed input never raises: a message that does not parse (bad header, a 3020xx line
that does not match, a bad address) is counted in ``counters["malformed"]`` and its
reason and first ``SNIPPET`` characters are kept in ``recent_errors`` (the last
``RECENT_ERRORS``), which the agent reports; the listener also survives bad frames.

Limits: ``MAX_MESSAGE`` bytes per message (RFC 5425/6587 suggest at least 2048; longer
UDP datagrams are truncated by the socket, longer TCP frames are counted ``oversize`` and
the connection is closed, as a framing error cannot be resynchronised); ``MAX_CLIENTS`` TCP
connections (more are refused: ``clients_refused``); ``OPEN_LIMIT`` remembered connections
(oldest forgotten first: ``open_evicted``). IPv4 and IPv6 addresses.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import selectors
import socket
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo

from agent.nat.table import Translation, nat_record
from wire.records import NatRecord
from wire.text import without_nul

MAX_MESSAGE = 16384  # bytes of one syslog message (datagram or TCP frame)
MAX_CLIENTS = 64  # concurrent TCP senders (a unit has one or a few routers)
OPEN_LIMIT = 262_144  # translated connections remembered between Built and Teardown
RECENT_ERRORS = 32  # malformed messages kept for the report
SNIPPET = 120  # characters of a malformed message kept
POLL_S = 0.5  # seconds run() waits per step, so a stop request is seen within this time

_MONTHS = {m: i + 1 for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))}

_PRI = re.compile(r"<(\d{1,3})>")
_RFC5424 = re.compile(r"1 (\S+) (\S+) (\S+) (\S+) (\S+) ")
_RFC3164_TS = re.compile(
    r"(?P<mon>[A-Z][a-z]{2}) {1,2}(?P<day>\d{1,2})(?: (?P<year>\d{4}))? (?P<time>\d\d:\d\d:\d\d)(?:\.\d+)?"
    r"(?: [A-Z]{2,5})?:? ")
_ASA = re.compile(r"%(?:ASA|FTD)-(\d)-(\d{6}): ?(.*)", re.S)
_EP = r"(\S+?):([0-9A-Fa-f.:]+)/(\d+)"  # interface:address/port
_MAPPED = r"\(([0-9A-Fa-f.:]+)/(\d+)\)"
_BUILT = re.compile(rf"Built (?:inbound|outbound) (TCP|UDP) connection (\d+) for {_EP} {_MAPPED}"
                    rf"(?: \([^)]*\))? to {_EP} {_MAPPED}")
_TEARDOWN = re.compile(rf"Teardown (TCP|UDP) connection (\d+) for {_EP} to {_EP}(?: |$)")
_ICMP = re.compile(r"(Built|Teardown) (?:inbound |outbound )?(ICMP|ICMPv6) connection (?:\d+ )?for faddr "
                   r"([0-9A-Fa-f.:]+)/(\d+)(?: \([^)]*\))? gaddr ([0-9A-Fa-f.:]+)/(\d+) laddr "
                   r"([0-9A-Fa-f.:]+)/(\d+)")
_CONN_IDS = {"302013", "302014", "302015", "302016", "302020", "302021"}


class Malformed(ValueError):
    """A message that does not parse; the text is the reason."""


def _addr(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise Malformed(f"bad address {text[:40]!r}") from None


def _port(text: str) -> int:
    v = int(text)
    if v > 65535:
        raise Malformed(f"bad port {text}")
    return v


class SyslogNatParser:
    """Syslog messages (bytes or str, one message each) -> `nat` records. Pure; not thread-safe."""

    def __init__(self, tz: tzinfo = UTC, open_limit: int = OPEN_LIMIT) -> None:
        self.tz = tz
        self.open_limit = open_limit
        self._open: OrderedDict[tuple[str, str, str], Translation] = OrderedDict()
        self.counters: dict[str, int] = dict.fromkeys(
            ("messages", "records", "malformed", "ignored", "untranslated", "teardown_unknown",
             "open_evicted", "router_ts", "receipt_ts"), 0)
        self.recent_errors: deque[tuple[str, str]] = deque(maxlen=RECENT_ERRORS)

    def feed(self, message: bytes | str, peer: str, received: float) -> list[NatRecord]:
        """Parse one message from ``peer`` (sender address) received at ``received`` (epoch s)."""
        self.counters["messages"] += 1
        text = without_nul(message.decode("utf-8", "replace") if isinstance(message, bytes) else message)
        text = text.rstrip("\r\n\0")
        try:
            out = self._parse(text, peer, received)
        except (Malformed, ValueError, OverflowError) as e:
            self.counters["malformed"] += 1
            self.recent_errors.append((str(e) or type(e).__name__, text[:SNIPPET]))
            return []
        self.counters["records"] += len(out)
        return out

    # headers --------------------------------------------------------------------------------

    def _parse(self, text: str, peer: str, received: float) -> list[NatRecord]:
        m = _PRI.match(text)
        if m is None or int(m[1]) > 191:
            raise Malformed("no <PRI> at the start")
        rest = text[m.end():]
        ts: float | None
        host: str
        h = _RFC5424.match(rest)
        if h is not None:
            ts = None if h[1] == "-" else self._rfc3339(h[1])
            host = peer if h[2] == "-" else h[2]
            body = _skip_sd(rest[h.end():])
            body = body.removeprefix("\ufeff")
        else:
            ts, host, body = self._bsd(rest, peer, received)
        if ts is None:
            self.counters["receipt_ts"] += 1
            ts = received
        else:
            self.counters["router_ts"] += 1
        return self._asa(body, host, ts)

    def _rfc3339(self, s: str) -> float:
        try:
            return datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00")).timestamp()
        except ValueError:
            raise Malformed(f"bad RFC 3339 timestamp {s[:40]!r}") from None

    def _bsd(self, rest: str, peer: str, received: float) -> tuple[float | None, str, str]:
        t = _RFC3164_TS.match(rest)
        if t is None:  # no timestamp (allowed by RFC 3164 relays): the whole rest is the message
            return None, peer, rest
        mon = _MONTHS.get(t["mon"])
        if mon is None:
            raise Malformed(f"bad month {t['mon']!r}")
        hh, mm, ss = (int(x) for x in t["time"].split(":"))
        day = int(t["day"])
        after = rest[t.end():]
        host = peer
        if not after.startswith("%"):  # "HOST MSG" or ASA's "HOST : MSG"
            first, _, tail = after.partition(" ")
            if first and not first.endswith(":"):
                host, after = first, tail.removeprefix(": ")
        if t["year"]:
            years = [int(t["year"])]
        else:
            y = datetime.fromtimestamp(received, self.tz).year
            years = [y - 1, y, y + 1]
        try:
            cands = [datetime(yr, mon, day, hh, mm, ss, tzinfo=self.tz).timestamp() for yr in years]
        except ValueError:
            raise Malformed(f"bad date {t.group(0).strip()!r}") from None
        return min(cands, key=lambda c: abs(c - received)), host, after

    # the ASA lines --------------------------------------------------------------------------

    def _asa(self, body: str, host: str, ts: float) -> list[NatRecord]:
        a = _ASA.search(body)
        if a is None or a[2] not in _CONN_IDS:
            self.counters["ignored"] += 1
            return []
        msgid, text = a[2], a[3]
        if msgid in ("302020", "302021"):
            return self._icmp(text, host, ts)
        if msgid in ("302013", "302015"):
            b = _BUILT.match(text)
            if b is None:
                raise Malformed(f"{msgid} line does not match the Built format")
            proto, cid = b[1].lower(), b[2]
            remote_ip, remote_port = _addr(b[4]), _port(b[5])
            inside_ip, inside_port = _addr(b[9]), _port(b[10])
            outside_ip, outside_port = _addr(b[11]), _port(b[12])
            if (inside_ip, inside_port) == (outside_ip, outside_port):
                self.counters["untranslated"] += 1
                return []
            t = Translation(True, proto, inside_ip, inside_port, outside_ip, outside_port, remote_ip,
                            remote_port)
            self._remember((host, proto, cid), t)
            return [nat_record("create", ts, t)]
        d = _TEARDOWN.match(text)
        if d is None:
            raise Malformed(f"{msgid} line does not match the Teardown format")
        have = self._open.pop((host, d[1].lower(), d[2]), None)
        if have is None:
            self.counters["teardown_unknown"] += 1
            return []
        return [nat_record("destroy", ts, have)]

    def _icmp(self, text: str, host: str, ts: float) -> list[NatRecord]:
        m = _ICMP.match(text)
        if m is None:
            raise Malformed("302020/302021 line does not match the ICMP format")
        proto = "icmp" if m[2] == "ICMP" else "icmp6"
        remote_ip = _addr(m[3])
        outside_ip, outside_id = _addr(m[5]), _port(m[6])
        inside_ip, inside_id = _addr(m[7]), _port(m[8])
        if (inside_ip, inside_id) == (outside_ip, outside_id):
            self.counters["untranslated"] += 1
            return []
        t = Translation(True, proto, inside_ip, inside_id, outside_ip, outside_id, remote_ip, None)
        return [nat_record("create" if m[1] == "Built" else "destroy", ts, t)]

    def _remember(self, key: tuple[str, str, str], t: Translation) -> None:
        self._open[key] = t
        self._open.move_to_end(key)
        while len(self._open) > self.open_limit:
            self._open.popitem(last=False)
            self.counters["open_evicted"] += 1


def _skip_sd(s: str) -> str:
    """The MSG after RFC 5424 STRUCTURED-DATA (``-`` or one or more ``[...]``)."""
    if s.startswith("-"):
        return s[2:] if s.startswith("- ") else s[1:]
    if not s.startswith("["):
        raise Malformed("RFC 5424 structured data is neither '-' nor '['")
    i = 0
    while i < len(s) and s[i] == "[":
        i += 1
        while True:
            if i >= len(s):
                raise Malformed("unterminated RFC 5424 structured data")
            c = s[i]
            if c == "\\":
                i += 2
                continue
            i += 1
            if c == "]":
                break
    return s[i + 1:] if s[i:i + 1] == " " else s[i:]


class TcpFramer:
    """RFC 6587 framing of one TCP stream: bytes in, whole messages out. Pure."""

    def __init__(self, limit: int = MAX_MESSAGE) -> None:
        self.limit = limit
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The complete messages ``data`` finishes; raises ``Malformed`` on a framing error."""
        self.buf += data
        out: list[bytes] = []
        while self.buf:
            if self.buf[:1].isdigit():  # octet counting: "LEN SP MSG"
                sp = self.buf.find(b" ", 0, 12)
                if sp < 0:
                    if len(self.buf) >= 12:
                        raise Malformed("octet count without a space")
                    break
                if not self.buf[:sp].isdigit():
                    raise Malformed("bad octet count")
                n = int(self.buf[:sp])
                if n > self.limit:
                    raise Malformed(f"frame of {n} bytes > {self.limit}")
                if len(self.buf) < sp + 1 + n:
                    break
                out.append(bytes(self.buf[sp + 1:sp + 1 + n]))
                del self.buf[:sp + 1 + n]
            else:  # non-transparent framing: the message ends at LF
                nl = self.buf.find(b"\n")
                if nl < 0:
                    if len(self.buf) > self.limit:
                        raise Malformed(f"line longer than {self.limit} bytes")
                    break
                line = bytes(self.buf[:nl]).rstrip(b"\r")
                del self.buf[:nl + 1]
                if line.strip():
                    out.append(line)
        return out


class SyslogNatListener:
    """UDP and TCP syslog on ``host:port`` -> `nat` records (``port=0``: any free port)."""

    def __init__(self, host: str = "0.0.0.0", port: int = 514, tcp: bool = True, udp: bool = True,
                 parser: SyslogNatParser | None = None,
                 wallclock: Callable[[], float] = time.time) -> None:
        self.parser = parser or SyslogNatParser()
        self.wallclock = wallclock
        self.counters: dict[str, int] = dict.fromkeys(
            ("datagrams", "frames", "clients", "clients_refused", "oversize", "framing_errors"), 0)
        self._sel = selectors.DefaultSelector()
        self._clients: dict[socket.socket, tuple[TcpFramer, str]] = {}
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.udp: socket.socket | None = None
        self.tcp: socket.socket | None = None
        if udp:
            self.udp = socket.socket(fam, socket.SOCK_DGRAM)
            self.udp.bind((host, port))
            port = port or self.udp.getsockname()[1]  # TCP on the same port as UDP
            self.udp.setblocking(False)
            self._sel.register(self.udp, selectors.EVENT_READ, "udp")
        if tcp:
            self.tcp = socket.socket(fam, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind((host, port))
            self.tcp.listen(16)
            self.tcp.setblocking(False)
            self._sel.register(self.tcp, selectors.EVENT_READ, "accept")
        self.port = port if port else (self.tcp.getsockname()[1] if self.tcp else 0)

    def run(self, callback: Callable[[NatRecord], None], stop: threading.Event) -> None:
        """Deliver records to ``callback`` until ``stop`` is set (seen within ``POLL_S``)."""
        while not stop.is_set():
            for rec in self.poll(POLL_S):
                callback(rec)

    def poll(self, timeout: float = 0.0) -> list[NatRecord]:
        """Wait up to ``timeout`` s for input, handle what is ready, return the records."""
        out: list[NatRecord] = []
        for key, _ in self._sel.select(timeout):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if key.data == "udp":
                out += self._read_udp(sock)
            elif key.data == "accept":
                self._accept(sock)
            else:
                out += self._read_tcp(sock)
        return out

    def _read_udp(self, sock: socket.socket) -> list[NatRecord]:
        out: list[NatRecord] = []
        for _ in range(1024):  # bounded per poll
            try:
                data, peer = sock.recvfrom(MAX_MESSAGE)
            except BlockingIOError:
                break
            self.counters["datagrams"] += 1
            out += self.parser.feed(data, str(peer[0]), self.wallclock())
        return out

    def _accept(self, lsock: socket.socket) -> None:
        try:
            conn, peer = lsock.accept()
        except BlockingIOError:
            return
        if len(self._clients) >= MAX_CLIENTS:
            self.counters["clients_refused"] += 1
            conn.close()
            return
        self.counters["clients"] += 1
        conn.setblocking(False)
        self._clients[conn] = (TcpFramer(), str(peer[0]))
        self._sel.register(conn, selectors.EVENT_READ, "client")

    def _read_tcp(self, conn: socket.socket) -> list[NatRecord]:
        framer, peer = self._clients[conn]
        try:
            data = conn.recv(65536)
        except BlockingIOError:
            return []
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return []
        out: list[NatRecord] = []
        try:
            frames = framer.feed(data)
        except Malformed as e:
            self.counters["framing_errors"] += 1
            if "bytes" in str(e):
                self.counters["oversize"] += 1
            self.parser.counters["malformed"] += 1
            self.parser.recent_errors.append((f"tcp framing from {peer}: {e}", ""))
            self._drop(conn)
            return []
        now = self.wallclock()
        for f in frames:
            self.counters["frames"] += 1
            out += self.parser.feed(f, peer, now)
        return out

    def _drop(self, conn: socket.socket) -> None:
        self._sel.unregister(conn)
        del self._clients[conn]
        conn.close()

    def stats(self) -> dict[str, int]:
        return {**self.counters, **self.parser.counters}

    def close(self) -> None:
        for conn in list(self._clients):
            self._drop(conn)
        for s in (self.udp, self.tcp):
            if s is not None:
                with contextlib.suppress(KeyError):
                    self._sel.unregister(s)
                s.close()
        self._sel.close()

    def __enter__(self) -> SyslogNatListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["SyslogNatParser", "SyslogNatListener", "TcpFramer", "Malformed"]
