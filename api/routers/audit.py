"""``/v1/audit``: the audit chain (admin only): its entries, filtered and paged, and its verification.

Both only read.  Nothing here writes an entry: each act appends its own, in its own transaction (`api.audit.log`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.audit import log as audit
from api.deps import Admin, Conn, State
from api.errors import AUTHENTICATED, InvalidRequest, problem_responses
from api.schemas.audit import AuditPage, AuditVerification

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=problem_responses(*AUTHENTICATED, 422))
SEQ_MAX = 2**63 - 1  # a 64-bit integer column: a larger cursor is refused (422), not a database error


@router.get("", summary="List audit entries (admin)", response_model=AuditPage)
def list_entries(
    _: Admin,
    conn: Conn,
    *,
    action: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z]+\.[a-z]+$")] = None,
    actor: Annotated[str | None, Query(max_length=128, description="the acting token's name, or 'service'")] = None,
    since: Annotated[datetime | None, Query(description="at or after this time (no offset: UTC)")] = None,
    until: Annotated[datetime | None, Query(description="before this time (no offset: UTC)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=SEQ_MAX, description="cursor: entries before this seq")] = None,
) -> dict[str, Any]:
    """Newest first; pass ``next_before`` back as ``before`` for the next page."""
    since, until = _utc(since, "since"), _utc(until, "until")
    if since is not None and until is not None and since > until:
        raise InvalidRequest("since is after until", field="since")
    return audit.search(conn, action=action, actor=actor, since=since, until=until, limit=limit, before=before)


def _utc(value: datetime | None, name: str) -> datetime | None:
    """`value` in UTC (a time without an offset is taken as UTC); 422 for one that has no UTC equivalent."""
    if value is None:
        return None
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        raise InvalidRequest(f"{name} is out of range", field=name) from None


@router.get(
    "/verify",
    summary="Verify the audit chain and the reports it covers (admin)",
    response_model=AuditVerification,
)
def verify(
    _: Admin,
    state: State,
    anchor: Annotated[
        str | None,
        Query(
            pattern=r"^[1-9][0-9]{0,17}:[0-9a-f]{64}$",
            description="SEQ:HASH of an entry kept outside the database: a chain rewritten whole fails here",
        ),
    ] = None,
) -> dict[str, Any]:
    """Walk every entry in seq order and every report the entries cover: ``ok`` false names the first entry edited,
    removed or reordered, and the reports edited, removed or stored outside the chain. It reads the whole chain."""
    pinned = None
    if anchor is not None:
        seq, _sep, digest = anchor.partition(":")
        pinned = (int(seq), digest)
    return audit.verify(state.engine, pinned)
