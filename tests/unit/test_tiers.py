"""Tier classification (general, AI, HPC, edge) by the documented rules, and parsing of the rules file."""

from __future__ import annotations

import tomllib

import pytest

from census_agent.catalogue import load_default_catalogue
from census_agent.compute import node_peaks
from census_agent.models import (
    Accelerator,
    ClockSource,
    CpuInfo,
    HostInfo,
    Interconnect,
    Labels,
    MemoryInfo,
    NodeInventory,
    Tier,
    TierDecision,
)
from census_agent.tiers import TierRules, classify, load_default_rules, parse_tier_rules

GIB = 2**30
RULES_TOML = """\
ai_min_accelerator_fp16_flops = 20e12
hpc_interconnect_kinds = ["infiniband", "slingshot", "omni-path"]
edge_max_physical_cores = 4
edge_max_memory_bytes = 17179869184
ai_min_unpriced_accelerators = 6
"""


def node(
    *,
    cores: int = 32,
    memory_bytes: int = 256 * GIB,
    accelerators: list[Accelerator] | None = None,
    interconnects: list[Interconnect] | None = None,
    labels: Labels | None = None,
) -> NodeInventory:
    """A node with the given size, accelerators, fabric and labels (AVX2 + FMA CPU at 2.5 GHz)."""
    return NodeInventory(
        host=HostInfo(node_id="n1", node_id_source="override", hostname="n1", os="Linux", kernel="6.1.0"),
        cpu=CpuInfo(
            architecture="x86_64",
            vendor="GenuineIntel",
            model_name="Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz",
            family=6,
            model=63,
            sockets=1,
            physical_cores=cores,
            threads=cores * 2,
            base_clock_hz=2.5e9,
            clock_source=ClockSource.MODEL_NAME,
            flags=["avx", "avx2", "fma", "sse2"],
        ),
        memory=MemoryInfo(total_bytes=memory_bytes, available_bytes=memory_bytes // 2),
        accelerators=accelerators or [],
        interconnects=interconnects or [],
        labels=labels or Labels(),
    )


def t4(index: int = 0) -> Accelerator:
    """An NVIDIA T4 as NVML reports it (catalogue: 65 TFLOPS dense fp16)."""
    return Accelerator(
        index=index,
        vendor="NVIDIA",
        model="Tesla T4",
        compute_capability="7.5",
        cuda_cores=2560,
        max_sm_clock_hz=1.59e9,
        source="nvml",
    )


def decide(inventory: NodeInventory, rules: TierRules | None = None) -> TierDecision:
    """The tier of `inventory` under `rules` (the shipped rules by default)."""
    return classify(inventory, node_peaks(inventory, load_default_catalogue()), rules or load_default_rules())


def with_ai_threshold(flops: float) -> TierRules:
    """The shipped rules with another AI threshold."""
    base = load_default_rules()
    return TierRules(
        ai_min_accelerator_fp16_flops=flops,
        hpc_interconnect_kinds=base.hpc_interconnect_kinds,
        edge_max_physical_cores=base.edge_max_physical_cores,
        edge_max_memory_bytes=base.edge_max_memory_bytes,
    )


# --- classification ---------------------------------------------------------------------------------------


def test_label_tier_overrides_every_rule() -> None:
    """A GPU node with InfiniBand labelled general is general, marked overridden, reason naming the label."""
    inventory = node(
        accelerators=[t4()],
        interconnects=[Interconnect(name="mlx5_0", kind="infiniband")],
        labels=Labels(tier=Tier.GENERAL),
    )
    decision = decide(inventory)
    assert decision.tier is Tier.GENERAL
    assert decision.overridden
    assert "tier=general" in decision.reason


def test_label_tier_can_make_a_small_node_hpc() -> None:
    """A label of hpc on a node the rules would call edge gives hpc."""
    decision = decide(node(cores=4, memory_bytes=8 * GIB, labels=Labels(tier=Tier.HPC)))
    assert decision.tier is Tier.HPC
    assert decision.overridden


def test_accelerator_above_fp16_threshold_is_ai() -> None:
    """One T4 (65 TFLOPS dense fp16) reaches the 20 TFLOPS threshold: AI, the reason naming the model."""
    decision = decide(node(accelerators=[t4()]))
    assert decision.tier is Tier.AI
    assert not decision.overridden
    assert "Tesla T4" in decision.reason


def test_ai_threshold_is_inclusive_at_exactly_the_accelerator_fp16() -> None:
    """fp16 equal to the threshold is AI; one FLOPS more than the node has is not."""
    t4_fp16 = 65e12  # seeds/accelerators.csv, Tesla T4 dense fp16 tensor
    assert decide(node(accelerators=[t4()]), with_ai_threshold(t4_fp16)).tier is Tier.AI
    assert decide(node(accelerators=[t4()]), with_ai_threshold(t4_fp16 + 1)).tier is Tier.GENERAL


def test_ai_threshold_counts_all_accelerators_together() -> None:
    """Two T4s (130 TFLOPS) pass a 100 TFLOPS threshold that one T4 alone does not."""
    rules = with_ai_threshold(100e12)
    assert decide(node(accelerators=[t4()]), rules).tier is Tier.GENERAL
    assert decide(node(accelerators=[t4(0), t4(1)]), rules).tier is Tier.AI


def test_ai_threshold_ignores_cpu_flops() -> None:
    """A CPU-only node is never AI, even when its CPU fp16 exceeds the threshold."""
    big_cpu = node(cores=256)  # 256 x 2.5 GHz x 32 fp16/cycle = 20.5 TFLOPS
    assert decide(big_cpu, with_ai_threshold(1e12)).tier is Tier.GENERAL


def test_weak_gpu_below_threshold_falls_through_to_other_rules() -> None:
    """A GT 1030 (far below 20 TFLOPS fp16) on an InfiniBand node is HPC, not AI."""
    gt1030 = Accelerator(
        index=0,
        vendor="NVIDIA",
        model="NVIDIA GeForce GT 1030",
        compute_capability="6.1",
        cuda_cores=384,
        max_sm_clock_hz=1.468e9,
        source="nvml",
    )
    decision = decide(node(accelerators=[gt1030], interconnects=[Interconnect(name="mlx5_0", kind="infiniband")]))
    assert decision.tier is Tier.HPC


def test_ai_rule_comes_before_hpc_rule() -> None:
    """A GPU node on InfiniBand is AI (rule 1 is checked before rule 2)."""
    decision = decide(node(accelerators=[t4()], interconnects=[Interconnect(name="mlx5_0", kind="infiniband")]))
    assert decision.tier is Tier.AI


@pytest.mark.parametrize(("name", "kind"), [("mlx5_0", "infiniband"), ("cxi0", "slingshot"), ("hfi1_0", "omni-path")])
def test_hpc_interconnect_kinds_make_an_hpc_node(name: str, kind: str) -> None:
    """InfiniBand, Slingshot and Omni-Path each make a CPU node HPC; the reason names the adapter."""
    decision = decide(node(interconnects=[Interconnect(name=name, kind=kind, rate_bits_per_second=200e9)]))
    assert decision.tier is Tier.HPC
    assert name in decision.reason


def test_roce_adapter_is_not_an_hpc_interconnect() -> None:
    """RoCE (RDMA over Ethernet) is not in hpc_interconnect_kinds: the node stays general."""
    decision = decide(node(interconnects=[Interconnect(name="mlx5_0", kind="roce", rate_bits_per_second=100e9)]))
    assert decision.tier is Tier.GENERAL


def test_hpc_rule_comes_before_edge_rule() -> None:
    """A 4-core 8 GiB node on InfiniBand is HPC, not edge."""
    decision = decide(node(cores=4, memory_bytes=8 * GIB, interconnects=[Interconnect(name="ib0", kind="infiniband")]))
    assert decision.tier is Tier.HPC


def test_edge_size_bounds_are_inclusive() -> None:
    """Exactly 4 cores and 16 GiB is edge; the reason gives both sizes."""
    decision = decide(node(cores=4, memory_bytes=16 * GIB))
    assert decision.tier is Tier.EDGE
    assert "4 cores" in decision.reason


@pytest.mark.parametrize(
    ("cores", "memory_bytes"),
    [(5, 8 * GIB), (4, 16 * GIB + 1), (2, 64 * GIB)],
    ids=["one-core-too-many", "one-byte-too-much", "small-cpu-big-memory"],
)
def test_node_beyond_either_edge_bound_is_general(cores: int, memory_bytes: int) -> None:
    """Edge needs both bounds: more cores or more memory than allowed makes the node general."""
    assert decide(node(cores=cores, memory_bytes=memory_bytes)).tier is Tier.GENERAL


def test_plain_cpu_server_is_general() -> None:
    """No accelerator, no fabric, 32 cores and 256 GiB: general, with the rule's reason."""
    decision = decide(node())
    assert decision.tier is Tier.GENERAL
    assert "general purpose" in decision.reason
    assert not decision.overridden


# --- parsing the rules ------------------------------------------------------------------------------------


def test_default_rules_are_the_documented_thresholds() -> None:
    """seeds/tier_rules.toml: 20 TFLOPS fp16, InfiniBand/Slingshot/Omni-Path, 4 cores, 16 GiB, 4 unpriced."""
    rules = load_default_rules()
    assert rules.ai_min_accelerator_fp16_flops == 20e12
    assert rules.hpc_interconnect_kinds == frozenset({"infiniband", "slingshot", "omni-path"})
    assert rules.edge_max_physical_cores == 4
    assert rules.edge_max_memory_bytes == 16 * GIB
    assert rules.ai_min_unpriced_accelerators == 4


def test_parse_tier_rules_reads_every_field() -> None:
    """A complete rules text gives the matching TierRules."""
    assert parse_tier_rules(RULES_TOML.replace("= 4\n", "= 8\n")) == TierRules(
        ai_min_accelerator_fp16_flops=20e12,
        hpc_interconnect_kinds=frozenset({"infiniband", "slingshot", "omni-path"}),
        edge_max_physical_cores=8,
        edge_max_memory_bytes=16 * GIB,
        ai_min_unpriced_accelerators=6,
    )


@pytest.mark.parametrize(
    "field",
    [
        "ai_min_accelerator_fp16_flops",
        "hpc_interconnect_kinds",
        "edge_max_physical_cores",
        "edge_max_memory_bytes",
        "ai_min_unpriced_accelerators",
    ],
)
def test_parse_tier_rules_missing_field_raises_key_error(field: str) -> None:
    """Leaving out any field raises KeyError naming it."""
    text = "\n".join(line for line in RULES_TOML.splitlines() if not line.startswith(field))
    with pytest.raises(KeyError, match=field):
        parse_tier_rules(text)


def test_parse_tier_rules_non_numeric_threshold_raises_value_error() -> None:
    """A threshold that is not a number raises ValueError."""
    with pytest.raises(ValueError, match="could not convert"):
        parse_tier_rules(RULES_TOML.replace("20e12", '"twenty teraflops"'))


def test_parse_tier_rules_invalid_toml_raises_value_error() -> None:
    """Text that is not TOML raises a ValueError (tomllib.TOMLDecodeError)."""
    with pytest.raises(tomllib.TOMLDecodeError):
        parse_tier_rules("ai_min_accelerator_fp16_flops = = 1\n")
    assert issubclass(tomllib.TOMLDecodeError, ValueError)


def test_parse_tier_rules_rejects_interconnect_kinds_given_as_a_string() -> None:
    """hpc_interconnect_kinds = "infiniband" (not a list) is an error, not a set of single letters."""
    with pytest.raises(ValueError, match="hpc_interconnect_kinds"):
        parse_tier_rules(RULES_TOML.replace('["infiniband", "slingshot", "omni-path"]', '"infiniband"'))
