"""Capacity is what Ray says is free: work placed on Ray by others is seen, Suanli's own jobs count once, and a
job between its dispatch and Ray's reservation is never counted as free (`scheduler.queue.net_of_running`, the
queue's reasons, and the dispatcher's use of both against a fake Ray that reports availability)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from census_agent.models import Tier
from scheduler.dispatcher import Dispatcher, node_views
from scheduler.models import JobState, NodeView, RayNode, Resources, RunningJob
from scheduler.policy import Policy
from scheduler.queue import net_of_running, plan
from tests.unit.scheduler.builders import NOW, queued, spec
from tests.unit.scheduler.fakes import FakeJobStore, FakeRay

GiB = 2**30


def ray_node(node_id: str, tier: Tier, cpus: float, free_cpus: float, *, name: str = "") -> NodeView:
    """A node of `cpus` CPUs (and 16 GiB) of which Ray says `free_cpus` are available."""
    return NodeView(node_id, tier, cpus, 0, 16 * GiB, free_cpus, 0, 16 * GiB, name=name)


def mine(job_id: str, node_id: str, cpus: float, *, ray_holds: bool) -> RunningJob:
    """One of Suanli's jobs holding `cpus` on `node_id`; `ray_holds`: seen running by Ray before the snapshot."""
    return RunningJob(job_id, "org-a", Tier.HPC, (node_id,), Resources(cpus=cpus), NOW - 10, 3600, ray_holds)


def test_work_outside_suanli_is_taken_off_and_named() -> None:
    """A node of 8 CPUs where Ray says 4 are free and Suanli holds nothing: 4 free, 4 held outside Suanli."""
    [view] = net_of_running([ray_node("n", Tier.HPC, 8, 4)], [])
    assert (view.free_cpus, view.outside_cpus) == (4, 4)


def test_a_job_ray_holds_is_counted_once() -> None:
    """Suanli's 2-CPU job that Ray was seen running is in Ray's free figure already: 6 of 8 free, nothing outside
    (not 4: no double counting)."""
    [view] = net_of_running([ray_node("n", Tier.HPC, 8, 6)], [mine("j", "n", 2, ray_holds=True)])
    assert (view.free_cpus, view.outside_cpus) == (6, 0)


def test_a_just_dispatched_job_ray_has_not_reserved_yet_is_not_free() -> None:
    """Outside work holds 3 of 8 CPUs; Suanli just dispatched 2 CPUs that Ray does not count yet (Ray says 5
    free): 3 are free, not 5 (no overcommit in the window between dispatch and Ray's reservation). Outside work
    is stated as at least 1 (Ray may already hold the job's 2 CPUs: they are not blamed on others)."""
    [view] = net_of_running([ray_node("n", Tier.HPC, 8, 5)], [mine("j", "n", 2, ray_holds=False)])
    assert (view.free_cpus, view.outside_cpus) == (3, 1)


def test_a_job_ray_reserved_before_it_was_seen_running_errs_towards_full() -> None:
    """Ray already reserved Suanli's 2 CPUs (says 6 free) but the job was not yet seen running: counted twice
    for now (4 free), never zero times; and it is not blamed on others."""
    [view] = net_of_running([ray_node("n", Tier.HPC, 8, 6)], [mine("j", "n", 2, ray_holds=False)])
    assert (view.free_cpus, view.outside_cpus) == (4, 0)


def test_a_job_ray_has_released_but_suanli_still_follows_keeps_its_share() -> None:
    """Ray says all 8 CPUs are free (the job ended there) but Suanli has not yet seen it end: 6 free."""
    [view] = net_of_running([ray_node("n", Tier.HPC, 8, 8)], [mine("j", "n", 2, ray_holds=True)])
    assert view.free_cpus == 6


def test_without_ray_figures_free_is_totals_less_suanlis_jobs() -> None:
    """A backend that reports no availability (free figures None): free is the totals less Suanli's jobs, as
    before, and nothing is held outside."""
    views = node_views(Tier.HPC, [RayNode("n", 8, 0, 16 * GiB, name="hpc-0")])
    [view] = net_of_running(views, [mine("j", "n", 2, ray_holds=False)])
    assert (view.free_cpus, view.outside_cpus, view.name) == (6, 0, "hpc-0")


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(1, 64),
    outside=st.integers(0, 64),
    jobs=st.lists(st.tuples(st.integers(1, 8), st.booleans(), st.booleans()), max_size=6),
)
def test_free_never_exceeds_what_is_really_free_and_is_exact_when_ray_caught_up(
    total: int, outside: int, jobs: list[tuple[int, bool, bool]]
) -> None:
    """Over random nodes, outside work and Suanli jobs (each reserved by Ray or not yet, and seen running only if
    reserved: the dispatcher's invariant): the free figure never exceeds the truth (totals less outside work less
    every Suanli job) and equals it when each job's classification matches Ray's; outside work is never
    overstated."""
    outside = min(outside, total)
    held = [(cpus, reserved, reserved and seen) for cpus, reserved, seen in jobs]
    ray_free = total - outside - sum(cpus for cpus, reserved, _ in held if reserved)
    running = [mine(f"j{i}", "n", cpus, ray_holds=seen) for i, (cpus, _, seen) in enumerate(held)]
    [view] = net_of_running([ray_node("n", Tier.HPC, total, ray_free)], running)
    truth = max(0, total - outside - sum(cpus for cpus, _, _ in held))
    assert view.free_cpus <= truth
    assert view.outside_cpus <= outside
    if all(reserved == seen for _, reserved, seen in held):
        assert view.free_cpus == truth


