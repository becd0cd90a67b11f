"""Tier classification (general 通用, AI 智算, HPC 超算, edge 边缘) by documented rules.

Pure.  The thresholds live in ``seeds/tier_rules.toml`` (the rules and their order are described there and in
docs/census.md); an operator's ``tier`` label always wins.  Every decision carries the reason a person can read.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass

import seeds
from census_agent.compute import accelerator_flops, unpriced_accelerators
from census_agent.models import NodeInventory, NodePeaks, Precision, Tier, TierDecision, fit_text

GIB = 2**30


@dataclass(frozen=True, slots=True)
class TierRules:
    """Thresholds of the classification rules."""

    ai_min_accelerator_fp16_flops: float
    hpc_interconnect_kinds: frozenset[str]
    edge_max_physical_cores: int
    edge_max_memory_bytes: int
    # An accelerator that cannot be priced adds no FLOPS but is still seen: this many of them make a node AI.
    ai_min_unpriced_accelerators: int = 4


def parse_tier_rules(text: str) -> TierRules:
    """Parse tier rules from TOML text; raises ``ValueError`` (or ``KeyError``) on a missing or bad field."""
    raw = tomllib.loads(text)
    kinds = raw["hpc_interconnect_kinds"]
    if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
        raise ValueError('hpc_interconnect_kinds must be a list of strings, e.g. ["infiniband"]')
    return TierRules(
        ai_min_accelerator_fp16_flops=float(raw["ai_min_accelerator_fp16_flops"]),
        hpc_interconnect_kinds=frozenset(kinds),
        edge_max_physical_cores=int(raw["edge_max_physical_cores"]),
        edge_max_memory_bytes=int(raw["edge_max_memory_bytes"]),
        ai_min_unpriced_accelerators=int(raw["ai_min_unpriced_accelerators"]),
    )


def load_default_rules() -> TierRules:
    """The rules shipped in ``seeds/tier_rules.toml``."""
    return parse_tier_rules(seeds.read_text("tier_rules.toml"))


def classify(inventory: NodeInventory, peaks: NodePeaks, rules: TierRules) -> TierDecision:
    """The node's census tier and the rule that chose it."""
    label = inventory.labels.tier
    if label is not None:
        return TierDecision(tier=label, reason=f"operator label tier={label.value}", overridden=True)
    fp16 = accelerator_flops(peaks, Precision.FP16)
    if inventory.accelerators and fp16 >= rules.ai_min_accelerator_fp16_flops:
        models = sorted({c.model for c in peaks.components if c.component != "cpu"})
        return TierDecision(
            tier=Tier.AI,
            reason=fit_text(
                f"{len(inventory.accelerators)} accelerator(s) ({', '.join(models)}) with "
                f"{fp16 / 1e12:,.1f} TFLOPS dense fp16 >= {rules.ai_min_accelerator_fp16_flops / 1e12:g} TFLOPS"
            ),
        )
    unpriced = unpriced_accelerators(peaks)
    if len(unpriced) >= rules.ai_min_unpriced_accelerators:
        models = sorted({c.model for c in unpriced})
        return TierDecision(
            tier=Tier.AI,
            reason=fit_text(
                f"{len(unpriced)} unpriced accelerator(s) ({', '.join(models)}) >= "
                f"{rules.ai_min_unpriced_accelerators}: counted by number, their FLOPS unknown"
            ),
        )
    fabric = [i for i in inventory.interconnects if i.kind in rules.hpc_interconnect_kinds]
    if fabric:
        names = ", ".join(f"{i.name} ({i.kind})" for i in fabric)
        return TierDecision(tier=Tier.HPC, reason=fit_text(f"high-performance interconnect: {names}"))
    cores, memory = inventory.cpu.physical_cores, inventory.memory.total_bytes
    if cores <= rules.edge_max_physical_cores and memory <= rules.edge_max_memory_bytes:
        return TierDecision(
            tier=Tier.EDGE,
            reason=(
                f"small node: {cores} cores <= {rules.edge_max_physical_cores} and "
                f"{memory / GIB:.1f} GiB <= {rules.edge_max_memory_bytes / GIB:g} GiB"
            ),
        )
    return TierDecision(tier=Tier.GENERAL, reason="no accelerator, HPC interconnect or edge size: general purpose")
