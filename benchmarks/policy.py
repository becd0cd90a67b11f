"""Queue + routing decisions per second: 10,000 waiting jobs over 1,000 nodes, beside a plain FIFO pass.

    uv run python -m benchmarks.policy [--jobs 10000] [--nodes 1000] [--repeat 5] [--json]

Method: a seeded random cluster (--nodes nodes: 40% general, 20% ai with 8 GPUs, 25% hpc, 15% edge over the
Guangzhou districts) with half its nodes busy, and --jobs waiting jobs of all five classes, three priorities,
eight organisations, gangs of up to 8 hpc nodes and time limits of minutes to hours. One decision is one job
answered (start, or wait with a reason and place in line). Timed: `scheduler.queue.plan` with the default
policy (priorities, fair share, quotas for two organisations, EASY backfill), the same with backfill off,
and the baseline: a bare FIFO first-fit loop over the same jobs and nodes (no priorities, fairness, quotas,
reasons), the least work any queue could do. Best of --repeat passes each. Target: >= 20,000 decisions/s.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable

from census_agent.models import Tier
from scheduler.models import JobSpec, NodeView, QueuedJob, Resources, RunningJob
from scheduler.policy import Policy, Quota
from scheduler.queue import net_of_running, plan

GiB = 2**30
NOW = 1_800_000_000.0
DISTRICTS = ["440103", "440104", "440105", "440106", "440111", "440112", "440113", "440114", "440115"]
TARGET = 20_000


def cluster(n: int, rng: random.Random) -> tuple[list[NodeView], list[RunningJob]]:
    """Nodes by tier, and running jobs filling about half of them."""
    nodes = []
    for i in range(n):
        roll = i / n
        if roll < 0.40:
            nodes.append(NodeView(f"gen-{i}", Tier.GENERAL, 32, 0, 128 * GiB, 32, 0, 128 * GiB))
        elif roll < 0.60:
            nodes.append(NodeView(f"ai-{i}", Tier.AI, 64, 8, 1024 * GiB, 64, 8, 1024 * GiB))
        elif roll < 0.85:
            nodes.append(NodeView(f"hpc-{i}", Tier.HPC, 64, 0, 256 * GiB, 64, 0, 256 * GiB))
        else:
            region = rng.choice(DISTRICTS)
            nodes.append(NodeView(f"edge-{i}", Tier.EDGE, 8, 0, 16 * GiB, 8, 0, 16 * GiB, region))
    running = []
    for k, node in enumerate(nodes):
        if rng.random() < 0.5:
            held = Resources(cpus=node.cpus, gpus=int(node.gpus), memory_bytes=int(node.memory_bytes / 2))
            started = NOW - rng.uniform(0, 3600)
            running.append(
                RunningJob(
                    f"run-{k}",
                    f"org-{k % 8}",
                    node.tier,
                    (node.node_id,),
                    held,
                    started,
                    rng.choice([3600, 7200, 14400]),
                )
            )
    return net_of_running(nodes, running), running


def jobs(n: int, rng: random.Random) -> list[QueuedJob]:
    """A mixed queue."""
    out = []
    for k in range(n):
        klass = rng.choice(["general", "general", "in-memory", "hpc", "ai", "edge"])
        resources: dict[str, float | int] = {"cpus": rng.choice([1, 2, 4, 8, 16])}
        if klass == "ai":
            resources["gpus"] = rng.choice([1, 2, 4, 8])
        if klass == "in-memory":
            resources["memory_bytes"] = rng.choice([8, 32, 64, 200]) * GiB
        if klass == "hpc":
            resources["nodes"] = rng.choice([1, 2, 4, 8])
            resources["cpus"] = 64
        spec = JobSpec.model_validate(
            {
                "name": f"job-{k}",
                "class": klass,
                "entrypoint": "true",
                "resources": resources,
                "priority": rng.choice([0, 0, 0, 5, 10]),
                "organisation": f"org-{rng.randrange(8)}",
                "region": rng.choice(DISTRICTS) if klass == "edge" else None,
                "time_limit_seconds": rng.choice([300, 1800, 3600, 4 * 3600]),
            }
        )
        out.append(QueuedJob(f"job-{k}", spec, NOW - n + k))
    return out


def fifo_first_fit(queue: list[QueuedJob], nodes: list[NodeView]) -> int:
    """The baseline: in submission order, the first node of the class's tier with room, else wait."""
    home = {"general": Tier.GENERAL, "in-memory": Tier.GENERAL, "hpc": Tier.HPC, "ai": Tier.AI, "edge": Tier.EDGE}
    free = {n.node_id: [n.free_cpus, n.free_gpus, n.free_memory_bytes] for n in nodes}
    by_tier: dict[Tier, list[str]] = {t: [] for t in Tier}
    for n in nodes:
        by_tier[n.tier].append(n.node_id)
    started = 0
    for job in sorted(queue, key=lambda q: q.submitted_at):
        r = job.spec.resources
        chosen = []
        for node_id in by_tier[home[job.spec.workload_class]]:
            f = free[node_id]
            if f[0] >= r.cpus and f[1] >= r.gpus and f[2] >= r.memory_bytes:
                chosen.append(node_id)
                if len(chosen) == r.nodes:
                    break
        if len(chosen) == r.nodes:
            started += 1
            for node_id in chosen:
                f = free[node_id]
                f[0] -= r.cpus
                f[1] -= r.gpus
                f[2] -= r.memory_bytes
    return started


def best_of(repeat: int, run: Callable[[], int]) -> tuple[float, int]:
    """Best wall time of `repeat` runs, and what the run returned."""
    best, result = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    rng = random.Random(20261128)
    nodes, running = cluster(args.nodes, rng)
    queue = jobs(args.jobs, rng)
    quotas = {("org-0", Tier.AI): Quota(gpus=64), ("org-1", Tier.HPC): Quota(cpus=1024, jobs=20)}
    full = Policy(quotas=quotas)
    strict = Policy(quotas=quotas, backfill=False)
    figures = {}
    for name, run in [
        ("policy (fair share, quotas, backfill)", lambda: len(plan(queue, running, nodes, full, NOW).starts)),
        ("policy, backfill off", lambda: len(plan(queue, running, nodes, strict, NOW).starts)),
        ("baseline: bare FIFO first-fit", lambda: fifo_first_fit(queue, nodes)),
    ]:
        seconds, started = best_of(args.repeat, run)
        figures[name] = {"seconds": seconds, "decisions_per_second": len(queue) / seconds, "started": started}
    if args.json:
        print(json.dumps({"jobs": len(queue), "nodes": len(nodes), "running": len(running), "figures": figures}))
        return
    print(f"Policy benchmark: {len(queue):,} waiting jobs, {len(nodes):,} nodes ({len(running):,} running jobs)")
    for name, f in figures.items():
        print(
            f"  {name:<40} {f['decisions_per_second']:>10,.0f} decisions/s  "
            f"({f['seconds'] * 1000:.1f} ms per pass, {f['started']:,} started)"
        )
    rate = figures["policy (fair share, quotas, backfill)"]["decisions_per_second"]
    print(f"{'PASS' if rate >= TARGET else 'FAIL'}  decisions_per_second_at_least_{TARGET}")


if __name__ == "__main__":
    main()
