"""deploy/clickhouse/cluster.sql on a real cluster: ZooKeeper and two clickhouse-servers on
loopback, one shard of two replicas. The DDL is applied ON CLUSTER through one server; a
``ClickHouseStorage(cluster=...)`` on the first server inserts through the Distributed
tables and one on the second server finds the records (and their lookup rows, filled by the
views on the local tables and replicated) there; retention drops the day on both replicas.
Then two `edgeaudit-collector serve --clickhouse-cluster` processes, one per server, sharing
a copy of one accounts file: a batch uploaded to one is traced back through the other.

Also (no servers needed): the checked-in cluster.sql is exactly what ``cluster_ddl`` renders.
Skipped with the reason when clickhouse-server or ZooKeeper (Debian's ``zookeeper``) is absent.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest

from collector.storage.clickhouse import RECORD_TABLES, ClickHouseStorage, cluster_ddl

sys.path.insert(0, str(Path(__file__).parent / "storage"))
from clickhouse_server import ClickHouseServer, ZooKeeper, find_binary, find_zookeeper, free_port  # noqa: E402
from collector_server import post, serve  # noqa: E402
from storage_records import DAY, MIDNIGHT, login, nat, session  # noqa: E402

from wire.envelope import encode_batch  # noqa: E402

CLUSTER_SQL = Path(__file__).parents[2] / "deploy" / "clickhouse" / "cluster.sql"
CLUSTER = DATABASE = "edgeaudit"
REPLICATION_TIMEOUT = 30.0

_NODE_CONFIG = """
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>{interserver}</interserver_http_port>
    <zookeeper>
        <node><host>127.0.0.1</host><port>{zk}</port></node>
        <session_timeout_ms>10000</session_timeout_ms>
    </zookeeper>
    <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
    <macros><shard>01</shard><replica>{replica}</replica></macros>
    <remote_servers>
        <edgeaudit>
            <shard>
                <internal_replication>true</internal_replication>
                <replica><host>127.0.0.1</host><port>{tcp1}</port></replica>
                <replica><host>127.0.0.1</host><port>{tcp2}</port></replica>
            </shard>
        </edgeaudit>
    </remote_servers>
