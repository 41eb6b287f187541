"""The captive portal's admission in nftables: one table of its own on the gateway.

What: ``NftAdmission`` implements ``agent.portal.admission.Admission`` with the ``nft``
command-line tool. ``setup`` installs (one ``nft -f -`` transaction that first deletes a table of
the same name, so a restart starts with nobody admitted)::

    table inet edgeaudit_portal {
      set admitted     { type ether_addr . ipv4_addr; flags dynamic,timeout; timeout IDLE; }
      set admitted_mac { type ether_addr;             flags dynamic,timeout; timeout IDLE; }
      chain prerouting {   # nat, priority dstnat - 5
        iifname GUESTS tcp dport 80 ether saddr . ip saddr != @admitted dnat ip to PORTAL:PORT }
      chain forward {      # filter, priority filter - 5
        iifname != GUESTS return
        ether saddr . ip saddr @admitted  update both sets (timeout IDLE) accept
        meta nfproto ipv6 ether saddr @admitted_mac  update @admitted_mac (timeout IDLE) accept
        meta l4proto { tcp, udp } th dport 53 accept
        meta l4proto tcp reject with tcp reset
        reject with icmpx admin-prohibited }
    }

``admit`` puts (MAC . IPv4) into ``admitted`` and the MAC into ``admitted_mac`` with a fresh
``timeout IDLE``; ``revoke`` takes them out; ``present`` reads ``nft -j list set``;
``teardown`` deletes the table. Any refusal of ``nft`` is an ``AdmissionError`` with its message.

Why these shapes:

* The idle clock is the kernel's: every forwarded packet of an admitted client runs ``update``,
  which sets the element's expiry to now + IDLE again (verified on kernel 6.18: an element
  admitted with ``timeout 3s`` shows ``expires 1s988ms`` after traffic under ``update ...
  timeout 2s``). A lookup guards each ``update``, so the packet path never *adds* anyone.
* ``ether saddr`` matches in the inet family's prerouting and forward hooks for traffic routed
  from a bridge: the frame enters ``br1`` through a veth port, the bridge hands it to the IP
  stack with the original Ethernet header still in place as the skb's MAC header, and
  ``iifname`` is the bridge (``br1``), not the port. Tested in
  tests/agent/portal/test_nft_admission.py (bridge with a veth port), so no bridge-family table
  is needed. Two caveats of that header: only the first hop's MAC is seen (a client behind
  another router shows that router's MAC), and frames bridged between two guests never reach
  the IP hooks at all (guest-to-guest traffic is the bridge's business, not this table's).
* The nat chain sees only the first packet of a connection (conntrack): a connection redirected
  to the portal stays redirected after admission and a new one goes out; a revoked client's open
  connections die on their next packet in the forward chain (reset/ICMP), not at revoke time.
* DNS is accepted in forward for everyone (a guest may use an outside resolver, and the portal's
  RFC 8910 URL is useless if names do not resolve); the gateway's own services (the portal,
  DNS, DHCP) are in the input hook, which this table does not touch. Other tables of the
  gateway are left alone: an ``accept`` here ends only this chain, theirs still run.
* IPv6 has no IPv4 address to pair with, so it is admitted by MAC alone (``admitted_mac``),
  refreshed by IPv4 and IPv6 traffic alike. Consequence: a client whose IPv4 traffic stops
  while IPv6 continues drops out of ``admitted`` (``present`` no longer lists it: idle logout)
  while its MAC stays in ``admitted_mac``; the caller should ``revoke`` a client it has seen
  time out, which removes the MAC too (unless another admitted IPv4 address still has it).
  ICMPv6 neighbour discovery is link-local, never forwarded, so the forward-only filter
  cannot break it.
* Rejections are fast (TCP reset, else ICMP/ICMPv6 administratively prohibited) so a browser
  gives up on HTTPS at once instead of waiting for a timeout.
* ``admit`` replaces an element in one transaction (``add``, ``delete``, ``add ... timeout``):
  a plain ``add`` of an existing element keeps its old expiry, and ``delete`` of a missing one
  fails the batch; ``revoke`` is ``add`` + ``delete`` for the same reason (nft 1.0.6 has no
  ``destroy``). Every string that reaches nft is validated first (MAC, IPv4, interface and
  table names) so no input can add nft syntax.

``nft -j`` (1.0.6) shape of ``list set``::

    {"nftables": [{"metainfo": {...}},
      {"set": {"family": "inet", "name": "admitted", "table": "...",
               "type": ["ether_addr", "ipv4_addr"], "flags": ["timeout"], "timeout": 2,
               "elem": [{"elem": {"val": {"concat": ["02:..", "10.0.0.2"]},
                                  "timeout": 5, "expires": 4}}, ...]}}]}

``flags`` omits ``dynamic``; ``"elem"`` is absent for an empty set; an element's ``timeout`` is
there only when it differs from the set's; ``timeout`` and ``expires`` are whole seconds,
*truncated* (``expires 776ms`` prints as 0) and omitted when the value is 0 ms. An element with
nothing but its key would be the bare ``{"concat": [...]}``. ``present`` therefore reports
``expires + 0.5`` (the middle of the truncated second, at most ``idle_s``; error <= 0.5 s, never
0 for an element still there), skips an element without ``expires`` that has a timeout (it has
just expired), and reports ``math.inf`` for one without any timeout (added by hand; ours never
are: the set has a default timeout).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import subprocess
from collections.abc import Sequence
from typing import Any

from agent.portal.admission import AdmissionError, Client

NFT_TIMEOUT_S = 10.0  # one nft run; it only talks netlink to the local kernel

_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
# Linux interface names: 1-15 bytes, no '/', whitespace or ':'; nft's '*' suffix is a wildcard.
# Only characters that cannot end nft's quoted string or start syntax are allowed.
_IFNAME = re.compile(r"[A-Za-z0-9_.@+-]{1,15}\*?")
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


def normal_mac(mac: str) -> str:
    """``mac`` as lower-case ``aa:bb:cc:dd:ee:ff``; ``ValueError`` for anything else."""
    low = mac.lower() if isinstance(mac, str) else ""
    if not _MAC.fullmatch(low):
        raise ValueError(f"not a MAC address (aa:bb:cc:dd:ee:ff): {mac!r}")
    return low


def normal_ipv4(ip: str) -> str:
    """``ip`` as dotted-quad IPv4; ``ValueError`` for anything else (IPv6, names, syntax)."""
    if not isinstance(ip, str):
        raise ValueError(f"not an IPv4 address: {ip!r}")
    try:
        return str(ipaddress.IPv4Address(ip))
    except ValueError:
        raise ValueError(f"not an IPv4 address: {ip!r}") from None


def _ms(seconds: float) -> str:
    """An nft time value; milliseconds are nft's (and the kernel's) resolution."""
    return f"{max(1, round(seconds * 1000))}ms"


class NftAdmission:
    """The ``Admission`` protocol in an nftables table of its own (see the module docstring)."""

    def __init__(self, *, interfaces: Sequence[str], portal_ip: str, http_port: int, idle_s: float,
                 table: str = "edgeaudit_portal", nft: str = "nft",
                 argv_prefix: Sequence[str] = ()) -> None:
        """``argv_prefix`` goes before every nft command (tests: ``ip netns exec NS``)."""
        if not interfaces:
            raise ValueError("at least one guest interface is needed")
        for name in interfaces:
            if not isinstance(name, str) or not _IFNAME.fullmatch(name):
                raise ValueError(f"not an interface name: {name!r}")
        if not isinstance(table, str) or not _TABLE.fullmatch(table):
            raise ValueError(f"not an nftables table name: {table!r}")
        if isinstance(http_port, bool) or not isinstance(http_port, int) or not 0 < http_port < 65536:
            raise ValueError(f"not a TCP port: {http_port!r}")
        if not isinstance(idle_s, int | float) or not math.isfinite(idle_s) or idle_s < 0.001:
            raise ValueError(f"idle timeout must be a positive number of seconds: {idle_s!r}")
        self.interfaces = list(interfaces)
        self.portal_ip = normal_ipv4(portal_ip)
        self.http_port = http_port
        self.idle_s = float(idle_s)
        self.table = table
        self.nft = nft
        self.argv_prefix = list(argv_prefix)

    # -- the protocol ---------------------------------------------------------------------------

    def setup(self) -> None:
        self._batch(self.ruleset())

    def admit(self, client: Client) -> None:
        mac, ip = self._client(client)
        t, idle = self.table, _ms(self.idle_s)
        pair = f"{mac} . {ip}"
        self._batch(
            f"add element inet {t} admitted {{ {pair} }}\n"
            f"delete element inet {t} admitted {{ {pair} }}\n"
            f"add element inet {t} admitted {{ {pair} timeout {idle} }}\n"
            f"add element inet {t} admitted_mac {{ {mac} }}\n"
            f"delete element inet {t} admitted_mac {{ {mac} }}\n"
            f"add element inet {t} admitted_mac {{ {mac} timeout {idle} }}\n")

    def revoke(self, client: Client) -> None:
        mac, ip = self._client(client)
        t = self.table
        pair = f"{mac} . {ip}"
        script = (f"add element inet {t} admitted {{ {pair} }}\n"
                  f"delete element inet {t} admitted {{ {pair} }}\n")
        # the MAC's IPv6 admission ends with its last IPv4 one
        if not any(m == mac and i != ip for m, i in self.present()):
            script += (f"add element inet {t} admitted_mac {{ {mac} }}\n"
                       f"delete element inet {t} admitted_mac {{ {mac} }}\n")
        self._batch(script)

    def present(self) -> dict[Client, float]:
        out = self._run(["-j", "list", "set", "inet", self.table, "admitted"])
        try:
            doc = json.loads(out)
        except json.JSONDecodeError as e:
            raise AdmissionError(f"nft -j list set: not JSON ({e}): {out[:200]!r}") from None
        return self.parse_set(doc)

    def teardown(self) -> None:
        # add + delete: one transaction that succeeds whether or not the table exists
        self._batch(f"add table inet {self.table}\ndelete table inet {self.table}\n")

    # -- pieces ---------------------------------------------------------------------------------

    def ruleset(self) -> str:
        """The ``nft -f`` script of ``setup``."""
        t, idle = self.table, _ms(self.idle_s)
        guests = "{ " + ", ".join(f'"{name}"' for name in self.interfaces) + " }"
        return f"""add table inet {t}
