"""The census service's typed settings, read once at the entry point (``SUANLI_`` environment prefix)."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from api.census.headline import DEFAULT_AI_SHARE_TARGET
from api.duties.lease import Timing
from census_agent.models import Precision, Tier

DAY = 86_400


class ServeRole(StrEnum):
    """What one `suanli serve` process does (docs/operations.md, "Replicas")."""

    ALL = "all"  # the whole API, and a candidate for every singleton duty (the default; one replica on SQLite)
    API = "api"  # the whole API, no duty: any number of these on PostgreSQL
    DISPATCHER = "dispatcher"  # the duties only: /healthz, /readyz and /metrics, no other route


DEFAULT_HEADLINE = {
    Tier.GENERAL: Precision.FP32,
    Tier.EDGE: Precision.FP32,
    Tier.AI: Precision.FP16,
    Tier.HPC: Precision.FP64,
}


class Settings(BaseSettings):
    """Every setting of the service, with its default. Environment: ``SUANLI_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="SUANLI_", frozen=True, extra="forbid")

    database_url: str = "sqlite:///suanli.db"
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8080
    admin_token_file: Path | None = None  # read the first admin token from here instead of generating one
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 2**20)] = 1 * 2**20
    stale_after_seconds: Annotated[float, Field(gt=0)] = 120.0  # four missed 30 s reports
    offline_after_seconds: Annotated[float, Field(gt=0)] = 3600.0
    sweep_interval_seconds: Annotated[float, Field(gt=0)] = 15.0
    snapshot_interval_seconds: Annotated[float, Field(gt=0, le=86_400)] = 3600.0  # history: at least daily
    headline: dict[Tier, Precision] = DEFAULT_HEADLINE
    # The national target for the AI share of the headline (智能算力占比), shown beside the census's own share:
    # 35 % by 2025 in the 2023 national plan 《算力基础设施高质量发展行动计划》 (docs/census.md).
    ai_share_target: Annotated[float, Field(ge=0, le=1)] = DEFAULT_AI_SHARE_TARGET
    # What-if plans (POST /v1/census/plan): at most this many machine kinds, and this many machines in all.
    plan_max_kinds: Annotated[int, Field(ge=1, le=10_000)] = 100
    plan_max_machines: Annotated[int, Field(ge=1, le=10**9)] = 1_000_000
    log_level: str = "INFO"
    scheduler_config: Path | None = None  # the scheduler's file (scheduler.config); none: no job routes
    dispatch_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0
    # Kubernetes discovery in the service (`suanli k8s-sync` does the same once): 0 turns it off.
    k8s_sync_interval_seconds: Annotated[float, Field(ge=0)] = 0.0
    k8s_kubeconfig: Path | None = None  # default: $KUBECONFIG or ~/.kube/config
    k8s_context: str | None = None
    k8s_in_cluster: bool = False  # use the pod's service account (the Helm chart sets this)
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None
    # FastAPI's native OpenTelemetry tracing, metrics and logs (providers from the OTEL_* environment); off by
    # default: they cost every request a provider lookup, and /metrics already exports the service's figures.
    opentelemetry: bool = False
    # Processes that validate, price and (on an SQLite file) store reports beside the event loop
    # (`api.ingest.pool`); None: one per core beyond the first, at most 4; 0: in the service's own process.
    ingest_workers: Annotated[int, Field(ge=0, le=64)] | None = None
    # Enrolment (docs/security.md): an enrol token created without an expiry lives enrol_token_ttl_seconds, and
    # none may live longer than enrol_token_max_ttl_seconds; known_nodes_only: only a node id already in the
    # census (from Kubernetes discovery, or an earlier agent report) may enrol.
    enrol_token_ttl_seconds: Annotated[int, Field(gt=0, le=10 * 365 * DAY)] = DAY
    enrol_token_max_ttl_seconds: Annotated[int, Field(gt=0, le=10 * 365 * DAY)] = 30 * DAY
    enrol_known_nodes_only: bool = False
    # Failed authentication per client address (api.ratelimit): `burst` failures at once, refilled over the
    # window; then 429 with Retry-After. 0 turns the limit off. Per process (each replica counts its own).
    auth_failure_burst: Annotated[int, Field(ge=0, le=1_000_000)] = 30
    auth_failure_window_seconds: Annotated[float, Field(gt=0, le=DAY)] = 60.0
    # Proxies whose X-Forwarded-For names the client (addresses or networks, JSON in the environment, e.g.
    # '["10.0.0.0/8"]'). Empty: the connecting address is the client, whatever a header says.
    trusted_proxies: list[IPvAnyNetwork] = []
    # Replicas (docs/operations.md): what this process does, and the leases of the singleton duties (dispatcher,
    # housekeeping, Kubernetes sync). A holder stops acting lease - margin seconds after its last renewal was sent;
    # another process takes a dead holder's duty within lease + renew seconds.
    serve_role: ServeRole = ServeRole.ALL
    lease_seconds: Annotated[float, Field(gt=0, le=600)] = 15.0
    lease_renew_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    lease_margin_seconds: Annotated[float, Field(gt=0, le=300)] = 2.0
    # How often each replica checks whether a token was revoked (by any replica): a revocation is refused
    # everywhere within this interval (plus one query); the check is one primary-key read, not one per request.
    token_check_interval_seconds: Annotated[float, Field(gt=0, le=60)] = 1.0

    @field_validator("headline")
    @classmethod
    def _every_tier(cls, value: dict[Tier, Precision]) -> dict[Tier, Precision]:
        missing = [t.value for t in Tier if t not in value]
        if missing:
            raise ValueError(f"the headline convention must name a precision for every tier; missing: {missing}")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxies_from_text(cls, value: object) -> object:
        # The environment gives JSON (decoded before this); a string given directly may be JSON or comma-separated.
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p.strip() for p in text.split(",") if p.strip()]
        return value

    @model_validator(mode="after")
    def _lease_timing(self) -> Settings:
        Timing(self.lease_seconds, self.lease_renew_seconds, self.lease_margin_seconds)  # ValueError if unsafe
        return self

    @model_validator(mode="after")
    def _enrol_default_within_maximum(self) -> Settings:
        if self.enrol_token_ttl_seconds > self.enrol_token_max_ttl_seconds:
            raise ValueError(
                f"enrol_token_ttl_seconds ({self.enrol_token_ttl_seconds}) exceeds enrol_token_max_ttl_seconds "
                f"({self.enrol_token_max_ttl_seconds})"
            )
        return self
