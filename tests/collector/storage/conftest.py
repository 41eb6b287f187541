"""Fixtures of the storage contract suite: every test runs once per backend.

Adding a backend: add its name to ``BACKENDS`` and a branch in ``_open`` building it in
``tmp_path``. ``open_store`` reopens the same location, for tests that need a restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from storage_records import OpenStore

from collector.storage import SqliteStorage, Storage

BACKENDS = ["sqlite"]


def _open(backend: str, where: Path) -> Storage:
    if backend == "sqlite":
        return SqliteStorage(where)
    raise AssertionError(f"unknown backend {backend}")


@pytest.fixture(params=BACKENDS)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """A function opening the backend's store at one location (call again to reopen)."""
    opened: list[Storage] = []

    def make() -> Storage:
        store = _open(str(request.param), tmp_path / "store")
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: OpenStore) -> Storage:
    return open_store()
