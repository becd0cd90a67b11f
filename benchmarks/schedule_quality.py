"""Schedule quality: a workload trace replayed through the real queue, beside plain FIFO and the lower bound.

    uv run python -m benchmarks.schedule_quality                      # both sample traces (fetched via uv)
    uv run python -m benchmarks.schedule_quality --trace FILE.swf     # any trace in the Standard Workload Format
    uv run python -m benchmarks.schedule_quality --json               # one JSON document

Trace: by default the two samples that ship in the wheel of the PyPI package ``evalys`` (pinned:
``evalys==4.0.7``), ``easy_mediumWL_smallPF.swf`` and ``filler_mediumWL_smallPF.swf``. evalys is never
installed into the project's environment (its wheel installs a top-level ``tests`` package that would shadow
ours): an ephemeral one (``uv run --no-project --isolated --with evalys==4.0.7``, in an empty temporary
folder) prints where the files are and they are read from there. ``--trace`` replays any SWF file of the
Parallel Workloads Archive instead (repeat it for several).

Parsing (SWF, 18 whitespace-separated fields a line, ``;`` starts a header or comment line, -1 = unknown): a
job's width is its requested processors (field 8), else its allocated processors (field 5); its time limit
is its requested time (field 9) rounded up to whole seconds, else (unknown) its run time, since backfilling
needs a limit for every job; its actual run time (field 4) is capped at that limit, as the scheduler stops a
job there. Jobs with an unknown run time or width are skipped, and so are jobs wider than the machine (or
than a gang may be, 4096 nodes); both are counted. The wait the trace recorded (field 3) is ignored: it
belongs to another scheduler on another machine. The machine has ``--nodes`` processors, else the header's
``MaxProcs``, else its ``MaxNodes``, else the widest job's width.

Model: every processor is a 1-CPU node of the hpc tier, and a job of width k is an hpc gang of k nodes x 1 CPU
(``Resources(cpus=1, nodes=k)``), which is what an SWF processor count means. Discrete-event simulation:
jobs arrive at their submit times and end at start + actual run time (usually well before their limit, which
is what makes backfilling matter); at every instant where something arrives or ends, completions are
applied first, then arrivals, then one pass of the real ``scheduler.queue.plan`` (current queue, running
jobs with their start times and limits, nodes net of running jobs, ``now``) decides what starts. Like the
real dispatcher, each pass recomputes the reservations from the current state only. A pass is skipped when
no node is free (no job could start). All jobs are of one organisation and one priority, so fair share and
priorities do not reorder them. Two policies, on the same jobs in the same run:

* **Suanli default**: ``Policy()`` (EASY backfill: the first blocked job gets a reservation at the latest
  time running jobs' limits free enough nodes; later jobs start ahead only if they cannot delay it);
* **plain FIFO**: ``Policy(backfill=False)`` (strict order: nothing starts behind a blocked head).

Metrics per policy: mean and p95 wait (p95: nearest rank), mean bounded slowdown
BSLD = max(1, (wait + run) / max(run, 10 s)), utilisation = total work (width x run time) / (processors x
makespan), makespan = last completion - first submission. Lower bound: waits 0 and BSLD 1 (every job
starting on arrival), and a makespan of at least max(total work / capacity; for every submission time t,
(t - first submission) + work submitted at t or later / capacity; for every job, its submission + its run
time - first submission); the table names which term binds, and the best utilisation that makespan allows.

Target: the default policy's mean bounded slowdown at most half of FIFO's, on every trace (PASS/FAIL lines).
Exit status: 0 measured (1 with --strict if the target is missed), 2 when a trace could not be read.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from census_agent.models import Tier
from scheduler.models import MAX_NODES, MAX_TIME_LIMIT_SECONDS, JobSpec, NodeView, QueuedJob, RunningJob
from scheduler.policy import Policy
from scheduler.queue import net_of_running, plan

EVALYS = "evalys==4.0.7"
SAMPLE_TRACES = ("easy_mediumWL_smallPF.swf", "filler_mediumWL_smallPF.swf")
SWF_FIELDS = 18
TAU = 10.0  # seconds: the bounded slowdown's threshold for short jobs, the usual choice
TARGET_RATIO = 0.5
ORGANISATION = "trace"
EXIT_OK, EXIT_MISSED, EXIT_ERROR = 0, 1, 2

POLICIES: Mapping[str, tuple[str, Policy]] = {
    "default": ("Suanli default (EASY backfill)", Policy()),
    "fifo": ("plain FIFO (backfill off)", Policy(backfill=False)),
}

# Printed by the ephemeral evalys environment: {file name: absolute path} for the names given as arguments.
_LOCATE = (
    "import importlib.metadata as m, json, sys; "
    "print(json.dumps({f.name: str(f.locate()) for f in m.files('evalys') or [] if f.name in sys.argv[1:]}))"
)


class TraceError(Exception):
    """A trace could not be obtained or read."""


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job of a trace as the simulator replays it (times in seconds)."""

    number: int  # the trace's job number
    submit: float
    run: float  # actual run time, capped at the limit
    width: int  # processors = 1-CPU nodes of the gang
    limit: int  # time limit: the requested time, else the run time


