"""The dispatcher's lifecycle against in-memory fakes of its `JobStore` and `Backend`: retries, time limits,
presumed-lost attempts, reconciling after a restart, and cancel (no Ray, no sleeps: each step is given its time)."""

from __future__ import annotations

from census_agent.models import Tier
from scheduler.dispatcher import Dispatcher
from scheduler.models import JobState, RayJobState, RayNode
from scheduler.policy import Policy
from tests.unit.scheduler.builders import NOW, spec
from tests.unit.scheduler.fakes import FakeJobStore, FakeRay

GiB = 2**30
LOST_AFTER = 60.0


def cluster(*, instant_stop: bool = True) -> FakeRay:
    """A general node and two hpc nodes, 4 CPUs and 16 GiB each."""
    return FakeRay(
        {
            "general": [RayNode("g1", 4, 0, 16 * GiB, name="general-0")],
            "hpc": [RayNode("h1", 4, 0, 16 * GiB, name="hpc-0"), RayNode("h2", 4, 0, 16 * GiB, name="hpc-1")],
        },
        instant_stop=instant_stop,
    )


def dispatcher(store: FakeJobStore, ray: FakeRay) -> Dispatcher:
    """A dispatcher serving general and hpc with the default policy."""
    return Dispatcher(store, ray, Policy(), [Tier.GENERAL, Tier.HPC], lost_after_seconds=LOST_AFTER)


def state(store: FakeJobStore, job_id: str) -> JobState:
    """The job's state now."""
    return store.jobs[job_id].state


def reasons(store: FakeJobStore, job_id: str) -> list[str]:
    """The reasons of the job's events, in order."""
    return [reason for _, reason in store.jobs[job_id].events]


def test_a_failed_attempt_is_retried_up_to_max_retries_with_its_exit_code_in_the_reason() -> None:
    """Each failure with retries left requeues the job (the exit code in the reason) and the same step starts the
    next attempt under a new submission id; the failure after the last retry fails the job with the exit code."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    store.submit("job-a", spec("hpc", max_retries=2), NOW)
    assert d.step(NOW).started == ["job-a"]
    ray.run("job-a-0", NOW + 1)
    d.step(NOW + 2)
    assert state(store, "job-a") is JobState.RUNNING

    ray.end("job-a-0", RayJobState.FAILED, NOW + 3, exit_code=3)
    report = d.step(NOW + 4)
    assert (report.requeued, report.started) == (["job-a"], ["job-a"])
    assert "attempt 1 failed (exit code 3); retry 1 of 2" in reasons(store, "job-a")
    assert (store.jobs["job-a"].attempt, store.jobs["job-a"].submission_id) == (1, "job-a-1")

    ray.end("job-a-1", RayJobState.FAILED, NOW + 5, exit_code=3)  # straight from PENDING: never seen running
    d.step(NOW + 6)
    assert "attempt 2 failed (exit code 3); retry 2 of 2" in reasons(store, "job-a")

    ray.end("job-a-2", RayJobState.FAILED, NOW + 7, exit_code=3)
    report = d.step(NOW + 8)
    assert report.finished == {"job-a": JobState.FAILED}
    assert report.started == []
    job = store.jobs["job-a"]
    assert (job.state, job.reason, job.exit_code) == (JobState.FAILED, "failed: exit code 3 after 3 attempts", 3)
    assert [call for call in ray.calls if call[0] == "submit"] == [
        ("submit", "job-a-0"),
        ("submit", "job-a-1"),
        ("submit", "job-a-2"),
    ]


def test_a_job_without_retries_fails_at_its_first_failure() -> None:
    """max_retries 0: the first non-zero exit fails the job, with its exit code, and nothing is resubmitted."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    store.submit("job-b", spec("general"), NOW)
    d.step(NOW)
    ray.end("job-b-0", RayJobState.FAILED, NOW + 1, exit_code=1)
    report = d.step(NOW + 2)
    assert report.finished == {"job-b": JobState.FAILED}
    assert (store.jobs["job-b"].reason, store.jobs["job-b"].exit_code) == ("failed: exit code 1", 1)
    assert ray.calls == [("submit", "job-b-0")]


