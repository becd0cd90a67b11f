"""Census arithmetic (`api.census.arithmetic`): sums over rollup cells by status, tier and region up the hierarchy, the
headline convention, per-capita figures and the safety of the region walk.  Pure: no database, no server."""

from __future__ import annotations

import pytest

from api.census.arithmetic import (
    ALL_FIELDS,
    UNASSIGNED,
    Region,
    RollupRow,
    Totals,
    aggregate,
    ancestors,
    headline_flops,
    per_capita,
)
from census_agent.models import Precision, Tier

REGIONS = {
    r.code: r
    for r in (
        Region("CN", None, "country", "中国", "China", 1_408_280_000),
        Region("440000", "CN", "province", "广东省", "Guangdong", 127_060_000),
        Region("440100", "440000", "city", "广州市", "Guangzhou", 18_827_000),
        Region("440106", "440100", "district", "天河区", "Tianhe", 2_238_000),
        Region("440111", "440100", "district", "白云区", "Baiyun", 3_666_800),
        Region("440300", "440000", "city", "深圳市", "Shenzhen", None),
    )
}
DEFAULT = {Tier.GENERAL: Precision.FP32, Tier.EDGE: Precision.FP32, Tier.AI: Precision.FP16, Tier.HPC: Precision.FP64}


def cell(tier: str, region: str, status: str = "active", *, nodes: float = 1, scale: float = 1.0) -> RollupRow:
    """A rollup cell of `nodes` nodes, each with 10 cores, 20 threads, 1 accelerator, 1 GiB and peaks x `scale`."""
    values = {
        "nodes": nodes,
        "physical_cores": 10 * nodes,
        "threads": 20 * nodes,
        "accelerators": 1 * nodes,
        "memory_bytes": 2**30 * nodes,
        "fp64_flops": 1e12 * scale * nodes,
        "fp32_flops": 2e12 * scale * nodes,
        "fp16_flops": 4e12 * scale * nodes,
        "int8_ops": 8e12 * scale * nodes,
    }
    return RollupRow(tier, region, status, values)


def test_aggregate_counts_only_the_requested_statuses() -> None:
    """Cells whose status is not asked for are left out of every total; asking for all statuses counts them."""
    rows = [
        cell("general", "440106", "active", nodes=3),
        cell("general", "440106", "stale", nodes=5),
        cell("general", "440106", "offline", nodes=7),
    ]
    active = aggregate(rows, REGIONS, {"active"})
    assert active.total.values["nodes"] == 3
    assert active.by_tier["general"].values["physical_cores"] == 30
    assert active.by_region["440106"].values["nodes"] == 3
    everything = aggregate(rows, REGIONS, {"active", "stale", "offline"})
    assert everything.total.values["nodes"] == 15
    assert everything.by_region["CN"].values["fp64_flops"] == pytest.approx(15e12)
    assert aggregate(rows, REGIONS, set()).total.values == dict.fromkeys(ALL_FIELDS, 0.0)


def test_aggregate_rolls_districts_up_to_city_province_and_country() -> None:
    """A district's cells count in the district, its city, its province and the country, and in no sibling."""
    rows = [cell("general", "440106", nodes=2), cell("ai", "440111", nodes=3, scale=10), cell("hpc", "440300")]
    result = aggregate(rows, REGIONS, {"active"})
    assert result.by_region["440106"].values["nodes"] == 2
    assert result.by_region["440111"].values["nodes"] == 3
    assert result.by_region["440100"].values["nodes"] == 5
    assert result.by_region["440300"].values["nodes"] == 1
    assert result.by_region["440000"].values["nodes"] == 6
    assert result.by_region["CN"].values["nodes"] == 6
    assert result.by_region["CN"].values["fp16_flops"] == pytest.approx(2 * 4e12 + 3 * 40e12 + 4e12)
    assert result.by_region_tier["440100"]["ai"].values["fp16_flops"] == pytest.approx(120e12)
    assert result.by_region_tier["440100"]["hpc"].values["nodes"] == 0
    assert result.by_region_tier["440000"]["hpc"].values["nodes"] == 1
    assert result.by_region_tier["440106"]["ai"].values["nodes"] == 0
    assert result.total.values["nodes"] == 6
    assert result.unassigned.values["nodes"] == 0
    for tier, nodes in {"general": 2, "ai": 3, "hpc": 1, "edge": 0}.items():
        assert result.by_tier[tier].values["nodes"] == nodes


def test_nodes_without_a_region_count_in_the_total_and_as_unassigned_only() -> None:
    """The unassigned cell (region "") adds to the total and the tier, to `unassigned`, and to no region."""
    rows = [cell("edge", UNASSIGNED, nodes=4), cell("edge", "440106", nodes=1)]
    result = aggregate(rows, REGIONS, {"active"})
    assert result.total.values["nodes"] == 5
    assert result.by_tier["edge"].values["nodes"] == 5
    assert result.unassigned.values["nodes"] == 4
    assert result.unassigned.values["memory_bytes"] == 4 * 2**30
    assert result.by_region["CN"].values["nodes"] == 1


