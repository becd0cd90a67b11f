"""Reading what Ray says is free: the cost of one read, and how soon Ray's figures show a job's reservation.

    uv run python -m benchmarks.ray_capacity [--reads 50] [--json]

Method: a local Ray cluster (a 0-CPU head and one 1-CPU edge raylet) on this machine.

1. Cost. --reads times each: the GCS's ``GetClusterResourceState`` as the dispatcher makes it once per pass
   (`scheduler.ray_backend.cluster_resource_state`, a fresh channel and the token each time) and, for comparison,
   the state API's node listing through the dashboard that each pass already made (`list_node_states`).
   Reported: median and max in ms.
2. Lag. A job asking for the raylet's one CPU is submitted straight to Ray; Ray's figures (read every 50 ms) and
   its job status are polled until the CPU shows as held and the job as RUNNING. Reported: seconds after the
   submit call for each. The dispatcher counts a job as held by Ray only once it has been seen RUNNING in an
   earlier step (docs/scheduler.md), so the first must come well before the second.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ray.job_submission import JobStatus, JobSubmissionClient

from census_agent.labels import TIER_LABEL
from scheduler.local_cluster import LocalRayCluster
from scheduler.ray_backend import (
    NODE_ID_LABEL,
    RayJobsBackend,
    auth_headers,
    cluster_resource_state,
    list_node_states,
)
from scheduler.slicing import MIB, RayletSpec


def timed_ms(call: Any, times: int) -> dict[str, float]:  # noqa: ANN401 - any zero-argument callable
    """Median and max of `times` calls of `call`, in ms."""
    spent = []
    for _ in range(times):
        began = time.perf_counter()
        call()
        spent.append((time.perf_counter() - began) * 1000)
    return {"median_ms": round(statistics.median(spent), 1), "max_ms": round(max(spent), 1)}


def lag(cluster: LocalRayCluster, timeout: float = 180) -> dict[str, float | None]:
    """Seconds from submitting a 1-CPU job straight to Ray until Ray's figures show the CPU held, and until its
    status is RUNNING."""
    backend = RayJobsBackend({"edge": cluster.target({TIER_LABEL: "edge"})})
    (node,) = backend.nodes("edge")
    client = JobSubmissionClient(cluster.dashboard_url, headers=auth_headers(cluster.token))
    submission = f"capacity-lag-{time.time_ns()}"
    began = time.monotonic()
    client.submit_job(
        entrypoint="sleep 60",
        submission_id=submission,
        entrypoint_num_cpus=1,
        entrypoint_label_selector={TIER_LABEL: "edge", NODE_ID_LABEL: node.node_id},
    )
    held = running = None
    while time.monotonic() - began < timeout and (held is None or running is None):
        backend.begin_pass()
        if held is None and backend.available("edge")[node.node_id][0] == 0:
            held = round(time.monotonic() - began, 2)
        if running is None and client.get_job_status(submission) == JobStatus.RUNNING:
            running = round(time.monotonic() - began, 2)
        time.sleep(0.05)
    client.stop_job(submission)
    return {"held_in_rays_figures_s": held, "running_s": running}


def main() -> None:
    """Start the cluster, measure, print, stop."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ray_capacity", description=__doc__)
    parser.add_argument("--reads", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    spec = RayletSpec("edge", cpus=1, memory_bytes=256 * MIB, object_store_bytes=80 * MIB)
    with LocalRayCluster(Path(tempfile.mkdtemp(prefix="suanli-capacity-")), [spec]) as cluster:
        result = {
            "gcs_read": timed_ms(lambda: cluster_resource_state(cluster.address, cluster.token, 10), args.reads),
            "state_api_list_nodes": timed_ms(
                lambda: list_node_states(cluster.dashboard_url, cluster.token, 10), args.reads
            ),
            "lag": lag(cluster),
        }
    if args.json:
        print(json.dumps(result))
        return
    for name, figures in result.items():
        print(f"{name}: {figures}")


if __name__ == "__main__":
    main()
