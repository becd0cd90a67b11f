"""Fixtures for the Ray backend tests; the cluster itself (`ray_cluster`) is tests/integration/conftest.py's."""

from __future__ import annotations

import pytest

from census_agent.labels import TIER_LABEL
from scheduler.local_cluster import LocalRayCluster
from scheduler.ray_backend import RayJobsBackend
from tests.ray_cluster import TIERS


@pytest.fixture(scope="session")
def backend(ray_cluster: LocalRayCluster) -> RayJobsBackend:
    """Single-cluster mode: each tier is a label selector on the session's cluster."""
    return RayJobsBackend({tier: ray_cluster.target({TIER_LABEL: tier}) for tier in TIERS})
