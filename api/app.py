"""The census service application: built from `Settings` by `create_app`, served by uvicorn.

At start it migrates the database, seeds reference data, makes sure an admin token exists (read from
``admin_token_file``, or generated and written there, or shown once on a terminal: never to a log) (on PostgreSQL
one replica at a time), and, by its role (``serve_role``), serves the API and stands for the singleton duties: the
dispatcher, the housekeeper (liveness sweeps, census snapshots) and the Kubernetes sync each act only while this
process holds that duty's lease (`api.duties`), so any number of replicas on one database run each duty once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

import seeds
from api import __doc__ as api_doc
from api.audit import log as audit
from api.auth import RevocationWatch, Role, count_admins, create_token, free_name
from api.census.liveness import last_snapshot_at, snapshot, sweep
from api.census.query import load_regions
from api.db import aware
from api.db.engine import make_engine, migrate, shared_url, startup_lock, write_transaction
from api.db.seed import seed_regions
from api.discovery.sync import KubernetesSync
from api.duties.elector import Elector
from api.duties.lease import Timing as LeaseTiming
from api.errors import PayloadTooLarge, answer, install_handlers
from api.heap import settle_heap
from api.ingest.pool import PricingPool, auto_size
from api.ingest.writer import Ingestor
from api.jobs.scheduling import Scheduling
from api.metrics import ServiceMetrics
from api.ratelimit import FailureLimiter
from api.routers import agents, census, dashboard, health, jobs, nodes, planning, regions, reports, tiers, tokens
from api.routers import audit as audit_routes
from api.settings import ServeRole, Settings
from api.state import ServiceState
from census_agent.report import ComputeModel
from scheduler.config import SchedulerConfig

log = logging.getLogger("api")
SECRET_WORDS = ("token", "secret", "password", "key")  # a setting so named is recorded only by its digest


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await answer(self._too_large())(scope, receive, send)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise self._too_large()
            return message

        try:
            await self.app(scope, limited, send)
        except PayloadTooLarge as exc:
            await answer(exc)(scope, receive, send)

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"request bodies are limited to {self.limit} bytes")


class Timing:
    """Record every request's latency (by route template, method and status) and ingest outcomes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            metrics: ServiceMetrics | None = getattr(scope["app"].state, "metrics", None)
            if metrics is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                outcome = scope.get("state", {}).get("ingest_outcome")
                metrics.observe(
                    route, scope["method"], status, time.perf_counter() - started, {"ingest_outcome": outcome}
                )


MIN_GIVEN_TOKEN_CHARS = 32  # a token read from a file: at least this long (about 190 bits as base62)


class AdminTokenNowhere(RuntimeError):
    """No admin token exists and none can be had safely: none given (or one unfit), and no terminal to show a
    generated one on."""


def ensure_admin_token(engine: Engine, settings: Settings) -> None:
    """Create the first admin token if there is none: read from `admin_token_file`, or generated and written to
    `admin_token_file` when that names a file that does not exist yet. Without a file the generated token is shown
    once on standard error, and only when that is a terminal: a token must never reach a log (a container's
    standard error is one), so the service refuses to start instead. A token read or written is never logged."""
    with write_transaction(engine) as conn:
        if count_admins(conn):
            return
        now = datetime.now(tz=UTC)
        path = settings.admin_token_file
        if path is None and not sys.stderr.isatty():
            raise AdminTokenNowhere(
                "no admin token exists yet and SUANLI_ADMIN_TOKEN_FILE is not set: set it to a file holding the "
                "first admin token (from a Secret), or to a path where the service writes a generated one (mode "
                "0600). A generated token is shown on standard error only when that is a terminal, never in a log."
            )
        if path is not None and path.exists():
            given = path.read_text().strip()
            if len(given) < MIN_GIVEN_TOKEN_CHARS or any(c.isspace() or not c.isprintable() for c in given):
                raise AdminTokenNowhere(
                    f"the admin token in {path} is unfit ({len(given)} characters): it must be at least "
                    f"{MIN_GIVEN_TOKEN_CHARS} printable characters without spaces (e.g. `openssl rand -hex 32`)"
                )
            name = free_name(conn, "admin (from file)")  # names are unique: a revoked first admin keeps its own
            _, token_id = create_token(conn, name=name, role=Role.ADMIN, now=now, text=given)
            audit.token_created(conn, audit.SERVICE, token_id, name, Role.ADMIN.value)
            log.info("first admin token read from %s", path)
            return
        name = free_name(conn, "first admin")
        text, token_id = create_token(conn, name=name, role=Role.ADMIN, now=now)
        audit.token_created(conn, audit.SERVICE, token_id, name, Role.ADMIN.value)
    if path is not None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
        log.info("first admin token written to %s (mode 0600)", path)
    else:
        print(f"\nSuanli: first admin token (shown once, store it now):\n  {text}\n", file=sys.stderr, flush=True)


