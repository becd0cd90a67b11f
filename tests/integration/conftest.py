"""Fixtures shared by the integration test packages: the session's real local Ray cluster (tests/ray_cluster.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scheduler.local_cluster import LocalRayCluster
from tests.ray_cluster import start_cluster, stop_and_check


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    """One local Ray cluster for the whole session (a 0-CPU head and a raylet per tier slice; see
    tests/ray_cluster.py); stopped at the end and checked to have left no process of its own."""
    cluster = start_cluster(tmp_path_factory.mktemp("ray"))
    yield cluster
    stop_and_check(cluster)
