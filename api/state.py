"""What the running service holds: settings, engine, caches and the ingestor, built once at start."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine

from api.auth import PrincipalCache
from api.census.arithmetic import Region
from api.duties.elector import Elector
from api.ingest.pool import PricingPool
from api.ingest.writer import Ingestor
from api.jobs.scheduling import Scheduling
from api.ratelimit import FailureLimiter
from api.settings import Settings


@dataclass
class ServiceState:
    """Shared by every request (FastAPI ``app.state.service``)."""

    settings: Settings
    engine: Engine
    ingestor: Ingestor
    pricing: PricingPool
    regions: dict[str, Region]
    scheduling: Scheduling | None = None  # None when no scheduler is configured
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    # Failed authentication per client address; the service builds it from its settings (default: no limit).
    auth_failures: FailureLimiter = field(default_factory=lambda: FailureLimiter(0, 60.0))
    stop: threading.Event = field(default_factory=threading.Event)
    elector: Elector | None = None  # the leases of the singleton duties this process may hold
