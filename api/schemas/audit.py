"""``/v1/audit``: the audit chain's entries (a page of them) and the answer of its verification.

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from api.schemas.common import Public, Timestamp


class AuditEntryPublic(Public):
    """One entry: who did what to what, when, and its place in the chain."""

    seq: int = Field(description="1, 2, 3, ... with no gap")
    at: Timestamp
    action: str = Field(description="e.g. token.create, token.revoke, agent.enrol, job.submit, reports.store")
    actor_id: int | None = Field(description="the acting token's id; null: the service itself")
    actor: str = Field(description="the acting token's name, or 'service'")
    subject: str | None = Field(description="what was acted on: token:<id>, job:<id>, node:<id>, reports:<count>")
    detail: dict[str, Any] = Field(description="what the act was; reports.store: each report's id and digest")
    prev_hash: str = Field(description="the hash of the entry before (64 zeros for the first)")
    hash: str = Field(description="SHA-256 over prev_hash and this entry's canonical form")


class AuditPage(Public):
    """``GET /v1/audit``: newest first; pass `next_before` back as ``before`` for the next page."""

    items: list[AuditEntryPublic]
    next_before: int | None = Field(description="null on the last page")


class ChainHead(Public):
    """The last entry, to keep outside the database as an anchor for later verifications."""

    seq: int
    hash: str


class ChainBreak(Public):
    """The first entry at which the chain does not hold."""

    seq: int
    kind: Literal["edited", "removed", "reordered"]
    detail: str


class ReportMismatch(Public):
    """A stored report that does not match the chain."""

    seq: int | None = Field(description="the entry that covers it (null: none does)")
    report_id: str
    kind: Literal["edited", "removed", "unrecorded"]
    detail: str


class AuditVerification(Public):
    """``GET /v1/audit/verify``: whether the chain and every report it covers are as they were written."""

    ok: bool
    entries: int = Field(description="entries walked")
    reports: int = Field(description="reports checked against their digests")
    head: ChainHead | None
    first_break: ChainBreak | None
    reports_mismatched: int
    mismatches: list[ReportMismatch] = Field(description="the first 20 mismatching reports")
