"""edgeaudit-agent: the gateway agent's command line.

    edgeaudit-agent replay FILE [FILE...] --jsonl OUT [--summary]
                   [--publishing-host HOST ...] [--config agent.toml]
    edgeaudit-agent run --config agent.toml          (the live agent: agent/run/)
    edgeaudit-agent selfcheck --config agent.toml    (the compliance self-check receipt)
    edgeaudit-agent spool stats|check|quarantine --config agent.toml
    edgeaudit-agent spool requeue --all | BATCH... --config agent.toml
    edgeaudit-agent inline --queue N --rules DIR --jsonl OUT
    edgeaudit-agent synth OUT.pcap --packets N [--seed S]

`replay` is the offline mode every test and tool uses: it reads captures in
order as one stream (time comes from the packets), writes every record as JSON
lines, and exits 0; a capture that is not a capture or is cut short gets a
one-line error naming the file and byte offset and exit status 2, after the
records of everything before the damage were written. The mail policy runs with
its defaults, as in a `run` whose agent.toml has no [mail]; `--config agent.toml`
applies that file's [mail] instead.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from agent.capture import CaptureError, open_capture
from agent.filter.patterns import ENGINES
from agent.flows.inspector import DEFAULT_DEPTH
from agent.identity import RosterError, load_roster
from agent.pipeline import Pipeline
from agent.protocols.base import Record
from wire.build import VersionAction
from wire.jsonl import JsonlWriter

if TYPE_CHECKING:
    from agent.filter.compiled import CompiledRules
    from agent.filter.mail_config import MailConfig
    from agent.publish.config import PublishingConfig

EXIT_BAD_INPUT = 2
_CHUNK = 65536  # packets between record drains and progress updates


class _Progress:
    """A one-line progress bar on stderr, shown only once a run has taken more than a second."""

    def __init__(self, enabled: bool, stream: IO[str]) -> None:
        self.enabled = enabled
        self.stream = stream
        self.t0 = time.monotonic()
        self.shown = False
        self.next_t = self.t0 + 1.0

    def update(self, name: str, done: int, total: int, packets: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self.next_t:
            return
        self.next_t = now + 0.25
        self.shown = True
        frac = done / total if total else 1.0
        width = 30
        bar = "#" * int(frac * width)
        rate = packets / max(now - self.t0, 1e-9)
        self.stream.write(f"\r{Path(name).name[:30]:<30} [{bar:<{width}}] {frac * 100:5.1f}% "
                          f"{packets:>11,} pkts {rate:>10,.0f} pkt/s")
        self.stream.flush()

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _summary(p: Pipeline, elapsed: float, out: IO[str]) -> None:
    c = p.counters()
    span = (p.last_ts - p.first_ts) if p.first_ts is not None else 0.0
    rows: list[tuple[str, str]] = [
        ("packets", f"{p.packets:,}"),
        ("bytes", f"{p.bytes:,}"),
        ("capture span", f"{span:,.3f} s"),
        ("flows", f"{c['flows_created']:,}"),
        ("flows evicted", f"{c['flows_evicted']:,}"),
        ("non-IP frames", f"{c['decode_non_ip']:,}"),
        ("malformed", f"{c['decode_malformed']:,}"),
        ("processing time", f"{elapsed:,.2f} s"),
        ("packets/s", f"{p.packets / elapsed if elapsed > 0 else 0:,.0f}"),
    ]
    out.write("\nrecords\n")
    for t, n in sorted(p.records_by_type.items()):
        out.write(f"  {t:<16} {n:>12,}\n")
    out.write("totals\n")
    for k, v in rows:
        out.write(f"  {k:<16} {v:>12}\n")
    for title, counts in (("sessions by service", p.sessions_by_service),
                          ("sessions by state", p.sessions_by_state)):
        if counts:
            out.write(f"{title}\n")
            for name, n in counts.most_common(12):
                out.write(f"  {name:<16} {n:>12,}\n")
    if p.weird_names:
        out.write("weird names\n")
        for name, n in p.weird_names.most_common():
            out.write(f"  {name:<40} {n:>8,}\n")
    out.flush()


def tune_gc() -> None:
    """Make the cyclic garbage collector run rarely.

    The packet path allocates short-lived tuples and bytes by the million but
    creates no reference cycles; with the default thresholds the collector
    walks every live flow over and over (measured: a quarter of the CPU time).
    Everything loaded at start-up is frozen out of its way. A young generation of
    500,000 objects costs as little as no collection at all (0.1 s less per million
    packets than 100,000, which the keyword filter's batch-end work, holding a batch's
    pieces, overran); one pass over it takes ~20 ms, which a capture ring of 64 MiB
    absorbs at line rate.
    """
    gc.freeze()
    gc.set_threshold(500_000, 50, 100)


class _OutputError(Exception):
    """Writing the records failed (disk full, permissions): reported in one line, exit 2."""


def cmd_replay(a: argparse.Namespace) -> int:
    tune_gc()
    try:
        writer = JsonlWriter(a.jsonl) if a.jsonl else None
    except OSError as e:
        print(f"edgeaudit-agent: {a.jsonl}: cannot write: {e.strerror or e}", file=sys.stderr)
        return EXIT_BAD_INPUT

    uploader = None
    if a.collector is not None:
        from agent.uploader.client import Uploader, UploadError

        if not a.token:
            print("edgeaudit-agent: --collector needs --token (edgeaudit-collector agents add)",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        try:
            uploader = Uploader(a.collector, a.token, ca_file=a.collector_ca)
        except UploadError as e:
            print(f"edgeaudit-agent: {a.collector}: {e}", file=sys.stderr)
            return 1

    def sink(records: list[Record]) -> None:
        if writer is not None:
            try:
                writer.write_many(records)
            except OSError as e:
                raise _OutputError(f"{a.jsonl}: cannot write: {e.strerror or e}") from e
        if uploader is not None:
            try:
                uploader.add(records)
            except UploadError as e:
                raise _OutputError(f"{a.collector}: {e}") from e

    roster = None
    if a.roster is not None:
        try:
            roster = load_roster(a.roster)
        except RosterError as e:
            for line in str(e).splitlines():  # every problem, as FILE:LINE: what
                print(f"edgeaudit-agent: {line}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except OSError as e:
            print(f"edgeaudit-agent: {a.roster}: cannot read: {e.strerror or e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    rules = None
    if a.rules is not None:
        if a.sessions_only:
            print("edgeaudit-agent: --rules needs the decoders (drop --sessions-only)", file=sys.stderr)
            return EXIT_BAD_INPUT
        rules = _load_rules(a)
        if rules is None:
            return EXIT_BAD_INPUT
    ok, publishing = _publishing(a)
    if not ok:
        return EXIT_BAD_INPUT
    ok, mail = _mail(a)
    if not ok:
        return EXIT_BAD_INPUT
    p = Pipeline(sink, max_flows=a.max_flows, decoders=not a.sessions_only, depth=a.depth, roster=roster,
                 rules=rules, publishing=publishing, mail=mail)
    progress = _Progress(a.progress if a.progress is not None else sys.stderr.isatty(), sys.stderr)
    t0 = time.perf_counter()
    status = 0
    try:
        for path in a.files:
            try:
                with open_capture(path) as cap:
                    # classic pcap: parsed in place by the flow table, in chunks so records drain
                    region = cap.pcap_region()
                    while region is not None:
                        off, n, nbytes, snapped = p.feed_pcap(region, _CHUNK)
                        cap.consumed(off, n, nbytes, snapped)
                        progress.update(path, cap.offset, cap.size, p.packets)
                        region = cap.pcap_region() if n == _CHUNK else None
                    # pcapng, and whatever the in-place pass stopped at (damage is reported here)
                    counted = cap.counters  # the reader counts frame bytes as it goes
                    seen = counted["bytes"]
                    for batch in cap.batches(4096):
                        p.feed(batch, counted["bytes"] - seen)
                        seen = counted["bytes"]
                        progress.update(path, cap.offset, cap.size, p.packets)
            except CaptureError as e:
                progress.close()
                print(f"edgeaudit-agent: {e}", file=sys.stderr)
                status = EXIT_BAD_INPUT
                break
            except OSError as e:
                progress.close()
                print(f"edgeaudit-agent: {path}: offset 0: {e.strerror or e}", file=sys.stderr)
                status = EXIT_BAD_INPUT
                break
        p.finish()
        if a.stats:
            sink([p.stats_record(time.perf_counter() - t0)])
        if uploader is not None:
            try:
                uploader.flush()
            except UploadError as e:
                raise _OutputError(f"{a.collector}: {e}") from e
        if writer is not None:
            try:
                writer.close()
            except OSError as e:
                raise _OutputError(f"{a.jsonl}: cannot write: {e.strerror or e}") from e
    except _OutputError as e:
        progress.close()
        print(f"edgeaudit-agent: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        progress.close()
    if a.summary:
        _summary(p, time.perf_counter() - t0, sys.stdout)
    # everything is written: the full collection the interpreter runs at exit would only walk
    # every object once more (0.1 s after a million packets) to free what the process gives back
    gc.freeze()
    return status


def cmd_synth(a: argparse.Namespace) -> int:
    from agent.synth import generate

    st = generate(a.out, packets=a.packets, seed=a.seed, concurrency=a.concurrency)
    print(f"wrote {a.out}: {st.packets:,} packets, {st.bytes:,} bytes")
    return 0


def _non_negative(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="edgeaudit-agent", description="Network-edge audit agent.")
    ap.add_argument("--version", action=VersionAction)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("replay", help="decode capture files into records (offline mode)")
    r.add_argument("files", nargs="+", help="pcap or pcapng files, read in order as one stream")
    r.add_argument("--jsonl", type=Path, help="write every record here as JSON lines")
    r.add_argument("--summary", action="store_true", help="print a table of records, packets, flows, weirds")
    r.add_argument("--stats", action="store_true", help="also write a final `stats` record")
    r.add_argument("--max-flows", type=int, default=1_000_000, help="flow table limit (default 1,000,000)")
    r.add_argument("--depth", type=_non_negative, default=DEFAULT_DEPTH,
                   help=f"payload bytes inspected per direction of a connection (default {DEFAULT_DEPTH})")
    r.add_argument("--roster", type=Path, metavar="CSV",
                   help="the admin's user roster (account,name,mac,ip): accounts for addresses and MACs")
    r.add_argument("--rules", type=Path, metavar="DIR|BUNDLE",
                   help="a keyword ruleset: a directory (ruleset.toml + keyword files), or a signed bundle "
                        "(edgeaudit-rules sign) checked against --pubkey; writes `alert` records")
    r.add_argument("--pubkey", type=Path, action="append", default=[], metavar="FILE",
                   help="a trusted ruleset signing key (edgeaudit-rules keygen); needed for a bundle")
    _engine_options(r)
    r.add_argument("--collector", metavar="URL",
                   help="also upload every record to this collector (POST /api/v1/batches)")
    r.add_argument("--token", help="the agent's token for --collector (edgeaudit-collector agents add)")
    r.add_argument("--collector-ca", metavar="FILE", help="CA file to verify an https collector with")
    r.add_argument("--sessions-only", action="store_true",
                   help="no protocol decoders: session and weird records only (the agent-core benchmark)")
    _publishing_options(r)
    r.add_argument("--config", type=Path, metavar="agent.toml",
                   help="the agent's configuration: its [publishing] hosts (and those its [unit] services "
                        "name) are recorded, and its [mail] policy applied, as in `run`")
    g = r.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show a progress bar (default: when stderr is a terminal)")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    r.set_defaults(func=cmd_replay)
    i = sub.add_parser("inline", help="inline on a gateway: inspect NFQUEUE packets, stop `block` matches")
    i.add_argument("--queue", type=int, required=True, metavar="N",
                   help="the NFQUEUE number of the gateway's nftables `queue num N` rule")
    i.add_argument("--rules", type=Path, required=True, metavar="DIR|BUNDLE", help="as for replay")
    i.add_argument("--pubkey", type=Path, action="append", default=[], metavar="FILE", help="as for replay")
    _engine_options(i)
    i.add_argument("--jsonl", type=Path, required=True, help="write every record here as JSON lines")
    i.add_argument("--depth", type=_non_negative, default=DEFAULT_DEPTH,
                   help=f"payload bytes inspected per direction of a connection (default {DEFAULT_DEPTH})")
    i.add_argument("--roster", type=Path, metavar="CSV", help="as for replay")
    _publishing_options(i)
    i.add_argument("--no-reset", action="store_true",
                   help="drop the matching packet but send no TCP resets")
    i.add_argument("--duration", type=float, default=None, metavar="S",
                   help="stop after S seconds (default: run until SIGTERM or SIGINT)")
    i.set_defaults(func=cmd_inline)
    rn = sub.add_parser("run", help="the live agent: capture, NAT, spool and upload as agent.toml says "
                                    "(SIGTERM stops cleanly, SIGHUP reloads)")
    rn.add_argument("--config", type=Path, required=True, metavar="agent.toml")
    rn.set_defaults(func=cmd_run)
    sc = sub.add_parser("selfcheck", help="the compliance self-check receipt (自查回执) of the agent "
                                          "agent.toml configures")
    sc.add_argument("--config", type=Path, required=True, metavar="agent.toml")
    sc.add_argument("--json", action="store_true", help="print the receipt as JSON")
    sc.add_argument("--offline", action="store_true", help="do not contact the collector")
    sc.set_defaults(func=cmd_selfcheck)
    sp = sub.add_parser("spool", help="the durable spool of the agent agent.toml configures: stats, check, "
                                      "the quarantine of batches the collector refused, requeue")
    sp.add_argument("action", choices=["stats", "check", "quarantine", "requeue"],
                    help="stats: counts as JSON; check: read it all; quarantine: the refused batches as "
                         "JSON; requeue: send quarantined batches again (under new batch numbers)")
    sp.add_argument("batches", nargs="*", type=int, metavar="BATCH",
                    help="requeue: the batch numbers `spool quarantine` lists")
    sp.add_argument("--all", action="store_true", help="requeue: every quarantined batch")
    sp.add_argument("--config", type=Path, required=True, metavar="agent.toml")
    sp.set_defaults(func=cmd_spool)
    pt = sub.add_parser("portal", help="the captive portal's helpers: hash a desk password, print the "
                                       "DHCP option 114 (RFC 8910) for the guest network's DHCP server")
    pt.add_argument("action", choices=["hash-password", "dhcp-option"],
                    help="hash-password: read a desk password from stdin (or ask), print the "
                         "[[portal.desk_users]] password_hash; dhcp-option: the portal API's URI as "
                         "dnsmasq's --dhcp-option value")
    pt.add_argument("--config", type=Path, metavar="agent.toml", help="dhcp-option: the configuration")
    pt.set_defaults(func=cmd_portal)
    s = sub.add_parser("synth", help="write a realistic synthetic gateway capture")
    s.add_argument("out", type=Path)
    s.add_argument("--packets", type=int, default=100_000)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--concurrency", type=int, default=400)
    s.set_defaults(func=cmd_synth)
    return ap


def _engine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="keyword engine: vectorscan, aho-corasick (the reference), or auto (default: "
                        "vectorscan when it imports, else aho-corasick)")
    p.add_argument("--engine-cache", type=Path, metavar="DIR",
                   help="keep compiled keyword databases here (default: none for replay and inline)")


def _publishing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--publishing-host", action="append", default=[], metavar="HOST",
                   help="a news, publishing or bulletin-board host of the unit (repeat for more; "
                        "bbs.example.cn, news.example.cn:8080, *.example.cn): what HTTP requests carry "
                        "to it becomes `publish` records, as [publishing] hosts in agent.toml")


def _mail(a: Any) -> tuple[bool, MailConfig | None]:
    """The mail policy of --config's [mail] (with the defaults its [unit] gives), else the
    policy's defaults; (False, None) after printing why when the configuration is not usable."""
    from agent.filter.mail_config import DEFAULT

    if getattr(a, "config", None) is None:
        return True, DEFAULT
    from agent.config import ConfigError, load_config

    try:
        return True, load_config(a.config).mail
    except ConfigError as e:
        print(f"edgeaudit-agent: {e}", file=sys.stderr)
        return False, None


