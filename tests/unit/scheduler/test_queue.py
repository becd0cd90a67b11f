"""The queue: priority, fair share, quotas, backfill that cannot delay the head job, and reasons for waiting."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from census_agent.models import Tier
from scheduler.models import QueuedJob, RunningJob
from scheduler.policy import Policy, Quota
from scheduler.queue import net_of_running, overdue, plan
from tests.unit.scheduler.builders import NOW, node, queued, running, spec

HPC = [node(f"hpc-{i}", Tier.HPC, cpus=4) for i in range(4)]


def started(result: object) -> list[str]:
    return [s.job_id for s in result.starts]  # type: ignore[attr-defined]


def test_higher_priority_starts_first_when_only_one_fits() -> None:
    """Two jobs wanting the whole tier: the priority-5 job starts although it was submitted later."""
    jobs = [
        queued("low", spec("hpc", cpus=4, nodes=4), NOW - 50),
        queued("high", spec("hpc", cpus=4, nodes=4, priority=5), NOW - 10),
    ]
    result = plan(jobs, [], HPC, Policy(), NOW)
    assert started(result) == ["high"]
    [wait] = result.waits
    assert (wait.job_id, wait.tier, wait.position) == ("low", Tier.HPC, 1)


def test_same_priority_is_first_come_first_served() -> None:
    """At equal priority and within one organisation, the earlier submission starts."""
    jobs = [
        queued("second", spec("hpc", cpus=4, nodes=4), NOW - 10),
        queued("first", spec("hpc", cpus=4, nodes=4), NOW - 50),
    ]
    assert started(plan(jobs, [], HPC, Policy(), NOW)) == ["first"]


def test_fair_share_alternates_organisations_and_favours_the_one_using_less() -> None:
    """org-a already holds two nodes; four one-node jobs each from org-a (submitted first) and org-b compete
    for the two free nodes: org-b, holding nothing, gets both."""
    busy = [running("a-old", Tier.HPC, ("hpc-0", "hpc-1"), cpus=4, org="org-a")]
    jobs = [queued(f"a{i}", spec("hpc", cpus=4, org="org-a"), NOW - 100 + i) for i in range(4)]
    jobs += [queued(f"b{i}", spec("hpc", cpus=4, org="org-b"), NOW - 50 + i) for i in range(4)]
    result = plan(jobs, busy, net_of_running(HPC, busy), Policy(), NOW)
    assert started(result) == ["b0", "b1"]


def test_fair_share_splits_an_idle_tier_between_organisations() -> None:
    """With nothing running, org-a's four early jobs and org-b's four later ones share the four nodes 2/2."""
    jobs = [queued(f"a{i}", spec("hpc", cpus=4, org="org-a"), NOW - 100 + i) for i in range(4)]
    jobs += [queued(f"b{i}", spec("hpc", cpus=4, org="org-b"), NOW - 50 + i) for i in range(4)]
    assert sorted(started(plan(jobs, [], HPC, Policy(), NOW))) == ["a0", "a1", "b0", "b1"]


def test_quota_holds_and_the_job_says_it_waits_for_quota() -> None:
    """org-a's hpc quota is 8 CPUs: of four 4-CPU jobs two start, two wait for quota, and org-b is not held back."""
    policy = Policy(quotas={("org-a", Tier.HPC): Quota(cpus=8)})
    jobs = [queued(f"a{i}", spec("hpc", cpus=4, org="org-a"), NOW - 100 + i) for i in range(4)]
    jobs.append(queued("b0", spec("hpc", cpus=4, org="org-b"), NOW - 10))
    result = plan(jobs, [], HPC, policy, NOW)
    assert sorted(started(result)) == ["a0", "a1", "b0"]
    assert all("waits for quota" in w.reason and "org-a's hpc quota of 8 CPUs" in w.reason for w in result.waits)


def test_job_count_quota_counts_running_jobs() -> None:
    """A quota of 1 running job in ai: with one already running, the next waits."""
    ai = [node("ai-0", Tier.AI, cpus=8, gpus=4)]
    busy = [running("r", Tier.AI, ("ai-0",), cpus=1, gpus=1)]
    policy = Policy(quotas={("*", Tier.AI): Quota(jobs=1)})
    result = plan([queued("q", spec("ai", gpus=1))], busy, net_of_running(ai, busy), policy, NOW)
    assert started(result) == []
    assert "quota of 1 running job(s) is reached" in result.waits[0].reason


