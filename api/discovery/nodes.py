"""Kubernetes Nodes as census inventories: what a cluster's API says about its machines, in the agent's terms.

For clusters where agents are not installed yet, a Node object (capacity, allocatable, `nodeInfo`, labels set by
NVIDIA GPU Feature Discovery, Node Feature Discovery and the topology conventions) is translated into the same
`NodeInventory` an agent would report, so the server prices it with the same compute model.  What Kubernetes
cannot tell (a CPU's base clock, its physical core count without NFD) is left unknown and said so in the notes,
never guessed: a discovered node's CPU peaks stay 0 until its clock is declared with the
``suanli.io/cpu-base-clock-mhz`` label or an agent reports for it.

The node id is the machine id (``status.nodeInfo.machineID``, read from ``/etc/machine-id``): the agent's default
node id, so a node that also runs an agent is recognised and never counted twice.

Pure: works on Node objects as plain dicts (the API's JSON form); listing them is `api.discovery.client`'s job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from census_agent.catalogue import CatalogueEntry, find_entry
from census_agent.cpu_peaks import THROUGHPUT_FLAGS
from census_agent.labels import (
    CLOCK_LABEL,
    ORGANISATION_LABEL,
    PER_CYCLE_LABEL,
    REGION_LABEL,
    SITE_LABEL,
    TIER_LABEL,
)
from census_agent.models import (
    Accelerator,
    ClockSource,
    CpuInfo,
    HostInfo,
    Labels,
    MemoryInfo,
    NodeInventory,
    Tier,
)

SOURCE = "kubernetes"

# Standard topology labels, used for the region when they hold one of the census's region codes.
TOPOLOGY_LABELS = ("topology.kubernetes.io/zone", "topology.kubernetes.io/region")

NFD = "feature.node.kubernetes.io/"
# Node Feature Discovery's CPUID names for the ISA flags the compute model reads.
NFD_FLAGS = {
    "SSE2": "sse2",
    "AVX": "avx",
    "AVX2": "avx2",
    "FMA3": "fma",
    "AVX512F": "avx512f",
    "AVX512FP16": "avx512_fp16",
    "AVX512BF16": "avx512_bf16",
    "AVX512VNNI": "avx512_vnni",
    "AVXVNNI": "avx_vnni",
    "AMXTILE": "amx_tile",
    "AMXBF16": "amx_bf16",
    "AMXINT8": "amx_int8",
    "ASIMD": "asimd",
    "ASIMDHP": "asimdhp",
    "ASIMDDP": "asimddp",
    "FPHP": "fphp",
    "SVE": "sve",
    "SVE2": "sve2",
    "SVEBF16": "svebf16",
    "BF16": "bf16",
    "I8MM": "i8mm",
    "SME": "sme",
}
NFD_VENDORS = {"Intel": "GenuineIntel", "AMD": "AuthenticAMD", "Hygon": "HygonGenuine", "ARM": "ARM"}
ARCHITECTURES = {"amd64": "x86_64", "arm64": "aarch64", "386": "i686"}

# Extended resources naming accelerators, with the vendor and (when the resource names no model) the label that
# does.  GPU Feature Discovery replaces spaces with dashes in the product name ("NVIDIA-H100-80GB-HBM3").
NVIDIA_GPU = "nvidia.com/gpu"
GPU_RESOURCES: dict[str, tuple[str, str | None]] = {
    NVIDIA_GPU: ("NVIDIA", "nvidia.com/gpu.product"),
    "amd.com/gpu": ("AMD", "amd.com/gpu.product-name"),
    "huawei.com/Ascend910": ("Huawei", None),
    "huawei.com/Ascend910B": ("Huawei", None),
}
MIB = 2**20

_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIXES: dict[str, Decimal | int] = {
    "": 1,
    "m": Decimal("0.001"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}


class NodeNotUsable(ValueError):
    """A Node object that cannot be made into an inventory (no name, no CPU capacity, absurd values)."""


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes resource quantity ("64", "500m", "527952840Ki", "1e3") as a number."""
    match = _QUANTITY.match(text.strip())
    if match is None or match.group(2) not in _SUFFIXES:
        raise NodeNotUsable(f"not a Kubernetes quantity: {text!r}")
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        raise NodeNotUsable(f"not a Kubernetes quantity: {text!r}") from None


@dataclass(frozen=True, slots=True)
class DiscoveredNode:
    """One Node as the census sees it."""

    name: str  # the Kubernetes node name
    inventory: NodeInventory
    ready: bool  # the Ready condition is True
    notes: tuple[str, ...]  # what could not be known, and what was assumed


