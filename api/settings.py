"""The census service's typed settings, read once at the entry point (``SUANLI_`` environment prefix)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from census_agent.models import Precision, Tier

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

    @field_validator("headline")
    @classmethod
    def _every_tier(cls, value: dict[Tier, Precision]) -> dict[Tier, Precision]:
        missing = [t.value for t in Tier if t not in value]
        if missing:
            raise ValueError(f"the headline convention must name a precision for every tier; missing: {missing}")
        return value
