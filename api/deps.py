"""FastAPI dependencies: the service state, a database connection and the caller's role, as `Annotated`
aliases used by every router."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection

from api.auth import Principal, Role, authenticate
from api.errors import Forbidden, TooManyFailures, Unauthorised
from api.metrics import ServiceMetrics
from api.state import ServiceState


async def get_state(request: Request) -> ServiceState:
    """The service state."""
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]


def get_connection(state: State) -> Iterator[Connection]:
    """A read connection for the request."""
    with state.engine.connect() as conn:
        yield conn


Conn = Annotated[Connection, Depends(get_connection)]


def client_host(request: Request) -> str | None:
    """The client's address: the connecting one, or the one a trusted proxy named (`api.app` applies
    ``trusted_proxies`` before any route runs)."""
    return request.client.host if request.client else None


def count_failure(request: Request, kind: str) -> None:
    """Count a failed authentication (or refused enrolment) against the caller's address, and in the metrics."""
    state: ServiceState = request.app.state.service
    state.auth_failures.fail(client_host(request))
    metrics: ServiceMetrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.auth_failures.labels(kind).inc()


def refuse_if_throttled(request: Request) -> None:
    """`TooManyFailures` if the caller's address failed too often lately; nothing of the request is read."""
    state: ServiceState = request.app.state.service
    wait = state.auth_failures.retry_after(client_host(request))
    if wait is None:
        return
    metrics: ServiceMetrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.auth_throttled.inc()
    raise TooManyFailures(
        f"too many failed attempts from this address lately; retry in {wait} s "
        "(failed authentication is limited per client address)",
        retry_after_seconds=wait,
    )


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def bearer_token(request: Request) -> str:
    """The bearer token of the request; `Unauthorised` if there is none."""
    token = _bearer(request)
    if token is None:
        raise Unauthorised("a bearer token is required (Authorization: Bearer <token>)")
    return token


def _authenticate(state: ServiceState, token: str) -> Principal:
    with state.engine.connect() as conn:
        return authenticate(conn, token, datetime.now(tz=UTC))


class Require:
    """Dependency that admits only the given roles (admin always). Routes declare it; a test checks every
    non-public route does."""

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset({Role.ADMIN, *roles})

    async def __call__(self, request: Request) -> Principal:
        # The state is read here rather than as a sub-dependency: FastAPI's solving of a nested dependency cost
        # every request as much as the rest of authentication (`benchmarks.ingest`).
        state: ServiceState = request.app.state.service
        given = _bearer(request)
        principal = state.principals.get(given) if given is not None else None
        if principal is None:
            # Not verified lately: an address that failed too often is refused before its token is looked up (a
            # token verified within the cache's lifetime cannot be a guess, so it is not held up, even when a
            # revocation has emptied the cache meanwhile: it is looked up again, and refused if revoked).
            if given is None or not state.principals.verified_lately(given):
                refuse_if_throttled(request)
            epoch = state.principals.epoch  # a revocation seen while verifying: the principal is not cached
            try:
                token = bearer_token(request)
                principal = await run_in_threadpool(_authenticate, state, token)
            except Unauthorised:
                count_failure(request, "unauthorised")
                raise
            state.principals.put(token, principal, epoch)
        if principal.role not in self.roles:
            allowed = ", ".join(sorted(r.value for r in self.roles))
            raise Forbidden(f"role {principal.role.value!r} may not do this (allowed: {allowed})")
        request.state.principal = principal
        return principal


READ_CENSUS = Require(Role.OPERATOR, Role.PLANNER, Role.USER)
READ_NODES = Require(Role.OPERATOR, Role.PLANNER)
REPORT = Require(Role.AGENT)
ADMIN = Require()
OPERATE = Require(Role.OPERATOR)
RUN_JOBS = Require(Role.USER, Role.OPERATOR)
READ_TIERS = Require(Role.USER, Role.OPERATOR, Role.PLANNER)
ENROL = Require(Role.ENROL)
# What-if plans (POST /v1/census/plan): those who decide what to build, not job submitters (api.routers.planning).
PLAN = Require(Role.OPERATOR, Role.PLANNER)

CensusReader = Annotated[Principal, Depends(READ_CENSUS)]
NodeReader = Annotated[Principal, Depends(READ_NODES)]
Reporter = Annotated[Principal, Depends(REPORT)]
Admin = Annotated[Principal, Depends(ADMIN)]
Operator = Annotated[Principal, Depends(OPERATE)]
JobUser = Annotated[Principal, Depends(RUN_JOBS)]
TierReader = Annotated[Principal, Depends(READ_TIERS)]
Enroller = Annotated[Principal, Depends(ENROL)]
Planner = Annotated[Principal, Depends(PLAN)]
