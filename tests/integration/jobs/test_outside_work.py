"""Capacity is what Ray says is free: a job submitted straight to the tier's Ray cluster (with the cluster's token,
not through Suanli) holds a node, and the dispatcher sees it.

The service's application runs in process (`tests.inprocess.AppService`) on a SQLite file, dispatching to the
session's shared cluster (tests/ray_cluster.py: two hpc raylets of 2 CPUs, hpc-0 first in first-fit order). The
outside job takes both of hpc-0's CPUs; without Ray's figures Suanli would place its next hpc job there, where Ray
would leave it pending.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

from census_agent.labels import TIER_LABEL
from scheduler.local_cluster import LocalRayCluster
from scheduler.models import RayRequestFailed, TierTarget
from scheduler.ray_backend import NODE_ID_LABEL, RayJobsBackend, auth_headers
from tests.inprocess import AppService
from tests.integration.jobs.test_jobs import backend_for, job_doc, scheduler_settings, submit, wait_state
from tests.ray_cluster import unique
from tests.servers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def service(ray_cluster: LocalRayCluster, tmp_path: Path) -> Iterator[AppService]:
    """The service's application (in process) dispatching to the shared cluster every 0.3 s."""
    app = AppService(f"sqlite:///{tmp_path / 'suanli.db'}", tmp_path, **scheduler_settings(ray_cluster, tmp_path))
    yield app.start()
    app.stop()


@pytest.fixture
def outside(ray_cluster: LocalRayCluster) -> Iterator[JobSubmissionClient]:
    """A Jobs API client of the cluster's own, with its token: how work reaches Ray without Suanli. Every job it
    submitted is stopped at the end."""
    client = JobSubmissionClient(ray_cluster.dashboard_url, headers=auth_headers(ray_cluster.token))
    yield client
    for job in client.list_jobs():
        if job.submission_id and job.submission_id.startswith("outside-") and not job.status.is_terminal():
            client.stop_job(job.submission_id)


def test_rays_free_figures_are_read_once_per_pass_with_the_token(ray_cluster: LocalRayCluster) -> None:
    """The backend reads what Ray says is free on every node of the cluster from its GCS, and the cluster's nodes
    from its dashboard: one read of each serves every tier of the cluster until the next pass; a wrong token is
    refused (401), not taken for an outage."""
    backend = backend_for(ray_cluster)
    hpc = backend.available("hpc")
    listed = backend.node_states("hpc")
    assert {n.node_id for n in backend.nodes("hpc")} <= hpc.keys()
    assert {n.node_id for n in backend.nodes("edge")} <= {s.node_id for s in listed}
    assert backend.available("general") is hpc
    assert backend.node_states("general") is listed
    backend.begin_pass()
    assert backend.available("general") is not hpc
    assert backend.node_states("general") is not listed
    wrong = RayJobsBackend({"hpc": TierTarget(ray_cluster.dashboard_url, None, "x" * 64, ray_cluster.address)})
    with pytest.raises(RayRequestFailed) as refused:
        wrong.available("hpc")
    assert refused.value.status_code == 401
    assert "x" * 64 not in str(refused.value)


def test_work_submitted_straight_to_ray_is_seen_and_suanli_never_overcommits_its_node(
    ray_cluster: LocalRayCluster, service: AppService, outside: JobSubmissionClient
) -> None:
    """An outside job holds both CPUs of hpc-0. Suanli's 1-CPU hpc jobs go to hpc-1 (the second one too: its own
    running job is counted once, not twice); a third waits, its reason naming hpc-0, what Ray says is free there
    and what the outside work holds; when the outside job ends, the third runs on hpc-0."""
    backend = backend_for(ray_cluster)
    first, second = sorted(backend.nodes("hpc"), key=lambda n: n.name)
    outside_id = unique("outside")
    outside.submit_job(
        entrypoint="sleep 600",
        submission_id=outside_id,
        entrypoint_num_cpus=2,
        entrypoint_label_selector={TIER_LABEL: "hpc", NODE_ID_LABEL: first.node_id},
    )

    def held_outside() -> bool:
        backend.begin_pass()
        return backend.available("hpc")[first.node_id][0] == 0

    wait_for(held_outside, 120, f"Ray to report hpc-0's CPUs held by {outside_id}")
    assert outside.get_job_status(outside_id) in (JobStatus.PENDING, JobStatus.RUNNING)

    with service.client() as client:
        one = submit(client, job_doc("hpc", "sleep 120", name="one", resources={"cpus": 1}))["job_id"]
        assert wait_state(client, one, {"running"}, timeout=120)["node_ids"] == [second.node_id]
        two = submit(client, job_doc("hpc", "sleep 120", name="two", resources={"cpus": 1}))["job_id"]
        assert wait_state(client, two, {"running"}, timeout=120)["node_ids"] == [second.node_id]

        three = submit(client, job_doc("hpc", "echo three", name="three", resources={"cpus": 1}))["job_id"]
        expected = f"hpc node {first.name} ({first.node_id[:8]}): 0 CPUs free per Ray (2 held by work outside Suanli)"
        seen: dict[str, str] = {}

        def names_the_outside_work() -> bool:
            job = client.get(f"/v1/jobs/{three}").json()
            seen.update(state=job["state"], reason=job["reason"])
            return job["state"] == "queued" and expected in job["reason"]

        wait_for(names_the_outside_work, 30, f"job three waiting, naming the outside work (last: {seen})")

        outside.stop_job(outside_id)
        done = wait_state(client, three, {"succeeded", "failed"}, timeout=120)
        assert (done["state"], done["node_ids"]) == ("succeeded", [first.node_id]), done
        for job_id in (one, two):
            client.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
        for job_id in (one, two):
            wait_state(client, job_id, {"cancelled"}, timeout=60)
