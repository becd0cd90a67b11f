"""Domain errors of the service, each with its HTTP status, mapped to problem+json (RFC 9457) in one place.

The error classes import no web framework or database library: pricing workers (`api.ingest.pool`) raise them
and start faster without FastAPI (1.6 s of a worker's 2.5 s of imports); the mapping imports those when used.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)

CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that went away before the answer; never sent to one


class ServiceError(Exception):
    """Base of every error the service answers deliberately."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    retry_after_seconds: ClassVar[int | None] = None  # sent as Retry-After when set

    def __init__(self, detail: str, **extra: Any) -> None:  # noqa: ANN401 - extra members of the problem
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def retry_after(self) -> int | None:
        """The Retry-After seconds of this answer (the class's, unless the instance knows better)."""
        return self.retry_after_seconds


class Unauthorised(ServiceError):
    """No token, or a token that is unknown, revoked or expired."""

    status = 401
    title = "Unauthorised"


class Forbidden(ServiceError):
    """The token's role may not do this, or an agent token reports for another node."""

    status = 403
    title = "Forbidden"


class NotFound(ServiceError):
    """The resource does not exist."""

    status = 404
    title = "Not found"


class TooManyFailures(ServiceError):
    """The caller's address failed authentication too often lately (`api.ratelimit`): refused, unread, until the
    seconds in Retry-After have passed."""

    status = 429
    title = "Too many failed attempts"

    def __init__(self, detail: str, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self._retry_after = retry_after_seconds

    def retry_after(self) -> int | None:
        """The seconds until this address may try again."""
        return self._retry_after


class PayloadTooLarge(ServiceError):
    """The request body is over the limit."""

    status = 413
    title = "Payload too large"


class InvalidReport(ServiceError):
    """The report is well-formed JSON but refers to something impossible (an unknown region...)."""

    status = 422
    title = "Invalid report"


class InvalidRequest(ServiceError):
    """A query parameter or body is invalid in a way the schema cannot say."""

    status = 422
    title = "Invalid request"


class JobRejected(ServiceError):
    """A job that no tier could ever run (or one the scheduler cannot judge): refused at submission."""

    status = 422
    title = "Job rejected"


class Conflict(ServiceError):
    """The resource is in a state that does not allow this (e.g. cancelling a finished job)."""

    status = 409
    title = "Conflict"


class SchedulerUnavailable(ServiceError):
    """No scheduler is configured, or Ray cannot be reached for this request."""

    status = 503
    title = "Scheduler unavailable"


class DatabaseUnavailable(ServiceError):
    """The database cannot be reached (down, restarting, the connection lost): retry (a report is idempotent)."""

    status = 503
    title = "Database unavailable"
    retry_after_seconds = 5


class PricingUnavailable(ServiceError):
    """The pricing worker (`api.ingest.pool`) of this report exited or stalled before answering: retry (a report
    is idempotent)."""

    status = 503
    title = "Pricing unavailable"
    retry_after_seconds = 1


class StorageFull(ServiceError):
    """The database has no room left to write (disk full): the transaction was rolled back; retry later."""

    status = 507
    title = "Insufficient storage"
    retry_after_seconds = 30


# SQLite's primary result code and PostgreSQL's SQLSTATE for "disk full".
_SQLITE_FULL = "SQLITE_FULL"
_PG_DISK_FULL = "53100"


def database_error(exc: DBAPIError) -> ServiceError | None:
    """The domain error a failed database call means, or None when it is not the database's state at fault (a
    constraint, a bad statement: a bug, answered 500). Ingest and the HTTP handler both classify with this."""
    from sqlalchemy.exc import DataError, OperationalError  # noqa: PLC0415 - see the module's docstring

    orig = exc.orig
    if getattr(orig, "sqlite_errorname", None) == _SQLITE_FULL or getattr(orig, "sqlstate", None) == _PG_DISK_FULL:
        return StorageFull("the database has no space left to write (disk full); retry later")
    if isinstance(exc, DataError) and "NUL (0x00)" in str(orig):  # PostgreSQL text cannot hold NUL; SQLite can
        return InvalidRequest("a path or query value contains a NUL character, which no stored text can hold")
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return DatabaseUnavailable(f"the database cannot be reached ({type(orig).__name__}); retry later")
    return None


def invalid_body(exc: ValidationError) -> InvalidRequest:
    """A body that failed its model's validation, as a 422 naming the first bad field (and listing up to 50)."""
    errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()[:50]]
    first = errors[0]
    return InvalidRequest(f"{'.'.join(first['loc']) or 'body'}: {first['msg']}", errors=errors)