"""


def test_cluster_sql_is_generated() -> None:
    assert CLUSTER_SQL.read_text() == cluster_ddl(CLUSTER, DATABASE), (
        "deploy/clickhouse/cluster.sql is stale: regenerate it (see deploy/clickhouse/README.md)"
    )


def _query(server: ClickHouseServer, sql: str) -> str:
    req = urllib.request.Request(server.url, data=sql.encode())
    with urllib.request.urlopen(req, timeout=200) as resp:
        return str(resp.read().decode())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ClickHouseServer, ClickHouseServer]]:
    if find_binary() is None:
        pytest.skip("clickhouse-server is not installed (apt-get install clickhouse-server)")
    if find_zookeeper() is None:
        pytest.skip(
            "ZooKeeper is not installed (apt-get install zookeeper: /usr/share/java/zookeeper.jar, java)"
        )
    # Ports are picked free and then bound by the servers a moment later, so another test
    # process can take one in between: a failed bring-up is retried once on fresh ports.
    for attempt in (1, 2):
        base = tmp_path_factory.mktemp(f"cluster{attempt}")
        zk = ZooKeeper.start(base / "zk")
        nodes: list[ClickHouseServer] = []
        try:
            _bring_up(base, zk, nodes)
        except Exception:
            for node in nodes:
                node.stop()
            zk.stop()
            if attempt == 2:
                raise
            continue
        try:
            yield nodes[0], nodes[1]
        finally:
            for node in nodes:
                node.stop()
            zk.stop()
        return


def _bring_up(base: Path, zk: ZooKeeper, nodes: list[ClickHouseServer]) -> None:
    """Start two clickhouse-servers of one shard on `zk` (appended to `nodes`), apply the DDL."""
    tcp = [free_port(), free_port()]

    def start(i: int) -> ClickHouseServer:
        extra = _NODE_CONFIG.format(
            interserver=free_port(), zk=zk.port, replica=f"r{i + 1}", tcp1=tcp[0], tcp2=tcp[1]
        )
        return ClickHouseServer.start(base / f"ch{i + 1}", extra_config=extra, tcp_port=tcp[i])

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(start, i) for i in range(2)]
        for f in futures:
            try:
                nodes.append(f.result())
            except Exception:
                continue
    if len(nodes) != 2:
        raise RuntimeError("a clickhouse-server of the cluster did not start")
    for stmt in CLUSTER_SQL.read_text().split(";\n"):
        if stmt.strip() and not all(line.startswith("--") for line in stmt.strip().splitlines()):
            _query(nodes[0], stmt)


def _wait_replicated(node: ClickHouseServer, table: str, rows: int, where: str = "1") -> None:
    deadline = time.monotonic() + REPLICATION_TIMEOUT
    while True:
        n = int(_query(node, f"SELECT count() FROM {DATABASE}.{table}"))
        if n >= rows:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{table} on the second replica has {n} rows, not {rows}")
        time.sleep(0.1)


def test_insert_on_one_server_read_on_the_other(cluster: tuple[ClickHouseServer, ClickHouseServer]) -> None:
    first, second = cluster
    recs = [
        nat(MIDNIGHT - 60, "create", ("10.0.0.1", 1000), ("192.0.2.1", 40000)),
        session(MIDNIGHT - 50, "C1", "10.0.0.1", 1000, nat_ip="192.0.2.1", nat_port=40000, account="alice"),
        login(MIDNIGHT - 70, "login", "10.0.0.1", "alice"),
        session(MIDNIGHT + 50, "C2", "10.0.0.2", 2000),
        # a day with no row for any lookup table: retention drops partitions they do not have
        {"type": "weird", "ts": MIDNIGHT - 2 * DAY, "uid": None, "name": "w", "detail": None},
    ]
    writer = ClickHouseStorage(first.url, DATABASE, cluster=CLUSTER)
    reader = ClickHouseStorage(second.url, DATABASE, cluster=CLUSTER)
    try:
        assert writer.insert_batch("gw", "u", 1, recs).duplicate is False
        assert writer.insert_batch("gw", "u", 1, recs).duplicate is True
        # the second server holds its own replica of every table, lookups included
        _wait_replicated(second, "records_local", 5)
        _wait_replicated(second, "records_by_uid_local", 2)
        _wait_replicated(second, "records_by_nat_local", 2)
        _wait_replicated(second, "batches_local", 2)
        assert reader.count() == 5
        assert [r["uid"] for r in reader.records(type="session").records] == ["C1", "C2"]
        assert [r["inside_ip"] for r in reader.nat_at("192.0.2.1", 40000, MIDNIGHT)] == ["10.0.0.1"]
        outside = reader.sessions_at("192.0.2.1", 40000, MIDNIGHT - 45, outside=True)
        assert [r["uid"] for r in outside] == ["C1"]
        inside = reader.sessions_at("10.0.0.2", 2000, MIDNIGHT + 55, outside=False)
        assert [r["uid"] for r in inside] == ["C2"]
        who = reader.identity_at("10.0.0.1", MIDNIGHT)
        assert who is not None and who["account"] == "alice"
        assert [r["type"] for r in reader.connection("C1")] == ["session"]
        # a batch re-sent to the other collector is a duplicate there too
        assert reader.insert_batch("gw", "u", 1, recs).duplicate is True

        # retention through the cluster: the old day leaves both replicas of every table
        result = reader.expire(MIDNIGHT, [])
        assert result.days_dropped == ["2024-02-28", "2024-02-29"] and result.deleted == 4
        for node in (first, second):
            for t in RECORD_TABLES:
                n = _query(node, f"SELECT count() FROM {DATABASE}.{t.name}_local WHERE day < 20240301")
                assert int(n) == 0, (node.url, t.name)
        assert [r["uid"] for r in writer.connection("C2")] == ["C2"]
    finally:
        writer.close()
        reader.close()


def test_two_stateless_collectors_in_front_of_the_cluster(cluster: tuple[ClickHouseServer, ClickHouseServer],
                                                          tmp_path: Path) -> None:
    """`serve --clickhouse-cluster` on each server: an agent uploads to one collector, an
    operator traces back through the other, and a resend to the other is a duplicate."""
    first, second = cluster

    def options(node: ClickHouseServer) -> tuple[str, ...]:
        return ("--storage", "clickhouse", "--clickhouse-url", node.url, "--clickhouse-database", DATABASE,
                "--clickhouse-cluster", CLUSTER, "--no-retention-pass")

    one = serve(tmp_path / "one", extra=options(first))
    c1 = next(one)
    two = serve(tmp_path / "two", extra=options(second), accounts_of=c1)
    c2 = next(two)
    try:
        ts = MIDNIGHT + 5 * DAY
        recs = [nat(ts - 1, "create", ("10.9.0.7", 41000), ("192.0.2.9", 52000)),
                session(ts, "Cfront1", src="10.9.0.7", sport=41000),
                login(ts - 60, "login", "10.9.0.7", "bob")]
        body = encode_batch("gw1", "unit-42", 77, recs)
        assert post(c1["url"], body, c1["token"]) == (200, {"accepted": 3, "duplicate": False})
        for table, rows in (("records_local", 3), ("records_by_nat_local", 1), ("records_by_src_local", 1),
                            ("records_by_addr_local", 1), ("records_by_uid_local", 1)):
            _wait_replicated(second, table, rows, where="batch_seq = 77")
        name, password = c2["operator"]
        auth = base64.b64encode(f"{name}:{password}".encode()).decode()
        query = urlencode({"ip": "192.0.2.9", "port": 52000, "ts": ts + 1})
        req = urllib.request.Request(f"{c2['url']}/api/v1/query/traceback?{query}",
                                     headers={"Authorization": f"Basic {auth}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.loads(resp.read())
        assert answer["inside"] == {"ip": "10.9.0.7", "port": 41000, "via": "nat"}
        assert answer["identity"]["account"] == "bob"
        assert [r["uid"] for r in answer["records"]] == ["Cfront1"]
        assert post(c2["url"], body, c2["token"]) == (200, {"accepted": 3, "duplicate": True})
    finally:
        next(two, None)
        next(one, None)
