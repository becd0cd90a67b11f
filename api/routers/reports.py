"""``POST /v1/reports``: agents' reports (the contract is `census_agent.models.Report`)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError

from api.deps import Reporter, State
from api.errors import InvalidRequest
from census_agent.models import Report
from census_agent.schema import report_json_schema

router = APIRouter(prefix="/v1/reports", tags=["reports"])

_SCHEMA = report_json_schema()


@router.post(
    "",
    status_code=200,
    summary="Submit a node report",
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": _SCHEMA}}}},
)
async def submit_report(request: Request, principal: Reporter, state: State) -> dict[str, Any]:
    """Validate, recompute and store one report. Idempotent by ``report_id``: a replay answers ``duplicate``."""
    body = await request.body()
    try:
        report = Report.model_validate_json(body)
    except ValidationError as exc:
        errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()[:50]]
        first = errors[0]
        raise InvalidRequest(f"{'.'.join(first['loc']) or 'body'}: {first['msg']}", errors=errors) from None
    prepared = state.ingestor.prepare(report, principal, datetime.now(tz=UTC))
    result = await asyncio.wrap_future(state.ingestor.submit(prepared))
    request.state.ingest_outcome = result.outcome
    return {
        "report_id": result.report_id,
        "node_id": result.node_id,
        "outcome": result.outcome,
        "tier": result.tier,
        "peak_flops": result.peaks,
    }
