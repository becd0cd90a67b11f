"""``/v1/jobs``: jobs (a page of them, one with its events).

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from pydantic import Field

from api.schemas.common import Public, Timestamp
from census_agent.models import Tier
from scheduler.models import JobSpec, JobState, WorkloadClass


class JobSummary(Public):
    """A job as listed: its state, why it is there, where it runs, and the spec as submitted."""

    job_id: str
    name: str
    workload_class: WorkloadClass = Field(alias="class")
    owner: str = Field(description="the name of the token that submitted it")
    owner_id: int | None = Field(
        description="the id of the token that submitted it (its owner); null for a job an older version stored "
        "under a token name it could not attribute to one token"
    )
    organisation: str = Field(description="the organisation it runs for: enforced from the submitting token")
    priority: int
    state: JobState
    reason: str
    position: int | None = Field(description="place in its tier's line while queued; null otherwise")
    tier: Tier | None
    node_ids: list[str]
    attempt: int
    submission_id: str | None = Field(description="Ray's id of the current attempt, once dispatched")
    driver_node_id: str | None
    exit_code: int | None
    submitted_at: Timestamp
    dispatched_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    spec: JobSpec = Field(description="as submitted, with the enforced organisation")
    env_values_redacted: bool = Field(
        description="true when spec.runtime_env.env_vars shows each value as *** (the caller is neither the "
        "job's owner nor an admin)"
    )


class JobsPage(Public):
    """``GET /v1/jobs``: newest first; pass `next_before` back as ``before`` for the next page."""

    items: list[JobSummary]
    next_before: str | None = Field(description="null on the last page")


class JobEvent(Public):
    """A state change and its reason."""

    at: Timestamp
    state: JobState
    reason: str


class JobPublic(JobSummary):
    """``GET /v1/jobs/{job_id}`` (and the answers of submitting and cancelling): the job and every state change."""

    events: list[JobEvent]
