#!/usr/bin/env python3
"""Live capture at line rate: the agent's AF_PACKET workers against tcpreplay on a veth (issue 6).

What: replays the project's generated gateway capture (1,000,000 packets; ``--quick``:
200,000) onto one end of a veth pair with ``tcpreplay --preload-pcap --pps R`` at
increasing rates, while the agent's capture workers (``agent.capture.workers``: one
TPACKET_V3 ring each, ``PACKET_FANOUT_HASH`` + DEFRAG) run the full pipeline on the
other end: every decoder, the identity table and the 10,000-keyword ruleset of
``bench/bench_keywords.py`` (``bench/out/keywords/ruleset-10000``), records written as
JSON lines. For 1 and 2 workers it reports, per rate, what tcpreplay achieved, the
packets the workers got, and the kernel's drop counter (``PACKET_STATISTICS``); and
per worker count the highest rate with zero drops. Targets (issue 16): the pipeline
with the 10,000-keyword ruleset ≤ 4 µs per packet, and zero kernel drops at 200,000
packets/s asked with two workers and at 150,000 with one, each judged on the median of
``--repeat`` runs at that rate (default 3; the best is printed beside it).

Why: a gateway cannot slow the traffic down; what the agent cannot take is dropped by
the kernel, so "highest rate with zero kernel drops" is the figure that matters, and
it depends on the capture loop, the pipeline and the ring together.

How:

* The agent comes from ``build/compiled`` (mypyc, what a gateway runs: ``make
  compiled``) when it is built, else from the sources (``--build`` forces one). A tree
  built before the capture modules existed lacks them; they are then taken from the
  sources (pure Python either way: the capture loop is not compiled).
* The ruleset is compiled once in the parent; the workers are forked after it, as the
  agent's ``run`` would do. Each rate gets fresh workers (new flow tables), started and
  joined to the fanout group before tcpreplay begins; after tcpreplay ends the bench
  waits until the workers' packet counters stop moving, reads each worker's CPU
  seconds from ``/proc``, then stops them with SIGTERM (which flushes every flow and
  reads the kernel counters a last time).
* Ring: ``--block-kib`` x ``--blocks`` per worker (default 1 MiB x 64: what
  ``edgeaudit-agent run`` gives each worker, ``[capture] ring_mb = 64``; until
  2026-12-07 the bench used 32, the capture module's own default). With ``--quick`` the
  whole replay (~167 MB) is under three times one ring, so a rate "without drops" there
  says less than with the 1,000,000-packet capture (~890 MB).
* tcpreplay shares the 2 cores with the workers, and its CPU seconds include the
  kernel's receive path for every frame (veth delivery, the fanout hash, the copy
  into the rings run in the sender's softirq): about a core at 150,000 pps. It paces
  with ``--timer=nano`` (nanosleep) by default rather than its busy-waiting ``gtod``,
  which leaves the workers more CPU. Its achieved rate is taken from its ``Rated:
  ... pps`` line; its CPU seconds are reported beside the workers'.
* Records: each worker writes its records as JSON lines to a file (``--sink jsonl``,
  the default, as ``replay --jsonl`` does) or only counts them (``--sink null``), which
  tells the cost of a disk that blocks writers (dirty-page throttling under another
  writer) apart from the CPU cost.
* ``--nice -10`` runs the workers ahead of other jobs (a shared VM; on a gateway the
  agent's unit may set ``Nice=``); ``other_cpu_s``, ``softirq_s`` and ``steal_s`` in the
  JSON say how busy the rest of the machine was during each run.
* Where the time goes (run once before the live runs, in this process): the capture
  loop alone (tcpreplay --topspeed into a ring big enough for the whole replay,
  nobody reading; then ``read_block`` over every block, timed) and the pipeline alone
  (``Pipeline.feed`` over exactly those captured batches, timed): microseconds per
  packet of each, and the rate one core could sustain with both.

Results: a table on stdout and ``bench/out/bench_live.json``. Exit status 0 = every
target met, 1 = one missed, 2 = could not measure (not root, tcpreplay or the capture
missing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bench" / "out"
COMPILED_TREE = REPO / "build" / "compiled"
RULESET = OUT_DIR / "keywords" / "ruleset-10000"
TARGET_PPS = 150_000  # issue 6: some worker count without drops
TARGETS_PPS = {1: 150_000, 2: 200_000}  # issue 16: zero drops at these rates asked, by worker count
TARGET_PIPELINE_US = 4.0  # issue 16: the pipeline with 10k keywords, per packet
DEFAULT_RATES = (50_000, 100_000, 150_000, 200_000, 250_000, 300_000)
VETH = ("eabenchA", "eabenchB")  # tcpreplay sends on A, the workers capture on B
SETTLE_S = 0.5  # the workers' counters unchanged this long after tcpreplay ended = done
STOP_AFTER_DROP_FRACTION = 0.05  # beyond a rate that dropped this much, higher rates are skipped


def select_build(which: str) -> str:
    """Import `agent` from build/compiled or from the sources; call before any agent import."""
    if "agent" in sys.modules:  # it would stay the one already imported, whatever is asked
        raise RuntimeError("bench_live: `agent` was imported before the build was chosen")
    built = (COMPILED_TREE / ".built").exists()
    if which == "pure" or (which == "auto" and not built):
        return "interpreted (the sources)"
    if not built:
        sys.exit(f"--build compiled: {COMPILED_TREE} is not built (run `make compiled`)")
    sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("__editable__")]
    sys.path.insert(0, str(COMPILED_TREE))
    import agent.capture

    note = ""
    if not (COMPILED_TREE / "agent" / "capture" / "afpacket.py").exists():
        # a tree built before the live-capture modules: take them (pure Python anyway) from the sources
        agent.capture.__path__.append(str(REPO / "agent" / "capture"))
        note = "; capture modules from the sources"
    return f"compiled by mypyc ({COMPILED_TREE.relative_to(REPO)}){note}"


# ------------------------------------------------------------------------------- environment

def sh(*argv: str) -> None:
    subprocess.run(argv, check=True)


def make_veth(mtu: int) -> None:
    delete_veth()
    sh("ip", "link", "add", VETH[0], "type", "veth", "peer", "name", VETH[1])
    for name in VETH:
        Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").write_text("1")  # no kernel chatter
        sh("ip", "link", "set", name, "mtu", str(mtu), "up")


def delete_veth() -> None:
    subprocess.run(["ip", "link", "del", VETH[0]], check=False, stderr=subprocess.DEVNULL)


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a live process (/proc/PID/stat fields 14, 15)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_cpu() -> tuple[float, float, float]:
    """(busy, softirq, steal) CPU seconds of every core since boot (/proc/stat's "cpu" line).

    Busy is all but idle and iowait (so it includes softirq and steal).
    """
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(f[:8]) - f[3] - f[4]) / hz, f[6] / hz, f[7] / hz


_RATED = re.compile(r"Rated:\s+[\d.]+ Bps,\s+([\d.]+) Mbps,\s+([\d.]+) pps")
_ACTUAL = re.compile(r"Actual:\s+(\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds")


TIMER = ["nano"]  # tcpreplay --timer: set from --timer


def tcpreplay(pcap: Path, rate: int | None, packets: int | None = None) -> dict[str, Any]:
    """Replay `pcap` onto VETH[0] at `rate` pps (None: --topspeed); tcpreplay's own figures."""
    argv = ["tcpreplay", "-i", VETH[0], "--preload-pcap", f"--timer={TIMER[0]}"]
    argv += [f"--pps={rate}"] if rate else ["--topspeed"]
    if packets:
        argv += [f"--limit={packets}"]
    before = os.times()
    res = subprocess.run(argv + [str(pcap)], capture_output=True, text=True, check=False)
    after = os.times()
    out: dict[str, Any] = {"asked_pps": rate, "exit": res.returncode,
                           "cpu_s": round(after.children_user + after.children_system
                                          - before.children_user - before.children_system, 3)}
    m = _ACTUAL.search(res.stdout)
    r = _RATED.search(res.stdout)
    if res.returncode != 0 or m is None or r is None:
        out["error"] = (res.stderr or res.stdout)[-400:]
        return out
    out.update(sent=int(m.group(1)), sent_bytes=int(m.group(2)), seconds=float(m.group(3)),
               achieved_pps=round(float(r.group(2))), achieved_mbps=float(r.group(1)))
    failed = re.search(r"Failed packets:\s+(\d+)", res.stdout)
    out["failed"] = int(failed.group(1)) if failed else 0
    return out


# ------------------------------------------------------------------------------- where the time goes

def cost_breakdown(pcap: Path, packets: int, rules: Any, block_size: int) -> dict[str, Any]:
    """Capture loop alone vs pipeline alone, per packet, on the same live-captured frames."""
    from agent.capture.afpacket import AfPacketSource
    from agent.cli import tune_gc
    from agent.pipeline import Pipeline

    # room for every frame of `packets` (the generated mix averages ~850 bytes + 48 of header)
    ring_blocks = max(16, packets * 1400 // block_size)
    with AfPacketSource(VETH[1], block_size=block_size, block_nr=ring_blocks, retire_ms=10) as src:
        rep = tcpreplay(pcap, None, packets)
        # the last partly filled block retires after retire_ms: wait for it (bounded)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            src.wait(20)
        batches = []
        t0 = time.perf_counter()
        while True:
            b = src.read_block()
            if b is None:
                break
            batches.append(b)
        ring_s = time.perf_counter() - t0
        counters = dict(src.read_kernel_stats())
    n = sum(len(b) for b in batches)
    out: dict[str, Any] = {"tcpreplay": rep, "captured": n, "kernel_drops": counters["kernel_drops"],
                           "ring_mib": ring_blocks * block_size >> 20}
    if not n:
        return out
    tune_gc()
    recs = [0]

    def sink(r: list[dict[str, Any]]) -> None:
        recs[0] += len(r)

    p = Pipeline(sink, rules=rules)
    t0 = time.perf_counter()
    for b in batches:
        p.feed(b)
    p.finish()
    pipe_s = time.perf_counter() - t0
    ring_us = ring_s / n * 1e6
    pipe_us = pipe_s / n * 1e6
    out.update(ring_read_us_per_packet=round(ring_us, 3), pipeline_us_per_packet=round(pipe_us, 3),
               records=recs[0], one_core_pps=round(1e6 / (ring_us + pipe_us)),
               capture_share=round(ring_us / (ring_us + pipe_us), 3))
    return out


# ------------------------------------------------------------------------------- live runs

NICE = [0]  # --nice: the workers' scheduling priority (a gateway's systemd unit may set Nice=)
SINK = ["jsonl"]  # --sink: "jsonl" writes each worker's records to a file, "null" only counts them


class _Worker:
    """One worker's consumer: the agent's Pipeline writing JSON lines (as `replay --jsonl` does)."""

    def __init__(self, index: int, rules: Any, out_dir: Path) -> None:
        from agent.cli import tune_gc
        from agent.pipeline import Pipeline
        from wire.jsonl import JsonlWriter

        tune_gc()
        if NICE[0]:
            os.setpriority(os.PRIO_PROCESS, 0, NICE[0])
        self.count_path = out_dir / f"worker-{index}.count"
        self.writer = JsonlWriter(out_dir / f"worker-{index}.jsonl") if SINK[0] == "jsonl" else None
        self.records = 0
        self.p = Pipeline(self.sink, rules=rules)

    def sink(self, records: list[dict[str, Any]]) -> None:
        self.records += len(records)
        if self.writer is not None:
            self.writer.write_many(records)

    def feed(self, batch: list[tuple[float, int, bytes]], nbytes: int | None = None) -> None:
        self.p.feed(batch, nbytes)

    def finish(self) -> None:
        self.p.finish()
        if self.writer is not None:
            self.writer.close()
        self.count_path.write_text(str(self.records))


def live_run(pcap: Path, workers: int, rate: int | None, rules: Any, block_size: int, blocks: int,
             packets: int | None) -> dict[str, Any]:
    from agent.capture.workers import CaptureConfig, WorkerPool

    load1 = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="bench_live-", dir=OUT_DIR) as tmp:
        cfg = CaptureConfig(VETH[1], block_size=block_size, block_nr=blocks, retire_ms=10, stats_interval=0.5)
        pool = WorkerPool(cfg, lambda i, src: _Worker(i, rules, Path(tmp)), workers=workers)
        pool.start()
        pids = pool.pids()
        cpu0 = [proc_cpu(p) for p in pids]
        sys0 = system_cpu()
        t0 = time.monotonic()
        try:
            rep = tcpreplay(pcap, rate, packets)
            last = -1
            while True:  # until the workers have taken everything the rings hold
                c = pool.counters()
                if c["packets"] == last:
                    break
                last = c["packets"]
                time.sleep(SETTLE_S)  # sampling a counter for quiescence, not synchronisation
            cpu = [round(proc_cpu(p) - c0, 3) for p, c0 in zip(pids, cpu0, strict=True)]
            busy, softirq, steal = (b - a for a, b in zip(sys0, system_cpu(), strict=True))
            wall = time.monotonic() - t0
        finally:
            codes = pool.stop(timeout=120)
        c = pool.counters()
        per = pool.worker_counters()
        records = sum(int(f.read_text()) for f in Path(tmp).glob("worker-*.count"))
    return {
        "workers": workers, "loadavg_1m_before": load1, "tcpreplay": rep, "captured": c["packets"],
        "kernel_packets": c["kernel_packets"],
        "kernel_drops": c["kernel_drops"], "kernel_freeze_q": c["kernel_freeze_q"],
        "per_worker_packets": [w["packets"] for w in per],
        "per_worker_drops": [w["kernel_drops"] for w in per],
        "worker_cpu_s": cpu, "records": records, "exit_codes": codes,
        # CPU the rest of the machine used meanwhile (other jobs on a shared VM): noise indicator
        # (softirq: the kernel's receive path when not charged to tcpreplay; steal: the hypervisor)
        "other_cpu_s": round(busy - sum(cpu) - rep.get("cpu_s", 0.0), 2), "wall_s": round(wall, 2),
        "softirq_s": round(softirq, 2), "steal_s": round(steal, 2),
        "worker_us_per_packet": round(sum(cpu) / c["packets"] * 1e6, 2) if c["packets"] else None,
        "drop_fraction": round(c["kernel_drops"] / c["kernel_packets"], 5) if c["kernel_packets"] else None,
    }


# ------------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--quick", action="store_true", help="the 200,000-packet capture (default 1,000,000)")
    ap.add_argument("--pcap", type=Path, help="replay this capture instead")
    ap.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)),
                    help="packets/s to ask tcpreplay for, comma separated (0 = --topspeed)")
    ap.add_argument("--workers", default="1,2", help="worker counts to run, comma separated")
    ap.add_argument("--build", choices=("auto", "compiled", "pure"), default="auto")
    ap.add_argument("--block-kib", type=int, default=1024, help="ring block size per worker (KiB)")
    ap.add_argument("--blocks", type=int, default=None,
                    help="ring blocks per worker (default: the agent's own ring, [capture] ring_mb "
                         "of agent.toml, 64 MiB, in blocks of --block-kib)")
    ap.add_argument("--no-rules", action="store_true", help="without the 10,000-keyword ruleset")
    ap.add_argument("--all-rates", action="store_true",
                    help="keep going past a rate that dropped more than "
                         f"{STOP_AFTER_DROP_FRACTION * 100:.0f}%% of its packets")
    ap.add_argument("--timer", choices=("nano", "gtod", "select"), default="nano",
                    help="tcpreplay's pacing: nano (nanosleep; default: leaves the workers more CPU) "
                         "or gtod (busy-waits a core)")
    ap.add_argument("--sink", choices=("jsonl", "null"), default="jsonl",
                    help="what the workers do with records: write JSON lines (default) or only count them")
    ap.add_argument("--nice", type=int, default=0,
                    help="run the workers at this nice value (e.g. -10: ahead of other jobs on the machine)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of the cost breakdown and at each target rate; judged on the median "
                         "(default 3)")
    ap.add_argument("--out", type=Path, default=OUT_DIR / "bench_live.json")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    pcap = a.pcap or OUT_DIR / f"edge-{200_000 if a.quick else 1_000_000}p-s1.pcap"
    problems = []
    if os.geteuid() != 0:
        problems.append("needs root (veth, AF_PACKET)")
    if shutil.which("tcpreplay") is None:
        problems.append("tcpreplay is not installed (apt-get install tcpreplay)")
    if not pcap.exists():
        problems.append(f"{pcap} is missing (bench/bench_sessions.py builds it)")
    if not a.no_rules and not RULESET.exists():
        problems.append(f"{RULESET} is missing (bench/bench_keywords.py builds it)")
    if problems:
        for p in problems:
            print(f"bench_live: {p}", file=sys.stderr)
        return 2
    build = select_build(a.build)
    if a.blocks is None:
        # what `edgeaudit-agent run` gives each worker by default (agent/config.py, supervisor);
        # imported only now: `agent` must come from the build select_build chose
        from agent.config import CaptureConfig as AgentCapture

        a.blocks = max(4, AgentCapture().ring_mb * 1024 // a.block_kib)
    TIMER[0] = a.timer
    SINK[0] = a.sink
    NICE[0] = a.nice
    import agent.capture.afpacket

    rules = None
    if not a.no_rules:
        from agent.filter.compiled import compile_rules
        from rulesets.load import load_ruleset

        rules = compile_rules(load_ruleset(RULESET), cache_dir=OUT_DIR / "keywords" / "engine-cache")
        print(f"keyword engine: {rules.engine} ({rules.patterns.engine_reason})", flush=True)
    rates = [int(r) for r in a.rates.split(",")]
    worker_counts = [int(x) for x in a.workers.split(",")]
    block_size = a.block_kib * 1024
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "agent_build": build, "capture_module": agent.capture.afpacket.__file__,
        "pcap": str(pcap.relative_to(REPO) if pcap.is_relative_to(REPO) else pcap),
        "pcap_bytes": pcap.stat().st_size, "ruleset": None if a.no_rules else str(RULESET.relative_to(REPO)),
        "ring_per_worker": {"block_kib": a.block_kib, "blocks": a.blocks,
                            "mib": a.block_kib * a.blocks / 1024},
        "tcpreplay_version": subprocess.run(["tcpreplay", "--version"], capture_output=True,
                                            text=True).stderr.splitlines()[0],
        "tcpreplay_timer": a.timer, "sink": a.sink, "worker_nice": a.nice, "target_pps": TARGET_PPS,
        "runs": [], "best_zero_drop_pps": {},
    }
    print(f"agent: {build}; capture: {pcap.name}; ruleset: {result['ruleset']}; "
          f"ring per worker: {a.blocks} x {a.block_kib} KiB", flush=True)
    make_veth(mtu=9000)
    try:
        breakdowns = []
        for i in range(a.repeat):
            bd = cost_breakdown(pcap, 200_000, rules, block_size)
            breakdowns.append(bd)
            print(f"where the time goes, run {i + 1}/{a.repeat} ({bd.get('captured')} packets captured "
                  f"live, one process): capture loop {bd.get('ring_read_us_per_packet')} us/packet, "
                  f"pipeline {bd.get('pipeline_us_per_packet')} us/packet -> one core "
                  f"~{bd.get('one_core_pps')} pps", flush=True)
        result["cost_breakdown"] = breakdowns[-1]
        result["cost_breakdowns"] = breakdowns
        pipe_us = [b["pipeline_us_per_packet"] for b in breakdowns if "pipeline_us_per_packet" in b]
        result["pipeline_us_per_packet"] = {"median": statistics.median(pipe_us) if pipe_us else None,
                                            "best": min(pipe_us) if pipe_us else None, "runs": pipe_us}
        print(f"{'workers':>7} {'asked pps':>10} {'achieved':>10} {'captured':>10} {'drops':>9} "
              f"{'drop %':>7} {'worker CPU s':>14} {'us/pkt':>7} {'tcpreplay CPU s':>15} "
              f"{'others CPU s':>12}", flush=True)
        best_asked: dict[str, int] = {}
        result["best_zero_drop_rate_reached"] = best_asked
        for w in worker_counts:
            best = None
            for rate in rates:
                run = live_run(pcap, w, rate or None, rules, block_size, a.blocks, None)
                result["runs"].append(run)
                rep = run["tcpreplay"]
                frac = run["drop_fraction"] or 0.0
                print(f"{w:>7} {rate or 'top':>10} {rep.get('achieved_pps', '-'):>10} {run['captured']:>10} "
                      f"{run['kernel_drops']:>9} {100 * frac:>6.2f}% {str(run['worker_cpu_s']):>14} "
                      f"{run['worker_us_per_packet']:>7} {rep.get('cpu_s', '-'):>15} "
                      f"{run['other_cpu_s']:>12}",
                      flush=True)
                if run["kernel_drops"] == 0 and "error" not in rep:
                    achieved = rep["achieved_pps"]
                    best = achieved if best is None else max(best, achieved)
                    # tcpreplay's pacing lands a few packets/s under the rate asked (149,999 for
                    # 150,000): a rate is reached when 99% of it was achieved
                    reached = rate if rate and achieved >= 0.99 * rate else achieved
                    best_asked[str(w)] = max(best_asked.get(str(w), 0), reached)
                elif frac > STOP_AFTER_DROP_FRACTION and not a.all_rates:
                    break
            result["best_zero_drop_pps"][str(w)] = best
        # the issue-16 targets: `--repeat` runs at each worker count's target rate, judged on the median
        result["at_target"] = {}
        for w, rate in TARGETS_PPS.items():
            if w not in worker_counts:
                continue
            drops = []
            for i in range(a.repeat):
                run = live_run(pcap, w, rate, rules, block_size, a.blocks, None)
                result["runs"].append(run)
                drops.append(run["kernel_drops"])
                print(f"at the target: {w} worker(s), {rate} pps asked, run {i + 1}/{a.repeat}: achieved "
                      f"{run['tcpreplay'].get('achieved_pps', '-')} pps, {run['kernel_drops']} drops",
                      flush=True)
            result["at_target"][str(w)] = {"rate": rate, "drops": drops,
                                           "median_drops": statistics.median(drops), "best_drops": min(drops)}
    finally:
        delete_veth()
    reached = result.get("best_zero_drop_rate_reached", {})
    met = any(v >= TARGET_PPS for v in reached.values())
    result["target_met"] = met
    print("highest achieved rate with zero kernel drops: "
          + ", ".join(f"{k} worker(s): {v} (rate reached: {reached.get(k, '-')})"
                      for k, v in result["best_zero_drop_pps"].items())
          + f"  (issue 6 target >= {TARGET_PPS} asked and 99% achieved: {'met' if met else 'not met'})")
    verdicts = []
    pu = result["pipeline_us_per_packet"]
    if rules is not None and pu["median"] is not None:
        ok = pu["median"] <= TARGET_PIPELINE_US
        verdicts.append(ok)
        print(f"pipeline with {len(rules.rules):,} keywords ({rules.engine}): median {pu['median']:.2f} "
              f"us/packet, best {pu['best']:.2f} (target <= {TARGET_PIPELINE_US}): "
              f"{'met' if ok else 'NOT MET'}")
    for w, t in result["at_target"].items():
        ok = t["median_drops"] == 0
        verdicts.append(ok)
        print(f"{w} worker(s) at {t['rate']:,} pps asked: drops per run {t['drops']}, median "
              f"{t['median_drops']:g}, best {t['best_drops']} (target 0): {'met' if ok else 'NOT MET'}")
    result["issue16_targets_met"] = all(verdicts) if verdicts else None
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {a.out.relative_to(REPO) if a.out.is_relative_to(REPO) else a.out}")
    return 0 if met and result["issue16_targets_met"] is not False else 1


if __name__ == "__main__":
    sys.exit(main())
