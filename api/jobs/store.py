"""Jobs in the service's database: submission, queries for the API, and the dispatcher's `JobStore`.

Every state change is a conditional UPDATE (only from the states the caller saw) plus a `job_events` row in
the same transaction, so a change is recorded exactly once and before anyone acts on it. The dispatcher's writes
are fenced by its lease (`api.duties`): each transaction first checks, and on PostgreSQL locks for share, the
dispatcher lease row under the term this process holds; under an older term nothing is written and `LeaseLost`
is raised, so the dispatcher stands down. Times are stored as
UTC datetimes and handed to the scheduler as seconds since the epoch.

Must not: talk to Ray (the dispatcher does), or decide anything (the scheduler does).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, and_, bindparam, func, select, update

from api.db import aware
from api.db.engine import write_transaction
from api.db.tables import job_events, jobs
from api.duties import store as leases
from api.duties.elector import Fence
from api.duties.lease import LeaseLost
from census_agent.models import Tier
from scheduler.dispatcher import ActiveJob
from scheduler.models import JobSpec, JobState, QueuedJob
from scheduler.queue import Wait

log = logging.getLogger(__name__)

DISPATCHED = (JobState.DISPATCHING.value, JobState.RUNNING.value)


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _seconds(value: datetime | None) -> float | None:
    return None if value is None else aware(value).timestamp()


def new_job_id() -> str:
    """A fresh job id (also the stem of Ray's submission ids)."""
    return "job-" + uuid.uuid4().hex[:16]


def by_key(conn: Connection, owner_id: int, key: str) -> tuple[str, str] | None:
    """The (job id, spec JSON) the token `owner_id` submitted under idempotency key `key`, if any."""
    row = conn.execute(
        select(jobs.c.job_id, jobs.c.spec).where(jobs.c.owner_id == owner_id, jobs.c.idempotency_key == key)
    ).first()
    return None if row is None else (row[0], row[1])


def create(
    conn: Connection,
    spec: JobSpec,
    owner: str,
    now: datetime,
    reason: str,
    *,
    owner_id: int | None,
    key: str | None = None,
) -> str:
    """Store a new queued job and its first event, owned by the token `owner_id` (named `owner`); returns its
    id. `spec.organisation` is stored as given: the caller has enforced it."""
    job_id = new_job_id()
    conn.execute(
        jobs.insert().values(
            job_id=job_id,
            name=spec.name,
            workload_class=spec.workload_class.value,
            owner=owner,
            owner_id=owner_id,
            organisation=spec.organisation,
            priority=spec.priority,
            spec=spec.model_dump_json(),
            state=JobState.QUEUED.value,
            reason=reason,
            position=None,
            tier=None,
            node_ids=None,
            attempt=0,
            submitted_at=now,
            idempotency_key=key,
        )
    )
    conn.execute(job_events.insert().values(job_id=job_id, at=now, state=JobState.QUEUED.value, reason=reason))
    return job_id


def document(row: Any) -> dict[str, Any]:  # noqa: ANN401 - a SQLAlchemy row mapping
    """A jobs row as the API shows it."""

    def when(value: datetime | None) -> str | None:
        return None if value is None else aware(value).isoformat()

    return {
        "job_id": row["job_id"],
        "name": row["name"],
        "class": row["workload_class"],
        "owner": row["owner"],
        "owner_id": row["owner_id"],
        "organisation": row["organisation"],
        "priority": row["priority"],
        "state": row["state"],
        "reason": row["reason"],
        "position": row["position"] if row["state"] == JobState.QUEUED.value else None,
        "tier": row["tier"],
        "node_ids": json.loads(row["node_ids"]) if row["node_ids"] else [],
        "attempt": row["attempt"],
        "submission_id": row["submission_id"],
        "driver_node_id": row["driver_node_id"],
        "exit_code": row["exit_code"],
        "submitted_at": when(row["submitted_at"]),
        "dispatched_at": when(row["dispatched_at"]),
        "started_at": when(row["started_at"]),
        "finished_at": when(row["finished_at"]),
        "spec": json.loads(row["spec"]),
    }


def get(conn: Connection, job_id: str) -> dict[str, Any] | None:
    """One job with its events, or None."""
    row = conn.execute(select(jobs).where(jobs.c.job_id == job_id)).mappings().first()
    if row is None:
        return None
    events = conn.execute(
        select(job_events.c.at, job_events.c.state, job_events.c.reason)
        .where(job_events.c.job_id == job_id)
        .order_by(job_events.c.id)
    ).mappings()
    return {
        **document(row),
        "events": [{"at": aware(e["at"]).isoformat(), "state": e["state"], "reason": e["reason"]} for e in events],
    }


def search(
    conn: Connection,
    *,
    owner: str | None = None,
    owner_id: int | None = None,
    state: str | None = None,
    klass: str | None = None,
    tier: str | None = None,
    organisation: str | None = None,
    limit: int = 100,
    before: str | None = None,
) -> dict[str, Any]:
    """Jobs newest first, filtered; paginated by job id (`before`: the `next_before` of the previous page)."""
    query = select(jobs)
    for column, value in (
        (jobs.c.owner, owner),
        (jobs.c.owner_id, owner_id),
        (jobs.c.state, state),
        (jobs.c.workload_class, klass),
        (jobs.c.tier, tier),
        (jobs.c.organisation, organisation),
    ):
        if value is not None:
            query = query.where(column == value)
    if before is not None:
        anchor = conn.execute(select(jobs.c.submitted_at).where(jobs.c.job_id == before)).scalar()
        if anchor is not None:
            query = query.where(
                (jobs.c.submitted_at < anchor) | and_(jobs.c.submitted_at == anchor, jobs.c.job_id < before)
            )
    rows = conn.execute(query.order_by(jobs.c.submitted_at.desc(), jobs.c.job_id.desc()).limit(limit + 1)).mappings()
    items = [document(r) for r in rows]
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_before": items[-1]["job_id"] if more else None}


def counts(conn: Connection) -> dict[tuple[str | None, str], int]:
    """Jobs per (tier, state) for the states that are not over."""
    open_states = (JobState.QUEUED.value, *DISPATCHED)
    rows = conn.execute(
        select(jobs.c.tier, jobs.c.state, func.count())
        .where(jobs.c.state.in_(open_states))
        .group_by(jobs.c.tier, jobs.c.state)
    )
    return {(tier, state): int(n) for tier, state, n in rows}


def finished_counts(conn: Connection) -> dict[tuple[str | None, str], int]:
    """Jobs per (tier, state) that have ended: succeeded, failed or cancelled (monotonic: rows are kept)."""
    ended = (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELLED.value)
    rows = conn.execute(
        select(jobs.c.tier, jobs.c.state, func.count())
        .where(jobs.c.state.in_(ended))
        .group_by(jobs.c.tier, jobs.c.state)
    )
    return {(tier, state): int(n) for tier, state, n in rows}


def cancel(conn: Connection, job_id: str, by: str, now: datetime) -> str:
    """Cancel a job: a queued one at once; a dispatched one is marked for the dispatcher to stop. Returns the
    job's state afterwards (a finished job is left as it was)."""
    reason = f"cancelled by {by}"
    done = conn.execute(
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.state == JobState.QUEUED.value)
        .values(state=JobState.CANCELLED.value, reason=reason, finished_at=now, position=None)
    ).rowcount
    if done:
        conn.execute(job_events.insert().values(job_id=job_id, at=now, state=JobState.CANCELLED.value, reason=reason))
        return JobState.CANCELLED.value
    conn.execute(
        update(jobs)
        .where(jobs.c.job_id == job_id, jobs.c.state.in_(DISPATCHED), jobs.c.stop_state.is_(None))
        .values(stop_state=JobState.CANCELLED.value, stop_reason=reason)
    )
    return str(conn.execute(select(jobs.c.state).where(jobs.c.job_id == job_id)).scalar_one())


