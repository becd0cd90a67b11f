"""Fixtures of the fault tests: a PostgreSQL cluster for the session, and one of its own for a test that stops it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.service import PostgresCluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the fault tests that do not touch the server (a database per test)."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for one test alone, which may stop and start its server."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()
