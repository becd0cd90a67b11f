"""Load: thousands of tiny jobs of every class from many users through the service to the local Ray tiers.

    uv run python -m benchmarks.load_jobs [--jobs 10000] [--users 100] [--baseline-jobs 500] [--timeout 86400]

Method. A local Ray cluster as the integration tests start it (`tests.ray_cluster.RAYLETS`: a 0-CPU head; general
2 CPUs; ai 2 CPUs and 2 logical GPUs; hpc-0 and hpc-1 2 CPUs each; edge 1 CPU in region 440106) and the service
(``python -m api.cli serve``, SQLite, scheduler configured for that cluster, dispatcher every
--dispatch-interval seconds, log level WARNING). --users tokens of role user (``load-user-NNN``, each the owner of
its jobs) are made with ``POST /v1/tokens``; user i carries, and submits for, organisation ``org-(i mod --orgs)``.

The jobs (seeded, the same every run): 35% general (0.5 CPU), 15% in-memory (0.5 CPU, 64 MiB), 20% hpc (1 CPU;
one in four a 2-node gang, which the dispatcher runs through a STRICT_SPREAD placement group), 15% ai (0.5 CPU,
1 GPU), 15% edge (0.5 CPU, region one of Guangzhou's districts, 440106 half the time); priority -1, 0 or 1; the
entrypoint ``true`` or ``sleep 0.1``, so what is measured is Ray's and the service's cost per job, not the work.

1. Baseline, first: the first --baseline-jobs jobs of the same mix submitted straight to Ray's Jobs API
   (`JobSubmissionClient.submit_job`, the tier's label selector and the same entrypoint resources; a gang as
   the same ``python -m scheduler.gang`` command the dispatcher would submit, its placement group holding the
   resources) by the same number of concurrent submitters (one thread and one client per user), all at once:
   Ray queues what does not fit. Followed with ``list_jobs`` until every one has ended.
2. Through the service: every user posts its share of the --jobs jobs one after the other (all users at once:
   --users concurrent connections; each post carries an Idempotency-Key and is retried with it, up to 5 times,
   after a connection error or a 5xx). Followed through ``/metrics`` (jobs by state) until every accepted job has
   ended or --timeout passes; progress every --progress seconds.

Printed: submission throughput (accepted jobs / time from the first post to the last answer), completion
throughput (jobs / time from the first post to the last job's end) for both, the ratio (seconds per job through
the service / straight to Ray, the per-job overhead as `benchmarks.dispatch` measures it, here at saturation),
queue wait by class (p50/p99 of started_at - submitted_at as ``GET /v1/jobs`` shows them; started_at is the
start Ray records for the submission, i.e. when the dispatcher handed it over), turnaround by class (submitted
to finished), outcome counts by state, and two checks:

- none lost: every accepted job id is in the service's job list, in a final state (succeeded, failed,
  cancelled); no job is listed that was not accepted (an Idempotency-Key retry that made a second job).
- none duplicated: Ray's job list (`RayJobsBackend.jobs` for every tier) holds, for each job, exactly the
  submissions ``<job id>-<attempt>`` for attempts 0..its last attempt, each once, and nothing else; no job
  has more than one succeeded submission; Ray's final state of the last attempt agrees with the service's.

Ray keeps a PENDING submission 15 minutes by default before failing it; the benchmark starts its cluster with
RAY_JOB_START_TIMEOUT_SECONDS = --timeout so that the baseline's queue (Ray's own) does not fail jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from ray.job_submission import JobStatus, JobSubmissionClient

from census_agent.labels import TIER_LABEL
from scheduler import gang
from scheduler.local_cluster import LocalRayCluster
from scheduler.models import RayJobState
from scheduler.ray_backend import RayJobsBackend, auth_headers
from tests.fleet import DISTRICTS
from tests.ray_cluster import RAYLETS, TIERS, cluster_table
from tests.service import ServiceProcess

MIB = 2**20
FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
FINAL = ("succeeded", "failed", "cancelled")
CLASS_TIER = {"general": "general", "in-memory": "general", "hpc": "hpc", "ai": "ai", "edge": "edge"}


# --- the workload --------------------------------------------------------------------------------------------


def job_mix(count: int, seed: int) -> list[dict[str, Any]]:
    """`count` job documents of every class (without organisation: the submitting user's is added)."""
    rng = random.Random(seed)
    classes = ["general"] * 35 + ["in-memory"] * 15 + ["hpc"] * 20 + ["ai"] * 15 + ["edge"] * 15
    docs = []
    for k in range(count):
        klass = rng.choice(classes)
        resources: dict[str, Any] = {"cpus": 0.5}
        extra: dict[str, Any] = {}
        if klass == "in-memory":
            resources["memory_bytes"] = 64 * MIB
        elif klass == "hpc":
            resources = {"cpus": 1, "nodes": 2 if rng.random() < 0.25 else 1}
        elif klass == "ai":
            resources["gpus"] = 1
        elif klass == "edge":
            extra["region"] = "440106" if rng.random() < 0.5 else rng.choice(list(DISTRICTS))
        docs.append(
            {
                "name": f"load-{k}",
                "class": klass,
                "entrypoint": rng.choice(["true", "sleep 0.1"]),
                "resources": resources,
                "priority": rng.choice([-1, 0, 0, 1]),
                "time_limit_seconds": 600,
                **extra,
            }
        )
    return docs


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 (nearest rank), max and count."""
    if not values:
        return {"p50": 0.0, "p99": 0.0, "max": 0.0, "n": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    return {"p50": rank(50), "p99": rank(99), "max": ordered[-1], "n": len(ordered)}


def split(count: int, users: int) -> list[list[int]]:
    """Job k goes to user k mod `users`."""
    return [list(range(u, count, users)) for u in range(users)]


# --- baseline: straight to Ray -------------------------------------------------------------------------------


def direct(
    dashboard: str,
    token: str,
    docs: list[dict[str, Any]],
    *,
    users: int,
    timeout: float,
    progress_s: float,
    hpc_nodes: list[str],
) -> dict[str, Any]:
    """Submit `docs` straight to Ray with `users` concurrent submitters; follow until all have ended."""
    submitted: dict[str, tuple[float, str]] = {}  # submission id -> (when the client submitted, class)
    lock = threading.Lock()
    errors: Counter[str] = Counter()

    def submit_all(indices: list[int]) -> float:
        ray = JobSubmissionClient(dashboard, headers=auth_headers(token))
        for k in indices:
            doc = docs[k]
            r = doc["resources"]
            tier = CLASS_TIER[doc["class"]]
            entrypoint, cpus, gpus, memory = doc["entrypoint"], r["cpus"], r.get("gpus", 0), r.get("memory_bytes", 0)
            if r.get("nodes", 1) > 1:
                entrypoint = gang.command_line(entrypoint, cpus, gpus, memory, hpc_nodes[: r["nodes"]])
                cpus, gpus, memory = 0, 0, 0
            submission_id = f"direct-{k}"
            at = time.time()
            try:
                ray.submit_job(
                    entrypoint=entrypoint,
                    submission_id=submission_id,
                    entrypoint_num_cpus=cpus,
                    entrypoint_num_gpus=gpus,
                    entrypoint_memory=memory,
                    entrypoint_label_selector={TIER_LABEL: tier},
                )
            except (RuntimeError, OSError) as exc:
                with lock:
                    errors[type(exc).__name__] += 1
                continue
            with lock:
                submitted[submission_id] = (at, doc["class"])
        return time.time()

    first = time.time()
    with ThreadPoolExecutor(max_workers=min(users, len(docs))) as pool:
        last_submit = max(pool.map(submit_all, split(len(docs), min(users, len(docs)))))
    print(f"  [direct] {len(submitted)} submitted to Ray in {last_submit - first:.1f} s", flush=True)
    ray = JobSubmissionClient(dashboard, headers=auth_headers(token))
    deadline = time.monotonic() + timeout
    next_line = time.monotonic() + progress_s
    while True:
        mine = {j.submission_id: j for j in ray.list_jobs() if j.submission_id in submitted}
        done = [j for j in mine.values() if j.status in FINISHED]
        if len(done) == len(submitted) or time.monotonic() > deadline:
            break
        if time.monotonic() >= next_line:
            next_line += progress_s
            print(
                f"  [direct] {time.time() - first:6.0f} s: {len(done)}/{len(submitted)} ended "
                f"({len(done) / (time.time() - first):.2f} jobs/s)",
                flush=True,
            )
        time.sleep(1)
    ends = [j.end_time / 1000 for j in done if j.end_time]
    turnaround: dict[str, list[float]] = defaultdict(list)
    for j in done:
        if j.end_time and j.submission_id:
            at, klass = submitted[j.submission_id]
            turnaround[klass].append(j.end_time / 1000 - at)
    last_end = max(ends, default=time.time())
    return {
        "jobs": len(docs),
        "accepted": len(submitted),
        "submit_errors": dict(errors),
        "submit_seconds": last_submit - first,
        "accepted_per_s": len(submitted) / max(last_submit - first, 1e-9),
        "ended": len(done),
        "complete_seconds": last_end - first,
        "completed_per_s": len(done) / max(last_end - first, 1e-9),
        "states": dict(Counter(str(j.status.value) for j in mine.values())),
        "turnaround_s": {k: percentiles(v) for k, v in sorted(turnaround.items())},
    }


# --- through the service -------------------------------------------------------------------------------------


@dataclass
class Submissions:
    """What the users' posts got."""

    accepted: dict[str, float] = field(default_factory=dict)  # job id -> when its first post was sent
    retries: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # answers that were neither 201 nor 200, and failures
    first: float = 0.0
    last: float = 0.0


async def submit_all(
    url: str,
    tokens: list[str],
    docs: list[dict[str, Any]],
    *,
    orgs: int,
    out: Submissions,
    progress: Callable[[], None],
) -> None:
    """Every user posts its share of `docs`, one after the other, all users at once; `out` fills as they go."""
    out.first = time.time()

    async def user(u: int, token: str, indices: list[int]) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
            for k in indices:
                doc = docs[k] | {"organisation": f"org-{u % orgs}"}
                sent = time.time()
                for attempt in range(5):
                    if attempt:
                        out.retries += 1
                        await asyncio.sleep(0.5 * attempt)
                    try:
                        answer = await client.post("/v1/jobs", json=doc, headers={"Idempotency-Key": f"load-{k}"})
                    except httpx.TransportError as exc:
                        out.errors[type(exc).__name__] += 1
                        continue
                    if answer.status_code in (200, 201):
                        out.accepted[answer.json()["job_id"]] = sent
                        break
                    out.errors[f"HTTP {answer.status_code}"] += 1
                    if answer.status_code < 500:
                        break
        out.last = max(out.last, time.time())

    async def ticker() -> None:
        while True:
            await asyncio.sleep(1)
            progress()

    tick = asyncio.create_task(ticker())
    try:
        await asyncio.gather(
            *(user(u, t, ix) for u, (t, ix) in enumerate(zip(tokens, split(len(docs), len(tokens)), strict=True)))
        )
    finally:
        tick.cancel()


def job_counts(client: httpx.Client) -> dict[str, int]:
    """Jobs by state from the service's /metrics (queued, dispatching, running; and every final state)."""
    counts: Counter[str] = Counter()
    for family in text_string_to_metric_families(client.get("/metrics").text):
        if family.name in ("suanli_jobs", "suanli_jobs_finished"):
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    counts[sample.labels["state"]] += int(sample.value)
    return dict(counts)


def list_all(client: httpx.Client) -> list[dict[str, Any]]:
    """Every job the service has (admin: all owners), paged."""
    found: list[dict[str, Any]] = []
    before: str | None = None
    while True:
        page = client.get("/v1/jobs", params={"limit": 1000, **({"before": before} if before else {})})
        page.raise_for_status()
        body = page.json()
        found += body["items"]
        before = body["next_before"]
        if before is None:
            return found


def seconds(value: str | None) -> float | None:
    """An ISO time as seconds since the epoch."""
    return None if value is None else datetime.fromisoformat(value).timestamp()


def check(jobs: list[dict[str, Any]], accepted: set[str], ray_jobs: dict[str, Any]) -> dict[str, Any]:
    """None lost, none duplicated (see the module's docstring)."""
    by_id = {j["job_id"]: j for j in jobs}
    missing = sorted(accepted - set(by_id))
    unfinished = sorted(j for j in accepted & set(by_id) if by_id[j]["state"] not in FINAL)
    unexpected = sorted(set(by_id) - accepted)
    submissions: dict[str, set[str]] = defaultdict(set)
    strangers = []
    for submission_id in ray_jobs:
        job_id, _, attempt = submission_id.rpartition("-")
        if job_id in by_id and attempt.isdigit():
            submissions[job_id].add(submission_id)
        else:
            strangers.append(submission_id)
    wrong_submissions, ran_twice, disagree = [], [], []
    ray_final = {"succeeded": RayJobState.SUCCEEDED, "failed": RayJobState.FAILED}
    for job_id, job in by_id.items():
        expected = {f"{job_id}-{a}" for a in range(job["attempt"] + 1)} if job["submission_id"] else set()
        if submissions[job_id] != expected:
            wrong_submissions.append(job_id)
        if sum(ray_jobs[s].state is RayJobState.SUCCEEDED for s in submissions[job_id]) > 1:
            ran_twice.append(job_id)
        last = job["submission_id"]
        if last in ray_jobs and job["state"] in ray_final and ray_jobs[last].state is not ray_final[job["state"]]:
            disagree.append(job_id)
    return {
        "lost": len(missing) + len(unfinished),
        "missing": missing[:10],
        "not_final": unfinished[:10],
        "unexpected_jobs": unexpected[:10],
        "unexpected_count": len(unexpected),
        "ray_submissions": sum(len(s) for s in submissions.values()),
        "duplicated": len(wrong_submissions) + len(ran_twice) + len(strangers),
        "wrong_submissions": wrong_submissions[:10],
        "ran_twice": ran_twice[:10],
        "strangers": strangers[:10],
        "ray_disagrees": disagree[:10],
        "ray_disagrees_count": len(disagree),
    }


def through_service(
    service: ServiceProcess, cluster: LocalRayCluster, docs: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """Tokens, submissions, following, then the checks."""
    with service.client() as admin:
        tokens = []
        for u in range(args.users):
            body = {"name": f"load-user-{u:03d}", "role": "user", "organisations": [f"org-{u % args.orgs}"]}
            made = admin.post("/v1/tokens", json=body)
            made.raise_for_status()
            tokens.append(made.json()["token"])
    began = time.time()
    last_line = time.monotonic()
    follower = service.client()

    def progress(accepted: int | None = None) -> None:
        nonlocal last_line
        if time.monotonic() - last_line < args.progress:
            return
        last_line = time.monotonic()
        counts = job_counts(follower)
        ended = sum(counts.get(s, 0) for s in FINAL)
        so_far = f"{accepted} accepted, " if accepted is not None else ""
        print(
            f"  [service] {time.time() - began:6.0f} s: {so_far}queued {counts.get('queued', 0)}, dispatching "
            f"{counts.get('dispatching', 0)}, running {counts.get('running', 0)}, ended {ended} "
            f"({ended / (time.time() - began):.2f} jobs/s) { ({s: counts[s] for s in FINAL if counts.get(s)}) }",
            flush=True,
        )

    submissions = Submissions()
    try:
        asyncio.run(
            submit_all(
                service.url,
                tokens,
                docs,
                orgs=args.orgs,
                out=submissions,
                progress=lambda: progress(len(submissions.accepted)),
            )
        )
        print(
            f"  [service] {len(submissions.accepted)} of {len(docs)} accepted in "
            f"{submissions.last - submissions.first:.1f} s",
            flush=True,
        )
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            counts = job_counts(follower)
            if sum(counts.get(s, 0) for s in FINAL) >= len(submissions.accepted):
                break
            progress()
            time.sleep(1)
        jobs = list_all(follower)
    finally:
        follower.close()
    backend = RayJobsBackend({t: cluster.target({TIER_LABEL: t}) for t in TIERS}, timeout_s=120)
    ray_jobs = {k: v for t in TIERS for k, v in backend.jobs(t).items()}
    ours = [j for j in jobs if j["job_id"] in submissions.accepted]
    waits: dict[str, list[float]] = defaultdict(list)
    turnaround: dict[str, list[float]] = defaultdict(list)
    for j in ours:
        submitted, started, finished = (seconds(j[k]) for k in ("submitted_at", "started_at", "finished_at"))
        if submitted is not None and started is not None:
            waits[j["class"]].append(started - submitted)
        if submitted is not None and finished is not None:
            turnaround[j["class"]].append(finished - submitted)
    finished_at = [t for j in ours if (t := seconds(j["finished_at"])) is not None]
    last_end = max(finished_at, default=time.time())
    return {
        "jobs": len(docs),
        "users": args.users,
        "accepted": len(submissions.accepted),
        "submit_errors": dict(submissions.errors),
        "submit_retries": submissions.retries,
        "submit_seconds": submissions.last - submissions.first,
        "accepted_per_s": len(submissions.accepted) / max(submissions.last - submissions.first, 1e-9),
        "ended": len(finished_at),
        "complete_seconds": last_end - submissions.first,
        "completed_per_s": len(finished_at) / max(last_end - submissions.first, 1e-9),
        "states": dict(Counter(j["state"] for j in ours)),
        "attempts": dict(Counter(j["attempt"] + 1 for j in ours)),
        "gangs": sum(1 for j in ours if j["spec"]["resources"].get("nodes", 1) > 1),
        "by_class": dict(Counter(j["class"] for j in ours)),
        "tiers": dict(Counter(str(j["tier"]) for j in ours)),
        "queue_wait_s": {k: percentiles(v) for k, v in sorted(waits.items())},
        "turnaround_s": {k: percentiles(v) for k, v in sorted(turnaround.items())},
        **check(jobs, set(submissions.accepted), ray_jobs),
    }


# --- output --------------------------------------------------------------------------------------------------


def show(args: argparse.Namespace, base: dict[str, Any] | None, run: dict[str, Any], setup_s: float) -> None:
    """Print the figures and the checks."""
    print(
        f"\nLoad: {run['jobs']:,} jobs from {args.users} users over {args.orgs} organisations "
        f"(cluster and service up in {setup_s:.0f} s); classes {run['by_class']}, {run['gangs']} 2-node gangs"
    )
    print(f"  {'':34} {'accepted/s':>10} {'submit s':>9} {'ended/s':>8} {'all ended s':>11}")
    rows = [("through the service", run)] + (
        [(f"straight to Ray ({base['jobs']} jobs, baseline)", base)] if base else []
    )
    for name, r in rows:
        print(
            f"  {name:34} {r['accepted_per_s']:10.1f} {r['submit_seconds']:9.1f} {r['completed_per_s']:8.2f} "
            f"{r['complete_seconds']:11.1f}"
        )
    if base and base["completed_per_s"] and run["completed_per_s"]:
        ratio = base["completed_per_s"] / run["completed_per_s"]
        print(f"  seconds per job, through the service / straight to Ray: {ratio:.2f}")
    print(f"  outcomes: {run['states']}; attempts {run['attempts']}; tiers {run['tiers']}")
    print(
        f"  submission: {run['accepted']:,} accepted, {run['submit_retries']} retries, errors "
        f"{run['submit_errors'] or 'none'}"
    )
    if base:
        print(f"  baseline outcomes on Ray: {base['states']}; submit errors {base['submit_errors'] or 'none'}")
    print(
        f"  {'class':10} {'wait p50 s':>10} {'wait p99 s':>10} {'turnaround p50 s':>17} {'p99 s':>8}"
        f"{'   straight to Ray: turnaround p50 / p99 s' if base else ''}"
    )
    for klass in sorted(run["turnaround_s"]):
        w, t = run["queue_wait_s"].get(klass, percentiles([])), run["turnaround_s"][klass]
        b = base["turnaround_s"].get(klass) if base else None
        extra = f"   {b['p50']:8.1f} / {b['p99']:.1f}" if b else ""
        print(f"  {klass:10} {w['p50']:10.1f} {w['p99']:10.1f} {t['p50']:17.1f} {t['p99']:8.1f}{extra}")
    print(
        f"  lost {run['lost']} (missing {run['missing']}, not final {run['not_final']}); jobs never accepted "
        f"{run['unexpected_count']}; Ray submissions {run['ray_submissions']:,}, duplicated {run['duplicated']} "
        f"(wrong set {run['wrong_submissions']}, ran twice {run['ran_twice']}, unknown {run['strangers']}); "
        f"Ray disagrees on {run['ray_disagrees_count']} {run['ray_disagrees']}"
    )
    for name, ok in (
        ("none_lost", run["lost"] == 0 and run["unexpected_count"] == 0),
        ("none_duplicated", run["duplicated"] == 0),
        ("all_accepted", run["accepted"] == run["jobs"]),
    ):
        print(f"{'PASS' if ok else 'FAIL'}  {name}")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.load_jobs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--jobs", type=int, default=10_000, help="jobs submitted through the service (default 10000)")
    p.add_argument(
        "--users", type=int, default=100, help="user tokens, each submitting its share at the same time (default 100)"
    )
    p.add_argument("--orgs", type=int, default=4, help="organisations the users are spread over (default 4)")
    p.add_argument(
        "--baseline-jobs",
        type=int,
        default=500,
        help="jobs of the same mix submitted straight to Ray first; 0 skips it (default 500)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=86_400,
        help="seconds to wait for the jobs to end, each part (default 86400: 24 h)",
    )
    p.add_argument(
        "--dispatch-interval",
        type=float,
        default=0.3,
        help="the service's dispatcher step, seconds (default 0.3, as the integration tests)",
    )
    p.add_argument("--progress", type=float, default=30.0, help="seconds between progress lines (default 30)")
    p.add_argument("--seed", type=int, default=1, help="seed of the job mix (default 1)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON document at the end")
    return p


def main(argv: list[str] | None = None) -> int:
    """Start Ray and the service, run the baseline and the load, print the figures."""
    args = parser().parse_args(argv)
    if args.jobs < 1 or args.users < 1 or args.orgs < 1 or args.baseline_jobs < 0 or args.timeout <= 0:
        parser().error("--jobs, --users, --orgs and --timeout must be positive, --baseline-jobs not negative")
    work = Path(tempfile.mkdtemp(prefix="suanli-load-jobs-"))
    docs = job_mix(args.jobs, args.seed)
    os.environ.setdefault("RAY_JOB_START_TIMEOUT_SECONDS", str(int(args.timeout)))  # the cluster inherits it
    began = time.monotonic()
    base: dict[str, Any] | None = None
    with LocalRayCluster(work / "ray", RAYLETS) as cluster:
        config = work / "scheduler.toml"
        config.write_text(f"[ray]\n{cluster_table(cluster)}")
        service = ServiceProcess(
            f"sqlite:///{work / 'suanli.db'}",
            work,
            scheduler_config=str(config),
            dispatch_interval_seconds=str(args.dispatch_interval),
            log_level="WARNING",
        ).start()
        setup_s = time.monotonic() - began
        print(f"Ray cluster ({len(RAYLETS)} raylets) and service up in {setup_s:.0f} s", flush=True)
        try:
            if args.baseline_jobs:
                backend = RayJobsBackend({"hpc": cluster.target({TIER_LABEL: "hpc"})})
                hpc_nodes = sorted(n.node_id for n in backend.nodes("hpc"))
                base = direct(
                    cluster.dashboard_url,
                    cluster.token,
                    docs[: args.baseline_jobs],
                    users=args.users,
                    timeout=args.timeout,
                    progress_s=args.progress,
                    hpc_nodes=hpc_nodes,
                )
            run = through_service(service, cluster, docs, args)
        finally:
            service.stop()
            shutil.rmtree(work, ignore_errors=True)
    show(args, base, run, setup_s)
    if args.json:
        print(json.dumps({"baseline": base, "service": run}, indent=2))
    return 0 if run["lost"] == 0 and run["duplicated"] == 0 and run["unexpected_count"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
