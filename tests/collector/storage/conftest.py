"""Fixtures of the storage contract suite: every test runs once per backend.

Adding a backend: add its name to ``BACKENDS`` and a branch in ``_open`` building it in
``tmp_path``. ``open_store`` reopens the same location, for tests that need a restart.

``clickhouse``: one real clickhouse-server per test session on loopback
(``clickhouse_server.py``), one database per test; the param is skipped when the server
binary is not installed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_server import ClickHouseServer, find_binary
from storage_records import OpenStore

from collector.storage import SqliteStorage, Storage
from collector.storage.clickhouse import ClickHouseStorage

_NO_CLICKHOUSE = pytest.mark.skipif(
    find_binary() is None, reason="clickhouse-server is not installed (apt-get install clickhouse-server)"
)
BACKENDS = ["sqlite", pytest.param("clickhouse", marks=_NO_CLICKHOUSE)]


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    server = ClickHouseServer.start(tmp_path_factory.mktemp("clickhouse"))
    yield server
    server.stop()


def _open(backend: str, where: Path, request: pytest.FixtureRequest) -> Storage:
    if backend == "sqlite":
        return SqliteStorage(where)
    if backend == "clickhouse":
        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        return ClickHouseStorage(server.url, where.name)
    raise AssertionError(f"unknown backend {backend}")


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """A function opening the backend's store at one location (call again to reopen)."""
    opened: list[Storage] = []
    # sqlite: a directory; clickhouse: a database name unique to this test
    where = tmp_path / ("store" if request.param == "sqlite" else f"t_{uuid.uuid4().hex}")

    def make() -> Storage:
        store = _open(str(request.param), where, request)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> Storage:
    return open_store()
