"""How many pricing workers the service starts by default (`api.ingest.pool.auto_size`): one per usable core
beyond the event loop's, where a container's CPU limit (cgroup v2 ``cpu.max``) bounds the usable cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from api.ingest.pool import auto_size, usable_cores

CORES = len(os.sched_getaffinity(0))


def cgroup(tmp_path: Path, cpu_max: str | None) -> Path:
    """A cgroup folder whose ``cpu.max`` says `cpu_max` (none at all when None)."""
    if cpu_max is not None:
        (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("cpu_max", "cores"),
    [
        (None, CORES),  # no cgroup v2 file: the affinity mask decides
        ("max 100000", CORES),  # no quota
        ("100000 100000", 1),
        ("150000 100000", min(CORES, 2)),  # 1.5 CPUs: a second core is partly usable
        ("garbage", CORES),
    ],
)
def test_usable_cores_follow_the_cpu_quota_and_the_affinity_mask(
    tmp_path: Path, cpu_max: str | None, cores: int
) -> None:
    assert usable_cores(cgroup(tmp_path, cpu_max)) == cores


def test_one_cpu_prices_in_process_and_many_cpus_use_at_most_four_workers(tmp_path: Path) -> None:
    """A pod limited to one CPU starts no worker; an unlimited one starts one per core beyond the first, up to 4."""
    assert auto_size(cgroup(tmp_path, "100000 100000")) == 0
    unlimited = tmp_path / "unlimited"
    unlimited.mkdir()
    assert auto_size(cgroup(unlimited, "max 100000")) == max(0, min(CORES - 1, 4))
