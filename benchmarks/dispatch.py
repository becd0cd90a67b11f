"""Dispatch overhead and mass submission: jobs through the service against `submit_job` straight to Ray.

    uv run python -m benchmarks.dispatch [--jobs 10] [--rounds 2] [--burst 5000] [--json]

Method: a local Ray cluster (a 0-CPU head and one general raylet of 4 logical CPUs) and the service (SQLite,
dispatcher stepping every 0.2 s) on this machine.

1. Overhead. For --rounds rounds, alternately: --jobs short jobs (``sleep 2``, 0.25 CPU each, so all fit at
   once) submitted together straight to Ray with `JobSubmissionClient.submit_job` (submission id, label selector
   and entrypoint CPUs as the service would give), then the same through ``POST /v1/jobs``. Ray is polled every
   50 ms in both cases. Measured per job: submit-to-running (from the client's submit call until Ray first
   reports it RUNNING or later) and, per batch, jobs/s (batch size / time from the first submit until the last
   job's end as Ray records it). Target: the service's mean
   submit-to-running at most 1.25 x the direct one's.
2. Mass submission. --burst jobs (``sleep 600``, 1 CPU: four fit) posted at once over 32 connections, each with
   an Idempotency-Key and retried with it if its connection drops. Checked: every one accepted (201, or 200 for
   a retry that found its job) and stored exactly once (none lost, none doubled); while the dispatcher works
   through them, Ray is sampled every 0.5 s for 20 s and never holds more unfinished submissions than fit (4).
   Then everything is torn down.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from ray.job_submission import JobStatus, JobSubmissionClient

from census_agent.labels import TIER_LABEL
from scheduler.local_cluster import LocalRayCluster
from scheduler.ray_backend import auth_headers
from scheduler.slicing import RayletSpec
from tests.ray_cluster import cluster_table
from tests.service import ServiceProcess

MIB = 2**20
TARGET_RATIO = 1.25
FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
COMMAND = "sleep 2"  # long enough to be seen RUNNING by a 50 ms poll


def follow(ray: JobSubmissionClient, submitted: dict[str, float], timeout: float = 300) -> tuple[list[float], float]:
    """Poll Ray every 50 ms for each submission (id -> when the client submitted it) until all have ended:
    each one's submit-to-running seconds (first seen RUNNING or later) and the batch's jobs per second."""
    running: dict[str, float] = {}
    ended: dict[str, float] = {}
    first = min(submitted.values())
    deadline = time.monotonic() + timeout
    while len(ended) < len(submitted):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(submitted) - len(ended)} jobs did not finish")
        for submission_id in submitted:
            if submission_id in ended:
                continue
            try:
                info = ray.get_job_info(submission_id)
            except RuntimeError:  # 404: the service has not dispatched it yet
                continue
            now = time.time()
            if info.status != JobStatus.PENDING:
                running.setdefault(submission_id, now)
            if info.status in FINISHED:
                ended[submission_id] = (info.end_time or now * 1000) / 1000
        time.sleep(0.05)
    return [running[s] - t for s, t in submitted.items()], len(submitted) / (max(ended.values()) - first)


def direct_batch(ray: JobSubmissionClient, jobs: int) -> tuple[list[float], float]:
    """`jobs` jobs submitted straight to Ray, as the service would submit them."""
    submitted: dict[str, float] = {}
    for _ in range(jobs):
        submission_id = f"direct-{uuid.uuid4().hex[:12]}"
        submitted[submission_id] = time.time()
        ray.submit_job(
            entrypoint=COMMAND,
            submission_id=submission_id,
            entrypoint_num_cpus=0.25,
            entrypoint_label_selector={TIER_LABEL: "general"},
        )
    return follow(ray, submitted)


def service_batch(http: httpx.Client, ray: JobSubmissionClient, jobs: int) -> tuple[list[float], float]:
    """The same batch through ``POST /v1/jobs`` (followed on Ray under the submission ids the dispatcher uses)."""
    submitted: dict[str, float] = {}
    for _ in range(jobs):
        at = time.time()
        answer = http.post(
            "/v1/jobs", json={"name": "bench", "class": "general", "entrypoint": COMMAND, "resources": {"cpus": 0.25}}
        )
        answer.raise_for_status()
        submitted[f"{answer.json()['job_id']}-0"] = at
    return follow(ray, submitted)


async def burst(url: str, token: str, count: int) -> tuple[list[int], int]:
    """POST `count` jobs over 32 connections, each with its own Idempotency-Key and retried (same key) when the
    connection fails; the final status codes, and how many retries were needed."""
    limits = httpx.Limits(max_connections=32)
    headers = {"Authorization": f"Bearer {token}"}
    retries = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as client:
        gate = asyncio.Semaphore(32)

        async def one(k: int) -> int:
            nonlocal retries
            job = {"name": f"burst-{k}", "class": "general", "entrypoint": "sleep 600", "resources": {"cpus": 1}}
            async with gate:
                for _ in range(5):
                    try:
                        answer = await client.post("/v1/jobs", json=job, headers={"Idempotency-Key": f"burst-{k}"})
                    except httpx.TransportError:
                        retries += 1
                        continue
                    return answer.status_code
            return 0

        codes = list(await asyncio.gather(*(one(k) for k in range(count))))
    return codes, retries


def main() -> None:
    """Run both parts and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--burst", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="suanli-bench-dispatch-"))
    raylet = RayletSpec("general", cpus=4, memory_bytes=1024 * MIB, object_store_bytes=80 * MIB)
    figures: dict[str, Any] = {}
    with LocalRayCluster(work / "ray", [raylet]) as cluster:
        config = work / "scheduler.toml"
        config.write_text(f"[ray]\n{cluster_table(cluster)}")
        service = ServiceProcess(
            f"sqlite:///{work / 'suanli.db'}",
            work,
            scheduler_config=str(config),
            dispatch_interval_seconds="0.2",
            log_level="WARNING",
        ).start()
        try:
            ray = JobSubmissionClient(cluster.dashboard_url, headers=auth_headers(cluster.token))
            direct: list[float] = []
            through: list[float] = []
            rates: dict[str, list[float]] = {"direct": [], "service": []}
            with service.client() as http:
                for _ in range(args.rounds):
                    latencies, rate = direct_batch(ray, args.jobs)
                    direct += latencies
                    rates["direct"].append(rate)
                    latencies, rate = service_batch(http, ray, args.jobs)
                    through += latencies
                    rates["service"].append(rate)
            figures["overhead"] = {
                "direct_submit_to_running_s": statistics.mean(direct),
                "service_submit_to_running_s": statistics.mean(through),
                "ratio": statistics.mean(through) / statistics.mean(direct),
                "direct_jobs_per_s": statistics.mean(rates["direct"]),
                "service_jobs_per_s": statistics.mean(rates["service"]),
            }
            began = time.monotonic()
            codes, retries = asyncio.run(burst(service.url, service.admin_token, args.burst))
            accept_s = time.monotonic() - began
            with service.client() as http:
                stored = 0
                after: str | None = None
                while True:
                    page = http.get("/v1/jobs", params={"limit": 1000, **({"before": after} if after else {})}).json()
                    stored += sum(1 for j in page["items"] if j["name"].startswith("burst-"))
                    after = page["next_before"]
                    if after is None:
                        break
            most = 0
            for _ in range(40):
                unfinished = [
                    j
                    for j in ray.list_jobs()
                    if j.submission_id and not j.submission_id.startswith("direct-") and j.status not in FINISHED
                ]
                most = max(most, len(unfinished))
                time.sleep(0.5)
            accepted = codes.count(201) + codes.count(200)  # 200: a retry found its job already queued
            figures["burst"] = {
                "jobs": args.burst,
                "accepted": accepted,
                "retries": retries,
                "stored": stored,
                "accept_seconds": accept_s,
                "max_unfinished_on_ray": most,
                "fit_at_once": 4,
            }
        finally:
            service.stop()
    if args.json:
        print(json.dumps(figures))
        return
    o, b = figures["overhead"], figures["burst"]
    print(f"Dispatch benchmark ({args.rounds} rounds of {args.jobs} `{COMMAND}` jobs; one 4-CPU general raylet)")
    print(
        f"  submit -> running   direct submit_job {o['direct_submit_to_running_s']:.2f} s   "
        f"through the service {o['service_submit_to_running_s']:.2f} s   ratio {o['ratio']:.2f}"
    )
    print(
        f"  jobs/s per batch    direct {o['direct_jobs_per_s']:.2f}   through the service {o['service_jobs_per_s']:.2f}"
    )
    print(
        f"  burst of {b['jobs']:,}: {b['accepted']:,} accepted in {b['accept_seconds']:.1f} s ({b['retries']} "
        f"retried after a lost connection), {b['stored']:,} stored; most unfinished jobs on Ray at once "
        f"{b['max_unfinished_on_ray']} (fit: {b['fit_at_once']})"
    )
    print(f"{'PASS' if o['ratio'] <= TARGET_RATIO else 'FAIL'}  overhead_ratio_at_most_{TARGET_RATIO}")
    ok = b["accepted"] == b["stored"] == b["jobs"]
    print(f"{'PASS' if ok else 'FAIL'}  burst_all_accepted_none_lost")
    print(f"{'PASS' if b['max_unfinished_on_ray'] <= b['fit_at_once'] else 'FAIL'}  ray_never_holds_more_than_fit")


if __name__ == "__main__":
    main()
