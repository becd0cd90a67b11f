"""One job cannot stop the dispatcher: an unexpected error submitting or following one job fails (or retries)
that job with the reason, and every other job is dispatched and followed as before. `RayUnavailable` keeps
meaning "tier unreachable, retry later". In-memory fakes of the dispatcher's protocols; no Ray, no sleeps.
"""

from __future__ import annotations

import logging
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from census_agent.models import Tier
from scheduler.dispatcher import Dispatcher
from scheduler.models import JobSpec, JobState, RayJobState, RayNode, RayUnavailable
from scheduler.policy import Policy
from tests.unit.scheduler.builders import NOW, spec
from tests.unit.scheduler.fakes import FakeJobStore, FakeRay

GiB = 2**30
BAD_DIR = ValueError("working_dir /no/such/dir is not a valid path")


def cluster() -> FakeRay:
    """Two general nodes and two hpc nodes, 4 CPUs and 16 GiB each."""
    return FakeRay(
        {
            "general": [RayNode("g1", 4, 0, 16 * GiB, name="general-0"), RayNode("g2", 4, 0, 16 * GiB, name="g-1")],
            "hpc": [RayNode("h1", 4, 0, 16 * GiB, name="hpc-0"), RayNode("h2", 4, 0, 16 * GiB, name="hpc-1")],
        }
    )


def dispatcher(store: FakeJobStore, ray: FakeRay) -> Dispatcher:
    """A dispatcher serving general and hpc with the default policy."""
    return Dispatcher(store, ray, Policy(), [Tier.GENERAL, Tier.HPC], lost_after_seconds=60)


def test_a_job_whose_submission_raises_fails_with_the_reason_and_the_others_run() -> None:
    """Ray's client raising ValueError for one job's submission fails that job (the error in its reason, no
    exit code); the job submitted after it in the same step and the jobs of later steps run."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    ray.faults[("submit", "bad")] = BAD_DIR
    store.submit("bad", spec("general", priority=5), NOW)
    store.submit("good", spec("general"), NOW)
    report = d.step(NOW)
    assert report.finished == {"bad": JobState.FAILED}
    assert report.started == ["good"]
    bad = store.jobs["bad"]
    assert bad.state is JobState.FAILED
    assert bad.reason == "failed: could not submit: ValueError: working_dir /no/such/dir is not a valid path"
    assert bad.exit_code is None

    store.submit("later", spec("general"), NOW + 1)
    assert d.step(NOW + 1).started == ["later"]
    ray.end("good-0", RayJobState.SUCCEEDED, NOW + 2)
    ray.end("later-0", RayJobState.SUCCEEDED, NOW + 2)
    assert d.step(NOW + 3).finished == {"good": JobState.SUCCEEDED, "later": JobState.SUCCEEDED}


def test_a_submission_error_echoing_the_jobs_environment_keeps_its_values_out_of_the_reason_and_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ray's client refusing a runtime environment may quote it: the job's reason (which operators read) and the
    service's log say ``***`` for each environment value of 4 or more characters; the names and short values
    (``1``) stay, so the message still says what was wrong."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    env = {"API_KEY": "s3cr3t-v4lue", "DEBUG": "1"}
    ray.faults[("submit", "leaky")] = ValueError(f"invalid runtime_env: {{'env_vars': {env!r}}}")
    store.submit("leaky", spec("general", runtime_env={"env_vars": env}), NOW)
    with caplog.at_level(logging.WARNING, logger="scheduler.dispatcher"):
        assert d.step(NOW).finished == {"leaky": JobState.FAILED}
    reason = store.jobs["leaky"].reason
    assert "s3cr3t-v4lue" not in reason
    assert "s3cr3t-v4lue" not in caplog.text
    assert "'API_KEY': '***'" in reason
    assert "'DEBUG': '1'" in reason
    assert "'API_KEY': '***'" in caplog.text


def test_rays_failure_message_quoting_the_jobs_environment_keeps_its_values_out_of_the_reasons() -> None:
    """Ray failing an attempt without an exit code (its runtime environment could not be set up) with a message
    that quotes the environment: the retry's reason and the final failure's say ``***`` for the value."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    store.submit("envy", spec("general", max_retries=1, runtime_env={"env_vars": {"PASSWORD": "hunter2-xyz"}}), NOW)
    for attempt, at in ((0, NOW), (1, NOW + 2)):
        assert d.step(at).started == ["envy"]
        ray.end(f"envy-{attempt}", RayJobState.FAILED, at + 1)
        ray.submissions[
            f"envy-{attempt}"
        ].message = "runtime_env setup failed: {'env_vars': {'PASSWORD': 'hunter2-xyz'}}"
    d.step(NOW + 4)
    assert store.jobs["envy"].state is JobState.FAILED
    texts = [reason for _, reason in store.jobs["envy"].events]
    assert any("'PASSWORD': '***'" in text for text in texts), texts
    assert not [text for text in texts if "hunter2-xyz" in text]


