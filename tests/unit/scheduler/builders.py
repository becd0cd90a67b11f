"""Builders for the scheduler's pure tests: nodes, jobs and running jobs with terse defaults."""

from __future__ import annotations

from typing import Any

from census_agent.models import Tier
from scheduler.models import JobSpec, NodeView, QueuedJob, Resources, RunningJob

GiB = 2**30
NOW = 1_800_000_000.0


def node(
    node_id: str, tier: Tier, *, cpus: float = 8, gpus: float = 0, memory_gib: float = 32, region: str | None = None
) -> NodeView:
    """An idle node with the given totals (`scheduler.queue.net_of_running` takes running jobs off)."""
    memory = memory_gib * GiB
    return NodeView(node_id, tier, cpus, gpus, memory, cpus, gpus, memory, region)


def spec(
    klass: str = "general",
    *,
    cpus: float = 1,
    gpus: int = 0,
    memory_gib: float = 0,
    nodes: int = 1,
    priority: int = 0,
    org: str = "org-a",
    region: str | None = None,
    limit: int = 3600,
    **extra: Any,
) -> JobSpec:
    """A job specification."""
    return JobSpec.model_validate(
        {
            "name": "job",
            "class": klass,
            "entrypoint": "true",
            "priority": priority,
            "organisation": org,
            "region": region,
            "time_limit_seconds": limit,
            "resources": {"cpus": cpus, "gpus": gpus, "memory_bytes": int(memory_gib * GiB), "nodes": nodes},
            **extra,
        }
    )


def queued(job_id: str, s: JobSpec, submitted_at: float = NOW - 100) -> QueuedJob:
    """A waiting job."""
    return QueuedJob(job_id, s, submitted_at)


def running(
    job_id: str,
    tier: Tier,
    node_ids: tuple[str, ...],
    *,
    cpus: float = 1,
    gpus: int = 0,
    org: str = "org-a",
    started_at: float = NOW - 60,
    limit: int = 3600,
) -> RunningJob:
    """A job holding `cpus`/`gpus` on each of `node_ids`."""
    return RunningJob(
        job_id, org, tier, node_ids, Resources(cpus=cpus, gpus=gpus, nodes=len(node_ids)), started_at, limit
    )
