"""``/v1/tokens``: bearer tokens (admin only). The plaintext is returned once, at creation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.audit import log as audit
from api.auth import Principal, Role, create_token, list_tokens, revoke
from api.db import aware
from api.db.engine import write_transaction
from api.deps import Admin, State
from api.errors import AUTHENTICATED, InvalidRequest, problem_responses
from api.openapi import json_body
from api.schemas.tokens import TokenCreated, TokensPublic

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], responses=problem_responses(*AUTHENTICATED))
TOKEN_ID_MAX = 2**63 - 1  # a 64-bit integer column: a larger id names no token (422, not a database error)


class TokenCreate(BaseModel):
    """A token to create."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128)]
    role: Role
    expires_in_seconds: Annotated[int, Field(gt=0, le=10 * 365 * 86_400)] | None = None


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (aware(v).isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


@router.post(
    "",
    status_code=201,
    response_model=TokenCreated,
    summary="Create a token",
    responses=problem_responses(413, 422),
    openapi_extra=json_body(TokenCreate.model_json_schema()),
)
async def create(principal: Admin, state: State, request: Request) -> dict[str, Any]:
    """Create a token; the answer is the only place its plaintext ever appears. The body is read only after
    the caller's token is checked, so an anonymous caller learns nothing from validation errors."""
    try:
        body = TokenCreate.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidRequest(
            f"invalid token request: {exc.errors()[0]['msg']}",
            errors=exc.errors(include_url=False, include_context=False, include_input=False),
        ) from None
    return await run_in_threadpool(_create, state, body, principal)


def _create(state: State, body: TokenCreate, principal: Principal) -> dict[str, Any]:
    now = datetime.now(tz=UTC)
    expires = now + timedelta(seconds=body.expires_in_seconds) if body.expires_in_seconds else None
    with write_transaction(state.engine) as conn:
        text, token_id = create_token(conn, name=body.name, role=body.role, now=now, expires_at=expires)
        audit.token_created(conn, audit.actor_of(principal), token_id, body.name, body.role.value, expires_at=expires)
    return {
        "id": token_id,
        "name": body.name,
        "role": body.role.value,
        "token": text,
        "expires_at": expires.isoformat() if expires else None,
    }


@router.get("", summary="List tokens", response_model=TokensPublic)
def list_all(_: Admin, state: State) -> list[dict[str, Any]]:
    """Every token's metadata (name, role, prefix, bound node, dates); never the secret."""
    with state.engine.connect() as conn:
        return [_public(row) for row in list_tokens(conn)]


@router.delete("/{token_id}", status_code=204, summary="Revoke a token", responses=problem_responses(404, 422))
def revoke_token(principal: Admin, state: State, token_id: Annotated[int, Path(ge=1, le=TOKEN_ID_MAX)]) -> None:
    """Revoke a token at once."""
    with write_transaction(state.engine) as conn:
        revoke(conn, token_id, datetime.now(tz=UTC))
        audit.append(conn, "token.revoke", audit.actor_of(principal), subject=f"token:{token_id}")
    state.principals.forget_all()
