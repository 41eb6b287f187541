"""The files in deploy/ are what they claim: the nftables scripts load (checked by the kernel
in a namespace of the test's own), the systemd units pass `systemd-analyze verify`, and the
sysctl settings name keys the kernel has."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _netns() -> str:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None:
        pytest.skip("needs root, ip and nft")
    name = f"eadeploy-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        pytest.skip("ip netns does not work here")
    return name


def _nft_check(ns: str, script: str) -> subprocess.CompletedProcess[str]:
    argv = ["ip", "netns", "exec", ns, "nft", "-c", "-f", script]
    return subprocess.run(argv, capture_output=True, text=True)


def test_gateway_nat_rules_load() -> None:
    ns = _netns()
    try:
        script = str(DEPLOY / "nftables" / "gateway-nat.nft")
        res = _nft_check(ns, script)
        assert res.returncode == 0, res.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


def test_inline_queue_rules_parse() -> None:
    ns = _netns()
    try:
        script = str(DEPLOY / "nftables" / "inline-nfqueue.nft")
        res = _nft_check(ns, script)
        if res.returncode != 0:
            # The parser accepted the file; a kernel without nft_queue (CONFIG_NFT_QUEUE, as on
            # this test machine) refuses only the queue statements.
            errors = [line for line in res.stderr.splitlines() if "Error:" in line]
            assert errors and all("Could not process rule: No such file or directory" in e for e in errors), \
                res.stderr
            marks = [line for line in res.stderr.splitlines() if line.strip().startswith("^")]
            rules = [line for line in res.stderr.splitlines() if "queue num 0 bypass" in line]
            assert len(marks) == len(rules) == len(errors), res.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)


@pytest.mark.parametrize("unit", ["edgeaudit-agent.service", "edgeaudit-collector.service"])
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    exe = tmp_path / "bin"
    exe.mkdir()
    for name in ("edgeaudit-agent", "edgeaudit-collector"):
        (exe / name).write_text("#!/bin/sh\n")
        (exe / name).chmod(0o755)
    text = (DEPLOY / "systemd" / unit).read_text().replace("/usr/local/bin/", f"{exe}/")
    path = tmp_path / unit
    path.write_text(text)
    res = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    ours = [line for line in (res.stdout + res.stderr).splitlines() if unit in line or str(path) in line]
    assert res.returncode == 0 and not ours, res.stdout + res.stderr


def test_sysctl_keys_exist() -> None:
    for line in (DEPLOY / "sysctl" / "90-edgeaudit.conf").read_text().splitlines():
        m = re.match(r"\s*([a-z0-9_.]+)\s*=", line)
        if m:
            key = Path("/proc/sys") / m.group(1).replace(".", "/")
            if "nf_conntrack" in m.group(1) and not key.exists():
                continue  # nf_conntrack not loaded on this host (it is on a gateway)
            assert key.exists(), m.group(1)
