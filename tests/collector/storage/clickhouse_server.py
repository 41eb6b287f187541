"""A throwaway clickhouse-server on loopback for the storage tests (no systemd, no root).

What: ``ClickHouseServer.start(workdir)`` writes a config.xml and users.xml into ``workdir``
(data, tmp, user_files, logs and format schemas all inside it), starts
``clickhouse-server --config-file=workdir/config.xml`` as a plain child process with only an
HTTP port (a free port on 127.0.0.1; the native TCP port also gets a free loopback port
because 18.16 always opens it), and waits until ``GET /ping`` answers ``Ok.``. ``stop()``
sends SIGTERM to that PID, then SIGKILL after a grace period.

Why: the ClickHouse backend must be tested against the server Debian ships (18.16) without
touching the machine's own service. ``find_binary()`` returns None when it is not installed,
so the suite can skip the clickhouse param with a reason.

``extra_config`` and fixed ports let a test start several servers as one cluster
(``tests/collector/test_clickhouse_cluster.py``); ``ZooKeeper.start`` runs a standalone
ZooKeeper (Debian's ``zookeeper`` package, ``find_zookeeper()`` None when absent) for them.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

#: Seconds to wait for /ping after start, and for exit after SIGTERM.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

_CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{dir}/log/server.log</log>
        <errorlog>{dir}/log/server.err.log</errorlog>
        <size>10M</size>
        <count>2</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <max_connections>256</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <users_config>{dir}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
{extra}
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
"""


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM `proc` by its PID, SIGKILL it if it is still there after ``STOP_TIMEOUT``."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)


def find_binary() -> list[str] | None:
    """The command starting the server (``clickhouse-server``, or ``clickhouse server``)."""
    if (path := shutil.which("clickhouse-server")) is not None:
        return [path]
    if (path := shutil.which("clickhouse")) is not None:
        return [path, "server"]
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ClickHouseServer:
    """A running server: its HTTP ``url``, its process and working directory."""

    url: str
    proc: subprocess.Popen[bytes]
    workdir: Path
    tcp_port: int = 0

    @classmethod
    def start(
        cls, workdir: Path, *, extra_config: str = "", http_port: int = 0, tcp_port: int = 0
    ) -> ClickHouseServer:
        """Start a server in ``workdir``; ``extra_config`` is XML put inside ``<yandex>`` (a
        cluster node's remote_servers, macros, zookeeper...); ports 0 mean free ones."""
        cmd = find_binary()
        if cmd is None:
            raise RuntimeError("clickhouse-server is not installed")
        for sub in ("data", "tmp", "user_files", "format_schemas", "log"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        http_port, tcp_port = http_port or free_port(), tcp_port or free_port()
        config = workdir / "config.xml"
        config.write_text(
            _CONFIG.format(dir=workdir, http_port=http_port, tcp_port=tcp_port, extra=extra_config)
        )
        (workdir / "users.xml").write_text(_USERS)
        out = (workdir / "log" / "stdout.log").open("wb")
        proc = subprocess.Popen(
            [*cmd, f"--config-file={config}"],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        out.close()
        server = cls(url=f"http://127.0.0.1:{http_port}/", proc=proc, workdir=workdir, tcp_port=tcp_port)
        server._wait_ready()
        return server

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"clickhouse-server exited ({self.proc.returncode}): {self._log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "ping", timeout=2) as resp:
                    if resp.read().strip() == b"Ok.":
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"clickhouse-server not ready after {START_TIMEOUT}s: {self._log_tail()}")

    def _log_tail(self) -> str:
        parts = []
        for name in ("stdout.log", "server.err.log"):
            p = self.workdir / "log" / name
            if p.exists():
                parts.append(p.read_text(errors="replace")[-2000:])
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM the server's PID, SIGKILL it if it is still there after ``STOP_TIMEOUT``."""
        stop_process(self.proc)


# --- ZooKeeper, for a replicated cluster ------------------------------------------------------

#: Debian's zookeeper package: the server jar (its manifest names the dependency jars).
ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
_SLF4J_SIMPLE = Path("/usr/share/java/slf4j-simple.jar")


def find_zookeeper() -> list[str] | None:
    """The command running a standalone ZooKeeper (``java -cp zookeeper.jar ...``), or None."""
    java = shutil.which("java")
    if java is None or not ZOOKEEPER_JAR.exists():
        return None
    classpath = str(ZOOKEEPER_JAR)
    if _SLF4J_SIMPLE.exists():  # a logger binding, so zookeeper.log says something
        classpath += f":{_SLF4J_SIMPLE}"
    return [java, "-cp", classpath, "org.apache.zookeeper.server.ZooKeeperServerMain"]


@dataclass
class ZooKeeper:
    """A standalone ZooKeeper on ``127.0.0.1:port`` with its data in ``workdir``."""

    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path

    @classmethod
    def start(cls, workdir: Path) -> ZooKeeper:
        cmd = find_zookeeper()
        if cmd is None:
            raise RuntimeError("zookeeper is not installed")
        (workdir / "data").mkdir(parents=True, exist_ok=True)
        port = free_port()
        cfg = workdir / "zoo.cfg"
        cfg.write_text(
            f"tickTime=500\ndataDir={workdir}/data\nclientPort={port}\nclientPortAddress=127.0.0.1\n"
            "admin.enableServer=false\n4lw.commands.whitelist=srvr\n"
        )
        out = (workdir / "zookeeper.log").open("wb")
        proc = subprocess.Popen(
            [*cmd, str(cfg)], cwd=workdir, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        out.close()
        zk = cls(port=port, proc=proc, workdir=workdir)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"zookeeper exited ({proc.returncode}): {zk._log_tail()}")
            try:
                # not ruok: it says imok before the server serves; srvr says "not currently serving"
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(b"srvr")
                    if s.recv(4096).startswith(b"Zookeeper version"):
                        return zk
            except OSError:
                pass
            time.sleep(0.1)
        zk.stop()
        raise RuntimeError(f"zookeeper not ready after {START_TIMEOUT}s: {zk._log_tail()}")

    def _log_tail(self) -> str:
        return (self.workdir / "zookeeper.log").read_text(errors="replace")[-2000:]

    def stop(self) -> None:
        """SIGTERM the PID, SIGKILL after ``STOP_TIMEOUT``."""
        stop_process(self.proc)
