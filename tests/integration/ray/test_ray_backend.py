"""The tiers as Ray Jobs API targets, against the session's real local Ray cluster (tests/ray_cluster.py)."""

from __future__ import annotations

import asyncio
import time

import pytest
from ray.job_submission import JobSubmissionClient

from census_agent.labels import REGION_LABEL, TIER_LABEL
from scheduler.local_cluster import LocalRayCluster
from scheduler.models import RayJobState, RayRequestFailed, RayUnavailable, TierTarget
from scheduler.ray_backend import RayJobsBackend, auth_headers, list_node_states
from tests.ray_cluster import RAYLETS, TIERS, unique, wait_for_state, wait_until_done
from tests.servers import free_port

pytestmark = pytest.mark.integration

MIB = 2**20


def test_every_raylet_joined_with_its_tier_label_and_the_head_has_no_cpus(ray_cluster: LocalRayCluster) -> None:
    """Each raylet is ALIVE under its name with its tier (and extra) labels; the head offers no CPU or GPU."""
    states = list_node_states(ray_cluster.dashboard_url, ray_cluster.token)
    nodes = [n for n in states if n.state == "ALIVE"]
    heads = [n for n in nodes if n.is_head_node]
    assert len(heads) == 1
    assert heads[0].resources_total.get("CPU", 0) == 0
    assert heads[0].resources_total.get("GPU", 0) == 0
    by_name = {n.node_name: n for n in nodes if not n.is_head_node}
    assert sorted(by_name) == sorted(ray_cluster.names) == ["ai-0", "edge-0", "general-0", "hpc-0", "hpc-1"]
    for name, spec in zip(ray_cluster.names, RAYLETS, strict=True):
        assert by_name[name].labels[TIER_LABEL] == spec.tier
    assert by_name["edge-0"].labels[REGION_LABEL] == "440106"


@pytest.mark.parametrize("tier", TIERS)
def test_nodes_lists_exactly_the_tiers_nodes_with_honest_resources(backend: RayJobsBackend, tier: str) -> None:
    """`nodes(tier)` returns the tier's raylets only, with the CPUs, GPUs and memory they were started with."""
    nodes = backend.nodes(tier)
    specs = [s for s in RAYLETS if s.tier == tier]
    assert len(nodes) == len(specs)
    assert all(n.labels[TIER_LABEL] == tier for n in nodes)
    assert sum(n.cpus for n in nodes) == sum(s.cpus for s in specs)
    assert sum(n.gpus for n in nodes) == sum(s.gpus for s in specs)
    assert sum(n.memory_bytes for n in nodes) == sum(s.memory_bytes for s in specs)


def test_a_job_for_each_tier_runs_with_its_driver_on_a_node_of_that_tier(backend: RayJobsBackend) -> None:
    """With the tier's label selector the entrypoint runs on one of the tier's nodes (JobInfo.driver_node_id),
    also when it reserves no CPU (general): the job's supervisor actor follows the selector, not the 0-CPU head."""
    ids = {tier: unique(f"each-{tier}") for tier in TIERS}
    for tier, job_id in ids.items():
        cpus, gpus = (0, 0) if tier == "general" else (1, 1 if tier == "ai" else 0)
        assert backend.submit(
            job_id=job_id, tier=tier, entrypoint=f"echo {tier}", cpus=cpus, gpus=gpus, memory_bytes=64 * MIB
        )
    for tier, job_id in ids.items():
        status = wait_until_done(backend, job_id, tier)
        assert status.state is RayJobState.SUCCEEDED, status.message
        assert status.exit_code == 0
        assert status.driver_node_id in {n.node_id for n in backend.nodes(tier)}
        assert status.start_time is not None
        assert status.end_time is not None
        assert time.time() - 300 < status.start_time <= status.end_time <= time.time()


def test_node_id_pins_the_entrypoint_to_that_node(backend: RayJobsBackend) -> None:
    """`submit(node_id=...)` runs the entrypoint on that very node of the tier (Ray's ray.io/node-id label)."""
    target = sorted(n.node_id for n in backend.nodes("hpc"))[-1]
    job_id = unique("pinned")
    assert backend.submit(job_id=job_id, tier="hpc", entrypoint="true", cpus=1, gpus=0, memory_bytes=0, node_id=target)
    status = wait_until_done(backend, job_id, "hpc")
    assert status.state is RayJobState.SUCCEEDED
    assert status.driver_node_id == target


def test_resubmitting_the_same_job_id_returns_false_and_never_runs_twice(
    backend: RayJobsBackend, ray_cluster: LocalRayCluster
) -> None:
    """A retried dispatch (same submission id) is refused with False; Ray keeps one job that ran once."""
    job_id = unique("once")

    def submit() -> bool:
        return backend.submit(
            job_id=job_id, tier="general", entrypoint="printf 'ran-%s\\n' once", cpus=0.5, gpus=0, memory_bytes=0
        )

    assert submit()
    assert not submit()
    assert wait_until_done(backend, job_id, "general").state is RayJobState.SUCCEEDED
    assert not submit()
    listed = JobSubmissionClient(ray_cluster.dashboard_url, headers=auth_headers(ray_cluster.token)).list_jobs()
    assert [j.submission_id for j in listed].count(job_id) == 1
    assert backend.logs(job_id, "general").splitlines().count("ran-once") == 1