@dataclass(frozen=True)
class Trace:
    """A parsed SWF trace: its jobs in submission order, the header's machine size, and what was skipped."""

    name: str
    jobs: list[TraceJob]
    max_procs: int | None  # the header's MaxProcs
    max_nodes: int | None  # the header's MaxNodes
    unknown: int  # jobs skipped: run time or width unknown


@dataclass(frozen=True, slots=True)
class Quality:
    """How one policy did on one trace."""

    jobs: int
    mean_wait: float
    p95_wait: float
    mean_bsld: float
    utilisation: float
    makespan: float


@dataclass(frozen=True, slots=True)
class Bound:
    """The lower bound on makespan, the term that binds, and the utilisation it would give."""

    makespan: float
    binding: str
    work_over_capacity: float
    utilisation: float


def parse_swf(text: str, name: str = "trace") -> Trace:
    """The jobs of an SWF trace, sorted by submission time (then trace order). ValueError names a bad line."""
    jobs: list[TraceJob] = []
    header: dict[str, int] = {}
    unknown = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith(";"):
            key, sep, value = line[1:].partition(":")
            if sep and key.strip() in {"MaxProcs", "MaxNodes"}:
                try:
                    header[key.strip()] = int(value.split()[0])
                except (ValueError, IndexError):
                    raise ValueError(f"{name}:{lineno}: {key.strip()} is not a whole number") from None
            continue
        fields = line.split()
        if len(fields) != SWF_FIELDS:
            raise ValueError(f"{name}:{lineno}: {len(fields)} fields, SWF has {SWF_FIELDS}")
        try:
            number = int(fields[0])
            submit, run, allocated, requested, requested_time = (float(fields[i]) for i in (1, 3, 4, 7, 8))
        except ValueError:
            raise ValueError(f"{name}:{lineno}: not a number in {line!r}") from None
        width = int(requested) if requested > 0 else int(allocated)
        if run < 0 or width <= 0 or submit < 0:
            unknown += 1
            continue
        limit = math.ceil(requested_time) if requested_time > 0 else math.ceil(run)
        limit = min(max(limit, 1), MAX_TIME_LIMIT_SECONDS)
        jobs.append(TraceJob(number, submit, min(run, float(limit)), width, limit))
    jobs.sort(key=lambda j: j.submit)  # stable: trace order among equal submission times
    return Trace(name, jobs, header.get("MaxProcs"), header.get("MaxNodes"), unknown)


def machine_size(trace: Trace, nodes: int | None = None) -> tuple[int, str]:
    """Processors of the machine, and where the number came from."""
    if nodes is not None:
        return nodes, "--nodes"
    if trace.max_procs is not None and trace.max_procs > 0:
        return trace.max_procs, "header MaxProcs"
    if trace.max_nodes is not None and trace.max_nodes > 0:
        return trace.max_nodes, "header MaxNodes"
    if not trace.jobs:
        raise ValueError(f"{trace.name}: no jobs and no MaxProcs header")
    return max(j.width for j in trace.jobs), "widest job"


def _spec(job: TraceJob) -> JobSpec:
    return JobSpec.model_validate(
        {
            "name": f"swf-{job.number}",
            "class": "hpc",
            "entrypoint": "true",
            "organisation": ORGANISATION,
            "resources": {"cpus": 1, "nodes": job.width},
            "time_limit_seconds": job.limit,
        }
    )


