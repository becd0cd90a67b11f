"""Pricing a report: validate the document, check what needs no database, and compute the server's figures.

`Pricer` turns a report body into a `Prepared` row set for the writer (`api.ingest.writer`); it is pure (no database,
no network) so that it can run in the service's process or in a pricing worker (`api.ingest.pool`), which is
where most of a report's CPU time goes.  Times are converted once here to what the database driver takes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from pydantic import ValidationError

from api.auth import Principal, Role
from api.db import aware, storage_time
from api.db.tables import HARDWARE_COLUMNS, nodes
from api.errors import Forbidden, InvalidReport, invalid_body
from api.ingest.usage import Parts, parts_of, static_measures, usage_measures
from census_agent.models import NodeInventory, Precision, Report, TierDecision, Usage
from census_agent.report import ComputeModel

ACTIVE = "active"
AGENT = "agent"  # nodes.source of nodes that report themselves
# What the compute model reads besides memory.total_bytes (host identity and free memory do not matter).
ASSESSED_FIELDS = {"cpu", "accelerators", "interconnects", "labels"}
NOT_ASSESSED = {"cpu": {"numa_nodes"}}  # the NUMA layout carries each node's free memory, which changes every report
ASSESS_CACHE_SIZE = 4096
# A report dated further ahead than this is refused: it would otherwise freeze the node's state until then.
MAX_CLOCK_SKEW = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What happened to one report."""

    report_id: str
    node_id: str
    outcome: str  # stored, duplicate, stored-as-history (older than the node's state)
    tier: str
    peaks: dict[str, float]


@dataclass(frozen=True, slots=True)
class Assessment:
    """The compute model's answer for one machine and its labels, in the forms ingest writes and answers."""

    peaks_json: str
    tier: TierDecision
    figures: dict[Precision, float]
    answer: dict[str, float]
    parts: Parts  # what the usage measures need (`api.ingest.usage`)
    static: dict[str, float]  # the measures that depend on the machine only (unpriced, accelerators' part)


STATE_KEYS = tuple(c.name for c in nodes.columns)  # a node state's keys, in the order `Prepared.wire` sends them
_state_values = itemgetter(*STATE_KEYS)


def node_state(
    inventory: NodeInventory,
    assessment: Assessment,
    *,
    source: str,
    now: datetime | str,
    generated_at: datetime | str,
    sequence: int,
    report_id: str,
    agent_peaks: str,
    status: str = ACTIVE,
    usage: Usage | None = None,
) -> dict[str, Any]:
    """A `nodes` row for `inventory` as the server assessed it (every column, `STATE_KEYS`; `first_seen_at` is kept
    on update).  `now` and `generated_at` are as the database driver takes them (`api.db.storage_time`); `usage`
    (the report's) and the labels give the utilisation and power measures (`api.ingest.usage`)."""
    figures = assessment.figures
    return {
        "node_id": inventory.host.node_id,
        "source": source,
        "hostname": inventory.host.hostname,
        "region_code": inventory.labels.region,
        "organisation": inventory.labels.organisation,
        "site": inventory.labels.site,
        "tier": assessment.tier.tier.value,
        "tier_reason": assessment.tier.reason,
        "status": status,
        "first_seen_at": now,
        "last_report_at": now,
        "last_generated_at": generated_at,
        "last_sequence": sequence,
        "last_report_id": report_id,
        "physical_cores": inventory.cpu.physical_cores,
        "threads": inventory.cpu.threads,
        "accelerators": len(inventory.accelerators),
        "memory_bytes": float(inventory.memory.total_bytes),
        "fp64_flops": figures[Precision.FP64],
        "fp32_flops": figures[Precision.FP32],
        "fp16_flops": figures[Precision.FP16],
        "int8_ops": figures[Precision.INT8],
        "inventory": inventory.model_dump_json(),
        "peaks": assessment.peaks_json,
        "agent_peaks": agent_peaks,
        **assessment.static,
        **usage_measures(inventory, assessment.parts, usage),
    }


