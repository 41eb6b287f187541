#!/usr/bin/env python3
"""Session-logging cost of the edgeaudit agent against argus (and tshark/softflowd if present).

What: builds — or reuses from ``bench/out/`` — a synthetic gateway capture
(``python -m agent.synth``, 1,000,000 packets by default), then runs each tool
over it in one process and compares CPU seconds::

    edgeaudit-agent replay CAP --jsonl OUT [--sessions-only]   # the agent's offline mode
    argus -r CAP -w OUT.argus                    # Debian argus-server, the reference
    tshark -r CAP -q -z conv,tcp -z conv,udp     # optional, only if installed
    softflowd -r CAP -n 127.0.0.1:PORT -v 9      # optional, only if installed

Why CPU seconds: on a gateway the agent competes with routing for cores, so
its budget is CPU per packet relative to a mature flow monitor. The targets,
on the same capture in the same run (same machine, same page cache, same
load): agent CPU ≤ 2.0 × argus CPU for session records alone
(``--sessions-only``, the agent-core figure), and ≤ 3.0 × with every protocol
decoder and the identity table on (``mypyc-decoders``, the default agent).

How: CPU is the delta of ``resource.getrusage(RUSAGE_CHILDREN)`` user+sys
around each ``subprocess.run`` (the child and any children it waited for);
wall time is ``time.perf_counter`` around the same call. The capture is read
once beforehand so the first tool does not pay for cold disk reads. With
``--repeat N`` each tool runs N times and the minimum wall and minimum CPU are
reported (independently: both are lower bounds on the tool's own cost, the
rest is noise from other processes).

Results: a table on stdout and ``bench/out/bench_sessions.json``. Exit status
0 = target met, 1 = target missed, 2 = the ratio could not be measured (agent
or argus missing or failing).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "bench" / "out"
TARGET_RATIO = 2.0  # agent CPU seconds / argus CPU seconds, sessions only (issue 2)
TARGET_DECODERS_RATIO = 3.0  # the same with every protocol decoder and the identity table on (issue 3)
DEFAULT_PACKETS = 1_000_000
DEFAULT_SEED = 1
DEFAULT_TIMEOUT_S = 3600.0
STDERR_TAIL_LINES = 12
# Extra places to look for tools: argus lives in /usr/sbin, which a non-root PATH often lacks.
EXTRA_BIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")


# ---------------------------------------------------------------- capture


@dataclass(frozen=True)
class Capture:
    path: Path
    packets: int
    bytes: int  # file size
    seed: int
    reused: bool
    generate_wall_s: float | None  # None when reused
    generator: dict[str, Any]  # GenStats as reported by the generator


def _python() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def _generator_fingerprint() -> str:
    """Hash of the generator's sources: a changed generator must not reuse an old capture."""
    h = hashlib.sha256()
    for p in sorted((REPO / "agent" / "synth").rglob("*.py")):
        h.update(p.relative_to(REPO).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def ensure_capture(packets: int, seed: int, out_dir: Path, regenerate: bool) -> Capture:
    """Reuse ``edge-<packets>p-s<seed>.pcap`` if its metadata matches, else generate it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    pcap = out_dir / f"edge-{packets}p-s{seed}.pcap"
    meta_path = pcap.with_suffix(".json")
    fingerprint = _generator_fingerprint()
    if not regenerate and pcap.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            meta = {}
        if (
            meta.get("fingerprint") == fingerprint
            and meta.get("file_bytes") == pcap.stat().st_size
            and meta.get("stats", {}).get("packets") == packets
        ):
            return Capture(pcap, packets, pcap.stat().st_size, seed, True, None, meta["stats"])
    tmp = pcap.with_suffix(".pcap.tmp")
    cmd = [_python(), "-m", "agent.synth", str(tmp), "--packets", str(packets), "--seed", str(seed), "--json"]
    print(f"generating {pcap.name}: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        sys.exit(f"capture generation failed (exit {proc.returncode}):\n{proc.stderr}")
    stats = json.loads(proc.stdout)
    # Rename only after success, so an interrupted run never leaves a truncated "cached" capture.
    tmp.replace(pcap)
    meta = {"fingerprint": fingerprint, "file_bytes": pcap.stat().st_size, "stats": stats}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"  {stats['packets']:,} packets, {pcap.stat().st_size / 1e6:,.0f} MB in {wall:.1f}s",
          file=sys.stderr, flush=True)
    return Capture(pcap, packets, pcap.stat().st_size, seed, False, wall, stats)


def warm_page_cache(path: Path) -> None:
    """Read the file once so no tool is charged for cold disk reads."""
    with path.open("rb", buffering=0) as f:
        while f.read(1 << 22):
            pass


# ---------------------------------------------------------------- tools


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    user_s: float
    sys_s: float
    returncode: int
    timed_out: bool = False


@dataclass
class ToolResult:
    name: str
    cmd: list[str]
    status: str  # "ok", "failed", "skipped", "timeout"
    note: str = ""
    runs: list[Run] = field(default_factory=list)
    best_wall_s: float | None = None
    best_cpu_s: float | None = None
    packets_per_s: float | None = None  # packets / best wall
    output_bytes: int | None = None
    output_records: int | None = None


@dataclass
class Tool:
    name: str
    required: bool  # part of the PASS/FAIL ratio
    build: Callable[[Path, Path], list[str]]  # (capture, output) -> argv
    output_suffix: str
    count_records: Callable[[Path], int | None]
    locate: Callable[[], str | None]
    stdout_to_output: bool = False  # tool writes its result on stdout


def which(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for d in EXTRA_BIN_DIRS:
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def locate_agent() -> str | None:
    venv = REPO / ".venv" / "bin" / "edgeaudit-agent"
    if venv.exists():
        return str(venv)
    return which("edgeaudit-agent")


def locate_argus(install: bool) -> tuple[str | None, str]:
    """Find argus; install argus-server with apt-get when allowed and running as root."""
    exe = which("argus")
    if exe:
        return exe, ""
    if not install:
        return None, "argus not found (install the Debian package argus-server)"
    if os.geteuid() != 0:
        return None, "argus not found and not root: run `sudo apt-get install argus-server`, then re-run"
    if not which("apt-get"):
        return None, "argus not found and apt-get is unavailable: install argus-server by hand"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("argus not found: apt-get install -y argus-server", file=sys.stderr, flush=True)
    ok = subprocess.run(["apt-get", "install", "-y", "argus-server"], env=env).returncode == 0
    if not ok:
        # A fresh container often has no package lists yet.
        subprocess.run(["apt-get", "update"], env=env)
        ok = subprocess.run(["apt-get", "install", "-y", "argus-server"], env=env).returncode == 0
    exe = which("argus")
    if not ok or not exe:
        return None, "apt-get install argus-server failed; see the messages above"
    return exe, "installed argus-server with apt-get"


def count_lines(path: Path) -> int | None:
    if not path.exists():
        return None
    n = 0
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            n += chunk.count(b"\n")
    return n


def count_argus_records(path: Path) -> int | None:
    """Flow records in an argus file via ``ra`` (argus-client), if installed; management records excluded."""
    ra = which("ra")
    if not ra or not path.exists():
        return None
    argv = [ra, "-r", str(path), "-n", "-L", "-1", "-s", "proto"]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    return sum(1 for line in proc.stdout.splitlines() if line.strip() and line.strip() != "man")


def no_count(path: Path) -> int | None:
    return None


def child_cpu() -> tuple[float, float]:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime, ru.ru_stime


def run_once(argv: Sequence[str], out: Path, log: Path, stdout_to_output: bool, timeout: float) -> Run:
    out.unlink(missing_ok=True)  # argus appends to an existing -w file
    u0, s0 = child_cpu()
    t0 = time.perf_counter()
    rc: int
    timed_out = False
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(log.open("wb"))
        sout = stack.enter_context(out.open("wb")) if stdout_to_output else err
        try:
            rc = subprocess.run(
                argv, stdout=sout, stderr=err, stdin=subprocess.DEVNULL, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            # subprocess.run killed and reaped the child, so its CPU is still in RUSAGE_CHILDREN.
            rc, timed_out = -9, True
    wall = time.perf_counter() - t0
    u1, s1 = child_cpu()
    return Run(wall, (u1 - u0) + (s1 - s0), u1 - u0, s1 - s0, rc, timed_out)


def tail(path: Path, lines: int = STDERR_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass
class Measurement:
    """One tool's runs in progress."""

    tool: Tool
    result: ToolResult
    out: Path
    log: Path


def start_measurement(tool: Tool, exe: str, cap: Capture, out_dir: Path) -> Measurement:
    out = out_dir / f"bench_{tool.name}{tool.output_suffix}"
    argv = [exe, *tool.build(cap.path, out)[1:]]
    return Measurement(tool, ToolResult(tool.name, argv, "ok"), out, out_dir / f"bench_{tool.name}.log")


def run_round(m: Measurement, i: int, repeat: int, timeout: float) -> None:
    """Run the tool once more unless it already failed."""
    res = m.result
    if res.status != "ok":
        return
    print(f"  {res.name}: run {i + 1}/{repeat} ...", file=sys.stderr, flush=True)
    run = run_once(res.cmd, m.out, m.log, m.tool.stdout_to_output, timeout)
    res.runs.append(run)
    if run.timed_out:
        res.status, res.note = "timeout", f"killed after {timeout:.0f}s; {res.note}".rstrip("; ")
    elif run.returncode != 0:
        res.status, res.note = "failed", f"exit {run.returncode}: {tail(m.log)}"


def finish_measurement(m: Measurement, cap: Capture, keep: bool) -> ToolResult:
    res = m.result
    if res.status == "ok" and res.runs:
        res.best_wall_s = min(r.wall_s for r in res.runs)
        res.best_cpu_s = min(r.cpu_s for r in res.runs)
        res.packets_per_s = cap.packets / res.best_wall_s if res.best_wall_s > 0 else None
        if m.out.exists():
            res.output_bytes = m.out.stat().st_size
            res.output_records = m.tool.count_records(m.out)
    if not keep:
        m.out.unlink(missing_ok=True)
    return res


# ---------------------------------------------------------------- tool table


def _agent_cmd(cap: Path, out: Path) -> list[str]:
    return ["edgeaudit-agent", "replay", str(cap), "--jsonl", str(out), "--sessions-only"]


def _agent_decoders_cmd(cap: Path, out: Path) -> list[str]:
    return ["edgeaudit-agent", "replay", str(cap), "--jsonl", str(out)]


COMPILED_TREE = REPO / "build" / "compiled"  # `make compiled`: the same source, compiled with mypyc


def _agent_mypyc_cmd(cap: Path, out: Path) -> list[str]:
    return [_python(), str(REPO / "bench" / "agent_compiled.py"), "replay", str(cap), "--jsonl", str(out),
            "--sessions-only"]


def _mypyc_decoders_cmd(cap: Path, out: Path) -> list[str]:
    return [_python(), str(REPO / "bench" / "agent_compiled.py"), "replay", str(cap), "--jsonl", str(out)]


def locate_agent_mypyc() -> str | None:
    return _python() if (COMPILED_TREE / ".built").exists() else None


def _argus_cmd(cap: Path, out: Path) -> list[str]:
    return ["argus", "-r", str(cap), "-w", str(out)]


def _tshark_cmd(cap: Path, out: Path) -> list[str]:
    # Conversation tables are tshark's closest equivalent of per-session records.
    return ["tshark", "-r", str(cap), "-q", "-z", "conv,tcp", "-z", "conv,udp"]


def make_tools(softflowd_port: int) -> list[Tool]:
    def softflowd_cmd(cap: Path, out: Path) -> list[str]:
        # -r reads the file and exits; flows are exported as NetFlow v9 to a local sink socket.
        return ["softflowd", "-r", str(cap), "-n", f"127.0.0.1:{softflowd_port}", "-v", "9"]

    return [
        Tool("edgeaudit-agent", True, _agent_cmd, ".jsonl", count_lines, locate_agent),
        Tool("agent-mypyc", False, _agent_mypyc_cmd, ".jsonl", count_lines, locate_agent_mypyc),
        Tool("agent-decoders", False, _agent_decoders_cmd, ".jsonl", count_lines, locate_agent),
        Tool("mypyc-decoders", False, _mypyc_decoders_cmd, ".jsonl", count_lines, locate_agent_mypyc),
        Tool("argus", True, _argus_cmd, ".argus", count_argus_records, lambda: which("argus")),
        Tool("tshark", False, _tshark_cmd, ".txt", no_count, lambda: which("tshark"), stdout_to_output=True),
        Tool("softflowd", False, softflowd_cmd, ".log", no_count, lambda: which("softflowd")),
    ]


# ---------------------------------------------------------------- report


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _fmt(v: float | None, spec: str, width: int = 0) -> str:
    return ("—" if v is None else format(v, spec)).rjust(width)


def report(cap: Capture, results: list[ToolResult], repeat: int) -> tuple[dict[str, Any], int]:
    by = {r.name: r for r in results}
    agent, argus = by.get("edgeaudit-agent"), by.get("argus")
    argus_cpu = argus.best_cpu_s if argus else None
    argus_wall = argus.best_wall_s if argus else None

    print()
    print(
        f"capture: {cap.path} ({cap.packets:,} packets, {cap.bytes / 1e6:,.0f} MB, seed {cap.seed}, "
        + ("reused)" if cap.reused else f"generated in {cap.generate_wall_s:.1f}s)")
    )
    print(f"best of {repeat} run(s) per tool; CPU = user+sys of the child (RUSAGE_CHILDREN delta)")
    print()
    head = (
        f"{'tool':<16} {'status':<8} {'wall s':>9} {'packets/s (wall)':>17} {'CPU s':>9}"
        f" {'CPU × argus':>12} {'records':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        cpu_x = ratio(r.best_cpu_s, argus_cpu)
        records = None if r.output_records is None else float(r.output_records)
        print(
            f"{r.name:<16} {r.status:<8} {_fmt(r.best_wall_s, '.2f', 9)} {_fmt(r.packets_per_s, ',.0f', 17)}"
            f" {_fmt(r.best_cpu_s, '.2f', 9)} {('—' if cpu_x is None else f'{cpu_x:.2f}×'):>12}"
            f" {_fmt(records, ',.0f', 10)}"
        )
    for r in results:
        if r.note:
            print(f"\n{r.name}: {r.note}")

    cpu_ratio = ratio(agent.best_cpu_s if agent else None, argus_cpu)
    wall_ratio = ratio(agent.best_wall_s if agent else None, argus_wall)
    print()
    if cpu_ratio is None:
        verdict, code = "NOT MEASURED", 2
        missing = [
            f"{name} {'not selected' if r is None else r.status}"
            for name, r in (("edgeaudit-agent", agent), ("argus", argus))
            if r is None or r.best_cpu_s is None
        ]
        print(
            f"agent CPU / argus CPU: not measured ({', '.join(missing)}) — target ≤ {TARGET_RATIO:.1f}×  "
            f"{verdict}"
        )
    else:
        verdict = "PASS" if cpu_ratio <= TARGET_RATIO else "FAIL"
        code = 0 if verdict == "PASS" else 1
        print(f"agent CPU / argus CPU = {cpu_ratio:.2f}×  (target ≤ {TARGET_RATIO:.1f}×)  {verdict}")
        print(f"agent wall / argus wall = {_fmt(wall_ratio, '.2f')}×  (for information)")
    compiled = by.get("agent-mypyc")
    compiled_ratio = ratio(compiled.best_cpu_s if compiled else None, argus_cpu)
    if compiled_ratio is not None:
        cverdict = "PASS" if compiled_ratio <= TARGET_RATIO else "FAIL"
        print(f"agent (mypyc-compiled packet path) CPU / argus CPU = {compiled_ratio:.2f}×  "
              f"(target ≤ {TARGET_RATIO:.1f}×)  {cverdict}")
        if cpu_ratio is not None and code == 1 and cverdict == "PASS":
            code = 0  # the compiled build is the one deployed; the pure-Python figure stays in the report
    # issue 3: every decoder and the identity table on; the compiled build is the deployed one
    decoders = by.get("mypyc-decoders") or by.get("agent-decoders")
    decoders_ratio = ratio(decoders.best_cpu_s if decoders else None, argus_cpu)
    decoders_verdict = "NOT MEASURED"
    if decoders is not None and decoders_ratio is not None:
        decoders_verdict = "PASS" if decoders_ratio <= TARGET_DECODERS_RATIO else "FAIL"
        print(f"agent with every decoder ({decoders.name}) CPU / argus CPU = {decoders_ratio:.2f}×  "
              f"(target ≤ {TARGET_DECODERS_RATIO:.1f}×)  {decoders_verdict}")
        if decoders_verdict == "FAIL" and code == 0:
            code = 1
    for r in results:
        if r.name not in ("edgeaudit-agent", "argus", "agent-mypyc") and r.best_cpu_s is not None:
            print(f"{r.name} CPU / argus CPU = {_fmt(ratio(r.best_cpu_s, argus_cpu), '.2f')}×")

    doc: dict[str, Any] = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "loadavg_1m": os.getloadavg()[0],
        },
        "capture": {
            "path": str(cap.path),
            "packets": cap.packets,
            "file_bytes": cap.bytes,
            "seed": cap.seed,
            "reused": cap.reused,
            "generate_wall_s": cap.generate_wall_s,
            "generator": cap.generator,
        },
        "repeat": repeat,
        "tools": {r.name: asdict(r) for r in results},
        "ratios": {
            "agent_cpu_over_argus_cpu": cpu_ratio,
            "agent_wall_over_argus_wall": wall_ratio,
            "agent_mypyc_cpu_over_argus_cpu": compiled_ratio,
            **{
                f"{r.name}_cpu_over_argus_cpu": ratio(r.best_cpu_s, argus_cpu)
                for r in results
                if r.name not in ("edgeaudit-agent", "argus", "agent-mypyc")
            },
        },
        "target_cpu_ratio": TARGET_RATIO,
        "verdict": verdict,
        "decoders": {"tool": decoders.name if decoders else None, "cpu_over_argus_cpu": decoders_ratio,
                     "target_cpu_ratio": TARGET_DECODERS_RATIO, "verdict": decoders_verdict},
    }
    return doc, code


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--packets", type=int, default=DEFAULT_PACKETS, help="capture size (default 1000000)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="generator seed (default 1)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; best of N is reported")
    ap.add_argument(
        "--tools",
        default="edgeaudit-agent,agent-mypyc,mypyc-decoders,argus,tshark,softflowd",
        help="comma-separated subset of edgeaudit-agent,agent-mypyc,agent-decoders,mypyc-decoders,argus,"
             "tshark,softflowd (the agents without 'decoders' run --sessions-only)",
    )
    ap.add_argument("--out-dir", type=Path, default=OUT_DIR, help="capture cache and results (bench/out)")
    ap.add_argument("--regenerate", action="store_true", help="rebuild the capture even if cached")
    ap.add_argument("--keep-outputs", action="store_true", help="keep each tool's output file")
    ap.add_argument("--no-install", action="store_true", help="never apt-get install argus-server")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per tool run")
    args = ap.parse_args(argv)
    if args.packets < 1 or args.repeat < 1:
        ap.error("--packets and --repeat must be >= 1")
    return args


