"""The real local Ray cluster the integration tests share, and helpers to follow jobs on it.

The raylets: general (2 CPUs), ai (2 CPUs and 2 logical GPUs: this machine has no GPU, Ray only counts them),
hpc-0 and hpc-1 (2 CPUs each, so a 2-node gang can STRICT_SPREAD), edge (1 CPU, region 440106); 512 MiB of
memory and an 80 MiB object store each, and a head with no CPUs. Starting it takes about 40-55 s on 2 cores, so
one cluster serves the whole session (fixture `ray_cluster` in tests/integration/conftest.py); its teardown checks
that `LocalRayCluster.stop` leaves none of its processes running, a running job's entrypoint included. It runs
with Ray's token authentication, like every `LocalRayCluster`, so every Ray test goes through it (`target` and
`cluster_table` carry the token).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import psutil

from census_agent.labels import REGION_LABEL, TIER_LABEL
from scheduler.local_cluster import LocalClusterError, LocalRayCluster
from scheduler.models import RayJobState, RayJobStatus
from scheduler.ray_backend import RayJobsBackend
from scheduler.slicing import MIB, RayletSpec

TIERS = ("general", "ai", "hpc", "edge")
RAYLETS = (
    RayletSpec("general", cpus=2, memory_bytes=512 * MIB, object_store_bytes=80 * MIB),
    RayletSpec("ai", cpus=2, gpus=2, memory_bytes=512 * MIB, object_store_bytes=80 * MIB),
    RayletSpec("hpc", cpus=2, memory_bytes=512 * MIB, object_store_bytes=80 * MIB),
    RayletSpec("hpc", cpus=2, memory_bytes=512 * MIB, object_store_bytes=80 * MIB),
    RayletSpec("edge", cpus=1, memory_bytes=512 * MIB, object_store_bytes=80 * MIB, labels={REGION_LABEL: "440106"}),
)

log = logging.getLogger(__name__)


def start_cluster(workdir: Path) -> LocalRayCluster:
    """The test cluster, started (logs how long that took). On a machine busy enough that a raylet fails to
    register twice (`LocalRayCluster.start` stops what it started and raises), it tries once more, a raylet at a
    time: one failed start must not error every test of the session."""
    began = time.monotonic()
    try:
        cluster = LocalRayCluster(workdir / "first", RAYLETS)
        cluster.start()
    except LocalClusterError as exc:
        log.warning("test Ray cluster did not start (%s); once more, one raylet at a time", str(exc)[:200])
        cluster = LocalRayCluster(workdir / "second", RAYLETS, parallel=1)
        cluster.start(timeout_s=300)
    log.warning("test Ray cluster up in %.1f s at %s", time.monotonic() - began, cluster.dashboard_url)
    return cluster


SECOND_CLUSTER_RAYLET = RayletSpec("edge", cpus=1, memory_bytes=512 * MIB, object_store_bytes=80 * MIB)


def start_second_cluster(workdir: Path) -> LocalRayCluster:
    """The session's second cluster (fixture `second_ray_cluster`): a 0-CPU head and one 1-CPU edge raylet, with a
    token of its own (every `LocalRayCluster` generates one)."""
    began = time.monotonic()
    cluster = LocalRayCluster(workdir, [SECOND_CLUSTER_RAYLET])
    cluster.start(timeout_s=300)
    log.warning("second test Ray cluster up in %.1f s at %s", time.monotonic() - began, cluster.dashboard_url)
    return cluster


def stop_and_check(cluster: LocalRayCluster) -> None:
    """Stop the cluster with a job running, then check by pid that every process it had is gone."""
    backend = RayJobsBackend({"edge": cluster.target({TIER_LABEL: "edge"})})
    job_id = unique("teardown")
    backend.submit(job_id=job_id, tier="edge", entrypoint="sleep 120", cpus=0.1, gpus=0, memory_bytes=0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _has_sleep(cluster.pids()):
        time.sleep(0.2)
    pids = cluster.pids()
    entrypoint_seen = _has_sleep(pids)
    status = backend.status(job_id, "edge")
    cluster.stop()
    assert entrypoint_seen, f"the running job's entrypoint was not among the cluster's processes ({status})"
    left = [pid for pid in pids if _running(pid)]
    assert not left, f"LocalRayCluster.stop left processes running: {left}"


def _has_sleep(pids: set[int]) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).cmdline()[:2] == ["sleep", "120"]:
                return True
        except psutil.Error:
            continue
    return False


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def cluster_table(cluster: LocalRayCluster) -> str:
    """The body of a scheduler-config table (``[ray]`` or ``[tiers.X]``) for `cluster`: its dashboard, token file and
    GCS."""
    dashboard, gcs = cluster.dashboard_url, cluster.address
    return f'address = "{dashboard}"\ntoken_file = "{cluster.token_file}"\ngcs_address = "{gcs}"\n'


def unique(name: str) -> str:
    """A submission id no other test (or earlier run against the same cluster) uses."""
    return f"{name}-{time.time_ns()}"


def warm_up(cluster: LocalRayCluster, tier: str, selector: dict[str, str] | None, timeout: float = 240) -> float:
    """Run one trivial job on `cluster`'s `tier` and wait until it has succeeded; returns the seconds it took.

    The first job on a fresh cluster starts Ray's job machinery (the supervisor's worker process, which imports
    Ray): tens of seconds on a busy 2-core machine. A fixture that warms its cluster this way, before a test
    starts its own clocks, lets that test's waits measure what it is about. The job's id starts with
    ``warm-up-``, so it never matches a test's job ids."""
    backend = RayJobsBackend({tier: cluster.target(selector)})
    job_id = unique("warm-up")
    began = time.monotonic()
    backend.submit(job_id=job_id, tier=tier, entrypoint="true", cpus=0.1, gpus=0, memory_bytes=0)
    status = wait_until_done(backend, job_id, tier, timeout)
    assert status.state is RayJobState.SUCCEEDED, f"warm-up job on {tier}: {status.state} {status.message}"
    return time.monotonic() - began


def wait_for_state(
    backend: RayJobsBackend, job_id: str, tier: str, states: set[RayJobState], timeout: float = 90
) -> RayJobStatus:
    """Poll the job until it is in one of `states`; fail with its last status after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    status = backend.status(job_id, tier)
    while status.state not in states:
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_id} still {status.state} after {timeout:.0f} s: {status.message}")
        time.sleep(0.2)
        status = backend.status(job_id, tier)
    return status


def wait_until_done(backend: RayJobsBackend, job_id: str, tier: str, timeout: float = 90) -> RayJobStatus:
    """Poll the job until it has ended."""
    return wait_for_state(
        backend, job_id, tier, {RayJobState.SUCCEEDED, RayJobState.FAILED, RayJobState.STOPPED}, timeout
    )