def _publishing(a: Any) -> tuple[bool, PublishingConfig | None]:
    """The publishing hosts of --config's [publishing] (with those its [unit] services name) and
    --publishing-host; (False, None) after printing why when one is not a host or the
    configuration is not usable."""
    if getattr(a, "config", None) is None and not a.publishing_host:
        return True, None  # (nothing imported: a replay without publishing starts as before)
    from agent.publish.config import PublishingConfig, publishing_from_hosts
    from agent.publish.hosts import HostError

    base: PublishingConfig | None = None
    if getattr(a, "config", None) is not None:
        from agent.config import ConfigError, load_config

        try:
            base = load_config(a.config).publishing
        except ConfigError as e:
            print(f"edgeaudit-agent: {e}", file=sys.stderr)
            return False, None
    if not a.publishing_host:
        return True, base
    try:
        extra = publishing_from_hosts(a.publishing_host)
    except HostError as e:
        print(f"edgeaudit-agent: --publishing-host: {e}", file=sys.stderr)
        return False, None
    if base is None:
        return True, extra
    hosts = tuple(dict.fromkeys(base.all_hosts + extra.hosts))
    return True, PublishingConfig(hosts=hosts, from_profile=False, max_body=base.max_body)


def _load_rules(a: Any) -> CompiledRules | None:
    """Load, check and compile a ruleset directory, or verify a signed bundle against --pubkey,
    for --engine; print every problem (FILE:LINE) or the reason and return None if bad."""
    from agent.filter.source import RulesSourceError, load_rules

    try:
        rules = load_rules(a.rules, a.pubkey, "--pubkey", engine=a.engine, cache_dir=a.engine_cache)[0]
    except RulesSourceError as e:
        for line in e.lines:
            print(f"edgeaudit-agent: {line}", file=sys.stderr)
        return None
    print(f"edgeaudit-agent: keyword engine {rules.engine} ({rules.patterns.engine_reason}); "
          f"{len(rules.patterns)} patterns of {rules.rule_count()} rules", file=sys.stderr)
    gc.freeze()  # the ruleset's tables live as long as the process: out of the collector's way
    return rules


