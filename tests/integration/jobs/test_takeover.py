"""The dispatcher's holder SIGKILLed while jobs are submitted and run on the session's real Ray cluster: another
`suanli serve` replica on the same PostgreSQL takes the dispatcher lease within its bound and carries on; every
job submitted (to either replica) succeeds, none is lost, and none runs twice (one Ray submission per job, one
attempt, one ``running`` event).

Leases are short here (3 s, renewed every 0.5 s, 1 s margin: takeover within 3.5 s) to keep the wall time small.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scheduler.local_cluster import LocalRayCluster
from tests.integration.jobs.test_jobs import backend_for, job_doc, scheduler_settings, submit, wait_state
from tests.servers import wait_for
from tests.service import PostgresCluster, ServiceProcess

pytestmark = pytest.mark.integration

LEASE, RENEW, MARGIN = 3.0, 0.5, 1.0
SLACK = 2.0  # a busy 2-core machine's delay on top of the bound (lease + renew), as measured from outside
ADMIN = "sl_admin_" + "t" * 40


@pytest.fixture
def replicas(ray_cluster: LocalRayCluster, postgres: PostgresCluster, tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    """Two replicas of role all on one fresh PostgreSQL database, dispatching to the session's Ray cluster."""
    url = postgres.create_database()
    settings = scheduler_settings(ray_cluster, tmp_path) | {
        "lease_seconds": str(LEASE),
        "lease_renew_seconds": str(RENEW),
        "lease_margin_seconds": str(MARGIN),
        "ingest_workers": "0",
    }
    processes = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "admin.token").write_text(ADMIN + "\n")
        processes.append(ServiceProcess(url, folder, **settings))
    try:
        for p in processes:
            p.launch()
        for p in processes:
            p.wait_ready()
        yield processes
    finally:
        for p in processes:
            p.stop()


def _duties(p: ServiceProcess) -> dict[str, int]:
    held: dict[str, int] = httpx.get(f"{p.url}/readyz", timeout=5).json()["duties"]
    return held


def test_a_killed_dispatcher_is_replaced_within_the_bound_and_every_job_runs_once(
    replicas: list[ServiceProcess], ray_cluster: LocalRayCluster
) -> None:
    """Jobs are submitted to both replicas; once some run, the dispatcher's holder is SIGKILLed and more jobs are
    submitted to the survivor. The survivor holds the dispatcher within lease + renew seconds under a newer term;
    every job (those the dead replica had dispatched too) succeeds with one attempt and one ``running`` event, and
    Ray holds exactly one submission per job."""
    holders = [p for p in replicas if "dispatcher" in _duties(p)]
    assert len(holders) == 1
    leader = holders[0]
    survivor = next(p for p in replicas if p is not leader)
    term = _duties(leader)["dispatcher"]
    headers = {"Authorization": f"Bearer {ADMIN}"}
    submitted: list[str] = []
    clients = {p: httpx.Client(base_url=p.url, headers=headers, timeout=30) for p in replicas}
    try:
        for n in range(4):
            target = replicas[n % 2]
            doc = job_doc("general", f"echo takeover-{n}", name=f"takeover-{n}", resources={"cpus": 0.25})
            submitted.append(submit(clients[target], doc)["job_id"])
        wait_state(clients[survivor], submitted[0], {"dispatching", "running", "succeeded"}, timeout=120)
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        for n in range(4, 8):
            doc = job_doc("general", f"echo takeover-{n}", name=f"takeover-{n}", resources={"cpus": 0.25})
            submitted.append(submit(clients[survivor], doc)["job_id"])
        wait_for(lambda: "dispatcher" in _duties(survivor), LEASE + RENEW + 30, "the survivor to take over")
        took = time.monotonic() - killed
        assert took <= LEASE + RENEW + SLACK, f"takeover took {took:.2f} s"
        assert _duties(survivor)["dispatcher"] > term
        ended = [wait_state(clients[survivor], job_id, {"succeeded", "failed"}, timeout=180) for job_id in submitted]
    finally:
        for client in clients.values():
            client.close()

    assert [job["state"] for job in ended] == ["succeeded"] * len(submitted), [
        (j["job_id"], j["state"], j["reason"]) for j in ended
    ]
    for job in ended:
        assert job["attempt"] == 0, job
        states = Counter(e["state"] for e in job["events"])
        assert states["running"] == 1, job["events"]
        assert states["dispatching"] == 1, job["events"]
    backend = backend_for(ray_cluster)
    on_ray = {tier: backend.jobs(tier) for tier in {job["tier"] for job in ended}}  # a general job may overflow
    for job in ended:
        job_id = job["job_id"]
        everywhere = [s for listed in on_ray.values() for s in listed if s.startswith(job_id)]
        assert everywhere == [f"{job_id}-0"], (job_id, job["tier"])
        assert f"{job_id}-0" in on_ray[job["tier"]], job
