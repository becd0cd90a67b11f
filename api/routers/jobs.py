"""``/v1/jobs``: submit, list, follow, read the logs of and cancel jobs.

A job is owned by the token that submitted it, by the token's id (``owner_id``; ``owner`` is its name, for
people). Role ``user`` sees and cancels only its own jobs; ``operator`` and ``admin`` see and cancel all.
Environment values (``spec.runtime_env.env_vars``) are shown to the job's owner and to admins only: everyone else
who may see the job gets the names with each value replaced by ``***`` (and ``env_values_redacted: true``), and
its output with those values masked (`api.jobs.logmask`).

Organisations: a ``user`` token submits only for the organisations it carries (another is 403, nothing stored);
a job naming none takes the token's first. Admin and operator tokens (staff) may submit for any organisation
(``default`` when none is named). The stored spec carries the enforced organisation, so quotas and fair share
(`scheduler.policy`, `scheduler.queue`) only ever see that one.
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
    Forbidden,
    InvalidRequest,
    JobRejected,
    NotFound,
    SchedulerUnavailable,
    invalid_body,
    problem_responses,
)
from api.jobs import store as job_store
from api.jobs.logmask import LogMask
from api.jobs.scheduling import Scheduling
from api.openapi import json_body
from api.schemas.jobs import JobPublic, JobsPage
from api.state import ServiceState
from scheduler.dispatcher import REDACTED
from scheduler.models import JobSpec, JobState, WorkloadClass

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(*AUTHENTICATED, 422))


def _scheduling(state: ServiceState) -> Scheduling:
    if state.scheduling is None:
        raise SchedulerUnavailable("no scheduler is configured on this service (SUANLI_SCHEDULER_CONFIG)")
    return state.scheduling


def _sees_all(principal: Principal) -> bool:
    return principal.role in (Role.ADMIN, Role.OPERATOR)


def _owns(principal: Principal, job: dict[str, Any]) -> bool:
    return job["owner_id"] is not None and job["owner_id"] == principal.token_id


def shown(job: dict[str, Any], principal: Principal) -> dict[str, Any]:
    """The job as `principal` may read it: its environment's values only for its owner and admins; for anyone
    else each value is replaced by ``***`` (the names stay, so an operator can tell what a job was given)."""
    env: dict[str, str] = job["spec"].get("runtime_env", {}).get("env_vars", {})
    if principal.role is Role.ADMIN or _owns(principal, job) or not env:
        return job | {"env_values_redacted": False}
    runtime_env = job["spec"]["runtime_env"] | {"env_vars": dict.fromkeys(env, REDACTED)}  # names stay
    return job | {"spec": job["spec"] | {"runtime_env": runtime_env}, "env_values_redacted": True}


def _found(conn: Connection, job_id: str, principal: Principal) -> dict[str, Any]:
    """The job as stored (environment values included: not for answers), if `principal` may see it."""
    job = job_store.get(conn, job_id)
    if job is None or (not _sees_all(principal) and not _owns(principal, job)):
        raise NotFound(f"no job {job_id!r}")  # another user's job is not acknowledged to exist
    return job


def _visible(conn: Connection, job_id: str, principal: Principal) -> dict[str, Any]:
    return shown(_found(conn, job_id, principal), principal)


def _log_mask(job: dict[str, Any], principal: Principal) -> LogMask | None:
    """For a reader who may not see the job's environment values: a mask of them for its output."""
    if principal.role is Role.ADMIN or _owns(principal, job):
        return None
    env: dict[str, str] = job["spec"].get("runtime_env", {}).get("env_vars", {})
    return LogMask(env.values()) if env else None