def simulate(jobs: Sequence[TraceJob], capacity: int, policy: Policy) -> list[float]:
    """Replay `jobs` (in submission order) on `capacity` 1-CPU hpc nodes under `policy`; each job's start time."""
    too_wide = [j.number for j in jobs if j.width > capacity]
    if too_wide:
        raise ValueError(f"jobs wider than the machine ({capacity}): {too_wide[:5]}")
    nodes = [NodeView(f"p{i:06d}", Tier.HPC, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0) for i in range(capacity)]
    index = {f"{k:08d}": k for k in range(len(jobs))}  # ids sort like the jobs: the queue's tie-break
    specs = [_spec(j) for j in jobs]
    starts: list[float] = [math.nan] * len(jobs)
    queued: dict[str, QueuedJob] = {}
    running: dict[str, RunningJob] = {}
    ends: list[tuple[float, str]] = []  # heap of (end, job id)
    free = capacity
    arrived = 0
    while arrived < len(jobs) or ends:
        now = min(jobs[arrived].submit if arrived < len(jobs) else math.inf, ends[0][0] if ends else math.inf)
        while ends and ends[0][0] <= now:
            _, job_id = heapq.heappop(ends)
            free += running.pop(job_id).resources.nodes
        while arrived < len(jobs) and jobs[arrived].submit <= now:
            job_id = f"{arrived:08d}"
            queued[job_id] = QueuedJob(job_id, specs[arrived], jobs[arrived].submit)
            arrived += 1
        if not queued or free == 0:
            continue
        held = list(running.values())
        for start in plan(list(queued.values()), held, net_of_running(nodes, held), policy, now).starts:
            k = index[start.job_id]
            spec = queued.pop(start.job_id).spec
            running[start.job_id] = RunningJob(
                start.job_id, ORGANISATION, start.tier, start.node_ids, spec.resources, now, spec.time_limit_seconds
            )
            free -= spec.resources.nodes
            starts[k] = now
            heapq.heappush(ends, (now + jobs[k].run, start.job_id))
    if queued:  # cannot happen for jobs that fit: an idle machine starts the head of the queue
        raise RuntimeError(f"{len(queued)} job(s) never started")
    return starts


def bounded_slowdown(wait: float, run: float, tau: float = TAU) -> float:
    """max(1, (wait + run) / max(run, tau))."""
    return max(1.0, (wait + run) / max(run, tau))


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q <= 100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def work(jobs: Sequence[TraceJob]) -> float:
    """Processor-seconds the jobs use."""
    return sum(j.width * j.run for j in jobs)


def quality(jobs: Sequence[TraceJob], starts: Sequence[float], capacity: int) -> Quality:
    """The metrics of one schedule (`starts` aligned with `jobs`)."""
    waits = [s - j.submit for j, s in zip(jobs, starts, strict=True)]
    makespan = max(s + j.run for j, s in zip(jobs, starts, strict=True)) - min(j.submit for j in jobs)
    return Quality(
        jobs=len(jobs),
        mean_wait=sum(waits) / len(waits),
        p95_wait=percentile(waits, 95),
        mean_bsld=sum(bounded_slowdown(w, j.run) for w, j in zip(waits, jobs, strict=True)) / len(jobs),
        utilisation=work(jobs) / (capacity * makespan) if makespan > 0 else 1.0,
        makespan=makespan,
    )


def lower_bound(jobs: Sequence[TraceJob], capacity: int) -> Bound:
    """The lower bound on makespan (see the module's docstring) for jobs in submission order."""
    first = min(j.submit for j in jobs)
    total = work(jobs)
    best, binding = total / capacity, "total work / capacity"
    later = total
    for k, job in enumerate(jobs):  # work submitted at or after job k's submission must run after it
        if k == 0 or job.submit != jobs[k - 1].submit:
            bound = job.submit - first + later / capacity
            if bound > best:
                best, binding = bound, f"t={job.submit - first:g} s + work submitted from then / capacity"
        later -= job.width * job.run
    for job in jobs:
        bound = job.submit + job.run - first
        if bound > best:
            best, binding = bound, f"job {job.number}'s submission + run time"
    return Bound(best, binding, total / capacity, total / (capacity * best) if best > 0 else 1.0)


