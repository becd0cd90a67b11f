"""Assembling a `Report` from an inventory: the compute model applied, stamped with identity and order.

Pure: the caller supplies the report id, sequence number and clock reading, so the same inputs always give
the same document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from census_agent import __version__
from census_agent.catalogue import CatalogueEntry, load_default_catalogue
from census_agent.compute import node_peaks
from census_agent.models import Measurement, NodeInventory, NodePeaks, Report, TierDecision, Usage
from census_agent.tiers import TierRules, classify, load_default_rules


@dataclass(frozen=True, slots=True)
class ComputeModel:
    """The catalogue and tier rules a node is assessed with."""

    catalogue: tuple[CatalogueEntry, ...] = field(default_factory=load_default_catalogue)
    rules: TierRules = field(default_factory=load_default_rules)

    def assess(self, inventory: NodeInventory) -> tuple[NodePeaks, TierDecision]:
        """Peaks per precision and the census tier of a node."""
        peaks = node_peaks(inventory, self.catalogue)
        return peaks, classify(inventory, peaks, self.rules)


def build_report(
    inventory: NodeInventory,
    model: ComputeModel,
    *,
    report_id: UUID,
    sequence: int,
    generated_at: datetime,
    measurements: list[Measurement] | None = None,
    usage: Usage | None = None,
) -> Report:
    """The versioned report document for one inventory (with what the node consumed, when it was sampled)."""
    peaks, tier = model.assess(inventory)
    return Report(
        report_id=report_id,
        sequence=sequence,
        generated_at=generated_at,
        agent_version=__version__,
        inventory=inventory,
        peaks=peaks,
        tier=tier,
        measurements=measurements or [],
        usage=usage,
    )


PLACEHOLDER_HOST = {
    "node_id": "estimate",
    "node_id_source": "override",
    "hostname": "estimate",
    "os": "unknown",
    "kernel": "unknown",
}


def inventory_from_document(text: str) -> NodeInventory:
    """An inventory from JSON text holding a report document or a bare inventory object.

    A missing ``host`` section gets a placeholder, so a planner can describe a machine that does not exist yet.
    Raises ``ValueError`` (pydantic's ``ValidationError`` included) naming what is wrong.
    """
    return inventory_from_object(json.loads(text))


def inventory_from_object(data: object) -> NodeInventory:
    """`inventory_from_document` for JSON already parsed (a planned machine in a what-if plan); `data` is not
    changed. Raises ``ValueError`` (pydantic's ``ValidationError`` included) naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("expected a JSON object (a report document or its `inventory`)")
    inventory = data.get("inventory", data)
    if not isinstance(inventory, dict):
        raise ValueError("`inventory` must be a JSON object")
    return NodeInventory.model_validate({"host": PLACEHOLDER_HOST, **inventory})