class Problem(BaseModel):
    """What every error answer holds (RFC 9457 problem details); extra members say more (``errors``, ``field``)."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str


PROBLEM_SCHEMA = Problem.model_json_schema()
MEANINGS = {
    401: "no token, or one that is unknown, revoked or expired",
    403: "the token's role may not do this (or an agent token reports for another node)",
    404: "no such resource (or not one this token may see)",
    409: "the resource's state does not allow this",
    413: "the request body is over the size limit",
    422: "the request is invalid: the detail names the field",
    429: "this client address failed authentication too often lately; retry after the Retry-After seconds",
    503: "the database (or, for jobs, the scheduler) cannot be reached; retry later",
    507: "the database's disk is full; retry later",
}
AUTHENTICATED = (401, 403, 429, 503)  # every route that takes a token and reads the database


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of these error statuses, each a problem+json document (routes declare theirs
    with this, so the API document names every status the service answers)."""
    return {
        status: {"description": MEANINGS[status], "content": {"application/problem+json": {"schema": PROBLEM_SCHEMA}}}
        for status in statuses
    }


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:  # noqa: ANN401
    """A problem+json response."""
    from fastapi.responses import JSONResponse  # noqa: PLC0415 - see the module's docstring

    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


def answer(exc: ServiceError) -> JSONResponse:
    """The problem+json answer to a domain error (with Retry-After where it has one): the one mapping of domain
    errors to HTTP, used by the exception handlers and by middleware that refuses before a route runs."""
    response = problem(exc.status, exc.title, exc.detail, **exc.extra)
    retry_after = exc.retry_after()
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


def install_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and a lost database to problem+json."""
    from fastapi import Request  # noqa: PLC0415 - see the module's docstring
    from fastapi.exceptions import RequestValidationError  # noqa: PLC0415
    from fastapi.responses import Response  # noqa: PLC0415
    from sqlalchemy.exc import DBAPIError  # noqa: PLC0415
    from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: PLC0415
    from starlette.requests import ClientDisconnect  # noqa: PLC0415

    @app.exception_handler(ServiceError)
    async def _service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return answer(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()[:50]
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        detail = f"{'.'.join(first['loc'])}: {first['msg']}" + (
            f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        )
        return problem(422, "Validation failed", detail, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # The framework's own refusals (unknown path, wrong method) as problems too. Its only 400 is a body it
        # cannot decode (a route with a body model): a 422 naming the body, as the routes that read theirs say.
        if exc.status_code == 400:
            return problem(
                422,
                "Validation failed",
                f"body: {exc.detail}",
                errors=[{"loc": [], "msg": str(exc.detail), "type": "json_invalid"}],
            )
        response = problem(exc.status_code, HTTPStatus(exc.status_code).phrase, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _exc: ClientDisconnect) -> Response:
        # The client hung up before its body arrived (its timeout, most often an overloaded service): nobody to
        # answer, nothing stored. A line, not a traceback: under overload, formatting a traceback for every
        # impatient client would itself take the time the service is short of. 499 in the request metrics.
        log.info(
            "%s %s: the client closed the connection before sending its whole request", request.method, request.url.path
        )
        return Response(status_code=CLIENT_CLOSED_REQUEST)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error: %s", exc, exc_info=exc)
        return problem(500, "Internal error", "an unexpected error occurred; it has been logged")

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        mapped = database_error(exc)
        if mapped is None:
            return await _unexpected(request, exc)
        log.warning("%s %s: %s (%s)", request.method, request.url.path, mapped.title, exc.orig)
        return answer(mapped)
