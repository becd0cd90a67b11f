"""``POST /v1/reports``: what the service answers an agent's report.

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.common import PeakFlops, Public
from census_agent.models import Tier


class ReportAccepted(Public):
    """The report's outcome and the node's tier and peaks as the server computed them."""

    report_id: str
    node_id: str
    outcome: Literal["stored", "duplicate", "stored-as-history"] = Field(
        description="stored; duplicate (a replay of a report already stored); stored-as-history (older than "
        "the node's state, kept in its history only)"
    )
    tier: Tier
    peak_flops: PeakFlops
