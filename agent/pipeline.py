"""Wiring only: capture batches -> decode -> flows -> records -> sink.

`Pipeline.feed(batch)` runs a batch of `(ts, linktype, frame)` through the
decoder and the flow table and hands the records that came out to the sink;
`finish()` flushes every open flow. Weird events from the decoder and the flow
table become `weird` records here. Counters of every stage are in `stats()`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from agent.capture.pcapfile import PcapRegion, read_records
from agent.decode.packet import Decoder
from agent.filter.mail_config import DEFAULT as MAIL_DEFAULTS
from agent.filter.mail_config import MailConfig
from agent.flows.inspector import DEFAULT_DEPTH, Inspector
from agent.flows.table import DEFAULT_MAX_FLOWS, PROTO_NAMES, FlowTable
from agent.identity import IdentityTable, Roster
from agent.outbox import Outbox, Weird
from agent.protocols.base import LinkDecoder, Record
from agent.protocols.registry import link_decoders, trackers
from wire.addresses import ip_from_packed
from wire.records import StatsRecord, WeirdRecord

if TYPE_CHECKING:
    from agent.filter.compiled import CompiledRules
    from agent.filter.engine import FilterEngine
    from agent.filter.mail_policy import MailPolicy
    from agent.publish.config import PublishingConfig
    from agent.publish.extract import Publisher

Sink = Callable[[list[Record]], None]


def _ip_text(b: bytes | None) -> str | None:
    return None if b is None else ip_from_packed(b)


class Pipeline:
    def __init__(self, sink: Sink, *, max_flows: int = DEFAULT_MAX_FLOWS,
                 uid_seed: bytes = b"edgeaudit", fast_path: bool = True, decoders: bool = True,
                 depth: int = DEFAULT_DEPTH, roster: Roster | None = None, keep_bodies: bool = False,
                 rules: CompiledRules | None = None, publishing: PublishingConfig | None = None,
                 mail: MailConfig | None = MAIL_DEFAULTS) -> None:
        self.sink = sink
        # what the packet decoder, the flow table and the inspector make waits here (agent.outbox)
        self.outbox = Outbox()
        self.decoder = Decoder(outbox=self.outbox)
        # decoders=False: sessions only (the agent-core benchmark's configuration);
        # keep_bodies: a content filter reads message bodies, so decoders keep a prefix of each
        self.inspector: Inspector | None = None
        self.filter: FilterEngine | None = None
        self.identity: IdentityTable | None = None
        self.link: LinkDecoder | None = None  # the link-layer protocol's decoder (PPPoE)
        # the unit's publishing hosts (agent.publish): `publish` records of what they receive
        self.publisher: Publisher | None = None
        self.mail: MailPolicy | None = None
        if decoders:
            from agent.publish.extract import Publisher, install

            if publishing is not None and publishing.all_hosts:
                self.publisher = Publisher(publishing.all_hosts, publishing.max_body)
                # its bodies are kept on the filter's exemption from the depth (agent.publish)
                keep_bodies = True
            install(self.publisher)  # the process's HTTP decoders take it (None: no publishing)
            # rules: a compiled keyword ruleset; its filter sees what the decoders decode
            if rules is not None:
                from agent.filter.engine import FilterEngine  # on use: no matcher cost without rules

                self.filter = FilterEngine(rules, depth=depth)
            # the mail policy ([mail]; its defaults when a unit configures none; None or
            # enabled = false: off): SMTP transactions judged as the decoder reads them
            if mail is not None and mail.enabled:
                from agent.filter.mail_policy import MailPolicy

                self.mail = MailPolicy(mail)
            self.inspector = Inspector(depth=depth, trackers=trackers(), keep_bodies=keep_bodies,
                                       filter=self.filter, mail=self.mail)
            links = link_decoders()
            if links:  # (the packet decoder hands non-IP frames to one: PPPoE)
                self.link = self.decoder.link = links[0]
            self.identity = IdentityTable(roster=roster)
        self.table = FlowTable(max_flows=max_flows, uid_seed=uid_seed, outbox=self.outbox,
                               tunnel_hook=self.decoder.decode_teredo, fast_path=fast_path,
                               inspector=self.inspector)
        self.packets = 0
        self.bytes = 0
        self.first_ts: float | None = None
        self.last_ts = 0.0
        self.weird_names: Counter[str] = Counter()
        # counted per record in plain dicts (a Counter's item update is a generic call when
        # compiled: ~1,000 instructions a record); given as Counters by the properties below
        self._by_type: dict[str, int] = {}
        self._by_service: dict[str, int] = {}
        self._by_state: dict[str, int] = {}

    @property
    def records_by_type(self) -> Counter[str]:
        return Counter(self._by_type)

    @property
    def sessions_by_service(self) -> Counter[str]:
        return Counter(self._by_service)

    @property
    def sessions_by_state(self) -> Counter[str]:
        return Counter(self._by_state)

    def feed(self, batch: list[tuple[float, int, bytes]], nbytes: int | None = None) -> None:
        """Process one batch; `nbytes` (frame bytes in it) when the source already counted them."""
        if not batch:
            return
        self.table.process_batch(batch, self.decoder.decode)
        if self.first_ts is None:
            self.first_ts = batch[0][0]
        self.last_ts = batch[-1][0]
        self.packets += len(batch)
        self.bytes += nbytes if nbytes is not None else sum([len(frame) for _, _, frame in batch])
        self._drain()

    def feed_pcap(self, region: PcapRegion, max_packets: int = 65536) -> tuple[int, int, int, int]:
        """Process up to `max_packets` records of a classic pcap in place (`read_records`).

        Returns (offset reached, packets, frame bytes, snapped records) for `CaptureFile.consumed`.
        """
        off, n, nbytes, snapped, first, last = read_records(region, self.table, self.decoder.decode,
                                                            max_packets)
        if n:
            if self.first_ts is None:
                self.first_ts = first
            assert last is not None
            self.last_ts = last
            self.packets += n
            self.bytes += nbytes
        self._drain()
        return off, n, nbytes, snapped

    def tick(self, now: float) -> None:
        """Live capture: the wall clock moved on while no packet came (packet time stands
        still on an idle link, and a closed connection's record would wait for the next
        packet); flows time out by ``now`` as they would by a packet's time."""
        if now > self.last_ts:
            self.table.advance(now)
            self._drain()

    def finish(self) -> None:
        self.table.flush()
        if self.inspector is not None:
            self.inspector.finish(self.last_ts)
        self._drain()
        if self.identity is not None:
            held = self.identity.finish()
            if held:
                self._by_type["login"] = self._by_type.get("login", 0) + len(held)
                self.sink(held)

    def _drain(self) -> None:
        if self.inspector is not None:
            self.inspector.tick(self.last_ts)
        box = self.outbox
        out = box.take_records()
        if self.decoder.records:
            out.extend(self.decoder.records)
            self.decoder.records.clear()
        if box.weirds:
            for w in box.weirds:
                out.append(self._weird(w))
            box.weirds.clear()
        if self.identity is not None:
            out = self._identify(out)
        if out:
            by_type = self._by_type
            services = self._by_service
            states = self._by_state
            for r in out:
                t = r["type"]
                by_type[t] = by_type.get(t, 0) + 1
                if t == "session" and not r["interim"]:
                    svc = r["service"] or "-"
                    services[svc] = services.get(svc, 0) + 1
                    cs = r["conn_state"]
                    states[cs] = states.get(cs, 0) + 1
            self.sink(out)

    def _identify(self, out: list[Record]) -> list[Record]:
        """Feed the identity table; add the login/logout records it derives; stamp `account`.

        Records go in the order they came out, each login right after the record
        that caused it; a record is stamped after it was observed, so an HTTP Basic
        request carries the account it just logged in with.
        """
        ident = self.identity
        assert ident is not None
        res: list[Record] = ident.expire(self.last_ts)
        # the PPPoE session stage (PAP/CHAP results, IPCP addresses) comes as events, interleaved
        # with the records by time: an event goes in before the first record that is later
        events = self.link.auth_events() if self.link is not None else []
        ei = 0
        observe = ident.observe
        stamp = ident.stamp
        for r in out:
            if ei < len(events):
                ts = r["ts"]
                while ei < len(events) and events[ei]["ts"] <= ts:
                    res += ident.pppoe_auth(events[ei])
                    ei += 1
            logins = observe(r)
            if r.get("account", 0) is None:
                stamp(r)
            res.append(r)
            if logins:
                res.extend(logins)
        while ei < len(events):
            res += ident.pppoe_auth(events[ei])
            ei += 1
        return res

    def _weird(self, w: Weird) -> Record:
        ts, name, detail, src, dst, f = w
        self.weird_names[name] += 1
        rec: WeirdRecord
        if f is None:
            rec = {"type": "weird", "ts": ts, "uid": None, "proto": None, "src_ip": _ip_text(src),
                   "src_port": None, "dst_ip": _ip_text(dst), "dst_port": None, "vlan": None,
                   "inner_vlan": None, "name": name, "detail": detail}
        else:
            rec = {"type": "weird", "ts": ts, "uid": f.uid, "proto": PROTO_NAMES.get(f.proto, str(f.proto)),
                   "src_ip": _ip_text(f.oip), "src_port": f.oport, "dst_ip": _ip_text(f.rip),
                   "dst_port": f.rport, "vlan": f.vlan, "inner_vlan": f.ivlan, "name": name, "detail": detail}
        return cast(Record, rec)

    def stats_record(self, interval: float) -> Record:
        """The `stats` record (SCHEMA.md); its ts is the wall clock: it describes the agent, not traffic."""
        rec: StatsRecord = {
            "type": "stats", "ts": round(time.time(), 6), "interval": interval, "packets": self.packets,
            "bytes": self.bytes, "kernel_drops": 0, "flows_active": len(self.table.active),
            "records_out": sum(self.records_by_type.values()),
            "records_dropped": self.decoder.counters["weirds_dropped"],
            "spool_records": 0, "spool_bytes": 0, "upload_lag_s": 0.0, "ruleset_version": None,
            "keyword_engine": self.filter.rules.engine if self.filter is not None else None,
        }
        return cast(Record, rec)

    def counters(self) -> dict[str, int]:
        c = {"packets": self.packets, "bytes": self.bytes}
        c.update({f"decode_{k}": v for k, v in self.decoder.counters.items()})
        c.update({k if k.startswith("flows") else f"flows_{k}": v for k, v in self.table.counters.items()})
        c.update({f"defrag_{k}": v for k, v in self.decoder.defrag.counters.items()})
        if self.inspector is not None:
            c.update({f"inspect_{k}": v for k, v in self.inspector.counters.items()})
        if self.identity is not None:
            c.update({f"identity_{k}": v for k, v in self.identity.counters.items()})
        if self.link is not None:
            c.update({f"{self.link.name}_{k}": v for k, v in self.link.counters.items()})
        if self.publisher is not None:
            c.update({f"publish_{k}": v for k, v in self.publisher.counters.items()})
        if self.mail is not None:
            c.update({f"mail_{k}": v for k, v in self.mail.counters.items()})
        return c
