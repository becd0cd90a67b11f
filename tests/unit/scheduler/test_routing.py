"""The routing policy: each workload class lands on the tier the policy names, with a reason, and impossible
jobs are found at submission."""

from __future__ import annotations

import pytest

from census_agent.models import Tier
from scheduler.models import NodeView, RunningJob, WorkloadClass
from scheduler.policy import ClassPolicy, Placement, Policy, Quota, feasible
from scheduler.queue import Start, net_of_running, plan
from tests.unit.scheduler.builders import NOW, node, queued, running, spec

CLUSTER = [
    node("gen-1", Tier.GENERAL, cpus=4, memory_gib=16),
    node("gen-2", Tier.GENERAL, cpus=4, memory_gib=64),
    node("ai-1", Tier.AI, cpus=8, gpus=4, memory_gib=256),
    node("hpc-1", Tier.HPC, cpus=64, memory_gib=256),
    node("hpc-2", Tier.HPC, cpus=64, memory_gib=256),
    node("edge-sz", Tier.EDGE, cpus=2, memory_gib=4, region="440300"),
    node("edge-th", Tier.EDGE, cpus=2, memory_gib=4, region="440106"),
]


def start_of(
    job_spec_: object,
    nodes: list[NodeView] = CLUSTER,
    busy: list[RunningJob] | None = None,
    policy: Policy | None = None,
) -> Start:
    busy = busy or []
    result = plan([queued("j", job_spec_)], busy, net_of_running(nodes, busy), policy or Policy(), NOW)  # type: ignore[arg-type]
    assert result.starts, result.waits
    return result.starts[0]


@pytest.mark.parametrize(
    ("klass", "gpus", "tier"),
    [("general", 0, Tier.GENERAL), ("hpc", 0, Tier.HPC), ("ai", 1, Tier.AI), ("edge", 0, Tier.EDGE)],
)
def test_each_class_goes_to_its_home_tier_with_a_reason(klass: str, gpus: int, tier: Tier) -> None:
    """general -> general, hpc -> hpc, ai -> ai, edge -> edge, and the reason names the rule."""
    started = start_of(spec(klass, gpus=gpus))
    assert started.tier is tier
    assert f"{klass} jobs run on {tier}" in started.reason


def test_hpc_gang_gets_distinct_nodes_of_the_hpc_tier() -> None:
    """A 2-node hpc job is placed on two different hpc nodes."""
    started = start_of(spec("hpc", cpus=32, nodes=2))
    assert sorted(started.node_ids) == ["hpc-1", "hpc-2"]
    assert "2 hpc nodes" in started.reason


def test_edge_job_prefers_nodes_in_its_region_then_falls_back() -> None:
    """An edge job for Tianhe (440106) lands on the Tianhe node; one for the Guangzhou city (440100) too (the
    district is under the city); one for Shenzhen's node's region there; and when its region's node is full,
    another edge node is used."""
    assert start_of(spec("edge", region="440106")).node_ids == ("edge-th",)
    assert start_of(spec("edge", region="440100")).node_ids == ("edge-th",)
    assert start_of(spec("edge", region="440300")).node_ids == ("edge-sz",)
    busy = [running("x", Tier.EDGE, ("edge-th",), cpus=2)]
    assert start_of(spec("edge", region="440106"), busy=busy).node_ids == ("edge-sz",)


def test_in_memory_job_takes_the_tightest_memory_fit() -> None:
    """A 40 GiB in-memory job goes to the 64 GiB general node, not a 256 GiB one; a 100 GiB job to hpc."""
    assert start_of(spec("in-memory", memory_gib=40)).node_ids == ("gen-2",)
    assert start_of(spec("in-memory", memory_gib=100)).tier is Tier.HPC


def test_general_job_spills_onto_idle_hpc_when_general_is_full_but_never_onto_a_busy_tier() -> None:
    """With the general tier full, a general job starts on hpc (idle) and the reason says it spilled; when an
    hpc job is waiting, hpc is not idle and the general job goes on to the next idle tier (edge) instead."""
    busy = [running("g1", Tier.GENERAL, ("gen-1",), cpus=4), running("g2", Tier.GENERAL, ("gen-2",), cpus=4)]
    nodes = net_of_running(CLUSTER, busy)
    spilled = start_of(spec("general"), busy=busy)
    assert spilled.tier is Tier.HPC
    assert "spilled from general" in spilled.reason
    hpc_waiter = spec("hpc", cpus=64, nodes=3)  # cannot fit: makes hpc the home of a waiting job
    result = plan([queued("g", spec("general")), queued("h", hpc_waiter)], busy, nodes, Policy(), NOW)
    assert [(s.job_id, s.tier) for s in result.starts] == [("g", Tier.EDGE)]
    assert [w.job_id for w in result.waits] == ["h"]


