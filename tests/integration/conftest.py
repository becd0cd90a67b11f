"""Fixtures shared by the integration test packages: the session's real local Ray cluster (tests/ray_cluster.py),
a second small one with a token of its own, and the session's throwaway PostgreSQL cluster (a fresh database per
test; tests that stop the server have their own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scheduler.local_cluster import LocalRayCluster
from tests.ray_cluster import start_cluster, start_second_cluster, stop_and_check
from tests.service import PostgresCluster


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    """One local Ray cluster for the whole session (a 0-CPU head and a raylet per tier slice; see
    tests/ray_cluster.py); stopped at the end and checked to have left no process of its own."""
    cluster = start_cluster(tmp_path_factory.mktemp("ray"))
    yield cluster
    stop_and_check(cluster)


@pytest.fixture(scope="session")
def second_ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    """A second Ray cluster with a token of its own, as a tier served by a cluster of its own has: a 0-CPU head and
    one 1-CPU edge raylet (`tests.ray_cluster.start_second_cluster`). Started on first use and shared by the tests
    that need another cluster (test_tier_cluster_lost serves its edge tier with it; test_ray_auth checks that the
    session cluster's token is refused there): a cluster start costs 40-50 s on 2 cores. Like `ray_cluster`, it
    may only be asked for by the files in tests/conftest.py's RAY_PATHS."""
    cluster = start_second_cluster(tmp_path_factory.mktemp("second-ray"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the whole session, shared by the service and fault tests (each
    creates fresh databases in it and none stops its server)."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()