@dataclass(slots=True)
class Prepared:
    """A validated, priced report waiting for the writer."""

    report_id: str
    node_id: str
    order: tuple[datetime, int]  # (generated_at in UTC, sequence): a node's newest report is its state
    state: dict[str, Any]  # the `nodes` row it would make (`STATE_KEYS`), times as the driver takes them
    tier: str
    peaks: dict[str, float]
    principal: Principal  # who sent it

    def result(self, outcome: str) -> IngestResult:
        """The answer for this report."""
        return IngestResult(self.report_id, self.node_id, outcome, self.tier, self.peaks)

    def history(self, applied: bool) -> tuple[Any, ...]:
        """Its `reports` row (`api.ingest.writer.HISTORY_COLUMNS`), as the driver takes it."""
        s = self.state
        return (
            self.report_id,
            self.node_id,
            self.order[1],
            s["last_generated_at"],
            s["last_report_at"],
            self.tier,
            s["region_code"],
            *[s[name] for name in HARDWARE_COLUMNS],
            1 if applied else 0,
        )

    def wire(self) -> tuple[Any, ...]:
        """Everything but the principal, as plain values (a pricing worker's answer: pickle handles these in C)."""
        order = (self.order[0].replace(tzinfo=None), self.order[1])  # UTC: a naive datetime pickles 4x faster
        return self.report_id, order, _state_values(self.state), self.tier, self.peaks

    @classmethod
    def from_wire(cls, values: tuple[Any, ...], principal: Principal) -> Prepared:
        """The `Prepared` that `wire` gave `values` of, sent by `principal`."""
        report_id, (generated_at, sequence), state, tier, peaks = values
        row = dict(zip(STATE_KEYS, state, strict=True))
        return cls(report_id, row["node_id"], (generated_at.replace(tzinfo=UTC), sequence), row, tier, peaks, principal)


class Pricer:
    """Validates and prices reports for one database dialect and region table, remembering the compute model's
    answers per machine model."""

    def __init__(self, model: ComputeModel, region_codes: set[str], dialect: str) -> None:
        self.model = model
        self.region_codes = region_codes
        self.time = storage_time(dialect)
        self._assessed: dict[str, Assessment] = {}

    def price(self, body: bytes, principal: Principal, now: datetime) -> Prepared:
        """Validate a report document and compute the server's figures; `InvalidRequest` (422) for a document
        that breaks the schema, `InvalidReport` or `Forbidden` for one that cannot be accepted as it is."""
        try:
            report = Report.model_validate_json(body)
        except ValidationError as exc:
            raise invalid_body(exc) from None
        return self.prepare(report, principal, now)

    def prepare(self, report: Report, principal: Principal, now: datetime) -> Prepared:
        """Check what can be checked without the database and compute the server's figures."""
        inventory = report.inventory
        node_id = inventory.host.node_id
        region = inventory.labels.region
        if region is not None and region not in self.region_codes:
            raise InvalidReport(f"unknown region code {region!r}: see GET /v1/regions", field="inventory.labels.region")
        if principal.role is Role.AGENT and principal.node_id not in (None, node_id):
            raise Forbidden(f"this agent token is bound to node {principal.node_id!r}, not {node_id!r}")
        generated_at = aware(report.generated_at).astimezone(UTC)  # stored and compared in UTC on every backend
        if generated_at > now + MAX_CLOCK_SKEW:
            raise InvalidReport(
                f"generated_at {generated_at.isoformat()} is in the future (server time {now.isoformat()}); "
                "check the node's clock",
                field="generated_at",
            )
        assessment = self.assess(inventory)
        report_id = str(report.report_id)
        tier = assessment.tier.tier.value
        state = node_state(
            inventory,
            assessment,
            source=AGENT,
            now=self.time(now),
            generated_at=self.time(generated_at),
            sequence=report.sequence,
            report_id=report_id,
            agent_peaks=report.peaks.model_dump_json(),
            usage=report.usage,
        )
        return Prepared(report_id, node_id, (generated_at, report.sequence), state, tier, assessment.answer, principal)

    def assess(self, inventory: NodeInventory) -> Assessment:
        """The compute model's answer, remembered per hardware and labels: a node reports the same machine every
        interval, and a cluster is made of few machine models, so most reports need no computing at all.  The key
        leaves out what the model does not read and what changes from one report to the next (host identity,
        free memory, the NUMA layout)."""
        key = inventory.model_dump_json(include=ASSESSED_FIELDS, exclude=NOT_ASSESSED)
        key += str(inventory.memory.total_bytes)
        answer = self._assessed.get(key)
        if answer is None:
            peaks, tier = self.model.assess(inventory)
            figures = {p: peaks.figures[p].flops for p in Precision}
            parts = parts_of(peaks)
            answer = Assessment(
                peaks.model_dump_json(),
                tier,
                figures,
                {p.value: v for p, v in figures.items()},
                parts,
                static_measures(parts),
            )
            if len(self._assessed) >= ASSESS_CACHE_SIZE:
                self._assessed.pop(next(iter(self._assessed)))
            self._assessed[key] = answer
        return answer
