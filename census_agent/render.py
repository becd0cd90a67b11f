"""Human-readable rendering of reports and measurements for the terminal. Pure string building.

Units are humanised only for the terminal (`census_agent.units`: TFLOPS, PFLOPS, GiB); documents and APIs keep SI
base units.
"""

from __future__ import annotations

from census_agent.compute import is_unpriced
from census_agent.models import ComponentPeaks, Measurement, NodePeaks, Precision, Provenance, Report, Usage
from census_agent.units import human_bytes, human_flops, table


def _component_groups(peaks: NodePeaks) -> list[tuple[str, list[ComponentPeaks]]]:
    """The CPU column, then one column per accelerator model ("8 x H100-SXM5")."""
    groups: dict[str, list[ComponentPeaks]] = {}
    for part in peaks.components:
        groups.setdefault("cpu" if part.component == "cpu" else part.model, []).append(part)
    return [(name if name == "cpu" else f"{len(parts)} x {name}", parts) for name, parts in groups.items()]


def peaks_table(peaks: NodePeaks) -> str:
    """Per-precision node figures with the CPUs and each accelerator model beside them."""
    groups = _component_groups(peaks)
    header = ["precision", "node peak", "how", *[name for name, _ in groups]]
    rows = []
    for precision in Precision:
        figure = peaks.figures[precision]
        ops = precision is Precision.INT8
        how = figure.provenance.value
        if how == "declared":
            how += f" (computed {human_flops(figure.computed_flops, ops=ops)})"
        rows.append(
            [precision.value, human_flops(figure.flops, ops=ops), how]
            + [_cell(parts, precision) for _, parts in groups]
        )
    return table(rows, header)


def _cell(parts: list[ComponentPeaks], precision: Precision) -> str:
    """One column's figure; "unpriced" where no part of the column could be priced in this precision."""
    figures = [p.figures[precision] for p in parts]
    if all(f.provenance is Provenance.UNPRICED for f in figures):
        return "unpriced"
    return human_flops(sum(f.flops for f in figures), ops=precision is Precision.INT8)


def render_report(report: Report, gpu_status: str | None = None) -> str:
    """The `census-agent inspect` screen."""
    inv = report.inventory
    cpu, mem, host = inv.cpu, inv.memory, inv.host
    clock = f"{cpu.base_clock_hz / 1e9:.2f} GHz base ({cpu.clock_source.value})" if cpu.base_clock_hz else "unknown"
    if cpu.max_clock_hz:
        clock += f", {cpu.max_clock_hz / 1e9:.2f} GHz max"
    labels = inv.labels
    lines = [
        f"Node      {host.hostname}  (id {host.node_id}, from {host.node_id_source})",
        f"System    {host.os}, kernel {host.kernel}, {cpu.architecture}",
        f"Labels    region={labels.region or '-'} organisation={labels.organisation or '-'} site={labels.site or '-'}",
        f"Tier      {report.tier.tier.value}: {report.tier.reason}",
        "",
        f"CPU       {cpu.model_name} ({cpu.vendor})",
        f"          {cpu.sockets} socket(s), {cpu.physical_cores} cores, {cpu.threads} threads, {clock}",
        f"          ISA: {' '.join(cpu.flags) or '-'}",
        f"          NUMA: {len(cpu.numa_nodes)} node(s)"
        + "".join(f"; node{n.node}: {len(n.cpus)} CPUs, {human_bytes(n.memory_total_bytes)}" for n in cpu.numa_nodes),
        f"Memory    {human_bytes(mem.total_bytes)} total, {human_bytes(mem.available_bytes)} available",
    ]
    if inv.accelerators:
        unpriced = {
            int(c.component.split(":", 1)[1]) for c in report.peaks.components if is_unpriced(c) and ":" in c.component
        }
        lines.append(f"Accel.    {len(inv.accelerators)} device(s)")
        for acc in inv.accelerators:
            extra = [
                f"cc {acc.compute_capability}" if acc.compute_capability else "",
                human_bytes(acc.memory_bytes) if acc.memory_bytes else "",
                f"{acc.cuda_cores} cores" if acc.cuda_cores else "",
                f"{acc.max_sm_clock_hz / 1e6:.0f} MHz" if acc.max_sm_clock_hz else "",
                acc.pci_bus_id or "",
                f"[{acc.pci_vendor_id}:{acc.pci_device_id}]" if acc.pci_vendor_id and acc.pci_device_id else "",
                f"NUMA {acc.numa_node}" if acc.numa_node is not None else "",
                "MIG on" if acc.mig_enabled else "",
                f"via {acc.source}",
                "UNPRICED" if acc.index in unpriced else "",
            ]
            lines.append(f"          [{acc.index}] {acc.vendor} {acc.model}: {', '.join(e for e in extra if e)}")
        if unpriced:
            lines.append(
                f"Unpriced  {len(unpriced)} accelerator(s) counted at 0 FLOPS (reason in the notes below; declare "
                "their peaks or add the model to the catalogue)"
            )
    else:
        lines.append("Accel.    none" + (f" ({gpu_status})" if gpu_status else ""))
    for link in inv.interconnects:
        rate = f", {link.rate_bits_per_second / 1e9:g} Gb/s" if link.rate_bits_per_second else ""
        lines.append(f"Network   {link.name}: {link.kind}{rate}")
    lines += ["", "Peak compute (Rpeak; fp16 dense tensor; int8 in ops)", peaks_table(report.peaks)]
    notes = dict.fromkeys(
        f"  {c.model if c.component != 'cpu' else 'cpu'}: {c.note}" for c in report.peaks.components if c.note
    )
    lines += list(notes)
    if report.measurements:
        lines += ["", measurements_table(report.measurements, report.peaks)]
    if report.usage is not None:
        lines += ["", *usage_lines(report.usage, report)]
    return "\n".join(lines)