def test_a_job_goes_to_the_node_outside_work_left_free() -> None:
    """hpc-0 is first in line but Ray says work outside Suanli holds both its CPUs: the job starts on hpc-1."""
    nodes = [ray_node("h0", Tier.HPC, 2, 0, name="hpc-0"), ray_node("h1", Tier.HPC, 2, 2, name="hpc-1")]
    result = plan([queued("q", spec("hpc", cpus=2))], [], net_of_running(nodes, []), Policy(), NOW)
    assert [(s.job_id, s.node_ids) for s in result.starts] == [("q", ("h1",))]


def test_a_job_blocked_by_outside_work_waits_naming_the_node_and_what_ray_says() -> None:
    """Both hpc nodes are full: hpc-1 with Suanli's own job, hpc-0 with work outside Suanli. The waiting job's
    reason names hpc-0, what Ray says is free there and what the outside work holds, and does not promise a
    start time that only Suanli's own jobs' limits set."""
    nodes = [ray_node("h0aaaaaaaaaa", Tier.HPC, 2, 0, name="hpc-0"), ray_node("h1", Tier.HPC, 2, 0, name="hpc-1")]
    busy = [mine("r", "h1", 2, ray_holds=True)]
    result = plan([queued("q", spec("hpc", cpus=2))], busy, net_of_running(nodes, busy), Policy(), NOW)
    [wait] = result.waits
    assert "hpc node hpc-0 (h0aaaaaa): 0 CPUs free per Ray (2 held by work outside Suanli)" in wait.reason
    assert "hpc-1" not in wait.reason
    assert "if the work outside Suanli has ended by then" in wait.reason


def test_outside_work_that_is_not_in_the_way_is_not_named() -> None:
    """Ray reports 1 CPU of an 8-CPU, 2-GPU ai node held outside Suanli; Suanli's own job holds both GPUs. A 1-GPU
    job waits for that job, and its reason does not blame the outside work."""
    node = NodeView("n", Tier.AI, 8, 2, 16 * GiB, 5, 0, 16 * GiB, name="ai-0")
    busy = [RunningJob("r", "org-a", Tier.AI, ("n",), Resources(cpus=2, gpus=2), NOW - 10, 3600, True)]
    result = plan([queued("q", spec("ai", gpus=1))], busy, net_of_running([node], busy), Policy(), NOW)
    [view] = net_of_running([node], busy)
    assert view.outside_cpus == 1
    assert "held by work outside Suanli" not in result.waits[0].reason


def test_many_nodes_held_outside_are_summarised() -> None:
    """Five nodes held by outside work: three are named, the rest counted."""
    nodes = [ray_node(f"n{i}", Tier.HPC, 2, 0, name=f"hpc-{i}") for i in range(5)]
    result = plan([queued("q", spec("hpc", cpus=1))], [], net_of_running(nodes, []), Policy(), NOW)
    reason = result.waits[0].reason
    assert reason.count("held by work outside Suanli)") == 3
    assert "and 2 more node(s) held by work outside Suanli" in reason


def hpc_ray(free: tuple[float, float]) -> FakeRay:
    """Two 2-CPU hpc nodes for which Ray reports `free` CPUs available."""
    return FakeRay(
        {
            "hpc": [
                RayNode("h1", 2, 0, 16 * GiB, name="hpc-0", free_cpus=free[0], free_gpus=0, free_memory_bytes=16 * GiB),
                RayNode("h2", 2, 0, 16 * GiB, name="hpc-1", free_cpus=free[1], free_gpus=0, free_memory_bytes=16 * GiB),
            ]
        }
    )


def ray_says(ray: FakeRay, free: tuple[float, float]) -> None:
    """Ray's accounting moves on: it now reports `free` CPUs on hpc-0 and hpc-1."""
    ray.node_lists["hpc"] = [replace(n, free_cpus=f) for n, f in zip(ray.node_lists["hpc"], free, strict=True)]


def test_the_dispatcher_places_by_rays_free_figures_and_counts_its_own_jobs_once() -> None:
    """Against a Ray that reports availability: a job is not placed on a node Ray says outside work fills; a job
    dispatched but not yet reserved by Ray is not counted free in the next step; once Ray runs it (and the step
    after has seen it running) it is counted once, so the node's last CPU is used. One capacity read per step."""
    store, ray = FakeJobStore(), hpc_ray((0, 2))  # outside work fills hpc-0
    d = Dispatcher(store, ray, Policy(), [Tier.HPC])
    store.submit("a", spec("hpc", cpus=1), NOW)
    assert d.step(NOW).started == ["a"]
    assert store.jobs["a"].node_ids == ("h2",)

    store.submit("b", spec("hpc", cpus=2), NOW + 1)  # Ray has not reserved a's CPU yet: it still says 2 free
    d.step(NOW + 1)
    assert state(store, "b") is JobState.QUEUED
    assert "hpc node hpc-0 (h1): 0 CPUs free per Ray (2 held by work outside Suanli)" in store.jobs["b"].reason

    ray.run("a-0", NOW + 2)
    ray_says(ray, (0, 1))  # Ray reserved a's CPU
    d.step(NOW + 2)  # follows a to running; this step still counts a itself (seen running only now)
    assert state(store, "a") is JobState.RUNNING
    store.submit("c", spec("hpc", cpus=1, limit=60), NOW + 3)  # short: may backfill ahead of b's reservation
    assert d.step(NOW + 3).started == ["c"]  # hpc-1's last CPU: a counted once
    assert store.jobs["c"].node_ids == ("h2",)

    ray_says(ray, (2, 1))  # the outside work ended (Ray has not reserved c yet)
    assert d.step(NOW + 4).started == ["b"]
    assert store.jobs["b"].node_ids == ("h1",)
    assert ray.passes == 5


def state(store: FakeJobStore, job_id: str) -> JobState:
    """The job's state now."""
    return store.jobs[job_id].state
