"""Kubernetes Node objects translated into census inventories (`api.discovery.nodes`), priced by the compute model."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from api.discovery.nodes import NodeNotUsable, discover, discover_all, parse_quantity
from census_agent.catalogue import load_default_catalogue
from census_agent.labels import CLOCK_LABEL, PER_CYCLE_LABEL
from census_agent.models import ClockSource, Precision, Tier
from census_agent.report import ComputeModel

CATALOGUE = load_default_catalogue()
REGIONS = {"440106", "440111", "440100"}
MODEL = ComputeModel()
MACHINE_ID = "0123456789abcdef0123456789abcdef"


def node(
    name: str = "gpu-01",
    *,
    labels: dict[str, str] | None = None,
    capacity: dict[str, str] | None = None,
    machine_id: str | None = MACHINE_ID,
    ready: str = "True",
) -> dict[str, Any]:
    """A Node object in the API's JSON form."""
    info = {"osImage": "Ubuntu 22.04.4 LTS", "kernelVersion": "5.15.0-105-generic", "architecture": "amd64"}
    if machine_id is not None:
        info["machineID"] = machine_id
    return {
        "metadata": {"name": name, "uid": "6f1c9c1e-0000-4000-8000-000000000001", "labels": labels or {}},
        "status": {
            "capacity": capacity or {"cpu": "224", "memory": "2113513408Ki", "pods": "110"},
            "allocatable": {"cpu": "223500m", "memory": "2100000000Ki"},
            "nodeInfo": info,
            "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": ready}],
        },
    }


GFD_H100 = {
    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    "nvidia.com/gpu.count": "8",
    "nvidia.com/gpu.memory": "81559",
    "nvidia.com/gpu.compute.major": "9",
    "nvidia.com/gpu.compute.minor": "0",
    "kubernetes.io/arch": "amd64",
}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("64", 64),
        ("500m", Decimal("0.5")),
        ("2113513408Ki", 2113513408 * 1024),
        ("128Gi", 128 * 2**30),
        ("1e3", 1000),
        ("4k", 4000),
        ("1.5G", 1_500_000_000),
    ],
)
def test_kubernetes_quantities_are_parsed_with_binary_and_decimal_suffixes(text: str, value: Decimal) -> None:
    """Capacity quantities use Kubernetes' suffixes: Ki/Mi/Gi are powers of two, k/M/G of ten, m is milli."""
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "12XB", "abc", "1..2Gi"])
def test_a_malformed_quantity_is_refused_with_its_text(text: str) -> None:
    """A quantity that is not one is an error naming it, not a zero."""
    with pytest.raises(NodeNotUsable, match="not a Kubernetes quantity"):
        parse_quantity(text)


def test_gpu_feature_discovery_labels_give_catalogue_priced_gpus() -> None:
    """An 8 x H100 node labelled by GPU Feature Discovery becomes 8 catalogue H100s: its fp16 peak is 8 x the
    datasheet's dense 989.5 TFLOPS, and the compute model puts it in the AI tier."""
    found = discover(
        node(labels=GFD_H100, capacity={"cpu": "224", "memory": "2Ti", "nvidia.com/gpu": "8"}), REGIONS, CATALOGUE
    )
    accelerators = found.inventory.accelerators
    assert len(accelerators) == 8
    assert {a.model for a in accelerators} == {"NVIDIA H100 80GB HBM3"}
    assert accelerators[0].memory_bytes == 81559 * 2**20
    assert accelerators[0].compute_capability == "9.0"
    peaks, tier = MODEL.assess(found.inventory)
    assert peaks.figures[Precision.FP16].flops == pytest.approx(8 * 989.5e12, rel=1e-6)
    assert tier.tier is Tier.AI


def test_time_sliced_gpus_are_counted_once_not_per_replica() -> None:
    """With time-slicing the device plugin advertises each GPU `replicas` times: the census counts physical GPUs
    (gpu.count, or the capacity divided by the replicas) and drops GFD's -SHARED suffix."""
    labels = {**GFD_H100, "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-SHARED", "nvidia.com/gpu.replicas": "4"}
    del labels["nvidia.com/gpu.count"]
    found = discover(
        node(labels=labels, capacity={"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": "32"}), REGIONS, CATALOGUE
    )
    assert len(found.inventory.accelerators) == 8
    assert found.inventory.accelerators[0].model == "NVIDIA H100 80GB HBM3"


