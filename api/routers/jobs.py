"""``/v1/jobs``: submit, list, follow, read the logs of and cancel jobs.

Role ``user`` sees and cancels only its own jobs (by token name); ``operator`` and ``admin`` see and cancel all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import ValidationError
from sqlalchemy import Connection

from api.audit import log as audit
from api.auth import Principal, Role
from api.db.engine import write_transaction
from api.deps import Conn, JobUser, State
from api.errors import (
    AUTHENTICATED,
    Conflict,
    InvalidRequest,
    JobRejected,
    NotFound,
    SchedulerUnavailable,
    invalid_body,
    problem_responses,
)
from api.jobs import store as job_store
from api.jobs.scheduling import Scheduling
from api.openapi import json_body
from api.schemas.jobs import JobPublic, JobsPage
from api.state import ServiceState
from scheduler.models import JobSpec, JobState, WorkloadClass

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(*AUTHENTICATED, 422))


def _scheduling(state: ServiceState) -> Scheduling:
    if state.scheduling is None:
        raise SchedulerUnavailable("no scheduler is configured on this service (SUANLI_SCHEDULER_CONFIG)")
    return state.scheduling


def _sees_all(principal: Principal) -> bool:
    return principal.role in (Role.ADMIN, Role.OPERATOR)


def _visible(conn: Connection, job_id: str, principal: Principal) -> dict[str, Any]:
    job = job_store.get(conn, job_id)
    if job is None or (not _sees_all(principal) and job["owner"] != principal.name):
        raise NotFound(f"no job {job_id!r}")  # another user's job is not acknowledged to exist
    return job


@router.post(
    "",
    status_code=201,
    response_model=JobPublic,
    summary="Submit a job",
    responses={
        200: {"model": JobPublic, "description": "the job an earlier submission with the same Idempotency-Key queued"},
        **problem_responses(409, 413),
    },
    openapi_extra=json_body(JobSpec.model_json_schema(by_alias=True)),
)
async def submit(
    request: Request,
    response: Response,
    principal: JobUser,
    state: State,
    idempotency_key: Annotated[str | None, Header(max_length=128, pattern=r"^[\x21-\x7e]+$")] = None,
) -> dict[str, Any]:
    """Validate the job, refuse it at once if no tier could ever run it, else queue it (201, the job).

    With an ``Idempotency-Key`` header, a retry of the same submission (same key, same body, same token name)
    answers 200 with the job already queued instead of queueing another; the same key with another body is 409.
    """
    scheduling = _scheduling(state)
    try:
        spec = JobSpec.model_validate_json(await request.body())
    except ValidationError as exc:
        raise invalid_body(exc) from None
    if spec.region is not None and spec.region not in state.regions:
        raise InvalidRequest(f"unknown region code {spec.region!r}: see GET /v1/regions", field="region")
    refusal = await run_in_threadpool(scheduling.refusal, spec)
    if refusal is not None:
        raise JobRejected(refusal)

    def store() -> tuple[dict[str, Any], bool]:
        now = datetime.now(tz=UTC)
        created = True
        with state.ingestor.write_lock, write_transaction(state.engine) as conn:
            earlier = job_store.by_key(conn, principal.name, idempotency_key) if idempotency_key else None
            if earlier is not None:
                job_id, created = earlier[0], False
                if JobSpec.model_validate_json(earlier[1]) != spec:
                    raise Conflict(f"Idempotency-Key {idempotency_key!r} was used for another job ({job_id})")
            else:
                job_id = job_store.create(
                    conn, spec, principal.name, now, "queued: waiting for the dispatcher", key=idempotency_key
                )
                audit.job_submitted(conn, audit.actor_of(principal), job_id, spec.model_dump_json(by_alias=True))
        with state.engine.connect() as conn:
            job = job_store.get(conn, job_id)
        assert job is not None
        return job, created

    job, created = await run_in_threadpool(store)
    if created:
        scheduling.wake()
    else:
        response.status_code = 200
    return job


@router.get("", summary="List jobs (a user sees its own)", response_model=JobsPage)
def list_jobs(
    principal: JobUser,
    conn: Conn,
    *,
    state: JobState | None = None,
    klass: Annotated[WorkloadClass | None, Query(alias="class")] = None,
    tier: str | None = None,
    organisation: str | None = None,
    owner: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: str | None = None,
) -> dict[str, Any]:
    """Newest first; `next_before` pages on."""
    if not _sees_all(principal):
        if owner not in (None, principal.name):
            raise NotFound(f"no jobs of {owner!r} are visible to this token")
        owner = principal.name
    return job_store.search(
        conn,
        owner=owner,
        state=state.value if state else None,
        klass=klass.value if klass else None,
        tier=tier,
        organisation=organisation,
        limit=limit,
        before=before,
    )


@router.get(
    "/{job_id}",
    summary="One job with its events and, while it waits, why and its place in line",
    response_model=JobPublic,
    responses=problem_responses(404),
)
def get_job(principal: JobUser, conn: Conn, job_id: str) -> dict[str, Any]:
    """The job, every state change with its reason, and (queued) why it waits and its position."""
    return _visible(conn, job_id, principal)


@router.get(
    "/{job_id}/logs",
    summary="The job's output (follow=true streams it until the job ends)",
    response_class=PlainTextResponse,
    responses=problem_responses(404, 409),
)
async def job_logs(principal: JobUser, state: State, job_id: str, follow: bool = False) -> Any:  # noqa: ANN401
    """The driver's stdout and stderr from Ray, as text."""
    scheduling = _scheduling(state)

    def find() -> dict[str, Any]:
        with state.engine.connect() as conn:
            return _visible(conn, job_id, principal)

    job = await run_in_threadpool(find)
    if job["submission_id"] is None:
        raise Conflict(f"job {job_id} has not been dispatched yet ({job['state']}): no logs")
    if not follow:
        text = await run_in_threadpool(scheduling.logs, job["submission_id"], job["tier"])
        return PlainTextResponse(text)

    async def stream() -> AsyncIterator[bytes]:
        async for chunk in scheduling.tail(job["submission_id"], job["tier"]):
            yield chunk.encode()

    return StreamingResponse(stream(), media_type="text/plain; charset=utf-8")


@router.post(
    "/{job_id}/cancel",
    summary="Cancel a job in any state before it ends",
    response_model=JobPublic,
    responses=problem_responses(404, 409),
)
async def cancel_job(principal: JobUser, state: State, job_id: str) -> dict[str, Any]:
    """Queued: cancelled at once. Dispatched: stopped on Ray, then recorded cancelled. Finished: 409."""
    scheduling = _scheduling(state)

    def cancel() -> dict[str, Any]:
        with state.engine.connect() as conn:
            job = _visible(conn, job_id, principal)
        if JobState(job["state"]).terminal:
            raise Conflict(f"job {job_id} has already ended ({job['state']})")
        with state.ingestor.write_lock, write_transaction(state.engine) as conn:
            job_store.cancel(conn, job_id, principal.name, datetime.now(tz=UTC))
            audit.append(conn, "job.cancel", audit.actor_of(principal), subject=f"job:{job_id}")
        with state.engine.connect() as conn:
            return _visible(conn, job_id, principal)

    job = await run_in_threadpool(cancel)
    scheduling.wake()
    return job