def test_general_job_uses_ai_only_after_every_other_tier() -> None:
    """ai is the last resort for general work: with general, hpc and edge full it spills to ai."""
    busy = [
        running("a", Tier.GENERAL, ("gen-1",), cpus=4),
        running("b", Tier.GENERAL, ("gen-2",), cpus=4),
        running("c", Tier.HPC, ("hpc-1", "hpc-2"), cpus=64),
        running("d", Tier.EDGE, ("edge-sz",), cpus=2),
        running("e", Tier.EDGE, ("edge-th",), cpus=2),
    ]
    assert start_of(spec("general"), busy=busy).tier is Tier.AI
    only_hpc_free = busy[:2] + busy[3:]
    assert start_of(spec("general"), busy=only_hpc_free).tier is Tier.HPC


def test_class_routes_are_configurable() -> None:
    """A policy that sends general work to edge first is followed."""
    policy = Policy(classes={**Policy().classes, WorkloadClass.GENERAL: ClassPolicy((Tier.EDGE, Tier.GENERAL))})
    assert start_of(spec("general"), policy=policy).tier is Tier.EDGE


def test_job_needing_more_gpus_than_any_node_has_is_infeasible_with_the_reason() -> None:
    """8 GPUs per node where the ai tier's largest node has 4: refused at submission, saying so."""
    reason = feasible(spec("ai", gpus=8).resources, "org-a", WorkloadClass.AI, CLUSTER, Policy())
    assert reason is not None
    assert "8 GPUs" in reason
    assert "largest node 8 CPUs, 4 GPUs" in reason


def test_gang_larger_than_the_tier_is_infeasible_and_one_that_fits_is_not() -> None:
    """3 hpc nodes where there are 2: infeasible; 2: feasible (even while they are busy)."""
    assert feasible(spec("hpc", nodes=3).resources, "o", WorkloadClass.HPC, CLUSTER, Policy()) is not None
    assert feasible(spec("hpc", nodes=2).resources, "o", WorkloadClass.HPC, CLUSTER, Policy()) is None


def test_job_larger_than_its_organisations_quota_is_infeasible() -> None:
    """A 16-CPU hpc job for an organisation whose hpc quota is 8 CPUs can never start: refused."""
    policy = Policy(quotas={("org-a", Tier.HPC): Quota(cpus=8)})
    reason = feasible(spec("hpc", cpus=16).resources, "org-a", WorkloadClass.HPC, CLUSTER, policy)
    assert reason is not None
    assert "quota" in reason
    assert feasible(spec("hpc", cpus=16).resources, "org-b", WorkloadClass.HPC, CLUSTER, policy) is None


def test_policy_from_toml_overrides_routes_and_quotas_and_keeps_defaults() -> None:
    """The file form: a class route, a placement and quotas (with "*" for every organisation)."""
    policy = Policy.from_toml(
        """
        backfill = false
        [classes.general]
        tiers = ["general", "edge"]
        [classes.in-memory]
        placement = "first-fit"
        [quotas."*".hpc]
        cpus = 128
        [quotas.lab.ai]
        gpus = 2
        jobs = 1
        """
    )
    assert policy.classes[WorkloadClass.GENERAL] == ClassPolicy((Tier.GENERAL, Tier.EDGE))
    assert policy.classes[WorkloadClass.IN_MEMORY].placement is Placement.FIRST_FIT
    assert policy.classes[WorkloadClass.HPC] == Policy().classes[WorkloadClass.HPC]
    assert policy.quota("anyone", Tier.HPC) == Quota(cpus=128)
    assert policy.quota("lab", Tier.AI) == Quota(gpus=2, jobs=1)
    assert policy.quota("lab", Tier.GENERAL) is None
    assert policy.backfill is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[classes.quantum]\ntiers = ['hpc']", "classes.quantum"),
        ("[classes.hpc]\ntiers = ['moon']", "classes.hpc"),
        ("[classes.hpc]\ntiers = []", "at least one tier"),
        ("[quotas.lab.mars]\ncpus = 1", "quotas.lab.mars"),
        ("[quotas.lab.ai]\ncores = 1", "unknown keys cores"),
        ("priority = 1", "unknown policy keys: priority"),
        ("backfill = 'yes'", "backfill"),
    ],
)
def test_policy_file_errors_name_the_key(text: str, message: str) -> None:
    """A wrong policy file is refused with the offending key, not half-applied."""
    with pytest.raises(ValueError, match=message):
        Policy.from_toml(text)