def _int_label(labels: Mapping[str, str], key: str) -> int | None:
    value = labels.get(key, "")
    return int(value) if value.isdigit() else None


def _region(labels: Mapping[str, str], region_codes: set[str], notes: list[str]) -> str | None:
    declared = labels.get(REGION_LABEL)
    if declared is not None:
        if declared in region_codes:
            return declared
        notes.append(f"label {REGION_LABEL}={declared!r} is not a census region code; region left unassigned")
        return None
    for key in TOPOLOGY_LABELS:
        if labels.get(key) in region_codes:
            return labels[key]
    return None


def _tier(labels: Mapping[str, str], notes: list[str]) -> Tier | None:
    value = labels.get(TIER_LABEL)
    if value is None:
        return None
    try:
        return Tier(value)
    except ValueError:
        notes.append(f"label {TIER_LABEL}={value!r} is not a tier ({', '.join(t.value for t in Tier)}); ignored")
        return None


def _cpu(node: Mapping[str, Any], labels: Mapping[str, str], notes: list[str]) -> CpuInfo:
    capacity = node.get("status", {}).get("capacity") or {}
    if "cpu" not in capacity:
        raise NodeNotUsable("status.capacity has no cpu")
    threads = int(parse_quantity(str(capacity["cpu"])))
    if threads < 1:
        raise NodeNotUsable(f"status.capacity.cpu is {capacity['cpu']!r}")
    smt = labels.get(NFD + "cpu-hardware_multithreading")
    if smt == "true":
        cores = max(1, threads // 2)
    else:
        cores = threads
        if smt is None:
            notes.append("physical cores unknown (no Node Feature Discovery labels): counted as logical CPUs")
    info = node.get("status", {}).get("nodeInfo") or {}
    arch = labels.get("kubernetes.io/arch") or info.get("architecture") or "unknown"
    vendor = labels.get(NFD + "cpu-model.vendor_id")
    clock_mhz = _int_label(labels, CLOCK_LABEL)
    if clock_mhz is None:
        notes.append(f"CPU base clock unknown: CPU peaks are 0 until the node is labelled {CLOCK_LABEL}")
    flags = sorted(flag for nfd, flag in NFD_FLAGS.items() if labels.get(f"{NFD}cpu-cpuid.{nfd}") == "true")
    return CpuInfo(
        architecture=ARCHITECTURES.get(arch, arch),
        vendor=NFD_VENDORS.get(vendor, vendor) if vendor else "unknown",
        model_name="unknown (discovered through Kubernetes)",
        family=_int_label(labels, NFD + "cpu-model.family"),
        model=_int_label(labels, NFD + "cpu-model.id"),
        sockets=1,
        physical_cores=cores,
        threads=threads,
        base_clock_hz=clock_mhz * 1e6 if clock_mhz else None,
        clock_source=ClockSource.DECLARED if clock_mhz else ClockSource.UNKNOWN,
        flags=[f for f in flags if f in THROUGHPUT_FLAGS],
    )


def _memory(node: Mapping[str, Any]) -> MemoryInfo:
    status = node.get("status", {})
    capacity = (status.get("capacity") or {}).get("memory")
    if capacity is None:
        raise NodeNotUsable("status.capacity has no memory")
    total = int(parse_quantity(str(capacity)))
    allocatable = (status.get("allocatable") or {}).get("memory")
    available = int(parse_quantity(str(allocatable))) if allocatable is not None else total
    return MemoryInfo(total_bytes=total, available_bytes=max(0, min(available, total)))


def catalogue_name(product: str, catalogue: Sequence[CatalogueEntry]) -> str:
    """The product name as the catalogue knows it: GPU Feature Discovery writes "NVIDIA-H100-80GB-HBM3" and AMD's
    labeller "AMD_Instinct_MI300X"; the first spelling that the catalogue matches wins, else the label as it is."""
    candidates = (product, product.replace("-", " "), product.replace("_", " "))
    for candidate in candidates:
        if find_entry(tuple(catalogue), candidate) is not None:
            return candidate
    return product.replace("_", " ")


def _accelerators(
    node: Mapping[str, Any], labels: Mapping[str, str], catalogue: Sequence[CatalogueEntry], notes: list[str]
) -> list[Accelerator]:
    capacity = node.get("status", {}).get("capacity") or {}
    found: list[Accelerator] = []
    for resource, (vendor, product_label) in GPU_RESOURCES.items():
        if resource not in capacity:
            continue
        count = int(parse_quantity(str(capacity[resource])))
        if resource == NVIDIA_GPU:
            # Time-slicing and MPS advertise each GPU `replicas` times; gpu.count is the physical number.
            physical = _int_label(labels, "nvidia.com/gpu.count")
            replicas = _int_label(labels, "nvidia.com/gpu.replicas") or 1
            count = physical if physical is not None else count // replicas
        if count <= 0:
            continue
        if product_label is None:
            product = resource.split("/", 1)[1]
        else:
            product = labels.get(product_label, "").removesuffix("-SHARED")
        if not product:
            notes.append(f"{count} {resource} without a {product_label} label: model unknown, peaks 0")
            product = f"{vendor} accelerator (model unknown)"
        model = catalogue_name(product, catalogue)
        if resource == NVIDIA_GPU:
            memory_mib = _int_label(labels, "nvidia.com/gpu.memory")
            major = _int_label(labels, "nvidia.com/gpu.compute.major")
            minor = _int_label(labels, "nvidia.com/gpu.compute.minor")
            capability = f"{major}.{minor}" if major is not None and minor is not None else None
        else:
            memory_mib, capability = None, None
        found.extend(
            Accelerator(
                index=len(found) + i,
                vendor=vendor,
                model=model,
                source="declared",
                memory_bytes=memory_mib * MIB if memory_mib else None,
                compute_capability=capability,
            )
            for i in range(count)
        )
    return found


def _ready(node: Mapping[str, Any]) -> bool:
    for condition in node.get("status", {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def discover(node: Mapping[str, Any], region_codes: set[str], catalogue: Sequence[CatalogueEntry]) -> DiscoveredNode:
    """The census's view of one Node object; `NodeNotUsable` when it lacks what the census needs."""
    metadata = node.get("metadata") or {}
    name = metadata.get("name")
    if not name:
        raise NodeNotUsable("the Node has no metadata.name")
    labels: Mapping[str, str] = metadata.get("labels") or {}
    notes: list[str] = []
    try:
        return DiscoveredNode(
            name=str(name),
            inventory=_inventory(node, labels, region_codes, catalogue, notes),
            ready=_ready(node),
            notes=tuple(notes),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise NodeNotUsable(f"{exc.title}.{where}: {first['msg']}") from None


def _inventory(
    node: Mapping[str, Any],
    labels: Mapping[str, str],
    region_codes: set[str],
    catalogue: Sequence[CatalogueEntry],
    notes: list[str],
) -> NodeInventory:
    info = node.get("status", {}).get("nodeInfo") or {}
    metadata = node.get("metadata") or {}
    name = metadata["name"]
    machine_id = str(info.get("machineID") or "")
    if re.fullmatch(r"[0-9a-f]{32}", machine_id):
        node_id, id_source = machine_id, "machine-id"
    else:
        node_id, id_source = f"k8s-{metadata.get('uid') or name}", "override"
        notes.append("no machine id in status.nodeInfo: an agent on this node would not be recognised")
    return NodeInventory(
        host=HostInfo(
            node_id=node_id,
            node_id_source=id_source,
            hostname=labels.get("kubernetes.io/hostname", name),
            os=info.get("osImage") or "unknown",
            kernel=info.get("kernelVersion") or "unknown",
        ),
        cpu=_cpu(node, labels, notes),
        memory=_memory(node),
        accelerators=_accelerators(node, labels, catalogue, notes),
        labels=Labels(
            region=_region(labels, region_codes, notes),
            organisation=labels.get(ORGANISATION_LABEL),
            site=labels.get(SITE_LABEL),
            tier=_tier(labels, notes),
            cpu_fp64_flops_per_cycle=_int_label(labels, PER_CYCLE_LABEL) or None,
        ),
    )


def discover_all(
    objects: Sequence[Mapping[str, Any]], region_codes: set[str], catalogue: Sequence[CatalogueEntry]
) -> tuple[list[DiscoveredNode], list[tuple[str, str]]]:
    """Every usable Node of a listing, and (name, why) for those that are not."""
    found: list[DiscoveredNode] = []
    unusable: list[tuple[str, str]] = []
    for obj in objects:
        try:
            found.append(discover(obj, region_codes, catalogue))
        except NodeNotUsable as exc:
            unusable.append((str((obj.get("metadata") or {}).get("name") or "?"), str(exc)))
    return found, unusable
