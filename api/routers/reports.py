"""``POST /v1/reports``: agents' reports (the contract is `census_agent.models.Report`)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic_core import to_json

from api.deps import Reporter
from api.errors import AUTHENTICATED, problem_responses
from api.openapi import json_body
from api.schemas.reports import ReportAccepted
from census_agent.schema import report_json_schema

router = APIRouter(prefix="/v1/reports", tags=["reports"], responses=problem_responses(*AUTHENTICATED))

_SCHEMA = report_json_schema()


@router.post(
    "",
    status_code=200,
    # Documented, not applied: the route answers a prebuilt Response, which FastAPI sends as it is (no
    # validation or serialisation through the model on the hot path: 2 us with to_json against 11 us through
    # the model); tests/integration/service/test_openapi.py checks each outcome's answer against its schema.
    response_model=ReportAccepted,
    summary="Submit a node report",
    responses=problem_responses(413, 422, 503, 507),
    openapi_extra=json_body(_SCHEMA),
)
async def submit_report(request: Request, principal: Reporter) -> Response:
    """Validate, recompute and store one report. Idempotent by ``report_id``: a replay answers ``duplicate``."""
    service = request.app.state.service  # not a `State` dependency: this is the hot path
    body = await request.body()
    result = await service.pricing.ingest(body, principal, datetime.now(tz=UTC))
    request.state.ingest_outcome = result.outcome
    answer = {
        "report_id": result.report_id,
        "node_id": result.node_id,
        "outcome": result.outcome,
        "tier": result.tier,
        "peak_flops": result.peaks,
    }
    # Serialised directly: this is the hot path, and the document is plain JSON types already.
    return Response(to_json(answer), media_type="application/json")