def test_a_gpu_without_a_product_label_is_counted_with_unknown_model_and_said_so() -> None:
    """Without GPU Feature Discovery the GPUs are still counted, but their model is unknown and a note says so."""
    found = discover(node(capacity={"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "2"}), REGIONS, CATALOGUE)
    assert len(found.inventory.accelerators) == 2
    assert "model unknown" in found.inventory.accelerators[0].model
    assert any("nvidia.com/gpu.product" in note for note in found.notes)


def test_cpu_peaks_stay_zero_until_the_clock_is_declared_by_label() -> None:
    """Kubernetes does not tell a CPU's clock: without the label the CPU peak is 0 and a note names the label.
    With it, the formula uses physical cores x clock x FLOPs per cycle: from the NFD flags (AVX-512 on an unknown
    model: one FMA pipe, 16 fp64/cycle, the conservative rule) unless a label declares the rate."""
    nfd = {
        "feature.node.kubernetes.io/cpu-model.vendor_id": "Intel",
        "feature.node.kubernetes.io/cpu-hardware_multithreading": "true",
        "feature.node.kubernetes.io/cpu-cpuid.AVX512F": "true",
        "feature.node.kubernetes.io/cpu-cpuid.AVX2": "true",
        "feature.node.kubernetes.io/cpu-cpuid.FMA3": "true",
    }
    capacity = {"cpu": "64", "memory": "256Gi"}
    unknown = discover(node(labels=nfd, capacity=capacity), REGIONS, CATALOGUE)
    assert unknown.inventory.cpu.clock_source is ClockSource.UNKNOWN
    assert MODEL.assess(unknown.inventory)[0].figures[Precision.FP64].flops == 0
    assert any(CLOCK_LABEL in note for note in unknown.notes)

    declared = discover(node(labels={**nfd, CLOCK_LABEL: "2000"}, capacity=capacity), REGIONS, CATALOGUE)
    cpu = declared.inventory.cpu
    assert (cpu.vendor, cpu.physical_cores, cpu.threads) == ("GenuineIntel", 32, 64)
    assert {"avx512f", "avx2", "fma"} <= set(cpu.flags)
    fp64 = MODEL.assess(declared.inventory)[0].figures[Precision.FP64].flops
    assert fp64 == pytest.approx(32 * 2.0e9 * 16)
    two_pipes = discover(
        node(labels={**nfd, CLOCK_LABEL: "2000", PER_CYCLE_LABEL: "32"}, capacity=capacity), REGIONS, CATALOGUE
    )
    assert MODEL.assess(two_pipes.inventory)[0].figures[Precision.FP64].flops == pytest.approx(32 * 2.0e9 * 32)


def test_physical_cores_unknown_without_nfd_are_counted_as_logical_cpus_with_a_note() -> None:
    """No Node Feature Discovery: hyper-threading is unknown, so the logical CPUs are counted and a note says so."""
    found = discover(node(capacity={"cpu": "16", "memory": "64Gi"}), REGIONS, CATALOGUE)
    assert found.inventory.cpu.physical_cores == 16
    assert any("physical cores unknown" in note for note in found.notes)


def test_region_comes_from_the_suanli_label_or_a_topology_label_holding_a_census_code() -> None:
    """`suanli.io/region` wins; otherwise a topology zone that is a census region code is used; a code the census
    does not know leaves the region unassigned with a note (the node is still counted)."""
    assert discover(node(labels={"suanli.io/region": "440106"}), REGIONS, CATALOGUE).inventory.labels.region == "440106"
    zone = {"topology.kubernetes.io/zone": "440111", "topology.kubernetes.io/region": "cn-south-1"}
    assert discover(node(labels=zone), REGIONS, CATALOGUE).inventory.labels.region == "440111"
    unknown = discover(node(labels={"suanli.io/region": "999999"}), REGIONS, CATALOGUE)
    assert unknown.inventory.labels.region is None
    assert any("999999" in note for note in unknown.notes)


def test_the_node_id_is_the_machine_id_so_an_agent_on_the_node_is_recognised() -> None:
    """The agent's default node id is /etc/machine-id, which the kubelet reports as nodeInfo.machineID; without
    one the id is derived from the Node's uid and a note says an agent would not be recognised."""
    assert discover(node(), REGIONS, CATALOGUE).inventory.host.node_id == MACHINE_ID
    anonymous = discover(node(machine_id=None), REGIONS, CATALOGUE)
    assert anonymous.inventory.host.node_id.startswith("k8s-6f1c9c1e")
    assert any("machine id" in note for note in anonymous.notes)


def test_ready_condition_and_tier_label_are_read() -> None:
    """A NotReady node is reported as not ready; `suanli.io/tier` overrides the classification, and a tier that
    does not exist is ignored with a note."""
    found = discover(node(ready="Unknown", labels={"suanli.io/tier": "hpc"}), REGIONS, CATALOGUE)
    assert found.ready is False
    assert MODEL.assess(found.inventory)[1].tier is Tier.HPC
    bad = discover(node(labels={"suanli.io/tier": "quantum"}), REGIONS, CATALOGUE)
    assert bad.inventory.labels.tier is None
    assert any("quantum" in note for note in bad.notes)


def test_unusable_nodes_are_set_aside_with_the_reason_and_the_rest_kept() -> None:
    """A Node without CPU capacity, or with an absurd memory figure, is listed as unusable with why; the other
    Nodes of the listing are still translated."""
    no_cpu = node("no-cpu", capacity={"memory": "1Gi"})
    absurd = node("absurd", capacity={"cpu": "8", "memory": "9999Ei"})
    found, unusable = discover_all([node("ok"), no_cpu, absurd], REGIONS, CATALOGUE)
    assert [n.name for n in found] == ["ok"]
    assert dict(unusable).keys() == {"no-cpu", "absurd"}
    assert "cpu" in dict(unusable)["no-cpu"]
    assert "MemoryInfo.total_bytes" in dict(unusable)["absurd"]
