"""A node's utilisation and power measures (issue 15): what its report's usage and labels add to the census.

Pure: from the priced peaks (`Parts`, computed once per machine model with the assessment) and a report's `Usage`
and labels, the values of `api.db.tables.USAGE_COLUMNS` for the node's row.  The rules, stated in docs/census.md:

- consumed FLOPS per precision: the CPUs' part of the peak x busy logical CPUs / threads (at most 1), plus each
  accelerator's figure x its utilisation (an unreadable utilisation counts 0: consumed is a lower bound); a node
  whose figure is declared scales that figure by the same weighted fraction of its computed peak;
- power: a node counts once, as *measured* when its readings cover it (a RAPL ``cpu-package`` reading, and an NVML
  ``accelerators`` reading or every device's own draw when it has accelerators), else as *declared* when its
  labels give ``power_watts``, else as *measured, partial* when it has some readings (below its draw), else not at
  all; facility power multiplies it by the site's declared PUE (1 where none is declared);
- an accelerator is unpriced when the compute model marks a figure of it `Provenance.UNPRICED`, or prices it 0 in
  every precision.

Must not: touch the database, the network or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from census_agent.models import NodeInventory, NodePeaks, Precision, Provenance, Usage

COLUMN = {
    Precision.FP64: "fp64_flops",
    Precision.FP32: "fp32_flops",
    Precision.FP16: "fp16_flops",
    Precision.INT8: "int8_ops",
}


PRECISIONS = tuple(Precision)  # the order of every per-precision tuple here
CONSUMED = tuple(f"consumed_{COLUMN[p]}" for p in PRECISIONS)
POWERED = tuple(f"powered_{COLUMN[p]}" for p in PRECISIONS)
NO_USAGE: dict[str, float] = {
    "usage_nodes": 0,
    "cpu_busy_cores": 0.0,
    "memory_used_bytes": 0.0,
    "accelerators_busy": 0.0,
    **dict.fromkeys(CONSUMED, 0.0),
}
UNPOWERED = dict.fromkeys(POWERED, 0.0)


@dataclass(frozen=True, slots=True)
class Parts:
    """What the usage measures need from a node's priced peaks, per precision (tuples in `PRECISIONS` order),
    computed once per machine model: the per-report work is then a few multiplications."""

    node: tuple[float, ...]  # the node's figure (declared, or the computed sum)
    computed: tuple[float, ...]  # the computed sum of its parts
    cpu: tuple[float, ...]
    accelerators: dict[int, tuple[float, ...]]  # by accelerator index
    unpriced: int
    powered: dict[str, float]  # `powered_*` of the node when it has a power figure

    @property
    def accelerator_total(self) -> tuple[float, ...]:
        """The accelerators' part of the computed peak."""
        return tuple(sum(a[i] for a in self.accelerators.values()) for i in range(len(PRECISIONS)))


def parts_of(peaks: NodePeaks) -> Parts:
    """The parts of `peaks` that usage scaling and allocation need."""
    cpu = [0.0] * len(PRECISIONS)
    accelerators: dict[int, tuple[float, ...]] = {}
    unpriced = 0
    for component in peaks.components:
        figures = tuple(component.figures[p].flops if p in component.figures else 0.0 for p in PRECISIONS)
        if component.component == "cpu":
            cpu = [a + b for a, b in zip(cpu, figures, strict=True)]
            continue
        index = _index(component.component)
        if index is not None:
            accelerators[index] = figures
        if any(f.provenance is Provenance.UNPRICED for f in component.figures.values()) or not any(figures):
            unpriced += 1
    node = tuple(peaks.figures[p].flops for p in PRECISIONS)
    return Parts(
        node=node,
        computed=tuple(peaks.figures[p].computed_flops for p in PRECISIONS),
        cpu=tuple(cpu),
        accelerators=accelerators,
        unpriced=unpriced,
        powered=dict(zip(POWERED, node, strict=True)),
    )


def _index(component: str) -> int | None:
    name, _, index = component.partition(":")
    return int(index) if name == "accelerator" and index.isdigit() else None


def static_measures(parts: Parts) -> dict[str, float]:
    """The measures that depend only on the machine (the same every report of it)."""
    total = parts.accelerator_total
    return {
        "unpriced_accelerators": parts.unpriced,
        **{f"accelerator_{COLUMN[p]}": total[i] for i, p in enumerate(PRECISIONS)},
    }


def usage_measures(inventory: NodeInventory, parts: Parts, usage: Usage | None) -> dict[str, float]:
    """The consumed and power measures of one report (zeros for what it does not say)."""
    if usage is None:
        values = dict(NO_USAGE)
    else:
        threads = inventory.cpu.threads
        busy = min(usage.cpu_busy_cores, float(threads))
        cpu_fraction = busy / threads if threads else 0.0
        utilisation = {
            a.index: a.utilisation
            for a in usage.accelerators
            if a.utilisation is not None and a.index in parts.accelerators
        }
        values = {
            "usage_nodes": 1,
            "cpu_busy_cores": busy,
            "memory_used_bytes": float(usage.memory_used_bytes),
            "accelerators_busy": sum(utilisation.values()),
        }
        weighted = [figure * cpu_fraction for figure in parts.cpu]
        for index, share in utilisation.items():
            for i, figure in enumerate(parts.accelerators[index]):
                weighted[i] += figure * share
        for name, part, computed, node in zip(CONSUMED, weighted, parts.computed, parts.node, strict=True):
            values[name] = node * (part / computed if computed else cpu_fraction)
    values |= power_measures(inventory, parts, usage)
    return values


def power_measures(inventory: NodeInventory, parts: Parts, usage: Usage | None) -> dict[str, float]:
    """Measured or declared watts (exactly one, or neither), facility watts and the peak of a powered node."""
    readings = usage.power if usage is not None else []
    cpu = [r.watts for r in readings if r.coverage == "cpu-package"]
    accelerators = [r.watts for r in readings if r.coverage == "accelerators"]
    devices = [a.power_watts for a in usage.accelerators] if usage is not None else []
    each_device = [w for w in devices if w is not None]
    if not accelerators and inventory.accelerators and len(each_device) == len(inventory.accelerators):
        accelerators = each_device  # no NVML total, but every device's own draw
    covered = bool(cpu) and (bool(accelerators) or not inventory.accelerators)
    declared = inventory.labels.power_watts
    measured_watts = declared_watts = 0.0
    measured = partial = declared_node = 0
    if covered:
        measured, measured_watts = 1, sum(cpu) + sum(accelerators)
    elif declared is not None:
        declared_node, declared_watts = 1, declared
    elif cpu or accelerators:
        measured, partial, measured_watts = 1, 1, sum(cpu) + sum(accelerators)
    pue = inventory.labels.site_pue
    powered = measured or declared_node
    return {
        "measured_power_nodes": measured,
        "partial_power_nodes": partial,
        "declared_power_nodes": declared_node,
        "pue_nodes": 1 if pue is not None else 0,
        "measured_watts": measured_watts,
        "declared_watts": declared_watts,
        "facility_watts": (measured_watts + declared_watts) * (pue if pue is not None else 1.0),
        **(parts.powered if powered else UNPOWERED),
    }
