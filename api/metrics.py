"""The service's Prometheus metrics: census gauges read from the rollups and job gauges and counters read from
the jobs table at scrape time, ingest counters and request latency histograms.  Names follow Prometheus
conventions and pass ``promtool check metrics``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from api.census.allocation import allocated_now
from api.census.arithmetic import aggregate
from api.census.query import load_rollups
from api.census.utilisation import moment
from api.db.tables import PRECISION_COLUMNS
from api.jobs import store as job_store
from api.settings import DEFAULT_HEADLINE
from census_agent.models import Precision, Tier

ACTIVE = "active"

PRECISION_OF_COLUMN = {"fp64_flops": "fp64", "fp32_flops": "fp32", "fp16_flops": "fp16", "int8_ops": "int8"}


class CensusCollector(Collector):
    """Census totals by tier, status and precision, from the rollups (a few rows, whatever the fleet size)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        """Yield the census gauges."""
        with self._engine.connect() as conn:
            rows = load_rollups(conn)
        peak = GaugeMetricFamily(
            "suanli_census_peak_flops",
            "Peak FLOPS (int8: ops/s) of the census by tier, status and precision.",
            labels=["tier", "status", "precision"],
        )
        count = GaugeMetricFamily(
            "suanli_census_nodes", "Nodes in the census by tier and status.", labels=["tier", "status"]
        )
        cells: dict[tuple[str, str], dict[str, float]] = {}
        for row in rows:
            cell = cells.setdefault((row.tier, row.status), {})
            for name, value in row.values.items():
                cell[name] = cell.get(name, 0.0) + value
        for (tier, status), values in sorted(cells.items()):
            count.add_metric([tier, status], values.get("nodes", 0.0))
            for column in PRECISION_COLUMNS:
                peak.add_metric([tier, status, PRECISION_OF_COLUMN[column]], values.get(column, 0.0))
        yield count
        yield peak


class UtilisationCollector(Collector):
    """Per tier, over active nodes: the three layers in headline FLOPS (capacity, allocated by dispatched jobs,
    consumed as the nodes report it), consumed over capacity now per resource, power by provenance, facility power
    and unpriced accelerators.  Reads the rollups and the dispatched jobs (`api.census.allocation`), not the nodes."""

    def __init__(self, engine: Engine, convention: Mapping[Tier, Precision]) -> None:
        self._engine = engine
        self._convention = convention

    def collect(self) -> Iterator[Metric]:
        """Yield the utilisation and power gauges."""
        with self._engine.connect() as conn:
            rows = load_rollups(conn)
            held = allocated_now(conn, {})
        census = aggregate(rows, {}, {ACTIVE})
        layers = GaugeMetricFamily(
            "suanli_utilisation_headline_flops",
            "Active nodes' compute by tier and layer (capacity, allocated to running jobs, consumed), in FLOPS at "
            "the tier's headline precision.",
            labels=["tier", "layer"],
        )
        ratio = GaugeMetricFamily(
            "suanli_utilisation_ratio",
            "Consumed over capacity now, by tier and resource (cpu: busy logical CPUs / threads; accelerators: "
            "summed utilisation / accelerators; compute: consumed / capacity headline FLOPS).",
            labels=["tier", "resource"],
        )
        power = GaugeMetricFamily(
            "suanli_power_watts",
            "Active nodes' power by tier and provenance (measured: RAPL and NVML readings; declared: power_watts).",
            labels=["tier", "provenance"],
        )
        facility = GaugeMetricFamily(
            "suanli_facility_power_watts",
            "Active nodes' power times their site's declared PUE, by tier.",
            labels=["tier"],
        )
        unpriced = GaugeMetricFamily(
            "suanli_census_unpriced_accelerators",
            "Accelerators found but not priced (counted, 0 FLOPS), by tier and status.",
            labels=["tier", "status"],
        )
        for tier in Tier:
            totals = census.by_tier.get(tier.value)
            now = moment(
                {tier.value: totals} if totals else {},
                {tier.value: held.by_tier[tier.value]} if tier.value in held.by_tier else {},
                census.by_tier,
                self._convention,
            )
            for name, figures in now.layers.items():
                layers.add_metric([tier.value, name], figures.headline_flops)
            capacity, consumed = now.layers["capacity"], now.layers["consumed"]
            for resource, part, whole in (
                ("cpu", consumed.cpus, capacity.cpus),
                ("accelerators", consumed.accelerators, capacity.accelerators),
                ("compute", consumed.headline_flops, capacity.headline_flops),
            ):
                ratio.add_metric([tier.value, resource], part / whole if whole else 0.0)
            power.add_metric([tier.value, "measured"], now.power.measured_watts)
            power.add_metric([tier.value, "declared"], now.power.declared_watts)
            facility.add_metric([tier.value], now.power.facility_watts)
        statuses: dict[tuple[str, str], float] = {}
        for row in rows:
            key = (row.tier, row.status)
            statuses[key] = statuses.get(key, 0.0) + row.values.get("unpriced_accelerators", 0.0)
        for (tier_name, status), value in sorted(statuses.items()):
            unpriced.add_metric([tier_name, status], value)
        yield from (layers, ratio, power, facility, unpriced)


