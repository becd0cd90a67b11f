"""``/v1/tiers``: per tier, the capacity Ray offers, what is free, and the jobs running and queued.

Beside Ray's live figures each tier shows the census's count of active nodes in that tier, so a planner sees
both what exists (census) and what the scheduler can use now (Ray).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import func, select

from api.db.tables import rollups
from api.deps import Conn, State, TierReader
from api.errors import AUTHENTICATED, problem_responses
from api.jobs import store as job_store
from api.schemas.tiers import TiersPublic
from census_agent.models import Tier
from scheduler.models import JobState
from scheduler.queue import net_of_running

router = APIRouter(prefix="/v1/tiers", tags=["jobs"], responses=problem_responses(*AUTHENTICATED))


@router.get("", summary="Capacity, free resources, running and queued jobs per tier", response_model=TiersPublic)
def list_tiers(_: TierReader, conn: Conn, state: State) -> dict[str, Any]:
    """Every tier, served by the scheduler or not."""
    census = dict(
        conn.execute(
            select(rollups.c.tier, func.sum(rollups.c.nodes))
            .where(rollups.c.status == "active")
            .group_by(rollups.c.tier)
        ).all()
    )
    jobs = job_store.counts(conn)
    scheduling = state.scheduling
    views = scheduling.nodes() if scheduling is not None else None
    step = scheduling.last_step if scheduling is not None else None
    holding = []
    if scheduling is not None:
        holding = [j.holding() for j in scheduling.dispatcher.store.active()]
    free = net_of_running(views or [], holding)
    tiers = []
    for tier in Tier:
        mine = [n for n in free if n.tier is tier]
        served = scheduling is not None and tier in scheduling.tiers
        tiers.append(
            {
                "tier": tier.value,
                "served": served,
                "reachable": served and step is not None and tier not in step.unreachable,
                "census_active_nodes": int(census.get(tier.value) or 0),
                "nodes": len(mine),
                "capacity": {
                    "cpus": sum(n.cpus for n in mine),
                    "gpus": sum(n.gpus for n in mine),
                    "memory_bytes": sum(n.memory_bytes for n in mine),
                },
                "free": {
                    "cpus": sum(n.free_cpus for n in mine),
                    "gpus": sum(n.free_gpus for n in mine),
                    "memory_bytes": sum(n.free_memory_bytes for n in mine),
                },
                "running": jobs.get((tier.value, JobState.RUNNING.value), 0),
                "dispatching": jobs.get((tier.value, JobState.DISPATCHING.value), 0),
                "queued": jobs.get((tier.value, JobState.QUEUED.value), 0),
            }
        )
    unplaced = jobs.get((None, JobState.QUEUED.value), 0)
    return {"tiers": tiers, "queued_not_yet_planned": unplaced}
