"""``/v1/tiers``: per tier, the census's count, the capacity Ray offers, what is free, and the jobs.

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from pydantic import Field

from api.schemas.common import Number, Public
from census_agent.models import Tier


class TierResources(Public):
    """CPUs, GPUs and memory of a tier's nodes on Ray."""

    cpus: Number
    gpus: Number
    memory_bytes: Number


class TierStatus(Public):
    """One tier: whether the scheduler serves and reaches it, the census's count, Ray's capacity and the jobs."""

    tier: Tier
    served: bool
    reachable: bool
    census_active_nodes: int
    nodes: int = Field(description="nodes Ray offers in this tier now")
    capacity: TierResources
    free: TierResources = Field(description="capacity less what running jobs hold")
    running: int
    dispatching: int
    queued: int


class TiersPublic(Public):
    """``GET /v1/tiers``: every tier, served by the scheduler or not."""

    tiers: list[TierStatus]
    queued_not_yet_planned: int = Field(description="queued jobs the dispatcher has not yet given a tier")
