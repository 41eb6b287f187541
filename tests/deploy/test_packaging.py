"""What a user installs: the console scripts start and say which build they are, and a machine
without a C compiler still gets a working (interpreted) install, with one line saying so.

`make test` runs this module twice: in the development venv (an editable, interpreted
install) and with EDGEAUDIT_TREE=installed in the fresh venv holding the wheel `pip wheel .`
built, where every command must report the mypyc-compiled build (conftest.py). The fallback
test builds a wheel from a copy of the checkout with pip's default build isolation and a
compiler that does not exist ($CC), installs it into a venv of its own and runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ("edgeaudit-agent", "edgeaudit-collector", "edgeaudit-rules")
INSTALLED = os.environ.get("EDGEAUDIT_TREE") == "installed"
FALLBACK_LINE = "edgeaudit: no working C compiler"


@pytest.mark.parametrize("command", COMMANDS)
def test_console_script_starts_and_names_its_build(command: str) -> None:
    exe = Path(sys.executable).parent / command
    assert exe.exists(), f"{command} is not installed next to {sys.executable}"
    res = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"{command} 0.") and res.stderr == ""
    expected = "(compiled by mypyc)" if INSTALLED else "(interpreted)"
    assert res.stdout.rstrip().endswith(expected), res.stdout


def _copy_checkout(dst: Path) -> None:
    """The files `pip wheel .` reads, without build/ (its caches) or the venvs."""
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info")
    for name in ("agent", "wire", "collector", "rulesets"):
        shutil.copytree(REPO / name, dst / name, ignore=ignore)
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(REPO / name, dst / name)


def test_without_a_c_compiler_the_install_is_interpreted_and_says_so(tmp_path: Path) -> None:
    src, wheels, env_dir = tmp_path / "src", tmp_path / "wheels", tmp_path / "venv"
    src.mkdir()
    _copy_checkout(src)
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    env.pop("EDGEAUDIT_PURE", None)
    argv = [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", str(wheels), str(src)]
    build = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    output = build.stdout + build.stderr
    # pip runs setup.py once per PEP 517 step; only the build step probes and says it, once
    lines = [line.strip() for line in output.splitlines() if FALLBACK_LINE in line]
    assert len(lines) == 1 and "interpreted" in lines[0], lines
    (wheel,) = wheels.glob("edgeaudit-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "agent/flows/table.py" in names and not [n for n in names if n.endswith(".so")]

    venv.create(env_dir, with_pip=True)
    install = subprocess.run([str(env_dir / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True,
                             text=True, env=env, timeout=600, check=False)
    assert install.returncode == 0, install.stderr[-3000:]
    for command in COMMANDS:
        res = subprocess.run([str(env_dir / "bin" / command), "--version"], capture_output=True, text=True,
                             timeout=60, check=False)
        assert res.returncode == 0 and res.stdout.rstrip().endswith("(interpreted)"), res.stdout + res.stderr
