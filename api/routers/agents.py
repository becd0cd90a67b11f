"""``POST /v1/agents/enrol``: an agent trades the fleet's enrolment token for a token of its own node.

Agent tokens are bound to one node, so a DaemonSet cannot share one.  Instead the fleet shares an `enrol`
token, which can do nothing but this: mint an agent token bound to a node that has no live agent token yet.  A
leaked enrolment token therefore cannot report for, or take over, a node already enrolled; re-enrolling a node
(its disk wiped) needs an admin to revoke its old token first.  The agent keeps the minted token on its own disk.

Enrolment is bounded: enrolment tokens expire (`api.routers.tokens` gives them a default and a maximum
lifetime); with ``enrol_known_nodes_only`` only a node id already in the census (discovered from Kubernetes, or
reported before by an agent) may enrol (403 otherwise, nothing minted); and every refused enrolment (403, 409)
counts as a failure of the caller's address, which is refused 429 once it has failed too often (`api.ratelimit`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy import Connection, select

from api.audit import log as audit
from api.auth import Principal, Role, create_token, enrolled_token, free_name
from api.db.engine import write_transaction
from api.db.tables import nodes
from api.deps import Enroller, State, count_failure, refuse_if_throttled
from api.discovery.nodes import SOURCE as DISCOVERED
from api.errors import AUTHENTICATED, Conflict, Forbidden, invalid_body, problem_responses
from api.ingest.pricing import AGENT
from api.openapi import json_body
from api.schemas.tokens import AgentTokenCreated
from census_agent.models import NodeId

router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=problem_responses(*AUTHENTICATED))


class Enrolment(BaseModel):
    """The node asking for its token."""

    model_config = ConfigDict(extra="forbid")

    node_id: NodeId


@router.post(
    "/enrol",
    status_code=201,
    response_model=AgentTokenCreated,
    summary="Trade the enrolment token for an agent token bound to this node",
    responses=problem_responses(409, 413, 422),
    openapi_extra=json_body(Enrolment.model_json_schema()),
)
async def enrol(principal: Enroller, state: State, request: Request) -> dict[str, Any]:
    """Mint an agent token bound to ``node_id``; 409 if the node already has a live agent token, 403 if only
    known nodes may enrol and this one is not known. The plaintext is in this answer only. The body is read only
    after the caller's token is checked; an address whose enrolments (or authentications) failed too often is
    refused 429 even with a valid enrolment token."""
    refuse_if_throttled(request)  # also when the enrolment token was verified lately (cached)
    try:
        body = Enrolment.model_validate_json(await request.body())
    except ValidationError as exc:
        raise invalid_body(exc) from None
    try:
        return await run_in_threadpool(_enrol, state, principal, body.node_id)
    except (Conflict, Forbidden):
        count_failure(request, "enrolment")
        raise


def known_node(conn: Connection, node_id: str) -> bool:
    """Whether `node_id` is in the census: discovered from Kubernetes, or reported by an agent before (a node whose
    token an admin revoked so that it may enrol again; discovery leaves an agent's node to the agent)."""
    query = select(nodes.c.node_id).where(nodes.c.node_id == node_id, nodes.c.source.in_((DISCOVERED, AGENT)))
    return conn.execute(query).first() is not None


def _enrol(state: State, principal: Principal, node_id: str) -> dict[str, Any]:
    now = datetime.now(tz=UTC)
    # Under the writers' lock: two enrolments of one node cannot both pass the check.
    with state.ingestor.write_lock, write_transaction(state.engine) as conn:
        if state.settings.enrol_known_nodes_only and not known_node(conn, node_id):
            raise Forbidden(
                f"node {node_id!r} is not known to the census, and this service enrols only known nodes "
                "(enrol_known_nodes_only): a node is known once Kubernetes discovery has recorded it (its machine "
                "id); retry after the next sync"
            )
        existing = enrolled_token(conn, node_id)
        if existing is not None:
            raise Conflict(
                f"node {node_id!r} is already enrolled (agent token {existing}); an admin must revoke "
                "that token before the node can enrol again"
            )
        name = free_name(conn, f"{principal.name}: {node_id}"[:128])  # a node enrolled again: " (2)"
        text, token_id = create_token(conn, name=name, role=Role.AGENT, now=now, node_id=node_id)
        audit.append(
            conn, "agent.enrol", audit.actor_of(principal), subject=f"node:{node_id}", detail={"token_id": token_id}
        )
    return {"id": token_id, "name": name, "role": Role.AGENT.value, "node_id": node_id, "token": text}