def test_a_rollup_row_with_an_unknown_region_code_counts_as_unassigned() -> None:
    """A cell whose region is not in the table (a region removed from the seeds) is neither lost nor placed
    under any region: it counts in the total and as unassigned."""
    rows = [cell("general", "999999", nodes=2), cell("general", "440106", nodes=1)]
    result = aggregate(rows, REGIONS, {"active"})
    assert "999999" not in result.by_region
    assert result.total.values["nodes"] == 3
    assert result.unassigned.values["nodes"] == 2
    assert result.by_region["CN"].values["nodes"] == 1


def test_an_unknown_tier_in_a_rollup_row_is_kept_apart() -> None:
    """A tier outside the four (a future tier) still counts in the total and gets its own entry."""
    result = aggregate([cell("quantum", "440106")], REGIONS, {"active"})
    assert result.total.values["nodes"] == 1
    assert result.by_tier["quantum"].values["nodes"] == 1
    assert result.by_region_tier["440106"]["quantum"].values["nodes"] == 1


def test_headline_adds_each_tier_at_its_conventions_precision() -> None:
    """Default: general and edge at fp32, ai at fp16, hpc at fp64; a non-default convention picks other figures."""
    rows = [
        cell("general", "440106", nodes=1),  # fp32 2e12
        cell("edge", "440106", nodes=2),  # fp32 4e12
        cell("ai", "440106", nodes=1, scale=100),  # fp16 400e12
        cell("hpc", "440111", nodes=3),  # fp64 3e12
    ]
    result = aggregate(rows, REGIONS, {"active"})
    assert headline_flops(result.by_tier, DEFAULT) == pytest.approx(2e12 + 4e12 + 400e12 + 3e12)
    all_fp64 = dict.fromkeys(Tier, Precision.FP64)
    assert headline_flops(result.by_tier, all_fp64) == pytest.approx(1e12 + 2e12 + 100e12 + 3e12)
    mixed = {Tier.GENERAL: Precision.INT8, Tier.EDGE: Precision.FP16, Tier.AI: Precision.INT8, Tier.HPC: Precision.FP32}
    assert headline_flops(result.by_tier, mixed) == pytest.approx(8e12 + 8e12 + 800e12 + 6e12)
    assert headline_flops(result.by_region_tier["440106"], DEFAULT) == pytest.approx(2e12 + 4e12 + 400e12)
    assert headline_flops(result.by_region_tier["440100"], DEFAULT) == pytest.approx(409e12)


def test_headline_of_an_empty_census_is_zero() -> None:
    """No cells: the headline is 0 under any convention, every tier present and empty."""
    result = aggregate([], REGIONS, {"active"})
    assert headline_flops(result.by_tier, DEFAULT) == 0
    assert set(result.by_tier) == {t.value for t in Tier}


def test_per_capita_divides_by_population_and_is_none_without_one() -> None:
    """FLOPS per resident; an unknown (None) or zero population gives None, not a division error."""
    assert per_capita(2_238_000e9, 2_238_000) == pytest.approx(1e9)
    assert per_capita(0.0, 1000) == 0.0
    assert per_capita(1e15, None) is None
    assert per_capita(1e15, 0) is None


def test_ancestors_walks_up_nearest_first_and_stops_at_unknown_codes() -> None:
    """District -> city -> province -> country; an unknown code has no chain; a parent outside the table ends it."""
    assert ancestors("440106", REGIONS) == ["440106", "440100", "440000", "CN"]
    assert ancestors("CN", REGIONS) == ["CN"]
    assert ancestors("999999", REGIONS) == []
    orphan = {**REGIONS, "X1": Region("X1", "NOWHERE", "district", "孤", "Orphan", 1)}
    assert ancestors("X1", orphan) == ["X1"]


def test_ancestors_is_safe_against_cycles() -> None:
    """A parent cycle (bad seed data) ends the walk instead of looping forever; aggregation still terminates."""
    cyclic = {
        "A": Region("A", "B", "city", "甲", "A", 10),
        "B": Region("B", "C", "province", "乙", "B", 20),
        "C": Region("C", "A", "country", "丙", "C", 30),
        "S": Region("S", "S", "district", "自", "Self", 5),
    }
    assert ancestors("A", cyclic) == ["A", "B", "C"]
    assert ancestors("C", cyclic) == ["C", "A", "B"]
    assert ancestors("S", cyclic) == ["S"]
    result = aggregate([cell("general", "A", nodes=2), cell("general", "S")], cyclic, {"active"})
    assert [result.by_region[c].values["nodes"] for c in "ABCS"] == [2, 2, 2, 1]
    assert result.total.values["nodes"] == 3


def test_totals_add_and_flops_by_precision() -> None:
    """`Totals.add` sums every field (missing ones count 0) and `flops` reads the precision's column."""
    totals = Totals()
    totals.add({"nodes": 1, "fp16_flops": 5.0})
    totals.add(cell("ai", "440106", nodes=2).values)
    assert totals.values["nodes"] == 3
    assert totals.flops(Precision.FP16) == pytest.approx(5.0 + 8e12)
    assert totals.flops(Precision.INT8) == pytest.approx(16e12)
    assert totals.flops(Precision.FP64) == pytest.approx(2e12)