def test_a_failing_submission_is_retried_within_max_retries_then_fails() -> None:
    """With retries left, each refused submission requeues the job under a new attempt; after the last it fails,
    naming the attempts."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    ray.faults[("submit", "bad")] = BAD_DIR
    store.submit("bad", spec("general", max_retries=1), NOW)
    assert d.step(NOW).requeued == ["bad"]
    assert store.jobs["bad"].reason.startswith("attempt 1 failed (could not submit: ValueError")
    assert d.step(NOW + 1).finished == {"bad": JobState.FAILED}
    assert store.jobs["bad"].reason.endswith("after 2 attempts")


def test_a_job_whose_status_cannot_be_read_fails_and_the_others_are_followed() -> None:
    """An unexpected error reading one running job's status fails that job; the other running job still moves
    on to succeeded in the same step; the unreadable one is asked to stop."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    store.submit("odd", spec("general"), NOW)
    store.submit("fine", spec("general"), NOW)
    d.step(NOW)
    ray.faults[("status", "odd")] = KeyError("driver_info")
    ray.end("fine-0", RayJobState.SUCCEEDED, NOW + 1)
    report = d.step(NOW + 2)
    assert report.finished == {"odd": JobState.FAILED, "fine": JobState.SUCCEEDED}
    assert store.jobs["odd"].reason == "failed: could not follow it: KeyError: 'driver_info'"
    assert ("stop", "odd-0") in ray.calls  # so it cannot run on unseen


def test_an_unreachable_tier_is_still_a_wait_not_a_job_failure() -> None:
    """RayUnavailable from submit keeps its meaning: the job stays dispatching and is submitted again later."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    ray.refuse_submits = 1
    store.submit("job", spec("general"), NOW)
    report = d.step(NOW)
    assert (report.started, report.finished) == (["job"], {})
    assert store.jobs["job"].state is JobState.DISPATCHING
    d.step(NOW + 1)
    assert "job-0" in ray.submissions


def test_a_stop_that_raises_is_asked_again_and_other_jobs_carry_on() -> None:
    """An unexpected error stopping a cancelled job leaves it to be stopped next step; the others still run."""
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    store.submit("cancel-me", spec("general"), NOW)
    d.step(NOW)
    ray.run("cancel-me-0", NOW + 1)
    d.step(NOW + 1)
    store.cancel("cancel-me", "alice", NOW + 1)
    ray.faults[("stop", "cancel-me")] = RuntimeError("boom")
    store.submit("other", spec("general"), NOW + 2)
    report = d.step(NOW + 2)
    assert report.started == ["other"]
    assert store.jobs["cancel-me"].state is JobState.RUNNING
    del ray.faults[("stop", "cancel-me")]
    assert d.step(NOW + 3).stopping == ["cancel-me"]
    assert d.step(NOW + 4).finished == {"cancel-me": JobState.CANCELLED}


# -- every job reaches a final state, whatever fails -----------------------------------------------------------

ERRORS: list[Exception] = [ValueError("bad runtime env"), RuntimeError("500"), KeyError("x"), RayUnavailable("t", "x")]

job_specs = st.builds(
    lambda klass, cpus, nodes, retries, limit, workdir: spec(
        klass,
        cpus=cpus,
        nodes=nodes if klass == "hpc" else 1,
        max_retries=retries,
        limit=limit,
        runtime_env={"working_dir": workdir} if workdir else {},
    ),
    st.sampled_from(["general", "hpc"]),
    st.sampled_from([0.5, 1.0, 2.0, 4.0]),
    st.integers(1, 2),
    st.integers(0, 2),
    st.integers(10, 100),
    st.one_of(st.none(), st.sampled_from(["/tmp", "/scratch/it's here"])),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs=st.lists(job_specs, min_size=1, max_size=8), seed=st.integers(0, 2**32 - 1))
def test_every_job_reaches_a_final_state_within_a_bounded_number_of_steps(jobs: list[JobSpec], seed: int) -> None:
    """Random valid jobs through the real dispatcher and the fake Ray, with random errors injected on submit,
    status and stop (and Ray ending submissions at random): after a bounded number of steps, once the faults are
    cleared, every job is succeeded, failed or cancelled, and Ray runs nothing it was not asked to stop."""
    rng = random.Random(seed)
    store, ray = FakeJobStore(), cluster()
    d = dispatcher(store, ray)
    for i, job in enumerate(jobs):
        store.submit(f"j{i}", job, NOW)
    now = NOW
    for step in range(60):
        now += 5
        ray.faults = {
            (operation, f"j{i}"): rng.choice(ERRORS)
            for i in range(len(jobs))
            for operation in ("submit", "status", "stop")
            if step < 30 and rng.random() < 0.15
        }
        if rng.random() < 0.05:
            store.cancel(f"j{rng.randrange(len(jobs))}", "someone", now)
        for submission_id in ray.live():
            roll = rng.random()
            if roll < 0.3 and ray.submissions[submission_id].start_time is None:
                ray.run(submission_id, now)
            elif 0.3 <= roll < 0.6:
                ray.end(submission_id, rng.choice([RayJobState.SUCCEEDED, RayJobState.FAILED]), now, exit_code=1)
        d.step(now)
        if all(job.state.terminal for job in store.jobs.values()):
            break
    not_final = {job_id: (job.state, job.reason) for job_id, job in store.jobs.items() if not job.state.terminal}
    assert not not_final
    # A submission outlives its job only where its status could not be read and the stop sent then raised too.
    for submission_id in ray.live():
        events = store.jobs[submission_id.rsplit("-", 1)[0]].events
        assert any("could not follow it" in reason for _, reason in events), (submission_id, events)