def test_a_short_job_that_ends_between_two_steps_is_recorded_as_running_then_succeeded() -> None:
    """Ray's start time records the start the dispatcher never saw, so the history reads queued -> dispatching
    -> running -> succeeded."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    store.submit("job-q", spec("general"), NOW)
    d.step(NOW)
    ray.run("job-q-0", NOW + 1)
    ray.end("job-q-0", RayJobState.SUCCEEDED, NOW + 2)
    assert d.step(NOW + 3).finished == {"job-q": JobState.SUCCEEDED}
    assert store.history("job-q") == [JobState.QUEUED, JobState.DISPATCHING, JobState.RUNNING, JobState.SUCCEEDED]
    assert store.jobs["job-q"].started_at == NOW + 1
    assert store.jobs["job-q"].reason == "succeeded: exit code 0"


def test_a_job_past_its_time_limit_is_stopped_and_failed_not_retried() -> None:
    """At started + time limit the dispatcher asks Ray to stop the job (not before); once Ray has stopped it the
    job is failed with the time limit as its reason, even with retries left."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    store.submit("job-t", spec("general", limit=60, max_retries=2), NOW)
    d.step(NOW)
    ray.run("job-t-0", NOW + 5)
    d.step(NOW + 6)
    assert d.step(NOW + 64).stopping == []  # the limit counts from the start Ray reported: NOW + 5 + 60
    report = d.step(NOW + 65)
    assert report.stopping == ["job-t"]
    assert ("stop", "job-t-0") in ray.calls
    report = d.step(NOW + 66)
    assert report.finished == {"job-t": JobState.FAILED}
    assert report.requeued == []
    assert store.jobs["job-t"].reason == "stopped: time limit of 60 s reached"
    assert ray.live() == []


def test_an_attempt_on_an_unreachable_tier_is_presumed_lost_and_its_survivor_stopped_before_the_retry() -> None:
    """While hpc is unreachable its running job keeps its place; after lost_after_seconds the attempt is presumed
    lost and the job requeued (it waits: its only tier is down). When hpc answers again, the lost attempt still
    running there is stopped before the next attempt is submitted, so the job never runs twice."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    store.submit("job-x", spec("hpc", max_retries=1), NOW)
    d.step(NOW)
    ray.run("job-x-0", NOW + 1)
    d.step(NOW + 2)

    ray.unreachable.add("hpc")
    down = NOW + 10
    report = d.step(down)
    assert report.unreachable == [Tier.HPC]
    assert d.step(down + LOST_AFTER - 1).requeued == []
    assert state(store, "job-x") is JobState.RUNNING

    report = d.step(down + LOST_AFTER)
    assert report.requeued == ["job-x"]
    assert report.started == []  # no hpc node is known: it waits
    assert state(store, "job-x") is JobState.QUEUED
    assert any("unreachable for 60 s; attempt presumed lost" in r for r in reasons(store, "job-x"))
    assert ray.live() == ["job-x-0"]  # the survivor, out of sight

    ray.unreachable.clear()
    report = d.step(down + 100)
    assert "job-x-0" in report.stopping
    assert report.started == ["job-x"]
    assert ray.calls[-2:] == [("stop", "job-x-0"), ("submit", "job-x-1")]
    assert ray.live() == ["job-x-1"]


def test_a_lost_attempt_without_retries_left_fails_the_job_with_the_reason() -> None:
    """max_retries 0: the presumed-lost attempt fails the job, saying why; the survivor is still stopped later."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    store.submit("job-y", spec("hpc"), NOW)
    d.step(NOW)
    ray.unreachable.add("hpc")
    d.step(NOW + 1)
    report = d.step(NOW + 1 + LOST_AFTER)
    assert report.finished == {"job-y": JobState.FAILED}
    assert store.jobs["job-y"].reason.startswith("failed: its tier's Ray cluster unreachable for 60 s")
    ray.unreachable.clear()
    assert d.step(NOW + 200).stopping == ["job-y-0"]
    assert ray.live() == []