def fetch_sample_traces(names: Sequence[str] = SAMPLE_TRACES) -> dict[str, str]:
    """The sample traces' text, from evalys's wheel in an ephemeral uv environment (never the project's)."""
    uv = os.environ.get("UV") or shutil.which("uv")
    if not uv:
        raise TraceError("uv not found: pass --trace FILE.swf")
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    command = [uv, "run", "--no-project", "--isolated", "--with", EVALYS, "python", "-c", _LOCATE, *names]
    with tempfile.TemporaryDirectory(prefix="schedule-quality-") as empty:  # so `tests` is evalys's, not ours
        try:
            done = subprocess.run(command, cwd=empty, env=env, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TraceError(f"could not run uv for {EVALYS}: {exc}") from None
        if done.returncode != 0:
            raise TraceError(f"uv could not provide {EVALYS} (offline? pass --trace): {done.stderr.strip()[-400:]}")
        paths: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
        missing = [n for n in names if n not in paths]
        if missing:
            raise TraceError(f"{EVALYS} holds no {', '.join(missing)}")
        return {n: Path(paths[n]).read_text() for n in names}


def evaluate(trace: Trace, nodes: int | None) -> dict[str, Any]:
    """Both policies and the lower bound on one trace; the result document."""
    capacity, source = machine_size(trace, nodes)
    jobs = [j for j in trace.jobs if j.width <= capacity and j.width <= MAX_NODES]
    if not jobs:
        raise TraceError(f"{trace.name}: no job fits {capacity} processors")
    figures: dict[str, Any] = {}
    for key, (_, policy) in POLICIES.items():
        started = time.perf_counter()
        starts = simulate(jobs, capacity, policy)
        figures[key] = {**asdict(quality(jobs, starts, capacity)), "seconds": time.perf_counter() - started}
    ratio = figures["default"]["mean_bsld"] / figures["fifo"]["mean_bsld"]
    return {
        "trace": trace.name,
        "processors": capacity,
        "processors_from": source,
        "jobs": len(jobs),
        "skipped_unknown": trace.unknown,
        "skipped_too_wide": len(trace.jobs) - len(jobs),
        "offered_load": work(jobs) / (capacity * max(jobs[-1].submit - jobs[0].submit, 1e-9)),
        "policies": figures,
        "lower_bound": asdict(lower_bound(jobs, capacity)),
        "bsld_ratio": ratio,
        "passed": ratio <= TARGET_RATIO,
    }


def render(doc: Mapping[str, Any]) -> str:
    """The table and verdict for one trace."""
    lb = doc["lower_bound"]
    lines = [
        f"Trace {doc['trace']}: {doc['jobs']} jobs on {doc['processors']} processors ({doc['processors_from']}); "
        f"skipped {doc['skipped_unknown']} unknown, {doc['skipped_too_wide']} too wide; "
        f"offered load {doc['offered_load']:.2f} over the submission span",
        f"  {'policy':<32} {'jobs':>5} {'mean wait s':>12} {'p95 wait s':>11} {'mean BSLD':>10} "
        f"{'util':>6} {'makespan s':>11} {'sim s':>6}",
    ]
    for key, (label, _) in POLICIES.items():
        f = doc["policies"][key]
        lines.append(
            f"  {label:<32} {f['jobs']:>5} {f['mean_wait']:>12,.1f} {f['p95_wait']:>11,.1f} "
            f"{f['mean_bsld']:>10.2f} {f['utilisation']:>6.3f} {f['makespan']:>11,.1f} "
            f"{f['seconds']:>6.2f}"
        )
    lines.append(
        f"  {'lower bound':<32} {doc['jobs']:>5} {0:>12.1f} {0:>11.1f} {1:>10.2f} "
        f"{lb['utilisation']:>6.3f} {lb['makespan']:>11,.1f}"
    )
    lines.append(f"  makespan bound: {lb['binding']} (total work / capacity = {lb['work_over_capacity']:,.1f} s)")
    lines.append(
        f"{'PASS' if doc['passed'] else 'FAIL'}  mean_bounded_slowdown_at_most_half_of_fifo  "
        f"(ratio {doc['bsld_ratio']:.3f}, target <= {TARGET_RATIO})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", type=Path, action="append", help="an SWF file (repeatable; default: samples)")
    parser.add_argument("--nodes", type=int, help="processors of the machine (default: header, else widest job)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    if args.nodes is not None and args.nodes < 1:
        parser.error("--nodes must be at least 1")
    try:
        texts = {str(p): p.read_text() for p in args.trace} if args.trace else fetch_sample_traces()
        docs = [evaluate(parse_swf(text, name), args.nodes) for name, text in texts.items()]
    except (OSError, ValueError, TraceError) as exc:
        print(f"schedule_quality: {exc}", file=sys.stderr)
        return EXIT_ERROR
    passed = all(d["passed"] for d in docs)
    if args.json:
        print(
            json.dumps(
                {
                    "benchmark": "schedule_quality",
                    "tau_seconds": TAU,
                    "target_ratio": TARGET_RATIO,
                    "traces": docs,
                    "passed": passed,
                },
                indent=2,
            )
        )
    else:
        print("\n\n".join(render(d) for d in docs))
    return EXIT_MISSED if args.strict and not passed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
