"""The scheduler inside the service: the dispatcher on its own thread, and what the job routes ask of it.

Built at start when ``SUANLI_SCHEDULER_CONFIG`` names a file (`scheduler.config`); without one the job routes
answer 503. The dispatcher steps every ``SUANLI_DISPATCH_INTERVAL_SECONDS`` (and at once after a submission
or a cancel), on a thread of its own because Ray's Jobs API calls block.

Must not: decide routing (the scheduler's policy does) or touch job rows except through `api.jobs.store`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from api.jobs.store import SqlJobStore
from census_agent.models import Tier
from scheduler.config import SchedulerConfig
from scheduler.dispatcher import Dispatcher, StepReport
from scheduler.models import JobSpec, NodeView
from scheduler.policy import feasible

if TYPE_CHECKING:
    from scheduler.ray_backend import RayJobsBackend

log = logging.getLogger(__name__)


class Scheduling:
    """The dispatcher loop and the scheduler's answers for the API."""

    def __init__(
        self, config: SchedulerConfig, engine: Engine, write_lock: threading.Lock | None, interval_seconds: float
    ) -> None:
        # Ray is imported only here: a service without a scheduler (and every test server) starts without it
        from scheduler.ray_backend import RayJobsBackend  # noqa: PLC0415

        self.config = config
        self.backend: RayJobsBackend = RayJobsBackend(config.targets)
        self.dispatcher = Dispatcher(
            SqlJobStore(engine, write_lock),
            self.backend,
            config.policy,
            list(config.targets),
            lost_after_seconds=config.lost_after_seconds,
        )
        self.interval = interval_seconds
        self.last_step: StepReport | None = None
        self.last_step_at: float | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="suanli-dispatcher", daemon=True)

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
        nodes = self.nodes()
        if nodes is None:  # a submission before the first step: ask Ray now
            nodes = self.dispatcher.cluster(StepReport())
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