class JobsCollector(Collector):
    """Jobs by tier and state, from the jobs table at scrape time: queue depth, running, and outcomes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        """Yield the job gauges and the finished-jobs counter."""
        with self._engine.connect() as conn:
            live = job_store.counts(conn)
            ended = job_store.finished_counts(conn)
        current = GaugeMetricFamily(
            "suanli_jobs",
            'Jobs queued, dispatching or running, by tier (queued jobs not yet planned: tier "none") and state.',
            labels=["tier", "state"],
        )
        for (tier, state), n in sorted(live.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
            current.add_metric([tier or "none", state], n)
        finished = CounterMetricFamily(
            "suanli_jobs_finished", "Jobs that ended, by tier and final state.", labels=["tier", "state"]
        )
        for (tier, state), n in sorted(ended.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
            finished.add_metric([tier or "none", state], n)
        yield current
        yield finished


class LeaderCollector(Collector):
    """Which singleton duties this process holds (1) or stands for without holding (0), from its elector."""

    def __init__(self, held: Callable[[], dict[str, int]], duties: Sequence[str]) -> None:
        self._held = held
        self._duties = tuple(duties)

    def collect(self) -> Iterator[Metric]:
        """Yield the leader gauge and the term of each duty held."""
        held = self._held()
        leader = GaugeMetricFamily(
            "suanli_leader", "1 while this process holds the duty's lease, 0 while it stands by.", labels=["duty"]
        )
        term = GaugeMetricFamily(
            "suanli_leader_term", "The lease term of each duty this process holds.", labels=["duty"]
        )
        for duty in self._duties:
            leader.add_metric([duty], 1.0 if duty in held else 0.0)
            if duty in held:
                term.add_metric([duty], float(held[duty]))
        yield leader
        yield term


class ServiceMetrics:
    """The service's registry and its instruments."""

    def __init__(
        self,
        engine: Engine,
        convention: Mapping[Tier, Precision] = DEFAULT_HEADLINE,
        held: Callable[[], dict[str, int]] = dict,
        duties: Sequence[str] = (),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(CensusCollector(engine))
        self.registry.register(UtilisationCollector(engine, convention))
        self.registry.register(JobsCollector(engine))
        self.registry.register(LeaderCollector(held, duties))
        self.reports = Counter(
            "suanli_ingest_reports", "Reports received, by outcome.", ["outcome"], registry=self.registry
        )
        self.auth_failures = Counter(
            "suanli_auth_failures",
            "Failed authentications (no, unknown, revoked or expired token) and refused enrolments, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.auth_throttled = Counter(
            "suanli_auth_throttled",
            "Requests refused 429 unread because their client address failed authentication too often.",
            registry=self.registry,
        )
        self.latency = Histogram(
            "suanli_http_request_duration_seconds",
            "HTTP request latency by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

    def observe(self, route: str, method: str, status: int, seconds: float, extra: dict[str, Any]) -> None:
        """Record one request."""
        self.latency.labels(route, method, str(status)).observe(seconds)
        if route == "/v1/reports" and method == "POST":
            outcome = extra.get("ingest_outcome") or ("rejected" if status >= 400 else "unknown")
            self.reports.labels(outcome).inc()
