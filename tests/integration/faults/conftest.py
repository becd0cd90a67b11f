"""Fixtures of the fault tests: a PostgreSQL cluster of its own for a test that stops it (the others use the
session's, `postgres` in tests/integration/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.service import PostgresCluster


@pytest.fixture
def private_postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for one test alone, which may stop and start its server."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()
