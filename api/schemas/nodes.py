"""``/v1/nodes``: node records (a page of summaries, one node in full) and what a discovery listing recorded.

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.common import Public, Timestamp
from census_agent.models import NodeInventory, NodePeaks, Tier

Source = Literal["agent", "kubernetes"]
Status = Literal["active", "stale", "offline"]


class NodeSummary(Public):
    """A node as listed: identity, tier, liveness and its server-computed figures."""

    node_id: str
    source: Source = Field(description="how the node is known: its own agent, or a Kubernetes listing")
    hostname: str
    region_code: str | None
    organisation: str | None
    site: str | None
    tier: Tier
    tier_reason: str
    status: Status
    first_seen_at: Timestamp
    last_report_at: Timestamp
    physical_cores: int
    threads: int
    accelerators: int
    memory_bytes: int
    fp64_flops: float
    fp32_flops: float
    fp16_flops: float
    int8_ops: float


class NodesPage(Public):
    """``GET /v1/nodes``: nodes ordered by id; pass `next_after` back as ``after`` for the next page."""

    items: list[NodeSummary]
    next_after: str | None = Field(description="null on the last page")


class NoAgentPeaks(Public):
    """``{}``: a node known only from a Kubernetes listing has no agent of its own, hence no agent figures."""


class ReportRecord(Public):
    """One of a node's recent reports."""

    report_id: str
    sequence: int
    generated_at: Timestamp
    received_at: Timestamp
    applied: bool = Field(description="whether it became the node's state (false: older than the state)")
    tier: Tier
    fp64_flops: float
    fp32_flops: float
    fp16_flops: float


class NodePublic(NodeSummary):
    """``GET /v1/nodes/{node_id}``: the node, its inventory, the server's and the agent's peaks, its last 20
    reports (newest first)."""

    inventory: NodeInventory
    peaks: NodePeaks = Field(description="recomputed by the server: the figures the census counts")
    agent_peaks: NodePeaks | NoAgentPeaks = Field(description="as the agent reported them, for comparison only")
    recent_reports: list[ReportRecord]


class DiscoveryRecorded(Public):
    """``POST /v1/nodes/discovered``: how many nodes were added, changed, refreshed or left to their agent."""

    added: int
    changed: int
    refreshed: int
    has_agent: int
    added_ids: list[str]
    changed_ids: list[str]
    has_agent_ids: list[str]
