"""``POST /v1/agents/enrol``: an agent trades the fleet's enrolment token for a token of its own node.

Agent tokens are bound to one node, so a DaemonSet cannot share one.  Instead the fleet shares an `enrol`
token, which can do nothing but this: mint an agent token bound to a node that has no live agent token yet.  A
leaked enrolment token therefore cannot report for, or take over, a node already enrolled; re-enrolling a node
(its disk wiped) needs an admin to revoke its old token first.  The agent keeps the minted token on its own disk.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, ValidationError

from api.audit import log as audit
from api.auth import Principal, Role, create_token, enrolled_token
from api.db.engine import write_transaction
from api.deps import Enroller, State
from api.errors import AUTHENTICATED, Conflict, invalid_body, problem_responses
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
    """Mint an agent token bound to ``node_id``; 409 if the node already has a live agent token. The plaintext
    is in this answer only. The body is read only after the caller's token is checked."""
    try:
        body = Enrolment.model_validate_json(await request.body())
    except ValidationError as exc:
        raise invalid_body(exc) from None
    return await run_in_threadpool(_enrol, state, principal, body.node_id)


def _enrol(state: State, principal: Principal, node_id: str) -> dict[str, Any]:
    now = datetime.now(tz=UTC)
    # Under the writers' lock: two enrolments of one node cannot both pass the check.
    with state.ingestor.write_lock, write_transaction(state.engine) as conn:
        existing = enrolled_token(conn, node_id)
        if existing is not None:
            raise Conflict(
                f"node {node_id!r} is already enrolled (agent token {existing}); an admin must revoke "
                "that token before the node can enrol again"
            )
        name = f"{principal.name}: {node_id}"[:128]
        text, token_id = create_token(conn, name=name, role=Role.AGENT, now=now, node_id=node_id)
        audit.append(
            conn, "agent.enrol", audit.actor_of(principal), subject=f"node:{node_id}", detail={"token_id": token_id}
        )
    return {"id": token_id, "name": name, "role": Role.AGENT.value, "node_id": node_id, "token": text}
