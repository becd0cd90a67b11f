"""In-memory fakes of the dispatcher's two protocols, for fast tests of its lifecycle logic (no Ray, no database).

`FakeJobStore` keeps `scheduler.dispatcher.JobStore`'s contract as `api.jobs.store.SqlJobStore` does: every
transition is conditional on the states the caller saw, records an event, and returns False (changing nothing)
when the job has moved on; a requeue bumps the attempt and forgets the last one's dispatch. `FakeRay` keeps
`scheduler.dispatcher.Backend`'s as `scheduler.ray_backend.RayJobsBackend` does against a real cluster: a
submission id is accepted once, an unknown one is MISSING, `stop` answers False for an ended one, and a tier whose
cluster cannot be reached raises `RayUnavailable` from every call. The tests move Ray's submissions on themselves
(`run`, `end`, `settle_stops`); nothing here sleeps or reads a clock.

Must not: decide anything the dispatcher decides (these record and answer; they never route, retry or stop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from census_agent.models import Tier
from scheduler.dispatcher import ActiveJob
from scheduler.models import JobSpec, JobState, QueuedJob, RayJobState, RayJobStatus, RayNode, RayUnavailable
from scheduler.queue import Wait

DISPATCHED = (JobState.DISPATCHING, JobState.RUNNING)


@dataclass
class StoredJob:
    """One job as the fake store holds it (the columns of the service's jobs table that the dispatcher uses)."""

    job_id: str
    spec: JobSpec
    submitted_at: float
    state: JobState = JobState.QUEUED
    reason: str = "queued"
    attempt: int = 0
    tier: Tier | None = None
    node_ids: tuple[str, ...] = ()
    submission_id: str | None = None
    dispatched_at: float | None = None
    started_at: float | None = None
    driver_node_id: str | None = None
    exit_code: int | None = None
    finished_at: float | None = None
    stop_state: JobState | None = None
    stop_reason: str | None = None
    position: int | None = None
    events: list[tuple[JobState, str]] = field(default_factory=list)


class FakeJobStore:
    """`JobStore` in a dict; `submit` and `cancel` stand in for the API's side (`api.jobs.store.create`/`cancel`)."""

    def __init__(self) -> None:
        self.jobs: dict[str, StoredJob] = {}

    # -- the API's side ----------------------------------------------------------------------------------------

    def submit(self, job_id: str, spec: JobSpec, now: float) -> None:
        """A new queued job."""
        self.jobs[job_id] = StoredJob(job_id, spec, now, events=[(JobState.QUEUED, "queued")])

    def cancel(self, job_id: str, by: str, now: float) -> JobState:
        """A queued job is cancelled at once; a dispatched one is marked for the dispatcher to stop."""
        job = self.jobs[job_id]
        reason = f"cancelled by {by}"
        if job.state is JobState.QUEUED:
            job.state, job.reason, job.finished_at, job.position = JobState.CANCELLED, reason, now, None
            job.events.append((JobState.CANCELLED, reason))
        elif job.state in DISPATCHED and job.stop_state is None:
            job.stop_state, job.stop_reason = JobState.CANCELLED, reason
        return job.state

    def history(self, job_id: str) -> list[JobState]:
        """The states job `job_id` went through, in order."""
        return [state for state, _ in self.jobs[job_id].events]

    # -- JobStore ----------------------------------------------------------------------------------------------

    def waiting(self) -> list[QueuedJob]:
        """Jobs in state queued."""
        return [
            QueuedJob(j.job_id, j.spec, j.submitted_at, j.attempt)
            for j in self.jobs.values()
            if j.state is JobState.QUEUED
        ]

    def active(self) -> list[ActiveJob]:
        """Jobs in state dispatching or running."""
        found = []
        for j in self.jobs.values():
            if j.state not in DISPATCHED:
                continue
            assert j.tier is not None
            assert j.submission_id is not None
            assert j.dispatched_at is not None
            found.append(
                ActiveJob(
                    job_id=j.job_id,
                    spec=j.spec,
                    state=j.state,
                    tier=j.tier,
                    node_ids=j.node_ids,
                    attempt=j.attempt,
                    submission_id=j.submission_id,
                    dispatched_at=j.dispatched_at,
                    started_at=j.started_at,
                    stop_state=j.stop_state,
                    stop_reason=j.stop_reason,
                )
            )
        return found

    def _move(self, job_id: str, from_states: Sequence[JobState], state: JobState, reason: str) -> StoredJob | None:
        job = self.jobs.get(job_id)
        if job is None or job.state not in from_states:
            return None
        job.state, job.reason = state, reason
        job.events.append((state, reason))
        return job

    def dispatch(
        self,
        job_id: str,
        *,
        attempt: int,
        tier: Tier,
        node_ids: Sequence[str],
        submission_id: str,
        reason: str,
        now: float,
    ) -> bool:
        """queued -> dispatching, with the decision (only for the attempt the plan saw)."""
        job = self.jobs.get(job_id)
        if job is None or job.attempt != attempt:
            return False
        if self._move(job_id, [JobState.QUEUED], JobState.DISPATCHING, reason) is None:
            return False
        job.tier, job.node_ids, job.submission_id = tier, tuple(node_ids), submission_id
        job.dispatched_at, job.position = now, None
        return True

    def started(self, job_id: str, driver_node_id: str | None, now: float) -> bool:
        """dispatching -> running (the reason keeps the dispatch's, as the service's store does)."""
        job = self.jobs.get(job_id)
        previous = job.reason if job is not None else "running"
        where = f" (driver on node {driver_node_id})" if driver_node_id else ""
        moved = self._move(job_id, [JobState.DISPATCHING], JobState.RUNNING, f"running{where}; {previous}")
        if moved is None:
            return False
        moved.started_at, moved.driver_node_id = now, driver_node_id
        return True

    def finish(self, job_id: str, state: JobState, reason: str, exit_code: int | None, now: float) -> bool:
        """dispatching or running -> succeeded, failed or cancelled."""
        job = self._move(job_id, DISPATCHED, state, reason)
        if job is None:
            return False
        job.finished_at, job.exit_code = now, exit_code
        return True

    def requeue(self, job_id: str, reason: str, now: float) -> bool:
        """dispatching or running -> queued for the next attempt (the stop mark is kept, as the service's is)."""
        job = self._move(job_id, DISPATCHED, JobState.QUEUED, reason)
        if job is None:
            return False
        job.attempt += 1
        job.submission_id, job.node_ids, job.dispatched_at, job.started_at = None, (), None, None
        job.driver_node_id, job.exit_code = None, None
        return True

    def request_stop(self, job_id: str, state: JobState, reason: str) -> bool:
        """Mark a dispatched job to be stopped and recorded as `state`."""
        job = self.jobs.get(job_id)
        if job is None or job.state not in DISPATCHED or job.stop_state is not None:
            return False
        job.stop_state, job.stop_reason = state, reason
        return True

    def record_waits(self, waits: Sequence[Wait]) -> None:
        """Each waiting job's reason, home tier and place in line (no event)."""
        for wait in waits:
            job = self.jobs.get(wait.job_id)
            if job is not None and job.state is JobState.QUEUED:
                job.reason, job.position, job.tier = wait.reason, wait.position, wait.tier


@dataclass
class Submission:
    """One Ray submission as the fake cluster holds it."""

    submission_id: str
    tier: str
    entrypoint: str
    cpus: float
    gpus: float
    memory_bytes: int
    node_id: str | None
    metadata: dict[str, str]
    state: RayJobState = RayJobState.PENDING
    message: str = ""
    driver_node_id: str | None = None
    exit_code: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    stop_asked: bool = False

    def status(self) -> RayJobStatus:
        """What `RayJobsBackend.status` would answer for it."""
        return RayJobStatus(
            self.state, self.message, self.driver_node_id, self.exit_code, self.start_time, self.end_time
        )


class FakeRay:
    """`Backend` over in-memory submissions and nodes per tier.

    `unreachable`: tiers whose cluster answers nothing (every call raises `RayUnavailable`). `instant_stop`: a
    stopped submission is STOPPED at once; when False it stays as it was until `settle_stops` (Ray takes about
    1.5 s). `refuse_submits`: the next that many `submit` calls raise `RayUnavailable` before reaching Ray.
    `faults`: (operation, Suanli job id) -> an exception that every such call for that job raises (operation
    ``submit``, ``status`` or ``stop``), as Ray's client does for a bad runtime environment (`ValueError`).
    `calls` logs each submit and each stop that reached a live submission, in order.
    """

    def __init__(self, nodes: Mapping[str, Sequence[RayNode]], *, instant_stop: bool = True) -> None:
        self.node_lists = {tier: list(found) for tier, found in nodes.items()}
        self.unreachable: set[str] = set()
        self.instant_stop = instant_stop
        self.refuse_submits = 0
        self.faults: dict[tuple[str, str], Exception] = {}
        self.submissions: dict[str, Submission] = {}
        self.calls: list[tuple[str, str]] = []
        self.passes = 0

    def _reach(self, tier: str, operation: str = "", submission_id: str = "") -> None:
        if tier in self.unreachable:
            raise RayUnavailable(tier, "connect: connection refused")
        fault = self.faults.get((operation, submission_id.rsplit("-", 1)[0]))
        if fault is not None:
            raise fault

    # -- the tests' side: Ray moving its submissions on --------------------------------------------------------

    def run(self, submission_id: str, at: float) -> None:
        """The submission's entrypoint starts (on the node it was pinned to)."""
        sub = self.submissions[submission_id]
        sub.state, sub.start_time, sub.driver_node_id = RayJobState.RUNNING, at, sub.node_id

    def end(self, submission_id: str, state: RayJobState, at: float, exit_code: int | None = None) -> None:
        """The submission ends: SUCCEEDED (exit code 0) or FAILED with `exit_code`, as Ray reports it."""
        sub = self.submissions[submission_id]
        if sub.start_time is None:
            sub.start_time = at
        sub.state, sub.end_time = state, at
        sub.exit_code = 0 if state is RayJobState.SUCCEEDED else exit_code
        if state is RayJobState.FAILED and exit_code is not None:
            sub.message = f"Job entrypoint command failed with exit code {exit_code}, last available logs ..."

    def settle_stops(self) -> None:
        """Every submission asked to stop is STOPPED now."""
        for sub in self.submissions.values():
            if sub.stop_asked and not sub.state.terminal:
                sub.state, sub.message = RayJobState.STOPPED, "Job was intentionally stopped."

    def live(self) -> list[str]:
        """Submission ids that have not ended (pending or running)."""
        return [s.submission_id for s in self.submissions.values() if not s.state.terminal]

    # -- Backend -----------------------------------------------------------------------------------------------

    def submit(
        self,
        *,
        job_id: str,
        tier: str,
        entrypoint: str,
        cpus: float,
        gpus: float,
        memory_bytes: int,
        runtime_env: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        node_id: str | None = None,
    ) -> bool:
        """Submit under `job_id`; False (nothing submitted) if that submission id exists already."""
        self._reach(tier, "submit", job_id)
        if self.refuse_submits > 0:
            self.refuse_submits -= 1
            raise RayUnavailable(tier, f"submit {job_id}: timed out")
        if job_id in self.submissions:
            return False
        self.submissions[job_id] = Submission(
            job_id, tier, entrypoint, cpus, gpus, memory_bytes, node_id, dict(metadata or {})
        )
        self.calls.append(("submit", job_id))
        return True

    def status(self, job_id: str, tier: str) -> RayJobStatus:
        """The submission's status; MISSING if there is none."""
        self._reach(tier, "status", job_id)
        sub = self.submissions.get(job_id)
        if sub is None:
            return RayJobStatus(RayJobState.MISSING, "Ray has no such submission")
        return sub.status()

    def stop(self, job_id: str, tier: str) -> bool:
        """Ask to stop it; False if it has ended or does not exist."""
        self._reach(tier, "stop", job_id)
        sub = self.submissions.get(job_id)
        if sub is None or sub.state.terminal:
            return False
        sub.stop_asked = True
        self.calls.append(("stop", job_id))
        if self.instant_stop:
            self.settle_stops()
        return True

    def nodes(self, tier: str) -> list[RayNode]:
        """The tier's alive nodes."""
        self._reach(tier)
        return list(self.node_lists.get(tier, []))

    def begin_pass(self) -> None:
        """A new dispatch pass (counted in `passes`; the fake reads no capacity to forget)."""
        self.passes += 1

    def jobs(self, tier: str) -> dict[str, RayJobStatus]:
        """Every submission made for the tier."""
        self._reach(tier)
        return {s.submission_id: s.status() for s in self.submissions.values() if s.tier == tier}