def test_backfill_starts_a_short_job_that_cannot_delay_the_blocked_head() -> None:
    """Three nodes busy for an hour; the head wants all four. A 10-minute job may use the free node (it ends
    before the head could start); a 2-hour job may not, and says it waits behind the head."""
    busy = [running("r", Tier.HPC, ("hpc-0", "hpc-1", "hpc-2"), cpus=4, started_at=NOW, limit=3600)]
    nodes = net_of_running(HPC, busy)
    jobs = [
        queued("head", spec("hpc", cpus=4, nodes=4, priority=10), NOW - 30),
        queued("long", spec("hpc", cpus=4, limit=7200), NOW - 20),
        queued("short", spec("hpc", cpus=4, limit=600), NOW - 10),
    ]
    result = plan(jobs, busy, nodes, Policy(), NOW)
    assert started(result) == ["short"]
    assert "backfilled: cannot delay head" in result.starts[0].reason
    reservation = result.reservations[Tier.HPC]
    assert (reservation.job_id, reservation.at, reservation.node_ids) == (
        "head",
        NOW + 3600,
        frozenset(n.node_id for n in HPC),
    )
    waits = {w.job_id: w for w in result.waits}
    assert "next in line, nodes reserved to start by" in waits["head"].reason
    assert "behind head" in waits["long"].reason
    assert [waits["head"].position, waits["long"].position] == [1, 2]


def test_backfill_may_use_nodes_the_head_will_not_need_for_any_length() -> None:
    """The head needs 2 nodes and will get the two busy ones when they end; a 3-hour job may take a free node
    the head does not need... only if enough remain: here 2 free nodes, head needs 3 -> reserved on the ones
    freed first, and a long job can use a node outside the reservation."""
    busy = [running("r", Tier.HPC, ("hpc-0", "hpc-1"), cpus=4, started_at=NOW, limit=3600)]
    nodes = [*net_of_running(HPC, busy), node("hpc-4", Tier.HPC, cpus=4)]
    jobs = [
        queued("head", spec("hpc", cpus=4, nodes=4, priority=10), NOW - 30),
        queued("long", spec("hpc", cpus=4, limit=3 * 3600), NOW - 20),
    ]
    result = plan(jobs, busy, nodes, Policy(), NOW)
    reserved = result.reservations[Tier.HPC].node_ids
    assert len(reserved) == 4
    assert started(result) == ["long"]
    assert not set(result.starts[0].node_ids) & reserved


def test_without_backfill_nothing_starts_behind_a_blocked_head() -> None:
    """Strict order: the short job waits too, and says why."""
    busy = [running("r", Tier.HPC, ("hpc-0", "hpc-1", "hpc-2"), cpus=4)]
    jobs = [queued("head", spec("hpc", cpus=4, nodes=4, priority=10)), queued("short", spec("hpc", cpus=1, limit=60))]
    result = plan(jobs, busy, net_of_running(HPC, busy), Policy(backfill=False), NOW)
    assert started(result) == []
    assert "strict order" in result.waits[0].reason


def test_overdue_lists_jobs_past_their_time_limit() -> None:
    """A job started 2 h ago with a 1 h limit is overdue; one with 3 h is not."""
    jobs = [
        running("late", Tier.HPC, ("hpc-0",), started_at=NOW - 7200, limit=3600),
        running("fine", Tier.HPC, ("hpc-1",), started_at=NOW - 7200, limit=3 * 3600),
    ]
    assert overdue(jobs, NOW) == ["late"]


# --- properties over random queues ------------------------------------------------------------------------

TIERS = [Tier.GENERAL, Tier.AI, Tier.HPC, Tier.EDGE]
CLUSTER = (
    [node(f"g{i}", Tier.GENERAL, cpus=4, memory_gib=16) for i in range(3)]
    + [node(f"a{i}", Tier.AI, cpus=8, gpus=2, memory_gib=64) for i in range(2)]
    + [node(f"h{i}", Tier.HPC, cpus=8, memory_gib=64) for i in range(3)]
    + [node(f"e{i}", Tier.EDGE, cpus=2, memory_gib=4, region="440106") for i in range(2)]
)

