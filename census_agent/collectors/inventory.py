"""One full inventory of the node: every collector run once, the operator's labels applied."""

from __future__ import annotations

from pathlib import Path

from census_agent.collectors.cpu import collect_cpu
from census_agent.collectors.host import collect_host
from census_agent.collectors.memory import collect_memory
from census_agent.collectors.network import collect_interconnects
from census_agent.collectors.nvml import GpuScan, NvmlApi, scan_gpus
from census_agent.config import DeclaredAccelerator
from census_agent.models import Accelerator, ClockSource, Labels, MemoryInfo, NodeInventory


def collect_inventory(
    root: Path,
    *,
    labels: Labels,
    declared_accelerators: list[DeclaredAccelerator],
    node_id: str | None,
    nvml: NvmlApi | None,
) -> tuple[NodeInventory, GpuScan]:
    """The node's inventory under `root`, and what the GPU scan said."""
    cpu = collect_cpu(root)
    if labels.cpu_base_clock_hz is not None:
        cpu = cpu.model_copy(update={"base_clock_hz": labels.cpu_base_clock_hz, "clock_source": ClockSource.DECLARED})
    scan = scan_gpus(nvml)
    accelerators = list(scan.accelerators)
    for declared in declared_accelerators:
        accelerators.extend(
            Accelerator(
                index=len(accelerators) + i,
                vendor=declared.vendor,
                model=declared.model,
                memory_bytes=declared.memory_bytes,
                source="declared",
            )
            for i in range(declared.count)
        )
    host = collect_host(root, node_id)
    if scan.driver_version:
        host = host.model_copy(update={"driver_version": scan.driver_version})
    inventory = NodeInventory(
        host=host,
        cpu=cpu,
        memory=collect_memory(root),
        accelerators=accelerators,
        interconnects=collect_interconnects(root),
        labels=labels,
    )
    return inventory, scan


def refresh_memory(inventory: NodeInventory, memory: MemoryInfo) -> NodeInventory:
    """The same inventory with a fresh memory reading (the only figure that moves between full scans)."""
    return inventory.model_copy(update={"memory": memory})