def cmd_inline(a: Any) -> int:
    """Run inline until SIGTERM/SIGINT (or --duration): every queued packet gets a verdict."""
    import signal

    from agent.enforce.inject import RawInjector
    from agent.enforce.inline import InlineAgent
    from agent.enforce.nfqueue import NfQueue

    rules = _load_rules(a)
    if rules is None:
        return EXIT_BAD_INPUT
    roster = None
    if a.roster is not None:
        try:
            roster = load_roster(a.roster)
        except (RosterError, OSError) as e:
            print(f"edgeaudit-agent: {a.roster}: {e}", file=sys.stderr)
            return EXIT_BAD_INPUT
    stopping = [False]

    def stop_on_signal(signum: int, frame: object) -> None:
        stopping[0] = True

    signal.signal(signal.SIGTERM, stop_on_signal)
    signal.signal(signal.SIGINT, stop_on_signal)
    deadline = None if a.duration is None else time.monotonic() + a.duration
    with JsonlWriter(a.jsonl) as writer:
        def sink(records: list[Record]) -> None:
            writer.write_many(records)
            writer.flush()  # an operator tails the file: records are not held back

        ok, publishing = _publishing(a)
        if not ok:
            return EXIT_BAD_INPUT
        p = Pipeline(sink, depth=a.depth, roster=roster, rules=rules, publishing=publishing)
        try:
            queue = NfQueue(a.queue)
        except OSError as e:
            print(f"edgeaudit-agent: cannot bind NFQUEUE {a.queue}: {e}", file=sys.stderr)
            return 1
        with queue:
            injector = None if a.no_reset else RawInjector()
            agent = InlineAgent(p, injector)
            print(f"edgeaudit-agent: inline on queue {a.queue} with ruleset {rules.name} v{rules.version}",
                  file=sys.stderr, flush=True)
            def should_stop() -> bool:
                return stopping[0] or (deadline is not None and time.monotonic() > deadline)

            try:
                agent.serve(queue, should_stop)
            finally:
                p.finish()
                if injector is not None:
                    injector.close()
        counters = " ".join(f"{k}={v}" for k, v in agent.counters.items())
        print(f"edgeaudit-agent: inline stopped: {counters}", file=sys.stderr)
    return 0


