"""``/v1/census``: the census document (totals, composition by tier, regions) and its history.

The documents are built by `api.census.query`; these models describe them key by key. The totals' fields are
repeated after the fields of a tier, a region or a point (rather than inherited, which would put them first)
because that is the answers' key order.

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from pydantic import Field

from api.schemas.common import PeakFlops, Public, Timestamp, Totals
from census_agent.models import Precision, Tier


class Headline(Public):
    """The headline total: each tier at its convention's precision, added up."""

    flops: float
    convention: dict[Tier, Precision]
    note: str
    label_en: str = Field(description="what the total is, in English: each tier's peak in its own precision, added up")
    label_zh: str = Field(description="the same in Chinese (算力总规模)")
    convention_text: str = Field(
        description="the convention on one line, e.g. 'general fp32 + ai fp16 + hpc fp64 + edge fp32'"
    )
    ai_share: float | None = Field(
        description="智能算力占比: the ai tier's headline over the total; null when the total is 0"
    )
    ai_share_target: float = Field(description="the national target for the AI share (SUANLI_AI_SHARE_TARGET)")
    ai_share_target_source: str = Field(description="where the target comes from")


class TierCensus(Public):
    """One tier's share of the census."""

    tier: Tier
    headline_precision: Precision
    headline_flops: float
    share_of_headline: float | None = Field(description="null when the headline total is 0")
    share_by_precision: dict[Precision, float | None]
    nodes: int
    physical_cores: int
    threads: int
    accelerators: int
    memory_bytes: int
    peak_flops: PeakFlops


class RegionCensus(Public):
    """One region (with every region below it) and its per-capita figures."""

    code: str
    parent_code: str | None
    level: str
    name_zh: str
    name_en: str
    population: int | None
    headline_flops: float
    per_capita_headline_flops: float | None = Field(description="null where the population is unknown")
    per_capita_flops: dict[Precision, float | None]
    by_tier: dict[Tier, Totals]
    nodes: int
    physical_cores: int
    threads: int
    accelerators: int
    memory_bytes: int
    peak_flops: PeakFlops


class CensusPublic(Public):
    """``GET /v1/census``: the headline, totals, composition by tier and regions with per-capita figures."""

    as_of: Timestamp
    statuses: list[str] = Field(description="the node statuses counted")
    headline: Headline
    totals: Totals
    by_tier: list[TierCensus]
    by_region: list[RegionCensus]
    unassigned_region: Totals = Field(description="nodes without a region label")


class HistoryPoint(Public):
    """The census at one snapshot."""

    taken_at: Timestamp
    headline_flops: float
    by_tier_headline_flops: dict[Tier, float]
    nodes: int
    physical_cores: int
    threads: int
    accelerators: int
    memory_bytes: int
    peak_flops: PeakFlops


class Growth(Public):
    """From the first snapshot to the last."""

    since: Timestamp = Field(alias="from")
    to: Timestamp
    headline_ratio: float
    nodes_added: int


class HistoryPublic(Public):
    """``GET /v1/census/history``: one point per snapshot, and the growth from first to last."""

    region: str | None
    statuses: list[str]
    points: list[HistoryPoint]
    growth: Growth | None = Field(description="null with fewer than two points or a first headline of 0")
