"""Report ingest: validate against the region table, recompute peaks, upsert node state, append history.

Requests are checked and priced as they arrive (`Ingestor.prepare`); then every report waiting at that moment
is stored in a single transaction (group commit): the history rows (unique report
id: a replay is a no-op), each node's newest state (an older report never overwrites a newer one) and the
rollup deltas commit together, and every request is answered only after that commit.  Batches are written one at a
time, so SQLite never sees two writers.  The agent's own figures are kept beside the server's but never trusted.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, select
from sqlalchemy.exc import DBAPIError

from api.auth import Principal, Role, bind_node
from api.db import aware
from api.db.tables import MEASURE_COLUMNS, nodes, reports
from api.errors import Forbidden, InvalidReport, database_error
from api.rollups import Deltas, cell_of
from census_agent.models import NodeInventory, Precision, Report, TierDecision
from census_agent.report import ComputeModel

log = logging.getLogger(__name__)

ACTIVE = "active"
AGENT = "agent"  # nodes.source of nodes that report themselves
MAX_BATCH = 256
GROUP_COMMIT_WINDOW_S = 0.005  # reports arriving this long after the first share its commit (and fsync)
# What the compute model reads besides memory.total_bytes (host identity and free memory do not matter).
ASSESSED_FIELDS = {"cpu", "accelerators", "interconnects", "labels"}
ASSESS_CACHE_SIZE = 4096
# A report dated further ahead than this is refused: it would otherwise freeze the node's state until then.
MAX_CLOCK_SKEW = timedelta(minutes=10)
# Columns of a node's state that the rollups and the ordering rule need (the JSON documents are not read back).
STATE_COLUMNS = ("node_id", "source", "tier", "region_code", "status", "last_generated_at", "last_sequence",
                 *MEASURE_COLUMNS)  # fmt: skip
HISTORY_COLUMNS = ("report_id", "node_id", "sequence", "generated_at", "received_at", "applied", "tier", "region_code",
                   *MEASURE_COLUMNS)  # fmt: skip


def _sqlite_time(value: datetime) -> str:
    """A UTC datetime as SQLAlchemy's SQLite dialect stores it (so reads through SQLAlchemy parse it back)."""
    v = value.astimezone(UTC)
    return f"{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"


def _as_is(value: datetime) -> datetime:
    return value