class Housekeeper(threading.Thread):
    """Marks silent nodes stale/offline and snapshots the census on schedule, while `may_act` (this process holds
    the housekeeping lease)."""

    def __init__(self, service: ServiceState, may_act: Callable[[], bool]) -> None:
        super().__init__(name="suanli-housekeeper", daemon=True)
        self.service = service
        self.may_act = may_act

    def run(self) -> None:
        s = self.service.settings
        lock = self.service.ingestor.write_lock
        while not self.service.stop.wait(s.sweep_interval_seconds):
            if not self.may_act():
                continue
            try:
                now = datetime.now(tz=UTC)
                sweep(self.service.engine, now, s.stale_after_seconds, s.offline_after_seconds, lock)
                last = last_snapshot_at(self.service.engine)
                if last is None or (now - aware(last)).total_seconds() >= s.snapshot_interval_seconds:
                    cells = snapshot(self.service.engine, now, lock)
                    log.info("census snapshot taken: %d cell(s)", cells)
            except Exception:
                log.exception("housekeeping failed; retrying at the next interval")


class Duties:
    """This process's part in the singleton duties, by its role: the elector of their leases, and the dispatcher,
    housekeeper and Kubernetes sync threads that act only while their lease is held. A process of role ``api``
    stands for none (its elector holds no duty); it still builds the scheduler, which its job routes ask."""

    def __init__(self, service: ServiceState, db: Engine) -> None:
        settings = service.settings
        self.service = service
        self.dutiful = settings.serve_role is not ServeRole.API
        duties = ["housekeeping"]
        if settings.scheduler_config is not None:
            duties.append("dispatcher")
        if settings.k8s_sync_interval_seconds > 0:
            duties.append("kubernetes-sync")
        timing = LeaseTiming(settings.lease_seconds, settings.lease_renew_seconds, settings.lease_margin_seconds)
        self.elector = Elector(db, duties if self.dutiful else [], timing, service.stop)
        service.elector = self.elector
        if settings.scheduler_config is not None:
            config = SchedulerConfig.load(settings.scheduler_config)
            fence = self.elector.fence("dispatcher")
            lock = service.ingestor.write_lock
            service.scheduling = Scheduling(config, db, lock, settings.dispatch_interval_seconds, fence)
        self.housekeeper = Housekeeper(service, self.holds("housekeeping"))
        self.sync: KubernetesSync | None = None
        # Every role: a dispatcher-only process still authenticates /metrics.
        self.revocations = RevocationWatch(db, service.principals, settings.token_check_interval_seconds, service.stop)

    def holds(self, duty: str) -> Callable[[], bool]:
        """Whether this process holds `duty` now."""
        return lambda: self.elector.held(duty) is not None

    def start(self) -> None:
        """Start the revocation watch and, unless the role is ``api``, the elector and the duties' threads."""
        service, settings = self.service, self.service.settings
        self.revocations.start()
        if not self.dutiful:
            return
        self.elector.ask_once()  # a lone replica holds its duties from the start
        self.elector.start()
        self.housekeeper.start()
        if service.scheduling is not None:
            service.scheduling.start()
        if settings.k8s_sync_interval_seconds > 0:
            from api.discovery.client import KubernetesNodes  # noqa: PLC0415 - only when discovery is on

            cluster = KubernetesNodes(settings.k8s_kubeconfig, settings.k8s_context, in_cluster=settings.k8s_in_cluster)
            interval = settings.k8s_sync_interval_seconds
            self.sync = KubernetesSync(
                service.ingestor, cluster.list, interval, service.stop, self.holds("kubernetes-sync")
            )
            self.sync.start()
            log.info("kubernetes discovery every %.0f s from %s", interval, cluster.host)

    def stop(self) -> None:
        """Stop the duties' threads, then release the leases held (`service.stop` is set already)."""
        if self.service.scheduling is not None:
            self.service.scheduling.stop()
        for thread in (self.housekeeper, self.sync):
            if thread is not None and thread.is_alive():
                thread.join(timeout=10)  # a duty's last act ends before its lease is released
        self.elector.close()


