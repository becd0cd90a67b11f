"""One full inventory of the node: every collector run once, the operator's labels applied.

Accelerators are discovered in this order, each source adding to what the previous found, none counting a device
twice: the PCI bus in sysfs is the base list (`collectors.pci`); NVML, where present, replaces the entry of the
device at the same PCI address with everything it knows (UUID, memory, clocks, compute capability, MIG) and
keeps the PCI ids and NUMA node; an installed vendor tool (`collectors.vendor_tools`) adds the precise model
name and memory of the device at its address; devices NVML or a tool reports that sysfs did not show are added;
the operator's declared accelerators come last.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from census_agent.catalogue import CatalogueEntry, load_default_catalogue
from census_agent.collectors.cpu import collect_cpu
from census_agent.collectors.host import collect_host
from census_agent.collectors.memory import collect_memory
from census_agent.collectors.network import collect_interconnects
from census_agent.collectors.nvml import GpuScan, NvmlApi, scan_gpus
from census_agent.collectors.pci import collect_pci_accelerators, normalise_bus_id
from census_agent.collectors.vendor_tools import VendorFacts
from census_agent.config import DeclaredAccelerator
from census_agent.models import Accelerator, ClockSource, Labels, MemoryInfo, NodeInventory

VendorFactsSource = Callable[[], dict[str, VendorFacts]]


def _address(acc: Accelerator) -> str | None:
    return normalise_bus_id(acc.pci_bus_id) if acc.pci_bus_id else None


def _with_vendor_facts(acc: Accelerator, fact: VendorFacts) -> Accelerator:
    update: dict[str, object] = {"source": fact.tool, "vendor": fact.vendor}
    if fact.model:
        update["model"] = fact.model
    if fact.memory_bytes:
        update["memory_bytes"] = fact.memory_bytes
    return acc.model_copy(update=update)


def merge_accelerators(
    pci: list[Accelerator], nvml: list[Accelerator], vendor: dict[str, VendorFacts]
) -> list[Accelerator]:
    """PCI devices enriched by NVML (matched by normalised PCI address) or, failing that, by a vendor tool;
    then NVML devices and tool facts at addresses sysfs did not show.  Indexes are renumbered from 0."""
    by_address = {address: gpu for gpu in nvml if (address := _address(gpu)) is not None}
    used_nvml: set[int] = set()
    used_vendor: set[str] = set()
    merged: list[Accelerator] = []
    for device in pci:
        address = _address(device)
        gpu = by_address.get(address) if address else None
        if gpu is not None:
            used_nvml.add(id(gpu))
            merged.append(
                gpu.model_copy(
                    update={
                        "pci_bus_id": address,
                        "pci_vendor_id": device.pci_vendor_id,
                        "pci_device_id": device.pci_device_id,
                        "numa_node": device.numa_node,
                    }
                )
            )
        elif address is not None and address in vendor:
            used_vendor.add(address)
            merged.append(_with_vendor_facts(device, vendor[address]))
        else:
            merged.append(device)
    merged += [gpu for gpu in nvml if id(gpu) not in used_nvml]
    known = {a for acc in merged if (a := _address(acc))}
    for address, fact in vendor.items():
        if address in used_vendor or address in known:
            continue
        bare = Accelerator(index=0, vendor=fact.vendor, model=f"{fact.vendor} device", pci_bus_id=address, source="pci")
        merged.append(_with_vendor_facts(bare, fact))
    return [acc.model_copy(update={"index": i}) for i, acc in enumerate(merged)]


def collect_inventory(
    root: Path,
    *,
    labels: Labels,
    declared_accelerators: list[DeclaredAccelerator],
    node_id: str | None,
    nvml: NvmlApi | None,
    vendor_facts: VendorFactsSource | None = None,
    catalogue: tuple[CatalogueEntry, ...] | None = None,
) -> tuple[NodeInventory, GpuScan]:
    """The node's inventory under `root`, and what the GPU scan said.

    `vendor_facts` runs the installed vendor tools (None: none are run, as for a fixture root); `catalogue`
    names PCI devices (default: the shipped one).
    """
    cpu = collect_cpu(root)
    if labels.cpu_base_clock_hz is not None:
        cpu = cpu.model_copy(update={"base_clock_hz": labels.cpu_base_clock_hz, "clock_source": ClockSource.DECLARED})
    scan = scan_gpus(nvml)
    pci = collect_pci_accelerators(root, catalogue if catalogue is not None else load_default_catalogue())
    accelerators = merge_accelerators(pci, list(scan.accelerators), vendor_facts() if vendor_facts else {})
    for declared in declared_accelerators:
        first = len(accelerators)  # fixed before extend: the generator runs while the list grows
        accelerators.extend(
            Accelerator(
                index=first + i,
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
