"""The scheduler inside the service: the dispatcher on its own thread, and what the job routes ask of it.

Built at start when ``SUANLI_SCHEDULER_CONFIG`` names a file (`scheduler.config`); without one the job routes
answer 503. The dispatcher steps every ``SUANLI_DISPATCH_INTERVAL_SECONDS`` (and at once after a submission
or a cancel), on a thread of its own because Ray's Jobs API calls block, and only while this process holds the
dispatcher lease (`api.duties`): every step first asks whether the lease is held, every write carries its term,
and a write refused for an older term (`LeaseLost`) ends the step: the dispatcher stands down until the lease is
granted again, then starts from the database afresh (a new `Dispatcher`: nothing of the old term is kept). A
replica that serves only the API builds this too (job routes ask it about tiers and logs) but never starts it.

Must not: decide routing (the scheduler's policy does) or touch job rows except through `api.jobs.store`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from api.duties.elector import Fence
from api.duties.lease import LeaseLost
from api.jobs.store import SqlJobStore
from census_agent.models import Tier
from scheduler.config import SchedulerConfig
from scheduler.dispatcher import Dispatcher, StepReport
from scheduler.models import JobSpec, NodeView, RayJobStatus, RayNode
from scheduler.policy import feasible

if TYPE_CHECKING:
    from scheduler.ray_backend import RayJobsBackend

log = logging.getLogger(__name__)
VIEW_FRESH_SECONDS = 10.0  # a replica that does not step asks Ray for the tiers' nodes at most this often


class FencedBackend:
    """The dispatcher's view of Ray, each call that changes Ray (submit, stop) made only while this process holds
    the dispatcher lease by its own clock (`LeaseLost` otherwise): a dispatcher whose lease lapsed in the middle of
    a step submits or stops nothing more. Reads pass through."""

    def __init__(self, backend: RayJobsBackend, fence: Fence | None) -> None:
        self._backend = backend
        self._fence = fence

    def _check(self) -> None:
        if self._fence is not None:
            self._fence.term()

    def submit(self, **kwargs: Any) -> bool:  # noqa: ANN401 - `scheduler.dispatcher.Backend.submit`'s keywords
        """Submit, while the lease is held."""
        self._check()
        return self._backend.submit(**kwargs)

    def stop(self, job_id: str, tier: str) -> bool:
        """Stop a submission, while the lease is held."""
        self._check()
        return self._backend.stop(job_id, tier)

    def status(self, job_id: str, tier: str) -> RayJobStatus:
        """Ray's view of a submission."""
        return self._backend.status(job_id, tier)

    def nodes(self, tier: str) -> list[RayNode]:
        """The tier's alive nodes."""
        return self._backend.nodes(tier)

    def begin_pass(self) -> None:
        """A new dispatcher step: Ray's free resources are read afresh (a read; passes through)."""
        self._backend.begin_pass()

    def jobs(self, tier: str) -> dict[str, RayJobStatus]:
        """Every submission Ray holds for the tier."""
        return self._backend.jobs(tier)


class Scheduling:
    """The dispatcher loop and the scheduler's answers for the API."""

    def __init__(
        self,
        config: SchedulerConfig,
        engine: Engine,
        write_lock: threading.Lock | None,
        interval_seconds: float,
        fence: Fence | None = None,
    ) -> None:
        # Ray is imported only here: a service without a scheduler (and every test server) starts without it
        from scheduler.ray_backend import RayJobsBackend  # noqa: PLC0415

        self.config = config
        self.backend: RayJobsBackend = RayJobsBackend(config.targets)
        self.store = SqlJobStore(engine, write_lock, fence)
        self.fence = fence
        self.dispatcher = self._new_dispatcher()
        self.term: int | None = None  # the lease term the dispatcher last stepped under
        self.interval = interval_seconds
        self.last_step: StepReport | None = None
        self.last_step_at: float | None = None
        self._viewed_at = float("-inf")  # when `refusal` last asked Ray itself
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="suanli-dispatcher", daemon=True)

    def _new_dispatcher(self) -> Dispatcher:
        return Dispatcher(
            self.store,
            FencedBackend(self.backend, self.fence),
            self.config.policy,
            list(self.config.targets),
            lost_after_seconds=self.config.lost_after_seconds,
        )

    @property
    def tiers(self) -> list[Tier]:
        """The tiers this scheduler serves."""
        return list(self.config.targets)

    def start(self) -> None:
        """Start the dispatcher thread."""
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop the dispatcher thread (jobs on Ray keep running; a restart reconciles them)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=timeout)

    def wake(self) -> None:
        """Step soon (after a submission or a cancel) instead of at the next interval."""
        self._wake.set()

    def _run(self) -> None:
        log.info("dispatcher started: tiers %s, every %.1f s", ", ".join(self.tiers), self.interval)
        while not self._stop.is_set():
            try:
                term = self.fence.elector.held(self.fence.duty) if self.fence is not None else None
                if self.fence is not None and term is None:
                    self.term = None
                    self._wake.wait(self.interval)
                    self._wake.clear()
                    continue
                if term != self.term:  # a new term: start from the database alone
                    self.dispatcher = self._new_dispatcher()
                    self.term = term
                    log.info("dispatcher acting under lease term %s", term)
                report = self.dispatcher.step(time.time())
                self.last_step, self.last_step_at = report, time.time()
                if report.started or report.finished or report.requeued:
                    finished = {k: v.value for k, v in report.finished.items()}
                    log.info(
                        "dispatch: started %s, finished %s, requeued %s, %d waiting",
                        report.started,
                        finished,
                        report.requeued,
                        report.waiting,
                    )
            except LeaseLost as exc:
                log.warning("dispatcher step refused: %s; standing down", exc)
                self.term = None
            except Exception:
                log.exception("dispatcher step failed; retrying at the next interval")
            self._wake.wait(self.interval)
            self._wake.clear()

    def nodes(self) -> list[NodeView] | None:
        """The last view of every served tier's nodes, or None before the first step has seen any tier."""
        if not self.dispatcher.last_nodes:
            return None
        return [n for tier_nodes in self.dispatcher.last_nodes.values() for n in tier_nodes]

    def refusal(self, spec: JobSpec) -> str | None:
        """Why no served tier could ever run `spec`, or None if one could (or the view is not known yet)."""
        now = time.time()
        stepping = self.last_step_at is not None and now - self.last_step_at < VIEW_FRESH_SECONDS
        nodes = self.nodes()
        if nodes is None or (not stepping and now - self._viewed_at >= VIEW_FRESH_SECONDS):
            # Before the first step, or on a replica that does not hold the dispatcher lease: ask Ray now (a new
            # pass: the backend keeps what it read until the next one)
            self.backend.begin_pass()
            nodes = self.dispatcher.cluster(StepReport())
            self._viewed_at = now
            if not self.dispatcher.last_nodes:
                return None  # no tier reachable: accept; the job waits, saying why, until a tier is seen
        served = set(self.tiers)
        klass_tiers = self.config.policy.classes[spec.workload_class].tiers
        if not served & set(klass_tiers):
            return f"no tier for {spec.workload_class} jobs is served here (served: {', '.join(sorted(served))})"
        return feasible(spec.resources, spec.organisation, spec.workload_class, nodes, self.config.policy)

    def logs(self, submission_id: str, tier: str) -> str:
        """The job's output so far (from Ray)."""
        return self.backend.logs(submission_id, tier)

    def tail(self, submission_id: str, tier: str) -> AsyncIterator[str]:
        """The job's output as it is written (from Ray)."""
        return self.backend.tail_logs(submission_id, tier)