def audit_start(engine: Engine, settings: Settings) -> None:
    """Begin the audit chain if it is empty, and record the regions the seeds wrote and the settings that
    changed since the last start (`recorded_settings`: no secret)."""
    with write_transaction(engine) as conn:
        audit.start(conn)
        written = seed_regions(conn)
        if written:
            digest = hashlib.sha256(seeds.read_text("regions.csv").encode()).hexdigest()
            audit.append(conn, "regions.seed", audit.SERVICE, detail={"written": written, "seeds_sha256": digest})
        audit.settings_changed(conn, recorded_settings(settings))


def recorded_settings(settings: Settings) -> dict[str, Any]:
    """The settings the audit chain records: every one but the database URL and any whose name says it may hold a
    secret (a token, key, password or secret), which are recorded only as changed or not, by their SHA-256."""
    values: dict[str, Any] = settings.model_dump(mode="json")
    values.pop("database_url", None)
    for name, value in values.items():
        if any(word in name for word in SECRET_WORDS):
            values[name] = hashlib.sha256(repr(value).encode()).hexdigest() if value is not None else None
    return values


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The FastAPI application for `settings` (an engine may be passed in, e.g. by tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        started = time.monotonic()
        role = settings.serve_role
        db = engine or make_engine(settings.database_url)
        with startup_lock(db):
            migrate(db)
            audit_start(db, settings)
            ensure_admin_token(db, settings)
        with db.connect() as conn:
            region_table = load_regions(conn)
        ingestor = Ingestor(db, ComputeModel(), set(region_table))
        workers = settings.ingest_workers if settings.ingest_workers is not None else auto_size()
        if role is ServeRole.DISPATCHER:
            workers = 0  # no report route: no pricing processes
        pricing = PricingPool(workers, ingestor.pricer, db.dialect.name, ingestor=ingestor, database_url=shared_url(db))
        await pricing.start()
        service = ServiceState(
            settings=settings,
            engine=db,
            ingestor=ingestor,
            pricing=pricing,
            regions=region_table,
            auth_failures=FailureLimiter(settings.auth_failure_burst, settings.auth_failure_window_seconds),
        )
        duties = Duties(service, db)
        app.state.service = service
        app.state.metrics = ServiceMetrics(db, settings.headline, duties.elector.held_all, duties.elector.duties)
        duties.start()
        settle_heap()
        log.info(
            "census service ready in %.1f s (database %s, role %s, duties held: %s)",
            time.monotonic() - started,
            db.url.render_as_string(),
            role.value,
            duties.elector.held_all() or "none",
        )
        try:
            yield
        finally:
            service.stop.set()
            duties.stop()
            await pricing.close()
            service.ingestor.close()
            if engine is None:
                db.dispose()

    otel = settings.opentelemetry
    app = FastAPI(
        title="Suanli census service",
        version="0.1.0",
        description=(api_doc or "").strip().split("\n\n")[0],  # the first paragraph: for users, not developers
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry hooks look the providers up on every request (8% of a report's CPU time);
        # the service exports its own Prometheus metrics instead (`api.metrics`).
        telemetry={"tracing": otel, "metrics": otel, "logs": otel},
    )
    install_handlers(app)
    routers = (
        reports.router,
        census.router,
        planning.router,
        nodes.router,
        regions.router,
        tokens.router,
        jobs.router,
        tiers.router,
        health.router,
        dashboard.router,
        agents.router,
        audit_routes.router,
    )
    # A dispatcher-only process answers its probes and metrics and nothing else: it is not behind the API's
    # Service, and a route it does not serve cannot be misused on it.
    for router in routers if settings.serve_role is not ServeRole.DISPATCHER else (health.router,):
        app.include_router(router)

    app.add_middleware(Timing)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    if settings.trusted_proxies:
        # Outermost: every part of the service (the failed-authentication limit, the access log) sees the client
        # a trusted proxy named. `suanli serve` turns uvicorn's own proxy handling off, so this is the only one.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=[str(n) for n in settings.trusted_proxies])
    return app