job_specs = st.builds(
    lambda klass, cpus, gpus, mem, nodes, prio, org, limit: spec(
        klass,
        cpus=cpus,
        gpus=gpus if klass == "ai" else 0,
        memory_gib=mem,
        nodes=nodes if klass == "hpc" else 1,
        priority=prio,
        org=org,
        limit=limit,
    ),
    st.sampled_from(["general", "in-memory", "hpc", "ai", "edge"]),
    st.sampled_from([0.5, 1, 2, 4, 8]),
    st.integers(0, 2),
    st.sampled_from([0, 1, 4, 16, 48]),
    st.integers(1, 3),
    st.integers(0, 2),
    st.sampled_from(["org-a", "org-b", "org-c"]),
    st.sampled_from([60, 600, 3600, 7200]),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[QueuedJob], list[RunningJob], bool]:
    specs = draw(st.lists(job_specs, max_size=25))
    jobs = [queued(f"q{i}", s, NOW - 1000 + i) for i, s in enumerate(specs)]
    # Running jobs: take whole nodes from a random subset, ending at random times.
    holders = draw(st.lists(st.sampled_from(CLUSTER), unique_by=lambda n: n.node_id, max_size=6))
    busy = [
        running(
            f"r{i}",
            n.tier,
            (n.node_id,),
            cpus=n.cpus,
            started_at=NOW - draw(st.integers(0, 3000)),
            limit=draw(st.sampled_from([600, 3600, 7200])),
        )
        for i, n in enumerate(holders)
    ]
    return jobs, busy, draw(st.booleans())


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_every_job_gets_exactly_one_answer_and_no_node_is_overcommitted(
    scenario: tuple[list[QueuedJob], list[RunningJob], bool],
) -> None:
    """Whatever the queue: each job either starts or waits (once), starts fit the free capacity of distinct
    nodes of one tier, and positions in each tier's queue run 1, 2, 3..."""
    jobs, busy, backfill = scenario
    nodes = net_of_running(CLUSTER, busy)
    result = plan(jobs, busy, nodes, Policy(backfill=backfill), NOW)
    answered = [s.job_id for s in result.starts] + [w.job_id for w in result.waits]
    assert sorted(answered) == sorted(j.job_id for j in jobs)
    free = {n.node_id: [n.free_cpus, n.free_gpus, n.free_memory_bytes] for n in nodes}
    tier_of = {n.node_id: n.tier for n in nodes}
    specs = {j.job_id: j.spec for j in jobs}
    for s in result.starts:
        r = specs[s.job_id].resources
        assert len(set(s.node_ids)) == len(s.node_ids) == r.nodes
        assert {tier_of[n] for n in s.node_ids} == {s.tier}
        for n in s.node_ids:
            free[n][0] -= r.cpus
            free[n][1] -= r.gpus
            free[n][2] -= r.memory_bytes
    assert all(min(f) >= 0 for f in free.values()), free
    positions: dict[Tier, list[int]] = defaultdict(list)
    for w in result.waits:
        positions[w.tier].append(w.position)
    assert all(p == list(range(1, len(p) + 1)) for p in positions.values())


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_the_head_job_still_fits_on_its_reserved_nodes_at_its_reserved_time(
    scenario: tuple[list[QueuedJob], list[RunningJob], bool],
) -> None:
    """Backfill cannot delay the head: at the reserved time, counting every job still running then (those
    already running and those this pass starts, each ending by its time limit), enough reserved nodes have
    room for the head's share."""
    jobs, busy, _ = scenario
    nodes = net_of_running(CLUSTER, busy)
    result = plan(jobs, busy, nodes, Policy(backfill=True), NOW)
    specs = {j.job_id: j.spec for j in jobs}
    holding = [(b.node_ids, b.resources, b.ends_by) for b in busy]
    holding += [
        (s.node_ids, specs[s.job_id].resources, NOW + specs[s.job_id].time_limit_seconds) for s in result.starts
    ]
    totals = {n.node_id: n for n in CLUSTER}
    for reservation in result.reservations.values():
        if reservation.at == float("inf"):
            continue
        head = specs[reservation.job_id].resources
        room = 0
        for node_id in reservation.node_ids:
            n = totals[node_id]
            free = [n.cpus, n.gpus, n.memory_bytes]
            for held_nodes, r, ends_by in holding:
                if node_id in held_nodes and ends_by > reservation.at:
                    free = [free[0] - r.cpus, free[1] - r.gpus, free[2] - r.memory_bytes]
            room += free[0] >= head.cpus and free[1] >= head.gpus and free[2] >= head.memory_bytes
        assert room >= head.nodes, (reservation, result.starts)


@settings(max_examples=200, deadline=None)
@given(scenarios())
def test_without_backfill_no_job_starts_on_a_tier_behind_its_waiting_head(
    scenario: tuple[list[QueuedJob], list[RunningJob], bool],
) -> None:
    """Strict order: once a job waits for room on its home tier, nothing considered after it starts there."""
    jobs, busy, _ = scenario
    result = plan(jobs, busy, net_of_running(CLUSTER, busy), Policy(backfill=False), NOW)
    blocked = {w.tier for w in result.waits if "strict order" in w.reason}
    heads = {w.tier: w.job_id for w in result.waits if "strict order" in w.reason}
    order = [*(s.job_id for s in result.starts), *(w.job_id for w in result.waits)]
    assert len(blocked) == len(heads)
    for s in result.starts:
        if s.tier in heads:
            # A start on a blocked tier must have been decided before the head blocked it; the plan lists
            # starts in decision order, so it cannot come from a job ordered behind the head by priority.
            head_priority = next(j.spec.priority for j in jobs if j.job_id == heads[s.tier])
            mine = next(j.spec.priority for j in jobs if j.job_id == s.job_id)
            assert mine >= head_priority, (s, heads, order)
