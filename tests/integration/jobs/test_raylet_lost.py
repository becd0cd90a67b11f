"""A tier's raylet lost (SIGKILL, with every process it ran) while it runs a job: the job is marked failed with
the reason and retried per its policy elsewhere, a job waiting for that node reroutes, and other tiers carry on.

The session's shared Ray cluster gains an extra edge raylet for region 440111 (Baiyun) for this test only, so
killing it leaves the raylets the other tests use untouched.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from census_agent.labels import REGION_LABEL
from scheduler.local_cluster import LocalRayCluster
from scheduler.slicing import MIB, RayletSpec
from tests.inprocess import AppService
from tests.integration.jobs.test_jobs import backend_for, job_doc, scheduler_settings, submit, wait_state
from tests.servers import wait_for

pytestmark = pytest.mark.integration

BAIYUN = "440111"


@pytest.fixture
def doomed_raylet(ray_cluster: LocalRayCluster) -> Iterator[tuple[int, str]]:
    """An extra edge raylet in region 440111 (its session id and Ray node id); killed by the test."""
    spec = RayletSpec(
        "edge", cpus=1, memory_bytes=512 * MIB, object_store_bytes=80 * MIB, labels={REGION_LABEL: BAIYUN}
    )
    session = ray_cluster.add_raylet(spec, f"edge-{BAIYUN}-{time.monotonic_ns()}")
    node_ids = {n.node_id for n in backend_for(ray_cluster).nodes("edge") if n.labels.get(REGION_LABEL) == BAIYUN}
    assert len(node_ids) == 1, node_ids
    yield session, node_ids.pop()
    ray_cluster.kill_raylet(session)  # a no-op when the test killed it


@pytest.fixture
def service(ray_cluster: LocalRayCluster, tmp_path: Path) -> Iterator[AppService]:
    """The service's application (in process) dispatching to the shared cluster (sees the extra raylet from its
    start)."""
    app = AppService(f"sqlite:///{tmp_path / 'suanli.db'}", tmp_path, **scheduler_settings(ray_cluster, tmp_path))
    yield app.start()
    app.stop()


def test_a_lost_raylet_fails_its_job_with_the_reason_retries_it_elsewhere_and_other_tiers_carry_on(
    ray_cluster: LocalRayCluster, doomed_raylet: tuple[int, str], service: AppService
) -> None:
    """An edge job for Baiyun runs on the Baiyun raylet; that raylet is killed. The job's attempt fails with
    Ray's reason and, having a retry left, runs again on the other edge raylet (region fallback) and succeeds;
    a general job submitted meanwhile runs to the end."""
    session, baiyun_node = doomed_raylet
    with service.client() as client:
        doc = job_doc(
            "edge", "sleep 6; echo edge-done", name="edge-lost", region=BAIYUN, max_retries=1, resources={"cpus": 0.5}
        )
        job_id = submit(client, doc)["job_id"]
        running = wait_state(client, job_id, {"running"}, timeout=90)
        assert running["node_ids"] == [baiyun_node], running

        killed = ray_cluster.kill_raylet(session)
        assert killed
        general = submit(client, job_doc("general", "echo general-carries-on", name="bystander"))["job_id"]

        def retried() -> bool:
            job = client.get(f"/v1/jobs/{job_id}").json()
            return bool(job["attempt"] >= 1)

        wait_for(retried, 120, f"job {job_id} retried after its raylet was killed")
        job = wait_state(client, job_id, {"succeeded", "failed"}, timeout=120)
        assert job["state"] == "succeeded", job
        assert job["node_ids"] != [baiyun_node]
        failures = [e for e in job["events"] if "attempt 1 failed" in e["reason"]]
        assert failures, job["events"]
        assert "retry 1 of 1" in failures[0]["reason"]
        assert wait_state(client, general, {"succeeded", "failed"}, timeout=90)["state"] == "succeeded"