def test_a_brief_outage_loses_nothing_and_stops_nothing() -> None:
    """A tier unreachable for less than lost_after_seconds: its job stays running under the same submission, and
    when it answers again nothing is stopped (not even a submission that is no job's current attempt: only a tier
    back from being lost is swept) or resubmitted."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    store.submit("job-z", spec("hpc"), NOW)
    d.step(NOW)
    ray.submit(job_id="other-0", tier="hpc", entrypoint="sleep 600", cpus=0, gpus=0, memory_bytes=0)
    ray.run("job-z-0", NOW + 1)
    ray.unreachable.add("hpc")
    d.step(NOW + 2)
    ray.unreachable.clear()
    report = d.step(NOW + 2 + LOST_AFTER - 1)
    assert (report.stopping, report.requeued, report.started) == ([], [], [])
    assert state(store, "job-z") is JobState.RUNNING
    assert ray.calls == [("submit", "job-z-0"), ("submit", "other-0")]
    assert sorted(ray.live()) == ["job-z-0", "other-0"]


def test_a_new_dispatcher_over_the_same_store_reconciles_without_resubmitting() -> None:
    """After a restart, a dispatching job Ray already has is followed, not submitted again; a dispatching job
    whose submission never reached Ray (the old dispatcher died, or Ray timed out) is submitted under the same
    submission id; a running job is followed to its end."""
    store, ray = FakeJobStore(), cluster()
    store.submit("job-r", spec("hpc"), NOW)
    store.submit("job-s", spec("general"), NOW + 0.5)
    ray.refuse_submits = 1
    before = dispatcher(store, ray)
    assert sorted(before.step(NOW + 1).started) == ["job-r", "job-s"]  # recorded as dispatching, both
    submitted_once = [c for c in ray.calls if c[0] == "submit"]
    assert len(submitted_once) == 1  # one of the two submits was refused

    after = dispatcher(store, ray)  # the service restarted: nothing carried over but the store
    after.step(NOW + 2)
    assert sorted(ray.submissions) == ["job-r-0", "job-s-0"]
    assert sorted(c[1] for c in ray.calls if c[0] == "submit") == ["job-r-0", "job-s-0"]  # each exactly once

    ray.run("job-r-0", NOW + 3)
    again = dispatcher(store, ray)
    again.step(NOW + 4)
    assert state(store, "job-r") is JobState.RUNNING
    ray.end("job-r-0", RayJobState.SUCCEEDED, NOW + 5)
    assert dispatcher(store, ray).step(NOW + 6).finished == {"job-r": JobState.SUCCEEDED}
    assert sorted(c[1] for c in ray.calls if c[0] == "submit") == ["job-r-0", "job-s-0"]


def test_a_cancelled_running_job_is_stopped_once_and_recorded_cancelled() -> None:
    """A cancel marks the job; the next step asks Ray to stop it, later steps do not ask again while Ray is still
    stopping it, and once Ray has stopped it the job is cancelled (not retried, though it has retries)."""
    store, ray = FakeJobStore(), cluster(instant_stop=False)
    d = dispatcher(store, ray)
    store.submit("job-c", spec("general", max_retries=3), NOW)
    d.step(NOW)
    ray.run("job-c-0", NOW + 1)
    d.step(NOW + 2)
    assert store.cancel("job-c", "alice", NOW + 3) is JobState.RUNNING  # marked; the dispatcher stops it

    assert d.step(NOW + 4).stopping == ["job-c"]
    assert d.step(NOW + 5).stopping == []
    assert ray.calls.count(("stop", "job-c-0")) == 1
    assert state(store, "job-c") is JobState.RUNNING

    ray.settle_stops()
    report = d.step(NOW + 6)
    assert report.finished == {"job-c": JobState.CANCELLED}
    assert (report.requeued, report.started) == ([], [])
    assert store.jobs["job-c"].reason == "cancelled by alice"


def test_a_cancelled_queued_job_is_never_submitted() -> None:
    """A job cancelled while queued is not in the dispatcher's queue: Ray never sees it."""
    store, ray = FakeJobStore(), cluster()
    store.submit("job-n", spec("general"), NOW)
    assert store.cancel("job-n", "bob", NOW + 1) is JobState.CANCELLED
    assert dispatcher(store, ray).step(NOW + 2).started == []
    assert ray.calls == []