def enforce_organisation(spec: JobSpec, principal: Principal) -> JobSpec:
    """`spec` with the organisation it is submitted for: a user token's own (the one named, if it carries it,
    else its first); `Forbidden` for any other. Staff tokens (admin, operator) may name any organisation."""
    if principal.role is not Role.USER:
        return spec
    allowed = principal.organisations
    if not allowed:  # not made by this version (which refuses a user token without one); refuse, never guess
        raise Forbidden(f"token {principal.name!r} may submit jobs for no organisation: ask an admin for one")
    if "organisation" not in spec.model_fields_set:
        return spec.model_copy(update={"organisation": allowed[0]})
    if spec.organisation not in allowed:
        raise Forbidden(
            f"token {principal.name!r} may not submit jobs for organisation {spec.organisation!r}; "
            f"it may for: {', '.join(allowed)}"
        )
    return spec


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

    A user token naming an organisation it does not carry gets 403 (nothing stored); naming none, the job takes
    the token's first. With an ``Idempotency-Key`` header, a retry of the same submission (same key, same body,
    same token) answers 200 with the job already queued instead of queueing another; the same key with another
    body is 409.
    """
    scheduling = _scheduling(state)
    try:
        spec = JobSpec.model_validate_json(await request.body())
    except ValidationError as exc:
        raise invalid_body(exc) from None
    spec = enforce_organisation(spec, principal)
    if spec.region is not None and spec.region not in state.regions:
        raise InvalidRequest(f"unknown region code {spec.region!r}: see GET /v1/regions", field="region")
    refusal = await run_in_threadpool(scheduling.refusal, spec)
    if refusal is not None:
        raise JobRejected(refusal)

    def store() -> tuple[dict[str, Any], bool]:
        now = datetime.now(tz=UTC)
        created = True
        with state.ingestor.write_lock, write_transaction(state.engine) as conn:
            earlier = job_store.by_key(conn, principal.token_id, idempotency_key) if idempotency_key else None
            if earlier is not None:
                job_id, created = earlier[0], False
                if JobSpec.model_validate_json(earlier[1]) != spec:
                    raise Conflict(f"Idempotency-Key {idempotency_key!r} was used for another job ({job_id})")
            else:
                job_id = job_store.create(
                    conn,
                    spec,
                    principal.name,
                    now,
                    "queued: waiting for the dispatcher",
                    owner_id=principal.token_id,
                    key=idempotency_key,
                )
                audit.job_submitted(conn, audit.actor_of(principal), job_id, spec.model_dump_json(by_alias=True))
        with state.engine.connect() as conn:
            job = job_store.get(conn, job_id)
        assert job is not None
        return shown(job, principal), created

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
    """Newest first; `next_before` pages on. A user gets its own jobs only (`owner` naming another token: 404);
    environment values are redacted in jobs the caller does not own (admins see them all)."""
    owner_id = None
    if not _sees_all(principal):
        if owner not in (None, principal.name):
            raise NotFound(f"no jobs of {owner!r} are visible to this token")
        owner, owner_id = None, principal.token_id
    page = job_store.search(
        conn,
        owner=owner,
        owner_id=owner_id,
        state=state.value if state else None,
        klass=klass.value if klass else None,
        tier=tier,
        organisation=organisation,
        limit=limit,
        before=before,
    )
    return page | {"items": [shown(job, principal) for job in page["items"]]}


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
    """The driver's stdout and stderr from Ray, as text. To anyone but the job's owner and admins, each of the
    job's environment values (4 or more characters) in it reads ``***``."""
    scheduling = _scheduling(state)

    def find() -> dict[str, Any]:
        with state.engine.connect() as conn:
            return _found(conn, job_id, principal)

    job = await run_in_threadpool(find)
    if job["submission_id"] is None:
        raise Conflict(f"job {job_id} has not been dispatched yet ({job['state']}): no logs")
    mask = _log_mask(job, principal)
    if not follow:
        text = await run_in_threadpool(scheduling.logs, job["submission_id"], job["tier"])
        return PlainTextResponse(text if mask is None else mask.text(text))

    async def stream() -> AsyncIterator[bytes]:
        chunks = scheduling.tail(job["submission_id"], job["tier"])
        async for chunk in chunks if mask is None else mask.stream(chunks):
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
