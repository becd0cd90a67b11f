"""`split_machine` and `RayletSpec`: slicing one machine into per-tier raylets keeps the totals honest (no Ray)."""

from __future__ import annotations

import pytest

from census_agent.labels import REGION_LABEL, TIER_LABEL
from scheduler.slicing import MIN_OBJECT_STORE_BYTES, RayletSpec, raylet_names, split_machine

GIB = 2**30
TIERS = ["general", "ai", "hpc", "edge"]


@pytest.mark.parametrize(("cpus", "memory"), [(4, 8 * GIB), (7, 3 * GIB + 12345), (16, 64 * GIB), (5, 2 * GIB)])
def test_raylet_cpus_and_memory_add_up_to_what_is_given(cpus: int, memory: int) -> None:
    """The raylets' CPUs sum to `cpus`, their memory plus object stores to `memory`, to the byte."""
    specs = split_machine(cpus, memory, TIERS)
    assert [s.tier for s in specs] == TIERS
    assert sum(s.cpus for s in specs) == cpus
    assert sum(s.memory_bytes + s.object_store_bytes for s in specs) == memory
    assert all(s.object_store_bytes >= MIN_OBJECT_STORE_BYTES for s in specs)


def test_shares_are_as_even_as_whole_units_allow() -> None:
    """7 CPUs over 4 tiers: 2, 2, 2, 1 (earlier tiers take the remainder)."""
    assert [s.cpus for s in split_machine(7, 4 * GIB, TIERS)] == [2, 2, 2, 1]


def test_gpus_go_to_the_ai_tier_only() -> None:
    """All GPUs to the ai raylet; none elsewhere."""
    specs = split_machine(4, 4 * GIB, TIERS, gpus_for_ai=2)
    assert {s.tier: s.gpus for s in specs} == {"general": 0, "ai": 2, "hpc": 0, "edge": 0}


def test_gpus_without_an_ai_tier_are_refused() -> None:
    """GPUs cannot be placed when no ai tier is asked for."""
    with pytest.raises(ValueError, match="ai tier"):
        split_machine(2, 2 * GIB, ["general", "hpc"], gpus_for_ai=1)


def test_fewer_cpus_than_tiers_are_refused() -> None:
    """Ray node CPUs are whole numbers: 2 CPUs cannot make 4 raylets without overcommitting on purpose."""
    with pytest.raises(ValueError, match="whole numbers"):
        split_machine(2, 8 * GIB, TIERS)


def test_too_little_memory_is_refused() -> None:
    """Each raylet needs an object store of Ray's minimum and some schedulable memory."""
    with pytest.raises(ValueError, match="too little"):
        split_machine(4, 4 * MIN_OBJECT_STORE_BYTES, TIERS)


def test_extra_labels_reach_every_raylet_beside_the_tier_label() -> None:
    """`labels` (e.g. the region) are added to each raylet's labels; the tier label comes from the tier."""
    specs = split_machine(4, 4 * GIB, TIERS, labels={REGION_LABEL: "440106"})
    assert [s.all_labels() for s in specs][1] == {TIER_LABEL: "ai", REGION_LABEL: "440106"}


def test_bad_tiers_and_labels_are_refused() -> None:
    """Unknown or repeated tiers, a tier label among the extras, or a label that breaks `--labels` are refused."""
    with pytest.raises(ValueError, match="unknown tier"):
        RayletSpec("gpu", 1)
    with pytest.raises(ValueError, match="distinct"):
        split_machine(4, 4 * GIB, ["hpc", "hpc"])
    with pytest.raises(ValueError, match="comes from"):
        RayletSpec("hpc", 1, labels={TIER_LABEL: "ai"})
    with pytest.raises(ValueError, match="may not contain"):
        RayletSpec("hpc", 1, labels={"a": "b,c"})
    with pytest.raises(ValueError, match="object_store_bytes"):
        RayletSpec("hpc", 1, object_store_bytes=MIN_OBJECT_STORE_BYTES - 1)


def test_node_names_are_numbered_within_each_tier() -> None:
    """hpc-0 and hpc-1 for two hpc raylets."""
    specs = [RayletSpec("general", 1), RayletSpec("hpc", 1), RayletSpec("hpc", 1), RayletSpec("edge", 1)]
    assert raylet_names(specs) == ["general-0", "hpc-0", "hpc-1", "edge-0"]