def cmd_run(a: Any) -> int:
    from agent.run.supervisor import main_run

    tune_gc()
    return main_run(a.config)


def cmd_portal(a: Any) -> int:
    """`portal hash-password`: the scrypt hash of a password read from stdin (a terminal is asked
    twice, without echo); `portal dhcp-option --config FILE`: `114,"URI"` for dnsmasq."""
    import getpass

    from agent.config import ConfigError, load_config
    from agent.portal.tokens import hash_password

    if a.action == "hash-password":
        if sys.stdin.isatty():
            pw = getpass.getpass("desk password: ")
            if getpass.getpass("again: ") != pw:
                print("edgeaudit-agent: the passwords differ", file=sys.stderr)
                return EXIT_BAD_INPUT
        else:
            pw = sys.stdin.readline().rstrip("\r\n")
        if len(pw) < 8:
            print("edgeaudit-agent: a desk password needs at least 8 characters", file=sys.stderr)
            return EXIT_BAD_INPUT
        print(hash_password(pw))
        return 0
    if a.config is None:
        print("edgeaudit-agent: portal dhcp-option needs --config", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        cfg = load_config(a.config)
    except ConfigError as e:
        print(f"edgeaudit-agent: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if cfg.portal is None:
        print(f"edgeaudit-agent: {a.config} has no [portal]", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f'114,"{cfg.portal.api_url}"')
    return 0


def cmd_spool(a: Any) -> int:
    """`spool stats` prints the spool's figures as JSON; `spool check` reads every page (exit 1
    and the reason when damaged); `spool quarantine` lists the batches the collector refused for
    good (agent.spool.quarantine) as JSON; `spool requeue --all | BATCH...` puts them back in
    the upload queue. Safe while the agent runs (SQLite WAL readers; one writer at a time)."""
    import dataclasses
    import json

    from agent.config import ConfigError, load_config
    from agent.run.supervisor import open_spool
    from agent.spool.store import SpoolError

    if a.action == "requeue" and a.all == bool(a.batches):
        print("edgeaudit-agent: spool requeue needs --all or batch numbers (not both)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if a.action != "requeue" and (a.all or a.batches):
        print(f"edgeaudit-agent: spool {a.action} takes no batch numbers", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        cfg = load_config(a.config)
    except ConfigError as e:
        print(f"edgeaudit-agent: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        spool = open_spool(cfg)
        try:
            if a.action == "check":
                spool.check()
                print(f"spool {spool.path}: ok")
            elif a.action == "quarantine":
                print(json.dumps([dataclasses.asdict(b) for b in spool.quarantined()], indent=1))
            elif a.action == "requeue":
                done = spool.requeue(None if a.all else a.batches)
                for b in done:
                    print(f"batch {b.batch_seq}: {b.records} records back in the upload queue "
                          f"(refused with {b.status} {b.error}; they go out under a new batch number)")
                if not done:
                    print("the quarantine is empty")
            else:
                print(json.dumps(dataclasses.asdict(spool.stats()), indent=1))
        finally:
            spool.close()
    except (SpoolError, OSError) as e:
        print(f"edgeaudit-agent: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_selfcheck(a: Any) -> int:
    from agent.selfcheck import main_selfcheck

    return main_selfcheck(a.config, as_json=a.json, offline=a.offline)


def main(argv: Sequence[str] | None = None) -> int:
    a: Any = build_parser().parse_args(argv)
    try:
        rc: int = a.func(a)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