class Statements:
    """The three statements written for every report, as driver SQL built once per dialect.

    They go straight to the DB-API cursor's ``executemany``: SQLAlchemy's per-row parameter processing cost more
    than SQLite's own work on these rows (measured with `benchmarks.ingest`).  Datetimes are converted here as
    SQLAlchemy would (SQLite: UTC text; PostgreSQL: aware datetimes), so every other reader stays on SQLAlchemy.
    """

    def __init__(self, dialect: str) -> None:
        mark = "?" if dialect == "sqlite" else "%s"
        self.time = _sqlite_time if dialect == "sqlite" else _as_is
        self.node_columns = tuple(c.name for c in nodes.columns)
        self.node_times = tuple(c.name for c in nodes.columns if isinstance(c.type, DateTime))
        self.set_columns = tuple(c for c in self.node_columns if c not in ("node_id", "first_seen_at"))

        # Table and column names come from the table metadata, values only ever through placeholders.
        def insert(table: str, columns: tuple[str, ...]) -> str:
            return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join([mark] * len(columns))})"  # noqa: S608

        self.insert_report = insert("reports", HISTORY_COLUMNS)
        self.insert_node = insert("nodes", self.node_columns)
        assignments = ", ".join(f"{c} = {mark}" for c in self.set_columns)
        self.update_node = f"UPDATE nodes SET {assignments} WHERE node_id = {mark}"  # noqa: S608
        self._node_row = itemgetter(*self.node_columns)
        self._set_row = itemgetter(*self.set_columns, "node_id")
        self._history_row = itemgetter(*HISTORY_COLUMNS)

    def _timed(self, state: dict[str, Any]) -> dict[str, Any]:
        return state | {c: self.time(state[c]) for c in self.node_times}

    def node_rows(self, states: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Parameters of `insert_node` for new nodes' states."""
        return [self._node_row(self._timed(s)) for s in states]

    def update_rows(self, states: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Parameters of `update_node` for known nodes' states."""
        return [self._set_row(self._timed(s)) for s in states]

    def write_nodes(self, conn: Connection, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]) -> None:
        """Insert new nodes' states and update known ones (whole rows; `first_seen_at` is kept on update)."""
        if inserts:
            conn.exec_driver_sql(self.insert_node, self.node_rows(inserts))
        if updates:
            conn.exec_driver_sql(self.update_node, self.update_rows(updates))

    def history_rows(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Parameters of `insert_report`."""
        time = self.time
        return [self._history_row(r | {"generated_at": time(r["generated_at"]), "received_at": time(r["received_at"])})
                for r in rows]  # fmt: skip


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


def node_state(
    inventory: NodeInventory,
    assessment: Assessment,
    *,
    source: str,
    now: datetime,
    generated_at: datetime,
    sequence: int,
    report_id: str,
    agent_peaks: str,
    status: str = ACTIVE,
) -> dict[str, Any]:
    """A `nodes` row for `inventory` as the server assessed it (every column; `first_seen_at` is kept on update)."""
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
    }


@dataclass
class Prepared:
    """A validated, priced report waiting for the writer."""

    report: Report
    principal: Principal
    received_at: datetime
    generated_at: datetime  # the report's time in UTC
    values: dict[str, Any]
    state: dict[str, Any]
    tier: str
    peaks: dict[str, float]

    def result(self, outcome: str) -> IngestResult:
        """The answer for this report."""
        inv = self.report.inventory
        return IngestResult(str(self.report.report_id), inv.host.node_id, outcome, self.tier, self.peaks)


class Ingestor:
    """Prices reports and stores them in group commits (one transaction for all reports waiting together)."""

    def __init__(self, engine: Engine, model: ComputeModel, region_codes: set[str]) -> None:
        self.engine = engine
        self.model = model
        self.region_codes = region_codes
        # Held for each batch and by housekeeping, so two writers never overlap (SQLite allows one at a time).
        self.write_lock = threading.Lock()
        self._bindings: dict[int, str] = {}  # agent token id -> the node it is bound to
        self._pending: list[tuple[Prepared, asyncio.Future[IngestResult]]] = []
        self._flush_scheduled = False
        self._assessed: dict[str, Assessment] = {}
        self.statements = Statements(engine.dialect.name)

    # --- the caller's side -----------------------------------------------------------------------------

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
        tier = assessment.tier
        state = node_state(
            inventory, assessment, source=AGENT, now=now, generated_at=generated_at, sequence=report.sequence,
            report_id=str(report.report_id), agent_peaks=report.peaks.model_dump_json(),
        )  # fmt: skip
        values = {name: state[name] for name in MEASURE_COLUMNS}
        return Prepared(report, principal, now, generated_at, values, state, tier.tier.value, assessment.answer)

    def assess(self, inventory: NodeInventory) -> Assessment:
        """The compute model's answer, remembered per hardware and labels: a node reports the same machine every
        interval, and a cluster is made of few machine models, so most reports need no computing at all."""
        key = inventory.model_dump_json(include=ASSESSED_FIELDS) + str(inventory.memory.total_bytes)
        answer = self._assessed.get(key)
        if answer is None:
            peaks, tier = self.model.assess(inventory)
            figures = {p: peaks.figures[p].flops for p in Precision}
            answer = Assessment(peaks.model_dump_json(), tier, figures, {p.value: v for p, v in figures.items()})
            if len(self._assessed) >= ASSESS_CACHE_SIZE:
                self._assessed.pop(next(iter(self._assessed)))
            self._assessed[key] = answer
        return answer

    async def store(self, prepared: Prepared) -> IngestResult:
        """Queue a prepared report and wait until its batch is committed (or fails with the reason).

        The batch is written on the event loop's own thread: a writer thread would have to win the GIL back
        from the loop for every row it binds, which on a busy server costs far more than the write itself.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestResult] = loop.create_future()
        self._pending.append((prepared, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_later(GROUP_COMMIT_WINDOW_S, self._flush)
        return await future

    # --- the writer ------------------------------------------------------------------------------------

    def _flush(self) -> None:
        batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
        self._flush_scheduled = bool(self._pending)
        if self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        outcomes = self._write([prepared for prepared, _ in batch])
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the client went away
                continue
            if isinstance(outcome, Exception):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def _write(self, batch: list[Prepared]) -> list[IngestResult | Exception]:
        bindings: dict[int, str] = {}
        try:
            with self.write_lock, self.engine.begin() as conn:
                outcomes = self._store(conn, batch, bindings)
        except Exception as exc:
            mapped = database_error(exc) if isinstance(exc, DBAPIError) else None
            if mapped is not None:  # the database's state, not a report, is at fault: the same answer for each
                log.error("could not store %d report(s): %s: %s", len(batch), mapped.title, mapped.detail)
                return [mapped, *(type(mapped)(mapped.detail) for _ in batch[1:])]
            if len(batch) > 1:  # isolate the culprit: store one by one
                return [outcome for item in batch for outcome in self._write([item])]
            log.exception("could not store report %s", batch[0].report.report_id)
            return [exc]
        self._bindings |= bindings  # only bindings that were committed (a failed batch's are rolled back)
        return [o if isinstance(o, Exception) else item.result(o) for item, o in zip(batch, outcomes, strict=True)]

    def _store(self, conn: Connection, batch: list[Prepared], bindings: dict[int, str]) -> list[str | Exception]:
        ids = [str(item.report.report_id) for item in batch]
        seen = {row[0] for row in conn.execute(select(reports.c.report_id).where(reports.c.report_id.in_(ids)))}
        node_ids = sorted({item.state["node_id"] for item in batch})
        query = select(*[nodes.c[c] for c in STATE_COLUMNS]).where(nodes.c.node_id.in_(node_ids))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        current: dict[str, dict[str, Any] | None] = dict.fromkeys(node_ids)
        for row in conn.execute(query).mappings():
            current[row["node_id"]] = dict(row)
        existing = {n for n, row in current.items() if row is not None}
        before = dict(current)
        updated: set[str] = set()

        outcomes: list[str | Exception] = []
        history: list[dict[str, Any]] = []
        for item in batch:
            report_id = str(item.report.report_id)
            node_id = item.state["node_id"]
            if report_id in seen:
                outcomes.append("duplicate")
                continue
            if item.principal.role is Role.AGENT and item.principal.node_id is None:
                token_id = item.principal.token_id
                bound = self._bindings.get(token_id) or bindings.get(token_id) or bind_node(conn, token_id, node_id)
                bindings[token_id] = bound
                if bound != node_id:
                    outcomes.append(Forbidden(f"this agent token is bound to node {bound!r}, not {node_id!r}"))
                    continue
            seen.add(report_id)
            old = current[node_id]
            generated_at = item.state["last_generated_at"]
            # A node's own report always replaces what was discovered about it some other way (Kubernetes).
            newer = old is None or old["source"] != AGENT or (generated_at, item.report.sequence) > (
                aware(old["last_generated_at"]), old["last_sequence"])  # fmt: skip
            history.append(
                {
                    "report_id": report_id,
                    "node_id": node_id,
                    "sequence": item.report.sequence,
                    "generated_at": item.generated_at,
                    "received_at": item.received_at,
                    "applied": 1 if newer else 0,
                    "tier": item.tier,
                    "region_code": item.state["region_code"],
                    **item.values,
                }
            )
            if newer:
                current[node_id] = item.state
                updated.add(node_id)
            outcomes.append("stored" if newer else "stored-as-history")
        sql = self.statements
        if history:
            conn.exec_driver_sql(sql.insert_report, sql.history_rows(history))
        states = {n: current[n] for n in sorted(updated)}
        inserts = [s for n, s in states.items() if s is not None and n not in existing]
        updates = [s for n, s in states.items() if s is not None and n in existing]
        sql.write_nodes(conn, inserts, updates)
        self.apply_rollups(conn, before, states)
        return outcomes

    @staticmethod
    def apply_rollups(
        conn: Connection, before: dict[str, dict[str, Any] | None], after: dict[str, dict[str, Any] | None]
    ) -> None:
        deltas = Deltas()
        for node_id, new in after.items():
            old = before[node_id]
            if old is not None:
                deltas.add(cell_of(old), old, -1)
            if new is not None:
                deltas.add(cell_of(new), new, 1)
        deltas.apply(conn)
