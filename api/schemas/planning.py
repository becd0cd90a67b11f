"""Planners' questions: what a plan of new machines would make of the census (``POST /v1/census/plan``, its body
and answer) and when the census reaches a target (``GET /v1/census/projection``).

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.schemas.census import CensusPeaks
from api.schemas.common import Public, Timestamp
from census_agent.models import Precision, Tier

MAX_COUNT = 10**9  # one kind's count; the plan's total is bounded by SUANLI_PLAN_MAX_MACHINES


class PlanMachine(BaseModel):
    """A kind of planned machine: how many, where, and what one of them is."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=MAX_COUNT, description="how many machines of this kind (at least 1)")
    region: str = Field(
        min_length=1, max_length=12, description="the region code they go to (a district; see GET /v1/regions)"
    )
    inventory: dict[str, Any] = Field(
        description="one machine, as `census-agent estimate` reads it: a report document or a bare inventory "
        "(host optional); the document itself, never a path"
    )
    name: str | None = Field(default=None, max_length=128, description="a label for the planner's own reading")

    @field_validator("inventory", mode="before")
    @classmethod
    def _data_not_a_path(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError(
                "inventories are data: send the estimate document itself (a JSON object), not a path or file name "
                "(`suanli census --plan` reads files named by `inventory_file` on the planner's machine)"
            )
        return value


class PlanRequest(BaseModel):
    """``POST /v1/census/plan``: the planned machines (at most SUANLI_PLAN_MAX_KINDS kinds)."""

    model_config = ConfigDict(extra="forbid")

    machines: list[PlanMachine] = Field(min_length=1, max_length=10_000)


class PricedMachine(Public):
    """One planned machine kind as the compute model priced it."""

    name: str | None
    count: int
    region: str
    tier: Tier
    tier_reason: str
    headline_precision: Precision
    per_machine_peak_flops: dict[Precision, float]
    per_machine_headline_flops: float = Field(description="one machine's peak in its tier's headline precision")
    added_headline_flops: float = Field(description="per_machine_headline_flops x count")


class PlanAdded(Public):
    """What the whole plan adds."""

    machines: int
    kinds: int
    physical_cores: int
    accelerators: int
    headline_flops: float


class RegionFigures(Public):
    """A region's headline figures at one side of the plan."""

    nodes: int
    headline_flops: float
    per_capita_headline_flops: float | None = Field(description="null where the population is unknown")
    ai_share: float | None = Field(description="智能算力占比; null when the region's headline is 0")
    by_tier_headline_flops: dict[Tier, float]


class RegionChange(Public):
    """A region the plan changes, before and after."""

    code: str
    parent_code: str | None
    level: str
    name_zh: str
    name_en: str
    population: int | None
    before: RegionFigures
    after: RegionFigures


class PlanPublic(Public):
    """``POST /v1/census/plan``: the census before and after the planned machines; nothing is stored."""

    stored: Literal[False] = Field(description="always false: a plan is priced, never stored")
    machines: list[PricedMachine]
    added: PlanAdded
    changes: list[RegionChange] = Field(description="every region (under ?region=) whose figures the plan changes")
    before: CensusPeaks
    after: CensusPeaks


# --- projection --------------------------------------------------------------------------------------------


class Fit(Public):
    """A growth fit on the snapshots."""

    points: int = Field(description="snapshots the fit used")
    r_squared: float | None = Field(description="coefficient of determination of the fit in its own space")
    growth_per_year: float | None = Field(
        description="fractional growth per year (0.3 = +30 %/year); linear: at the last point, null if that is <= 0; "
        "null where the factor overflows a float (a history of seconds)"
    )
    flops_per_year: float = Field(description="FLOPS added per year at the last snapshot, by the fit")
    doubling_days: float | None = Field(description="exponential fits only: days to double")
    fitted_last_flops: float = Field(description="the fit's value at the last snapshot")


class Series(Public):
    """One series' fit, or why there is none."""

    last_flops: float | None = Field(description="the series' value at the last snapshot")
    fit: Fit | None
    reason: str | None = Field(description="why there is no fit (too few points, no growth); null when there is one")


class TargetDate(Public):
    """When a target is reached by the fit of the headline total."""

    kind: Literal["total_flops", "per_capita_flops"]
    target: float
    total_flops_equivalent: float | None = Field(description="the target as a headline total (per capita x population)")
    already_reached: bool
    reached_at: Timestamp | None = Field(description="when the fit reaches the target; null with a reason")
    reason: str | None


class ProjectionPublic(Public):
    """``GET /v1/census/projection``: growth per tier and the headline total fitted on the snapshots, and when the
    targets are reached."""

    region: str | None
    statuses: list[str]
    population: int | None
    method: Literal["exponential", "linear"]
    description: str
    min_points: int
    since: Timestamp | None = Field(alias="from", description="the first snapshot in the window")
    to: Timestamp | None = Field(description="the last snapshot in the window")
    total: Series
    by_tier: dict[Tier, Series]
    targets: list[TargetDate]