delete table inet {t}
table inet {t} {{
  set admitted {{
    type ether_addr . ipv4_addr
    flags dynamic,timeout
    timeout {idle}
  }}
  set admitted_mac {{
    type ether_addr
    flags dynamic,timeout
    timeout {idle}
  }}
  chain prerouting {{
    type nat hook prerouting priority dstnat - 5; policy accept;
    iifname {guests} tcp dport 80 ether saddr . ip saddr != @admitted \
dnat ip to {self.portal_ip}:{self.http_port}
  }}
  chain forward {{
    type filter hook forward priority filter - 5; policy accept;
    iifname != {guests} return
    ether saddr . ip saddr @admitted update @admitted {{ ether saddr . ip saddr timeout {idle} }} \
update @admitted_mac {{ ether saddr timeout {idle} }} accept
    meta nfproto ipv6 ether saddr @admitted_mac update @admitted_mac {{ ether saddr timeout {idle} }} accept
    meta l4proto {{ tcp, udp }} th dport 53 accept
    meta l4proto tcp reject with tcp reset
    reject with icmpx admin-prohibited
  }}
}}
"""

    def parse_set(self, doc: Any) -> dict[Client, float]:
        """{(mac, ip): seconds left} from ``nft -j list set`` output (shape: module docstring)."""
        found: dict[Client, float] = {}
        items = doc.get("nftables") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise AdmissionError(f"nft -j list set: no 'nftables' list in {str(doc)[:200]!r}")
        for item in items:
            s = item.get("set") if isinstance(item, dict) else None
            if not isinstance(s, dict):
                continue
            set_has_timeout = "timeout" in s
            for e in s.get("elem") or []:
                attrs = e.get("elem", {}) if isinstance(e, dict) and "elem" in e else {}
                val = attrs.get("val") if attrs else e
                key = val.get("concat") if isinstance(val, dict) else None
                if not (isinstance(key, list) and len(key) == 2):
                    raise AdmissionError(f"nft -j list set: unexpected element {e!r}")
                client = (normal_mac(str(key[0])), normal_ipv4(str(key[1])))
                if "expires" in attrs:
                    found[client] = min(float(attrs["expires"]) + 0.5, self.idle_s)
                elif not (set_has_timeout or "timeout" in attrs):
                    found[client] = math.inf  # no timeout at all (not one of ours)
                # else: a timeout with 0 ms left: expired, the kernel just has not removed it
        return found

    def _client(self, client: Client) -> Client:
        mac, ip = client
        return normal_mac(mac), normal_ipv4(ip)

    def _batch(self, script: str) -> None:
        self._run(["-f", "-"], script)

    def _run(self, args: list[str], stdin: str | None = None) -> str:
        argv = [*self.argv_prefix, self.nft, *args]
        try:
            res = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                 timeout=NFT_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise AdmissionError(f"{' '.join(argv)}: {e}") from e
        if res.returncode != 0:
            msg = res.stderr.strip() or res.stdout.strip() or f"exit status {res.returncode}"
            raise AdmissionError(f"nft {' '.join(args)}: {msg}")
        return res.stdout
