"""``/v1/nodes``: the census's node records, filtered and paginated."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError
from sqlalchemy import select

from api.audit.log import actor_of
from api.census.arithmetic import ancestors
from api.db import aware
from api.db.tables import nodes, reports
from api.deps import Conn, NodeReader, Operator, State
from api.discovery.record import DiscoveryIn, record
from api.errors import AUTHENTICATED, InvalidRequest, NotFound, invalid_body, problem_responses
from api.openapi import json_body
from api.schemas.nodes import DiscoveryRecorded, NodePublic, NodesPage

router = APIRouter(prefix="/v1/nodes", tags=["nodes"], responses=problem_responses(*AUTHENTICATED, 422))

SUMMARY = [
    "node_id",
    "source",
    "hostname",
    "region_code",
    "organisation",
    "site",
    "tier",
    "tier_reason",
    "status",
    "first_seen_at",
    "last_report_at",
    "physical_cores",
    "threads",
    "accelerators",
    "memory_bytes",
    "fp64_flops",
    "fp32_flops",
    "fp16_flops",
    "int8_ops",
]


def _summary(row: Any) -> dict[str, Any]:  # noqa: ANN401 - a SQLAlchemy row mapping
    out = {k: row[k] for k in SUMMARY}
    for key in ("first_seen_at", "last_report_at"):
        out[key] = aware(out[key]).isoformat()
    for key in ("memory_bytes",):
        out[key] = int(out[key])
    return out


@router.get("", summary="List nodes", response_model=NodesPage)
def list_nodes(
    _: NodeReader,
    conn: Conn,
    state: State,
    *,
    tier: Annotated[str | None, Query(pattern="^(general|ai|hpc|edge)$")] = None,
    region: Annotated[str | None, Query(max_length=12, description="this region and every region below it")] = None,
    status: Annotated[str | None, Query(pattern="^(active|stale|offline)$")] = None,
    organisation: Annotated[str | None, Query(max_length=128)] = None,
    source: Annotated[str | None, Query(pattern="^(agent|kubernetes)$", description="how the node is known")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[
        str | None, Query(max_length=128, description="cursor: the last node_id of the previous page")
    ] = None,
) -> dict[str, Any]:
    """Nodes ordered by id; pass ``next_after`` back as ``after`` for the next page."""
    query = select(*[nodes.c[k] for k in SUMMARY]).order_by(nodes.c.node_id).limit(limit + 1)
    for column, value in (("tier", tier), ("status", status), ("organisation", organisation), ("source", source)):
        if value is not None:
            query = query.where(nodes.c[column] == value)
    if region is not None:
        if region not in state.regions:
            raise InvalidRequest(f"unknown region code {region!r}: see GET /v1/regions")
        within = [code for code in state.regions if region in ancestors(code, state.regions)]
        query = query.where(nodes.c.region_code.in_(within))
    if after is not None:
        query = query.where(nodes.c.node_id > after)
    rows = [_summary(r) for r in conn.execute(query).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return {"items": rows, "next_after": rows[-1]["node_id"] if more else None}


@router.post(
    "/discovered",
    summary="Record nodes discovered without an agent (suanli k8s-sync)",
    response_model=DiscoveryRecorded,
    responses=problem_responses(413),
    openapi_extra=json_body(DiscoveryIn.model_json_schema()),
)
async def record_discovered(principal: Operator, state: State, request: Request) -> dict[str, Any]:
    """Record the nodes one Kubernetes listing found (at most 500 per request): new ones are added, known ones
    refreshed, and nodes that report through an agent left alone, so no node is counted twice. The body is read
    only after the caller's token is checked."""
    try:
        body = DiscoveryIn.model_validate_json(await request.body())
    except ValidationError as exc:
        raise invalid_body(exc) from None
    result = await run_in_threadpool(record, state.ingestor, body.nodes, datetime.now(tz=UTC), actor_of(principal))
    return result.as_dict()


@router.get(
    "/{node_id}",
    summary="One node with its inventory, peaks and recent reports",
    response_model=NodePublic,
    responses=problem_responses(404),
)
def get_node(_: NodeReader, conn: Conn, node_id: str) -> dict[str, Any]:
    """The node's current state, the server's and the agent's peaks, and its last 20 reports."""
    row = conn.execute(select(nodes).where(nodes.c.node_id == node_id)).mappings().first()
    if row is None:
        raise NotFound(f"no node {node_id!r}")
    history = conn.execute(
        select(
            reports.c.report_id,
            reports.c.sequence,
            reports.c.generated_at,
            reports.c.received_at,
            reports.c.applied,
            reports.c.tier,
            reports.c.fp64_flops,
            reports.c.fp32_flops,
            reports.c.fp16_flops,
        )
        .where(reports.c.node_id == node_id)
        .order_by(reports.c.generated_at.desc())
        .limit(20)
    ).mappings()
    return {
        **_summary(row),
        "inventory": json.loads(row["inventory"]),
        "peaks": json.loads(row["peaks"]),
        "agent_peaks": json.loads(row["agent_peaks"]),
        "recent_reports": [
            {
                **h,
                "generated_at": aware(h["generated_at"]).isoformat(),
                "received_at": aware(h["received_at"]).isoformat(),
                "applied": bool(h["applied"]),
            }
            for h in history
        ],
    }
