"""A tier served by a Ray cluster of its own goes unreachable while it runs a job: the attempt is presumed lost
after ``lost_after_seconds`` and retried; when the cluster answers again the lost attempt, still alive there, is
stopped, so the job does not run twice; meanwhile the other tiers carry on.

Two real Ray clusters: the session's shared one (general, ai, hpc, edge by label) and the session's second, small
cluster (`second_ray_cluster`) serving the edge tier (multi-cluster mode). "Unreachable" is its head's dashboard process
frozen with SIGSTOP (a partition, as the service sees it: the Jobs and state APIs stop answering while the job
keeps running), then thawed with SIGCONT. The service's application runs in the test process
(`tests.inprocess`), its dispatcher on a thread there.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from scheduler.local_cluster import LocalRayCluster
from scheduler.models import RayJobState
from scheduler.ray_backend import RayJobsBackend
from tests.inprocess import AppService
from tests.integration.jobs.test_jobs import job_doc, submit, wait_state
from tests.ray_cluster import cluster_table, warm_up
from tests.servers import wait_for

pytestmark = pytest.mark.integration

LOST_AFTER_S = 4


@pytest.fixture
def edge_cluster(second_ray_cluster: LocalRayCluster) -> Iterator[LocalRayCluster]:
    """A Ray cluster of its own for the edge tier: the session's second cluster (a 0-CPU head and one 1-CPU
    raylet, `second_ray_cluster`), warmed up (it has run a job, so the test's first job does not wait for Ray's
    job machinery to start); its dashboard is thawed afterwards whatever the test did."""
    warm_up(second_ray_cluster, "edge", None)
    try:
        yield second_ray_cluster
    finally:
        for proc in dashboard_processes(second_ray_cluster):
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)


def dashboard_processes(cluster: LocalRayCluster) -> list[psutil.Process]:
    """The head's dashboard server of `cluster` (the Jobs and state APIs)."""
    found = []
    for pid in cluster.pids():
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            if any(part.endswith("dashboard/dashboard.py") for part in proc.cmdline()):
                found.append(proc)
    return found


def test_a_tier_cluster_lost_then_back_retries_the_job_once_and_stops_the_lost_attempt(
    ray_cluster: LocalRayCluster, edge_cluster: LocalRayCluster, tmp_path: Path
) -> None:
    """The edge job's first attempt sleeps (it leaves a marker); its cluster is partitioned away: after
    lost_after_seconds the attempt is failed as presumed lost and requeued, waiting for its tier, while a general
    job on the other cluster succeeds. When the edge cluster answers again, the lost attempt (still running
    there) is stopped and the second attempt runs and succeeds: Ray shows attempt 0 stopped, attempt 1 done."""
    config = tmp_path / "scheduler.toml"
    config.write_text(
        f"[ray]\n{cluster_table(ray_cluster)}"
        f"[tiers.edge]\n{cluster_table(edge_cluster)}"
        f"[dispatch]\nlost_after_seconds = {LOST_AFTER_S}\n"
    )
    service = AppService(
        f"sqlite:///{tmp_path / 'suanli.db'}", tmp_path, scheduler_config=str(config), dispatch_interval_seconds="0.3"
    ).start()
    marker = tmp_path / "first-attempt-ran"
    command = f"if [ -e {marker} ]; then echo second-attempt; else touch {marker}; sleep 300; fi"
    frozen: list[psutil.Process] = []
    try:
        with service.client() as client:
            job_id = submit(client, job_doc("edge", command, name="partitioned", max_retries=1))["job_id"]
            wait_state(client, job_id, {"running"}, timeout=90)
            wait_for(marker.exists, 60, "the first attempt to start its command")

            frozen = dashboard_processes(edge_cluster)
            assert frozen, "no dashboard process found for the edge cluster"
            for proc in frozen:
                proc.send_signal(signal.SIGSTOP)
            bystander = submit(client, job_doc("general", "echo other-tiers-carry-on", name="bystander"))["job_id"]

            def presumed_lost() -> bool:
                job = client.get(f"/v1/jobs/{job_id}").json()
                return any("presumed lost" in e["reason"] for e in job["events"])

            wait_for(presumed_lost, 120, "the first attempt presumed lost")
            assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "queued"
            assert wait_state(client, bystander, {"succeeded", "failed"}, timeout=90)["state"] == "succeeded"

            for proc in frozen:
                proc.send_signal(signal.SIGCONT)
            job = wait_state(client, job_id, {"succeeded", "failed"}, timeout=120)
            assert job["state"] == "succeeded", job
            assert job["attempt"] == 1
    finally:
        for proc in frozen:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGCONT)
        service.stop()
    edge = RayJobsBackend({"edge": edge_cluster.target(None)})
    submissions = edge.jobs("edge")
    assert sorted(s for s in submissions if s.startswith(job_id)) == [f"{job_id}-0", f"{job_id}-1"]

    def lost_attempt_stopped() -> bool:
        return edge.status(f"{job_id}-0", "edge").state is RayJobState.STOPPED

    wait_for(lost_attempt_stopped, 30, "the lost attempt stopped on the edge cluster")
    assert edge.status(f"{job_id}-1", "edge").state is RayJobState.SUCCEEDED
