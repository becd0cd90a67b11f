"""Fixtures shared by the integration test packages: the session's real local Ray cluster (tests/ray_cluster.py)
and its throwaway PostgreSQL cluster (a fresh database per test; tests that stop the server have their own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scheduler.local_cluster import LocalRayCluster
from tests.ray_cluster import start_cluster, stop_and_check
from tests.service import PostgresCluster


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    """One local Ray cluster for the whole session (a 0-CPU head and a raylet per tier slice; see
    tests/ray_cluster.py); stopped at the end and checked to have left no process of its own."""
    cluster = start_cluster(tmp_path_factory.mktemp("ray"))
    yield cluster
    stop_and_check(cluster)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the whole session, shared by the service and fault tests (each
    creates fresh databases in it and none stops its server)."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()
