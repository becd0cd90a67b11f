"""Fixtures for service tests: every test that takes `service` or `server` runs against SQLite and against
PostgreSQL, each on a fresh, empty database of its own.

`service` is the application in the test process (`tests.inprocess.AppService`: its lifespan runs, requests go
through httpx's ASGI transport), for tests of routes, auth and validation; `server` is the service under uvicorn
in a process of its own (`tests.service.ServiceProcess`), for tests of the server itself. PostgreSQL databases
come from the session's cluster (`postgres`, tests/integration/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.inprocess import AppService
from tests.service import PostgresCluster, ServiceProcess


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'suanli.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()


@pytest.fixture
def service(database_url: str, tmp_path: Path) -> Iterator[AppService]:
    """The census service's application in this process, on a fresh database."""
    app = AppService(database_url, tmp_path).start()
    yield app
    app.stop()


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The census service under uvicorn on 127.0.0.1, on a fresh database."""
    process = ServiceProcess(database_url, tmp_path).start()
    yield process
    process.stop()