def usage_lines(usage: Usage, report: Report) -> list[str]:
    """What the node consumed over the sampled interval (``inspect --sample``), beside what it has."""
    threads, memory = report.inventory.cpu.threads, report.inventory.memory.total_bytes
    lines = [
        f"Usage     over {usage.interval_seconds:.1f} s: CPU {usage.cpu_busy_cores:.2f} of {threads} logical CPUs busy "
        f"({usage.cpu_busy_cores / threads:.0%}), memory {human_bytes(usage.memory_used_bytes)} used of "
        f"{human_bytes(memory)} ({usage.memory_used_bytes / memory if memory else 0:.0%})"
    ]
    for acc in usage.accelerators:
        parts = [
            "busy -" if acc.utilisation is None else f"busy {acc.utilisation:.0%}",
            "memory -" if acc.memory_used_bytes is None else f"{human_bytes(acc.memory_used_bytes)} used",
            "power -" if acc.power_watts is None else f"{acc.power_watts:,.0f} W",
        ]
        if acc.power_limit_watts is not None:
            parts.append(f"limit {acc.power_limit_watts:,.0f} W")
        lines.append(f"          [{acc.index}] {', '.join(parts)}")
    names = {"cpu-package": "CPU packages", "accelerators": "accelerators"}
    power = [f"{names[p.coverage]} {p.watts:,.1f} W ({p.source})" for p in usage.power]
    lines.append("Power     " + ("; ".join(power) or "none readable here (RAPL, NVML: see docs/agent.md)"))
    return lines


def measurements_table(measurements: list[Measurement], peaks: NodePeaks) -> str:
    """Measured rate beside the CPU peak (Rmax beside Rpeak) and the ratio."""
    cpu = next(c for c in peaks.components if c.component == "cpu")
    rows = []
    for m in measurements:
        peak = cpu.figures[m.precision].flops
        share = f"{m.flops / peak:.0%}" if peak else "-"
        rows.append(
            [
                m.precision.value,
                human_flops(m.flops),
                human_flops(peak),
                share,
                f"n={m.matrix_size}",
                f"{m.seconds:.2f} s",
            ]
        )
    return "Measured (dense matrix multiply, CPU)\n" + table(
        rows, ["precision", "measured (Rmax)", "CPU peak (Rpeak)", "Rmax/Rpeak", "size", "time"]
    )
