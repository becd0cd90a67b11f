"""Report ingest: validate against the region table, recompute peaks, upsert node state, append history.

One transaction per report: the history row (unique report id: a replay is a no-op), the node's new state
(only if the report is newer than the stored one) and the rollup deltas commit together or not at all, and
the agent is answered only after the commit.  The agent's own figures are stored beside the server's but
never trusted.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError

from api.auth import Principal, Role, bind_node
from api.db import aware
from api.db.tables import nodes, reports, tokens
from api.errors import Forbidden, InvalidReport
from api.rollups import move
from census_agent.models import NodePeaks, Precision, Report
from census_agent.report import ComputeModel

ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What happened to one report."""

    report_id: str
    node_id: str
    outcome: str  # stored, duplicate, stored-as-history (older than the node's state)
    tier: str
    peaks: dict[str, float]


class Ingestor:
    """Stores reports. Thread-safe; on SQLite, writes are serialised in-process (one writer at a time)."""

    def __init__(self, engine: Engine, model: ComputeModel, region_codes: set[str]) -> None:
        self.engine = engine
        self.model = model
        self.region_codes = region_codes
        self.write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    def ingest(self, report: Report, principal: Principal, now: datetime) -> IngestResult:
        """Store one validated report for `principal` (an agent or admin token)."""
        inventory = report.inventory
        node_id = inventory.host.node_id
        region = inventory.labels.region
        if region is not None and region not in self.region_codes:
            raise InvalidReport(f"unknown region code {region!r}: see GET /v1/regions", field="inventory.labels.region")
        if principal.role is Role.AGENT and principal.node_id not in (None, node_id):
            raise Forbidden(f"this agent token is bound to node {principal.node_id!r}, not {node_id!r}")
        peaks, tier = self.model.assess(inventory)
        figures = {p: peaks.figures[p].flops for p in Precision}
        values: dict[str, Any] = {
            "physical_cores": inventory.cpu.physical_cores,
            "threads": inventory.cpu.threads,
            "accelerators": len(inventory.accelerators),
            "memory_bytes": float(inventory.memory.total_bytes),
            "fp64_flops": figures[Precision.FP64],
            "fp32_flops": figures[Precision.FP32],
            "fp16_flops": figures[Precision.FP16],
            "int8_ops": figures[Precision.INT8],
        }
        result = IngestResult(
            report_id=str(report.report_id), node_id=node_id, outcome="stored", tier=tier.tier.value,
            peaks={p.value: v for p, v in figures.items()},
        )  # fmt: skip
        kwargs: dict[str, Any] = {
            "values": values, "tier": tier.tier.value, "reason": tier.reason, "peaks": peaks, "result": result,
        }  # fmt: skip
        for attempt in (1, 2):
            try:
                if self.write_lock is not None:
                    with self.write_lock:
                        return self._store(report, principal, now, **kwargs)
                return self._store(report, principal, now, **kwargs)
            except IntegrityError:
                # A concurrent request stored the same report or created the same node first: the retry sees it.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _store(
        self, report: Report, principal: Principal, now: datetime, *, values: dict[str, Any], tier: str,
        reason: str, peaks: NodePeaks, result: IngestResult,
    ) -> IngestResult:  # fmt: skip
        inventory = report.inventory
        node_id = inventory.host.node_id
        with self.engine.begin() as conn:
            if conn.execute(select(reports.c.id).where(reports.c.report_id == str(report.report_id))).first():
                return IngestResult(result.report_id, node_id, "duplicate", result.tier, result.peaks)
            if principal.role is Role.AGENT and principal.node_id is None:
                self._bind(conn, principal, node_id)
            current = self._lock_node(conn, node_id)
            newer = current is None or (aware(report.generated_at), report.sequence) > (
                aware(current["last_generated_at"]),
                current["last_sequence"],
            )
            conn.execute(
                reports.insert().values(
                    report_id=str(report.report_id),
                    node_id=node_id,
                    sequence=report.sequence,
                    generated_at=report.generated_at,
                    received_at=now,
                    applied=1 if newer else 0,
                    tier=tier,
                    region_code=inventory.labels.region,
                    **values,
                )
            )
            if not newer:
                return IngestResult(result.report_id, node_id, "stored-as-history", result.tier, result.peaks)
            state = {
                "source": "agent",
                "hostname": inventory.host.hostname,
                "region_code": inventory.labels.region,
                "organisation": inventory.labels.organisation,
                "site": inventory.labels.site,
                "tier": tier,
                "tier_reason": reason,
                "status": ACTIVE,
                "last_report_at": now,
                "last_generated_at": report.generated_at,
                "last_sequence": report.sequence,
                "last_report_id": str(report.report_id),
                "inventory": inventory.model_dump(mode="json"),
                "peaks": peaks.model_dump(mode="json"),
                "agent_peaks": report.peaks.model_dump(mode="json"),
                **values,
            }
            if current is None:
                conn.execute(nodes.insert().values(node_id=node_id, first_seen_at=now, **state))
            else:
                conn.execute(nodes.update().where(nodes.c.node_id == node_id).values(**state))
            move(conn, current, state)
        return result

    @staticmethod
    def _bind(conn: Connection, principal: Principal, node_id: str) -> None:
        bind_node(conn, principal.token_id, node_id)
        bound = conn.execute(select(tokens.c.node_id).where(tokens.c.id == principal.token_id)).scalar_one()
        if bound != node_id:  # another request bound it first
            raise Forbidden(f"this agent token is bound to node {bound!r}, not {node_id!r}")

    @staticmethod
    def _lock_node(conn: Connection, node_id: str) -> dict[str, Any] | None:
        query = select(nodes).where(nodes.c.node_id == node_id)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).mappings().first()
        return dict(row) if row is not None else None