def compile_bytecode() -> None:
    """Write the agent's bytecode (.pyc) before timing it, as installing a package does.

    Otherwise, with PYTHONDONTWRITEBYTECODE set (as on this VM) or an unwritable tree,
    every run would parse and compile the agent's pure-Python modules again at start-up
    (~30 ms here), a cost no installed agent pays."""
    trees = [REPO / "agent", REPO / "wire", REPO / "build" / "compiled"]
    subprocess.run([_python(), "-m", "compileall", "-q", *(str(t) for t in trees if t.exists())],
                   check=False, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_dir: Path = args.out_dir.resolve()
    wanted = [t.strip() for t in args.tools.split(",") if t.strip()]

    # A sink for softflowd's NetFlow export, so its datagrams are not refused (ICMP) mid-run.
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    tools = [t for t in make_tools(sink.getsockname()[1]) if t.name in wanted]
    unknown = set(wanted) - {t.name for t in tools}
    if unknown:
        sys.exit(f"unknown tool(s): {', '.join(sorted(unknown))}")

    cap = ensure_capture(args.packets, args.seed, out_dir, args.regenerate)
    warm_page_cache(cap.path)
    compile_bytecode()

    # Results in table order; measured tools hold a placeholder filled in after the rounds.
    results: list[ToolResult | Measurement] = []
    try:
        for tool in tools:
            note = ""
            if tool.name == "argus":
                exe, note = locate_argus(install=not args.no_install)
            else:
                exe = tool.locate()
            argv0 = tool.build(cap.path, out_dir / "x")
            if exe is None:
                reason = note or (
                    "not found: build the agent (pip install -e .) or put edgeaudit-agent on PATH"
                    if tool.name == "edgeaudit-agent"
                    else "not installed; skipped"
                )
                results.append(ToolResult(tool.name, argv0, "skipped", reason))
                print(f"{tool.name}: {reason}", file=sys.stderr, flush=True)
                continue
            m = start_measurement(tool, exe, cap, out_dir)
            m.result.note = note
            results.append(m)
        measuring = [m for m in results if isinstance(m, Measurement)]
        # Round-robin (agent, argus, agent, argus, ...) rather than all runs of one tool
        # then the other, so a burst of load from other processes hits both alike.
        for i in range(args.repeat):
            for m in measuring:
                run_round(m, i, args.repeat, args.timeout)
    finally:
        sink.close()

    final = [
        finish_measurement(r, cap, args.keep_outputs) if isinstance(r, Measurement) else r for r in results
    ]
    doc, code = report(cap, final, args.repeat)
    json_path = out_dir / "bench_sessions.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {json_path}")
    return code


if __name__ == "__main__":
    sys.exit(main())
