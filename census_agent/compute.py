"""The compute model: a node's peak FLOPS per precision, from its inventory.

Pure functions over `NodeInventory`, shared by the agent and (later) the census service, which recomputes
every report with its own catalogue.  A node's figure in each precision is the sum of its CPUs (formula) and
its accelerators (catalogue, else formula); an operator's declared figure replaces the sum and the sum is kept
beside it.  Nothing here reads the machine.
"""

from __future__ import annotations

from census_agent.catalogue import CatalogueEntry, accelerator_peaks
from census_agent.cpu_peaks import cpu_rate
from census_agent.models import (
    ComponentPeaks,
    CpuInfo,
    Figure,
    Labels,
    NodeFigure,
    NodeInventory,
    NodePeaks,
    Precision,
    Provenance,
)


def cpu_peaks(cpu: CpuInfo, labels: Labels) -> ComponentPeaks:
    """Rpeak of the node's CPUs: physical cores x base clock x FLOPs per cycle, per precision."""
    declared_rate = labels.cpu_fp64_flops_per_cycle
    rate = cpu_rate(cpu, declared_rate)
    provenance = Provenance.DECLARED if declared_rate is not None else Provenance.FORMULA
    clock = cpu.base_clock_hz or 0.0
    note = f"{cpu.physical_cores} cores x {clock / 1e9:.3f} GHz ({cpu.clock_source.value}); {rate.rule}"
    if not clock:
        note = f"base clock unknown: CPU peaks are 0 until it is declared; {rate.rule}"
    return ComponentPeaks(
        component="cpu",
        model=cpu.model_name,
        figures={
            p: Figure(flops=cpu.physical_cores * clock * per_cycle, provenance=provenance)
            for p, per_cycle in rate.per_cycle.items()
        },
        note=note,
    )


def node_peaks(inventory: NodeInventory, catalogue: tuple[CatalogueEntry, ...]) -> NodePeaks:
    """Peaks of the whole node per precision, with each component's figures and how each was obtained."""
    components = [cpu_peaks(inventory.cpu, inventory.labels)]
    components += [accelerator_peaks(acc, catalogue) for acc in inventory.accelerators]
    declared = inventory.labels.declared_peaks
    figures: dict[Precision, NodeFigure] = {}
    for precision in Precision:
        parts = [c.figures[precision] for c in components]
        computed = sum(f.flops for f in parts)
        largest = max(parts, key=lambda f: f.flops)
        stated = declared.get(precision)
        if stated is not None:
            figures[precision] = NodeFigure(flops=stated, provenance=Provenance.DECLARED, computed_flops=computed)
        else:
            figures[precision] = NodeFigure(flops=computed, provenance=largest.provenance, computed_flops=computed)
    return NodePeaks(figures=figures, components=components)


def is_unpriced(component: ComponentPeaks) -> bool:
    """Whether an accelerator's peaks could not be priced at all: no figure above zero (each is marked
    ``unpriced`` or is the catalogue's stated zero FP64).  It is still counted as an accelerator."""
    return component.component != "cpu" and all(f.flops == 0 for f in component.figures.values())


def unpriced_accelerators(peaks: NodePeaks) -> list[ComponentPeaks]:
    """The node's accelerators found but not priceable (the census counts them; `inspect` names the reason)."""
    return [c for c in peaks.components if is_unpriced(c)]


def accelerator_flops(peaks: NodePeaks, precision: Precision) -> float:
    """The part of a node's computed peak that comes from its accelerators."""
    return sum(c.figures[precision].flops for c in peaks.components if c.component != "cpu")