class SqlJobStore:
    """The dispatcher's `scheduler.dispatcher.JobStore` over the service's database; with a `fence`, every write
    carries the dispatcher lease's term (`LeaseLost`, nothing written, when that term is no longer held)."""

    def __init__(self, engine: Engine, write_lock: threading.Lock | None = None, fence: Fence | None = None) -> None:
        self.engine = engine
        self.write_lock = write_lock
        self.fence = fence

    def _lock(self) -> AbstractContextManager[Any]:
        return self.write_lock if self.write_lock is not None else nullcontext()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction, fenced by the lease term held now (checked first, in the same transaction)."""
        with self._lock(), write_transaction(self.engine) as conn:
            if self.fence is not None:
                term: int | None = None
                try:
                    term = self.fence.term()
                    leases.check(conn, self.fence.duty, self.fence.holder, term)
                except LeaseLost:
                    self.fence.lost(term)
                    raise
            yield conn

    def waiting(self) -> list[QueuedJob]:
        """Jobs in state queued."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(jobs.c.job_id, jobs.c.spec, jobs.c.submitted_at, jobs.c.attempt).where(
                    jobs.c.state == JobState.QUEUED.value
                )
            ).all()
        waiting: list[QueuedJob] = []
        for job_id, spec, submitted_at, attempt in rows:
            try:
                waiting.append(
                    QueuedJob(job_id, JobSpec.model_validate_json(spec), aware(submitted_at).timestamp(), attempt)
                )
            except ValidationError as exc:
                # Stored by an older version under rules this one refuses (a service-host working_dir, say): fail
                # that job with the reason rather than every dispatcher step for everyone.
                first = exc.errors()[0]
                reason = f"its spec is refused by this version: {'.'.join(map(str, first['loc']))}: {first['msg']}"
                log.warning("job %s: %s; failed", job_id, reason)
                self._move(job_id, [JobState.QUEUED.value], JobState.FAILED, reason, time.time())
        return waiting

    def active(self) -> list[ActiveJob]:
        """Jobs in state dispatching or running."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs).where(jobs.c.state.in_(DISPATCHED))).mappings().all()
        return [
            ActiveJob(
                job_id=r["job_id"],
                spec=JobSpec.model_validate_json(r["spec"]),
                state=JobState(r["state"]),
                tier=Tier(r["tier"]),
                node_ids=tuple(json.loads(r["node_ids"] or "[]")),
                attempt=r["attempt"],
                submission_id=r["submission_id"],
                dispatched_at=aware(r["dispatched_at"]).timestamp(),
                started_at=_seconds(r["started_at"]),
                stop_state=JobState(r["stop_state"]) if r["stop_state"] else None,
                stop_reason=r["stop_reason"],
            )
            for r in rows
        ]

    def _move(
        self,
        job_id: str,
        from_states: Sequence[str],
        state: JobState,
        reason: str,
        now: float,
        **values: Any,  # noqa: ANN401 - column values of the jobs row
    ) -> bool:
        at = _time(now)
        with self._writing() as conn:
            moved = conn.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.state.in_(from_states))
                .values(state=state.value, reason=reason, **values)
            ).rowcount
            if moved:
                conn.execute(job_events.insert().values(job_id=job_id, at=at, state=state.value, reason=reason))
        return bool(moved)

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
        at = _time(now)
        with self._writing() as conn:
            moved = conn.execute(
                update(jobs)
                .where(jobs.c.job_id == job_id, jobs.c.state == JobState.QUEUED.value, jobs.c.attempt == attempt)
                .values(
                    state=JobState.DISPATCHING.value,
                    reason=reason,
                    tier=tier.value,
                    node_ids=json.dumps(list(node_ids)),
                    submission_id=submission_id,
                    dispatched_at=at,
                    position=None,
                )
            ).rowcount
            if moved:
                conn.execute(
                    job_events.insert().values(job_id=job_id, at=at, state=JobState.DISPATCHING.value, reason=reason)
                )
        return bool(moved)

    def started(self, job_id: str, driver_node_id: str | None, now: float) -> bool:
        """dispatching -> running."""
        with self.engine.connect() as conn:
            reason = conn.execute(select(jobs.c.reason).where(jobs.c.job_id == job_id)).scalar() or "running"
        where = f" (driver on node {driver_node_id})" if driver_node_id else ""
        return self._move(
            job_id,
            [JobState.DISPATCHING.value],
            JobState.RUNNING,
            f"running{where}; {reason}",
            now,
            started_at=_time(now),
            driver_node_id=driver_node_id,
        )

    def finish(self, job_id: str, state: JobState, reason: str, exit_code: int | None, now: float) -> bool:
        """dispatching or running -> succeeded, failed or cancelled."""
        return self._move(job_id, DISPATCHED, state, reason, now, finished_at=_time(now), exit_code=exit_code)

    def requeue(self, job_id: str, reason: str, now: float) -> bool:
        """dispatching or running -> queued for the next attempt."""
        return self._move(
            job_id,
            DISPATCHED,
            JobState.QUEUED,
            reason,
            now,
            attempt=jobs.c.attempt + 1,
            submission_id=None,
            node_ids=None,
            dispatched_at=None,
            started_at=None,
            driver_node_id=None,
            exit_code=None,
        )

    def request_stop(self, job_id: str, state: JobState, reason: str) -> bool:
        """Mark a dispatched job to be stopped and recorded as `state`."""
        with self._writing() as conn:
            return bool(
                conn.execute(
                    update(jobs)
                    .where(jobs.c.job_id == job_id, jobs.c.state.in_(DISPATCHED), jobs.c.stop_state.is_(None))
                    .values(stop_state=state.value, stop_reason=reason)
                ).rowcount
            )

    def record_waits(self, waits: Sequence[Wait]) -> None:
        """Store each waiting job's reason, home tier and place in line (only rows that changed are written)."""
        if not waits:
            return
        with self.engine.connect() as conn:
            current = {
                r[0]: (r[1], r[2], r[3])
                for r in conn.execute(
                    select(jobs.c.job_id, jobs.c.reason, jobs.c.position, jobs.c.tier).where(
                        jobs.c.state == JobState.QUEUED.value
                    )
                )
            }
        changed = [
            {"key": w.job_id, "reason": w.reason, "position": w.position, "tier": w.tier.value}
            for w in waits
            if w.job_id in current and current[w.job_id] != (w.reason, w.position, w.tier.value)
        ]
        if not changed:
            return
        statement = (
            update(jobs)
            .where(jobs.c.job_id == bindparam("key"), jobs.c.state == JobState.QUEUED.value)
            .values(reason=bindparam("reason"), position=bindparam("position"), tier=bindparam("tier"))
        )
        with self._writing() as conn:
            conn.execute(statement, changed)
