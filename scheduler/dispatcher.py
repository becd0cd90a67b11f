"""The dispatcher: follows dispatched jobs on Ray, plans the queue, and hands Ray only the jobs that fit now.

Each `step`:
1. reads every tier's nodes from Ray's live view (a tier whose cluster cannot be reached has no nodes this
   step: its jobs wait, the others carry on; once it has been unreachable for ``lost_after_seconds`` its
   dispatched jobs' attempts are presumed lost: failed with that reason and retried per their policy, and
   when the cluster answers again any submission of such an attempt still alive there is stopped, so no job
   runs twice);
2. follows each dispatched job: Ray's status moves it on (running, succeeded, failed with its exit code,
   retried while it has retries left); a job past its time limit, or whose cancel was asked, is stopped;
3. plans the queue (`scheduler.queue.plan`) against what is free - what Ray says is available on each node,
   read once per step (`Backend.begin_pass`), less Suanli's own jobs Ray has not accounted for yet
   (`scheduler.queue.net_of_running`), so work placed on Ray by others is seen - and for each job to start
   records the decision (state ``dispatching``, tier, nodes, Ray submission id) *before* submitting it to Ray.

Every state change goes through the `JobStore` first and is acted on after, so a dispatcher killed at any
point and started again finds each job where it left it: a ``dispatching`` job Ray does not know is submitted
again under the same submission id (Ray refuses a second submission of an id, so it never runs twice); one Ray
knows is followed. Retries get a new submission id per attempt (``<job id>-<attempt>``).

It knows Ray and the database only through the `Backend` and `JobStore` protocols below (and the time only as
each step's ``now``), so it imports neither: tests/unit/scheduler/test_dispatcher.py drives it with in-memory
fakes of both.

Must not: hold jobs in memory between steps (the store is the truth), submit a job Ray could not start now,
read a clock, or call ``ray.init`` (the service is not a Ray driver).
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from census_agent.labels import REGION_LABEL
from census_agent.models import Tier
from scheduler import gang
from scheduler.models import (
    JobSpec,
    JobState,
    NodeView,
    QueuedJob,
    RayJobState,
    RayJobStatus,
    RayNode,
    RayUnavailable,
    RunningJob,
)
from scheduler.policy import Policy
from scheduler.queue import Plan, Wait, net_of_running, overdue, plan

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ActiveJob:
    """A dispatched job (dispatching or running) as stored."""

    job_id: str
    spec: JobSpec
    state: JobState
    tier: Tier
    node_ids: tuple[str, ...]
    attempt: int
    submission_id: str
    dispatched_at: float
    started_at: float | None
    stop_state: JobState | None = None
    stop_reason: str | None = None

    def holding(self) -> RunningJob:
        """What it holds, for the queue: its nodes until its time limit (counted from dispatch until it runs).

        Ray holds its share itself (so Ray's free figures count it) once it is stored as running: Ray was seen
        running it in an earlier step, before this step's capacity was read. A gang's placement group is
        reserved only after its entrypoint runs, so Suanli always subtracts a gang itself (`net_of_running`)."""
        started = self.started_at if self.started_at is not None else self.dispatched_at
        return RunningJob(
            self.job_id,
            self.spec.organisation,
            self.tier,
            self.node_ids,
            self.spec.resources,
            started,
            self.spec.time_limit_seconds,
            ray_holds=self.state is JobState.RUNNING and self.spec.resources.nodes == 1,
        )


class JobStore(Protocol):
    """Where jobs live (the service's database). Every transition is conditional on the state the caller
    saw and records an event; it returns False (and changes nothing) when the job had moved on."""

    def waiting(self) -> list[QueuedJob]:
        """Jobs in state queued."""
        ...

    def active(self) -> list[ActiveJob]:
        """Jobs in state dispatching or running."""
        ...

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
        """queued -> dispatching, with the decision."""
        ...

    def started(self, job_id: str, driver_node_id: str | None, now: float) -> bool:
        """dispatching -> running."""
        ...

    def finish(self, job_id: str, state: JobState, reason: str, exit_code: int | None, now: float) -> bool:
        """dispatching or running -> succeeded, failed or cancelled."""
        ...

    def requeue(self, job_id: str, reason: str, now: float) -> bool:
        """dispatching or running -> queued for another attempt (attempt + 1)."""
        ...

    def request_stop(self, job_id: str, state: JobState, reason: str) -> bool:
        """Mark a dispatched job to be stopped and recorded as `state` (cancelled, or failed by time limit)."""
        ...

    def record_waits(self, waits: Sequence[Wait]) -> None:
        """Store why each waiting job waits and its place in line (no event: this changes every step)."""
        ...


class Backend(Protocol):
    """What the dispatcher needs of Ray (`scheduler.ray_backend.RayJobsBackend`)."""

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
        """Submit under `job_id` (Ray's submission id); False if Ray already has it."""
        ...

    def status(self, job_id: str, tier: str) -> RayJobStatus:
        """Ray's view of a submission."""
        ...

    def stop(self, job_id: str, tier: str) -> bool:
        """Ask Ray to stop a submission."""
        ...

    def nodes(self, tier: str) -> list[RayNode]:
        """The tier's alive nodes, with what Ray says is available on each (read once per pass)."""
        ...

    def begin_pass(self) -> None:
        """A new dispatch pass: forget the capacity read for the last one."""
        ...

    def jobs(self, tier: str) -> dict[str, RayJobStatus]:
        """Every submission Ray holds for the tier, by submission id."""
        ...


@dataclass
class StepReport:
    """What one step did (for logs, metrics and tests)."""

    nodes: dict[Tier, int] = field(default_factory=dict)
    unreachable: list[Tier] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    finished: dict[str, JobState] = field(default_factory=dict)
    requeued: list[str] = field(default_factory=list)
    stopping: list[str] = field(default_factory=list)
    waiting: int = 0
    plan: Plan | None = None


def node_views(tier: Tier, nodes: Sequence[RayNode]) -> list[NodeView]:
    """Ray's nodes of a tier as the scheduler's node views, free as Ray says (its totals where Ray did not say)."""
    return [
        NodeView(
            n.node_id,
            tier,
            n.cpus,
            n.gpus,
            n.memory_bytes,
            n.cpus if n.free_cpus is None else n.free_cpus,
            n.gpus if n.free_gpus is None else n.free_gpus,
            n.memory_bytes if n.free_memory_bytes is None else n.free_memory_bytes,
            n.labels.get(REGION_LABEL),
            name=n.name,
        )
        for n in nodes
    ]


def _gist(exc: BaseException) -> str:
    """An unexpected error in a job's reason: its type and first line, bounded."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


SCRUB_MIN_CHARS = 4  # shorter values (1, on, yes) carry no secret, and masking them would garble every message
REDACTED = "***"


def masked(text: str, values: Iterable[str]) -> str:
    """`text` with each of `values` of at least SCRUB_MIN_CHARS characters replaced by ``***``, longer values
    first (so a value that contains another is masked whole). Shared with job output (`api.jobs.logmask`)."""
    for value in sorted({v for v in values if len(v) >= SCRUB_MIN_CHARS}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def scrubbed(text: str, spec: JobSpec) -> str:
    """`text` (an error from submitting `spec`, which may echo its runtime environment) with the job's environment
    values masked (`masked`): a job's reason is shown to operators and the service's log is read by them, and the
    values are for the job's owner and admins only."""
    return masked(text, spec.runtime_env.env_vars.values())


def submission(spec: JobSpec, node_ids: Sequence[str]) -> tuple[str, dict[str, Any], tuple[float, float, int]]:
    """What Ray is given for a job: its entrypoint, its runtime environment and what the entrypoint reserves.

    The job's working directory is a directory on the node: the entrypoint changes into it there first
    (``cd -- DIR || exit 1`` on a line of its own, so the command, whatever its shell syntax, runs only there).
    It never becomes Ray's ``runtime_env.working_dir``, which Ray's client zips on the submitting machine (the
    service's host) and uploads. A gang's entrypoint reserves its nodes first (`scheduler.gang`, which runs the
    command, directory change included, in a shell) and, holding them through its placement
    group, asks for no resources itself."""
    r = spec.resources
    env = spec.runtime_env
    runtime_env: dict[str, Any] = {}
    if env.env_vars:
        runtime_env["env_vars"] = dict(env.env_vars)
    if env.pip:
        runtime_env["pip"] = list(env.pip)
    command = spec.entrypoint
    if env.working_dir:
        command = f"cd -- {shlex.quote(env.working_dir)} || exit 1\n{command}"
    if r.nodes > 1:
        gang_line = gang.command_line(command, r.cpus, r.gpus, r.memory_bytes, node_ids)
        return gang_line, runtime_env, (0.0, 0.0, 0)
    return command, runtime_env, (r.cpus, float(r.gpus), r.memory_bytes)


class Dispatcher:
    """Moves jobs through their lifecycle, one `step` at a time (the service calls it on a timer)."""

    def __init__(
        self,
        store: JobStore,
        backend: Backend,
        policy: Policy,
        tiers: Sequence[Tier],
        *,
        lost_after_seconds: float = 120.0,
    ) -> None:
        self.store = store
        self.backend = backend
        self.policy = policy
        self.tiers = tuple(tiers)
        self.lost_after_seconds = lost_after_seconds
        self.last_nodes: dict[Tier, list[NodeView]] = {}  # the last view of each tier, for feasibility checks
        self._stop_sent: set[str] = set()
        self._unreachable_since: dict[Tier, float] = {}
        self._sweep: set[Tier] = set()  # tiers back after being lost: stop the submissions of lost attempts

    def cluster(self, report: StepReport, now: float | None = None) -> list[NodeView]:
        """Every reachable tier's nodes now."""
        views: list[NodeView] = []
        for tier in self.tiers:
            try:
                tier_nodes = node_views(tier, self.backend.nodes(tier.value))
            except RayUnavailable as exc:
                report.unreachable.append(tier)
                if now is None:  # a look from outside a step (the API): only steps keep the time
                    continue
                since = self._unreachable_since.setdefault(tier, now)
                log.warning("tier %s: Ray unreachable for %.0f s (%s); its jobs wait", tier, now - since, exc)
                continue
            except Exception as exc:  # a tier whose answer cannot be read has no nodes this step
                log.warning("tier %s: could not read its nodes (%s); its jobs wait", tier, _gist(exc))
                continue
            if now is not None:
                back_from = self._unreachable_since.pop(tier, now)
                if now - back_from >= self.lost_after_seconds:
                    self._sweep.add(tier)
            self.last_nodes[tier] = tier_nodes
            report.nodes[tier] = len(tier_nodes)
            views.extend(tier_nodes)
        return views

    def step(self, now: float) -> StepReport:
        """One round: follow, stop, plan, dispatch."""
        report = StepReport()
        self.backend.begin_pass()  # this step's capacity is read after every earlier step's follow
        nodes = self.cluster(report, now)
        active = self.store.active()
        if self._sweep:
            self._stop_strays({job.submission_id for job in active}, report)
        still = [job for job in active if self._follow(job, now, report)]
        holding = [job.holding() for job in still]
        running = {job.job_id: job for job in still if job.state is JobState.RUNNING}
        for job_id in overdue([h for h in holding if h.job_id in running], now):
            job = running[job_id]
            if job.stop_state is None:
                reason = f"stopped: time limit of {job.spec.time_limit_seconds} s reached"
                if self.store.request_stop(job_id, JobState.FAILED, reason):
                    self._send_stop(job, report)
        waiting = self.store.waiting()
        result = plan(waiting, holding, net_of_running(nodes, holding), self.policy, now)
        report.plan = result
        by_id = {q.job_id: q for q in waiting}
        for start in result.starts:
            attempt = by_id[start.job_id].attempt
            submission_id = f"{start.job_id}-{attempt}"
            if not self.store.dispatch(
                start.job_id,
                attempt=attempt,
                tier=start.tier,
                node_ids=start.node_ids,
                submission_id=submission_id,
                reason=start.reason,
                now=now,
            ):
                continue  # cancelled meanwhile
            queued = by_id[start.job_id]
            refused = self._submit(queued.spec, start.tier, start.node_ids, submission_id)
            if refused is not None:
                self._fail_attempt(
                    start.job_id, queued.spec, attempt, what=refused, exit_code=None, now=now, report=report
                )
                continue
            report.started.append(start.job_id)
        self.store.record_waits(result.waits)
        report.waiting = len(result.waits)
        return report

    def _submit(self, spec: JobSpec, tier: Tier, node_ids: Sequence[str], submission_id: str) -> str | None:
        """Hand the attempt to Ray; None when submitted (or to be submitted again: its tier is unreachable now),
        else why it cannot be (an unexpected error: the caller fails or retries that job, and no other)."""
        entrypoint, runtime_env, (cpus, gpus, memory) = submission(spec, node_ids)
        try:
            self.backend.submit(
                job_id=submission_id,
                tier=tier.value,
                entrypoint=entrypoint,
                cpus=cpus,
                gpus=gpus,
                memory_bytes=memory,
                runtime_env=runtime_env or None,
                metadata={"suanli_job": submission_id.rsplit("-", 1)[0], "name": spec.name},
                node_id=node_ids[0],
            )
        except RayUnavailable as exc:
            # Recorded as dispatching already: the next step finds Ray without it and submits again.
            log.warning("could not submit %s to %s now (%s); will retry", submission_id, tier, scrubbed(str(exc), spec))
        except Exception as exc:  # one job's bad submission must not stop the others'
            gist = scrubbed(_gist(exc), spec)
            log.warning("could not submit %s to %s: %s", submission_id, tier, gist)
            return f"could not submit: {gist}"
        return None

    def _send_stop(self, job: ActiveJob, report: StepReport) -> None:
        if job.job_id in self._stop_sent:
            return
        try:
            self.backend.stop(job.submission_id, job.tier.value)
        except Exception as exc:  # unreachable or not: asked again next step, the others carry on
            log.warning("could not stop %s now (%s); will retry", job.submission_id, _gist(exc))
            return
        self._stop_sent.add(job.job_id)
        report.stopping.append(job.job_id)

    def _stop_strays(self, current: set[str], report: StepReport) -> None:
        """On a tier back after being lost: stop every live submission that is no job's current attempt."""
        for tier in sorted(self._sweep):
            try:
                submissions = self.backend.jobs(tier.value)
            except Exception as exc:  # unreachable or not: swept again next step
                log.warning("tier %s: could not list its submissions (%s); will retry", tier, _gist(exc))
                continue
            for submission_id, status in submissions.items():
                if submission_id in current or status.state.terminal:
                    continue
                try:
                    self.backend.stop(submission_id, tier.value)
                except Exception as exc:  # unreachable or not: swept again next step
                    log.warning("tier %s: could not stop stray %s (%s); will retry", tier, submission_id, _gist(exc))
                    break
                log.warning(
                    "tier %s: stopped %s, an attempt presumed lost while the tier was unreachable", tier, submission_id
                )
                report.stopping.append(submission_id)
            else:
                self._sweep.discard(tier)

    def _status(self, job: ActiveJob, now: float, report: StepReport) -> RayJobStatus | bool:
        """Ray's status of the job's attempt, or what `_follow` answers when there is none to act on."""
        try:
            return self.backend.status(job.submission_id, job.tier.value)
        except RayUnavailable:
            since = self._unreachable_since.get(job.tier)
            if since is not None and now - since >= self.lost_after_seconds:
                # Its cluster is gone for good as far as we can tell: the attempt is lost. The next attempt runs
                # when the tier (or a spill tier) has room; a late survivor is stopped when the tier comes back.
                lost = f"its tier's Ray cluster unreachable for {now - since:.0f} s; attempt presumed lost"
                return self._retry_or_fail(job, lost, None, now, report)
            return True  # keep holding its nodes; nothing known yet
        except Exception as exc:  # an answer about one job that cannot be read fails that job only
            log.warning("could not follow %s: %s; stopping it", job.submission_id, scrubbed(_gist(exc), job.spec))
            try:  # best effort, so a retry does not run beside it
                self.backend.stop(job.submission_id, job.tier.value)
            except Exception as stop_exc:
                log.warning("could not stop %s either (%s)", job.submission_id, _gist(stop_exc))
            return self._retry_or_fail(job, f"could not follow it: {_gist(exc)}", None, now, report)

    def _follow(self, job: ActiveJob, now: float, report: StepReport) -> bool:
        """Move a dispatched job on from Ray's status; True if it is still dispatched afterwards."""
        status = self._status(job, now, report)
        if isinstance(status, bool):
            return status
        state = status.state
        if job.stop_state is not None and state in (RayJobState.PENDING, RayJobState.RUNNING):
            self._send_stop(job, report)
            return True
        if state is RayJobState.MISSING:
            if job.stop_state is not None:
                return self._finish(job, job.stop_state, job.stop_reason or "stopped", None, now=now, report=report)
            if job.state is JobState.DISPATCHING:
                log.info("%s: Ray has no submission %s yet; submitting (again)", job.job_id, job.submission_id)
                refused = self._submit(job.spec, job.tier, job.node_ids, job.submission_id)
                if refused is not None:
                    return self._retry_or_fail(job, refused, None, now, report)
                return True
            restarted = "Ray has no record of it (its cluster restarted?)"
            return self._retry_or_fail(job, restarted, None, now, report)
        if state is RayJobState.PENDING:
            return True
        if job.state is JobState.DISPATCHING and (state is RayJobState.RUNNING or status.start_time is not None):
            # A short job can go from PENDING to its end between two steps: its start is recorded from Ray's
            # times, so every job's history reads queued -> dispatching -> running -> its end.
            self.store.started(job.job_id, status.driver_node_id, status.start_time or now)
        if state is RayJobState.RUNNING:
            return True
        if state is RayJobState.SUCCEEDED:
            return self._finish(job, JobState.SUCCEEDED, "succeeded: exit code 0", 0, now=now, report=report)
        if job.stop_state is not None:
            return self._finish(
                job, job.stop_state, job.stop_reason or "stopped", status.exit_code, now=now, report=report
            )
        if state is RayJobState.STOPPED:
            return self._finish(
                job, JobState.FAILED, "stopped outside Suanli (ray job stop)", None, now=now, report=report
            )
        # FAILED
        what = f"exit code {status.exit_code}" if status.exit_code is not None else (status.message or "failed")
        return self._retry_or_fail(job, what, status.exit_code, now, report)

    def _finish(
        self, job: ActiveJob, state: JobState, reason: str, exit_code: int | None, *, now: float, report: StepReport
    ) -> bool:
        if self.store.finish(job.job_id, state, reason, exit_code, now):
            report.finished[job.job_id] = state
            self._stop_sent.discard(job.job_id)
        return False

    def _retry_or_fail(self, job: ActiveJob, what: str, exit_code: int | None, now: float, report: StepReport) -> bool:
        return self._fail_attempt(
            job.job_id, job.spec, job.attempt, what=what, exit_code=exit_code, now=now, report=report
        )

    def _fail_attempt(
        self,
        job_id: str,
        spec: JobSpec,
        attempt: int,
        *,
        what: str,
        exit_code: int | None,
        now: float,
        report: StepReport,
    ) -> bool:
        """Requeue a failed attempt while the job has retries left, else fail the job; False (no longer dispatched).
        `what` (Ray's words may quote the job's runtime environment) is scrubbed of its environment values."""
        what = scrubbed(what, spec)
        tries = attempt + 1
        if attempt < spec.max_retries:
            reason = f"attempt {tries} failed ({what}); retry {tries} of {spec.max_retries}"
            if self.store.requeue(job_id, reason, now):
                report.requeued.append(job_id)
            return False
        reason = f"failed: {what}" + (f" after {tries} attempts" if tries > 1 else "")
        if self.store.finish(job_id, JobState.FAILED, reason, exit_code, now):
            report.finished[job_id] = JobState.FAILED
            self._stop_sent.discard(job_id)
        return False
