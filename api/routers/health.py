"""Health (``/healthz``, ``/readyz``, public) and Prometheus metrics (``/metrics``, operator or admin)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from api.deps import Operator, State
from api.errors import AUTHENTICATED, problem_responses
from api.schemas.health import Alive, NotReady, Ready

router = APIRouter(tags=["health"])
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


@router.get("/healthz", summary="The process is alive", response_model=Alive)
def healthz() -> dict[str, str]:
    """Always 200 while the process serves requests."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="The service can answer: the database is reachable",
    response_model=Ready,
    responses={503: {"model": NotReady, "description": "the database cannot be reached"}},
)
def readyz(state: State) -> JSONResponse:
    """200 when a query succeeds, 503 otherwise; the role and the duties held now, with their lease terms (no
    secret: a duty's name and a counter)."""
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        return JSONResponse({"status": "unavailable", "detail": type(exc).__name__}, status_code=503)
    duties = state.elector.held_all() if state.elector is not None else {}
    return JSONResponse({"status": "ready", "role": state.settings.serve_role.value, "duties": duties})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **problem_responses(*AUTHENTICATED)},
)
def metrics(_: Operator, request: Request) -> Response:
    """Census gauges, ingest counters and request latency histograms in the Prometheus text format."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