def test_a_failing_entrypoint_gives_failed_with_its_exit_code(backend: RayJobsBackend) -> None:
    """`sh -c 'exit 3'` ends FAILED with exit code 3."""
    job_id = unique("exit3")
    backend.submit(job_id=job_id, tier="edge", entrypoint="sh -c 'exit 3'", cpus=0.5, gpus=0, memory_bytes=0)
    status = wait_until_done(backend, job_id, "edge")
    assert status.state is RayJobState.FAILED
    assert status.exit_code == 3
    assert "exit code 3" in status.message


def test_stop_on_a_running_job_makes_it_stopped(backend: RayJobsBackend) -> None:
    """`stop` on a RUNNING `sleep 60` returns True and the job becomes STOPPED well before it would end."""
    job_id = unique("sleeper")
    backend.submit(job_id=job_id, tier="hpc", entrypoint="sleep 60", cpus=1, gpus=0, memory_bytes=0)
    wait_for_state(backend, job_id, "hpc", {RayJobState.RUNNING})
    began = time.monotonic()
    assert backend.stop(job_id, "hpc")
    status = wait_until_done(backend, job_id, "hpc", timeout=30)
    assert status.state is RayJobState.STOPPED
    assert time.monotonic() - began < 30
    assert not backend.stop(job_id, "hpc")


def test_logs_returns_the_jobs_stdout_and_tail_logs_yields_it(backend: RayJobsBackend) -> None:
    """`logs` has what the entrypoint printed; `tail_logs` yields it as it comes and ends with the job."""
    job_id = unique("talker")
    backend.submit(
        job_id=job_id,
        tier="ai",
        entrypoint="echo first-line; sleep 1; echo second-line",
        cpus=0.5,
        gpus=0,
        memory_bytes=0,
    )

    async def tail() -> str:
        return "".join([chunk async for chunk in backend.tail_logs(job_id, "ai")])

    tailed = asyncio.run(asyncio.wait_for(tail(), timeout=90))
    assert "first-line\n" in tailed
    assert "second-line\n" in tailed
    assert wait_until_done(backend, job_id, "ai").state is RayJobState.SUCCEEDED
    logs = backend.logs(job_id, "ai")
    assert logs.index("first-line") < logs.index("second-line")


def test_jobs_lists_the_submissions_of_that_tier_only(backend: RayJobsBackend) -> None:
    """`jobs(tier)` maps submission ids to their status, for the tier it was asked about only."""
    job_id = unique("listed")
    backend.submit(job_id=job_id, tier="edge", entrypoint="true", cpus=0.5, gpus=0, memory_bytes=0)
    assert job_id in backend.jobs("edge")
    assert job_id not in backend.jobs("general")
    assert backend.jobs("edge")[job_id].state in set(RayJobState) - {RayJobState.MISSING}


def test_an_unknown_submission_is_missing_not_stoppable_and_has_no_logs(backend: RayJobsBackend) -> None:
    """Ray's 404s: status MISSING, stop False, logs RayRequestFailed with status 404."""
    assert backend.status("no-such-job", "general").state is RayJobState.MISSING
    assert not backend.stop("no-such-job", "general")
    with pytest.raises(RayRequestFailed) as caught:
        backend.logs("no-such-job", "general")
    assert caught.value.status_code == 404


def test_multi_cluster_mode_runs_jobs_and_lists_the_clusters_nodes(ray_cluster: LocalRayCluster) -> None:
    """A tier that is a whole cluster (no selector): nodes() is every alive node with resources, and jobs run."""
    backend = RayJobsBackend({"general": ray_cluster.target(None)})
    nodes = backend.nodes("general")
    assert sorted(n.name for n in nodes) == sorted(ray_cluster.names)  # the 0-CPU head is not a worker
    assert sum(n.cpus for n in nodes) == sum(s.cpus for s in RAYLETS)
    job_id = unique("whole-cluster")
    assert backend.submit(job_id=job_id, tier="general", entrypoint="echo anywhere", cpus=1, gpus=0, memory_bytes=0)
    status = wait_until_done(backend, job_id, "general")
    assert status.state is RayJobState.SUCCEEDED
    assert status.driver_node_id in {n.node_id for n in nodes}
    assert job_id in backend.jobs("general")


def test_an_unreachable_cluster_is_ray_unavailable() -> None:
    """Nothing listening at the tier's address: every call raises RayUnavailable (the job stays queued)."""
    backend = RayJobsBackend({"hpc": TierTarget(f"http://127.0.0.1:{free_port()}", {TIER_LABEL: "hpc"})}, timeout_s=2)
    with pytest.raises(RayUnavailable):
        backend.submit(job_id="j", tier="hpc", entrypoint="true", cpus=1, gpus=0, memory_bytes=0)
    with pytest.raises(RayUnavailable):
        backend.status("j", "hpc")
    with pytest.raises(RayUnavailable):
        backend.nodes("hpc")
    with pytest.raises(ValueError, match="not served"):
        backend.status("j", "edge")
