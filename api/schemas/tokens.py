"""``/v1/tokens`` and ``/v1/agents/enrol``: bearer tokens' metadata, and the answers that carry a new token.

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.common import Public, Timestamp

RoleName = Literal["admin", "operator", "planner", "user", "agent", "enrol"]
"""The values of `api.auth.Role` (a test keeps the two equal)."""


ORGANISATIONS = "user tokens: the organisations its jobs may be submitted for, the default first; [] otherwise"


class TokenPublic(Public):
    """A token's metadata; never its secret."""

    id: int = Field(description="the principal's stable id: the `owner_id` of its jobs")
    name: str = Field(description="unique among all tokens, revoked ones included")
    role: RoleName
    prefix: str = Field(description="the token's first characters, to recognise it")
    node_id: str | None = Field(description="the node an agent token is bound to")
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    organisations: list[str] = Field(description=ORGANISATIONS)


TokensPublic = list[TokenPublic]
"""``GET /v1/tokens``: every token (a JSON array)."""


class TokenCreated(Public):
    """``POST /v1/tokens``: the new token; `token` is its plaintext, shown here only."""

    id: int
    name: str
    role: RoleName
    token: str
    expires_at: Timestamp | None
    organisations: list[str] = Field(description=ORGANISATIONS)


class AgentTokenCreated(Public):
    """``POST /v1/agents/enrol``: the agent token minted for `node_id`; `token` is its plaintext, shown here only."""

    id: int
    name: str
    role: Literal["agent"]
    node_id: str
    token: str
