"""``/v1/tokens``: bearer tokens (admin only). The plaintext is returned once, at creation.

Enrolment tokens always expire: one created without ``expires_in_seconds`` gets the service's
``enrol_token_ttl_seconds`` (24 h by default), and none may be asked to live longer than
``enrol_token_max_ttl_seconds`` (30 days; 422 otherwise, nothing created).

Names are unique (a second token of a name is 409, revoked tokens' names included). A ``user`` token must be
given the organisations it may submit jobs for (its first is the default of a job that names none); any other
role given organisations is 422. Must not: return a token's hash, or its plaintext anywhere but the creation's
answer.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from api.audit import log as audit
from api.auth import Principal, Role, create_token, list_tokens, revoke
from api.db import aware
from api.db.engine import write_transaction
from api.deps import Admin, State
from api.errors import AUTHENTICATED, InvalidRequest, problem_responses
from api.openapi import json_body
from api.schemas.tokens import TokenCreated, TokensPublic
from api.settings import Settings
from census_agent.models import ShortText

router = APIRouter(prefix="/v1/tokens", tags=["tokens"], responses=problem_responses(*AUTHENTICATED))
TOKEN_ID_MAX = 2**63 - 1  # a 64-bit integer column: a larger id names no token (422, not a database error)
MAX_ORGANISATIONS = 64


class TokenCreate(BaseModel):
    """A token to create."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=128)]
    role: Role
    expires_in_seconds: Annotated[int, Field(gt=0, le=10 * 365 * 86_400)] | None = None
    organisations: Annotated[
        list[Annotated[ShortText, Field(min_length=1)]],
        Field(
            max_length=MAX_ORGANISATIONS,
            description="user tokens only, and required for them: the organisations its jobs may be submitted "
            "for; the first is the default of a job that names none",
        ),
    ] = []

    @model_validator(mode="after")
    def _organisations_fit_the_role(self) -> TokenCreate:
        if self.role is Role.USER and not self.organisations:
            raise ValueError("a user token needs at least one organisation (organisations: [...])")
        if self.role is not Role.USER and self.organisations:
            raise ValueError(f"only user tokens carry organisations, not {self.role.value} tokens")
        if len(set(self.organisations)) != len(self.organisations):
            raise ValueError("organisations must not repeat")
        return self


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (aware(v).isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


@router.post(
    "",
    status_code=201,
    response_model=TokenCreated,
    summary="Create a token",
    responses=problem_responses(409, 413, 422),
    openapi_extra=json_body(TokenCreate.model_json_schema()),
)
async def create(principal: Admin, state: State, request: Request) -> dict[str, Any]:
    """Create a token; the answer is the only place its plaintext ever appears. 409 if the name is taken;
    422 for a user token without organisations or another role with some. An enrolment token always expires (the
    service's default lifetime unless asked for less; more than its maximum is a 422). The body is read only
    after the caller's token is checked, so an anonymous caller learns nothing from validation errors."""
    try:
        body = TokenCreate.model_validate_json(await request.body())
    except ValidationError as exc:
        raise InvalidRequest(
            f"invalid token request: {exc.errors()[0]['msg']}",
            errors=exc.errors(include_url=False, include_context=False, include_input=False),
        ) from None
    return await run_in_threadpool(_create, state, body, principal)


def lifetime_seconds(settings: Settings, role: Role, asked: int | None) -> int | None:
    """How long a new token lives (None: until revoked): as asked, except that an enrolment token gets the
    default when none is asked and may not exceed the maximum (`InvalidRequest`)."""
    if role is not Role.ENROL:
        return asked
    most = settings.enrol_token_max_ttl_seconds
    if asked is not None and asked > most:
        raise InvalidRequest(
            f"an enrolment token may live at most {most} s (enrol_token_max_ttl_seconds); asked for {asked} s",
            field="expires_in_seconds",
        )
    return asked or settings.enrol_token_ttl_seconds


def _create(state: State, body: TokenCreate, principal: Principal) -> dict[str, Any]:
    now = datetime.now(tz=UTC)
    seconds = lifetime_seconds(state.settings, body.role, body.expires_in_seconds)
    expires = now + timedelta(seconds=seconds) if seconds else None
    with write_transaction(state.engine) as conn:
        text, token_id = create_token(
            conn,
            name=body.name,
            role=body.role,
            now=now,
            expires_at=expires,
            organisations=tuple(body.organisations),
        )
        audit.token_created(conn, audit.actor_of(principal), token_id, body.name, body.role.value, expires_at=expires)
    return {
        "id": token_id,
        "name": body.name,
        "role": body.role.value,
        "token": text,
        "expires_at": expires.isoformat() if expires else None,
        "organisations": body.organisations,
    }


@router.get("", summary="List tokens", response_model=TokensPublic)
def list_all(_: Admin, state: State) -> list[dict[str, Any]]:
    """Every token's metadata (name, role, prefix, bound node, organisations, dates); never the secret."""
    with state.engine.connect() as conn:
        return [_public(row) for row in list_tokens(conn)]


@router.delete("/{token_id}", status_code=204, summary="Revoke a token", responses=problem_responses(404, 422))
def revoke_token(principal: Admin, state: State, token_id: Annotated[int, Path(ge=1, le=TOKEN_ID_MAX)]) -> None:
    """Revoke a token at once."""
    with write_transaction(state.engine) as conn:
        revoke(conn, token_id, datetime.now(tz=UTC))
        audit.append(conn, "token.revoke", audit.actor_of(principal), subject=f"token:{token_id}")
    state.principals.forget_all()
