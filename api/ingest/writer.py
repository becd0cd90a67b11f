"""Report ingest's writer: upsert node state, append history, keep the rollups, in group commits.

Reports arrive priced (`api.ingest.pricing`, in the service's process or a pricing worker); every report waiting at
that moment is stored in a single transaction (group commit): the history rows (unique report id: a replay is a
no-op), each node's newest state (an older report never overwrites a newer one) and the rollup deltas commit
together with the audit chain's entry for the batch (the digest of each stored report, `api.audit.log.record_reports`),
and every request is answered only after that commit.  `Ingestor.write` is the one way a batch is
stored (and, if the batch fails, each of its reports alone): the service runs it on its commit thread (`store`),
a storing pricing worker (`api.ingest.pool`) on its own.  Writers are kept apart by the ingestor's `write_lock`
within a process and, across processes, by the write lock every SQLite write transaction takes when it begins
(`api.db.engine.write_transaction`).

On PostgreSQL many writers (storing workers of several replicas) run at once, kept apart by row locks taken in
one order by all of them: the batch's node rows (``ORDER BY node_id FOR UPDATE``, before anything else is read, so
a report that another writer is storing is seen as stored once it commits), then the rollup cells, upserted in
key order (`api.census.rollups.Deltas.rows`), and last the audit chain's head row.  Writers that still collide (a
deadlock with other writers of those rows, two writers creating the same new node or the same report at once) get
their transaction rolled back by the server and run it again (`RETRIES`): nothing of a rolled-back attempt stays,
so nothing is applied twice, and no report is answered before its commit.  This module does not validate or price
anything itself.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from api.audit import log as audit
from api.auth import Role, bind_node
from api.census.rollups import UPSERTS, Deltas, cell_of
from api.db import read_time, storage_time
from api.db.engine import write_transaction
from api.db.tables import HARDWARE_COLUMNS, MEASURE_COLUMNS, nodes
from api.errors import DatabaseUnavailable, Forbidden, database_error
from api.ingest.pricing import AGENT, IngestResult, Prepared, Pricer
from census_agent.report import ComputeModel

log = logging.getLogger(__name__)

MAX_BATCH = 256
# PostgreSQL errors after which a batch's transaction, rolled back by the server, is run again: a deadlock, a
# serialisation failure, and a unique key that another writer committed meanwhile (the same new node, the same
# report); the run again sees that writer's rows.  Tries in all, and the longest pause before another.
RETRY_SQLSTATES = frozenset({"40P01", "40001", "23505"})
RETRIES = 5
RETRY_PAUSE_S = 0.05
# How long the first report after a quiet spell waits for company.  0: none, since reports that arrive while a batch
# is being committed form the next batch anyway (group commit by the fsync's own length); a 5 ms wait cost every
# round of a closed loop of 32 clients 5 ms, and a fifth of the rate (`benchmarks.ingest`).
GROUP_COMMIT_WINDOW_S = 0.0
# Columns of a node's state that the rollups and the ordering rule need (the JSON documents are not read back).
STATE_COLUMNS = (
    "node_id",
    "source",
    "tier",
    "region_code",
    "status",
    "last_generated_at",
    "last_sequence",
    *MEASURE_COLUMNS,
)
measures = itemgetter(*MEASURE_COLUMNS)  # a state's figures, as one comparable tuple
# `applied` last: it is decided in the write, the rest when the report is prepared.
HISTORY_COLUMNS = (
    "report_id",
    "node_id",
    "sequence",
    "generated_at",
    "received_at",
    "tier",
    "region_code",
    *HARDWARE_COLUMNS,
    "applied",
)


class Statements:
    """The statements written and read for every batch of reports, as driver SQL built once per dialect.

    They go straight to the DB-API cursor: SQLAlchemy's per-statement compilation and per-row parameter and
    result processing cost more than SQLite's own work on these rows (measured with `benchmarks.ingest`).
    Datetimes are converted here as SQLAlchemy would (SQLite: UTC text; PostgreSQL: aware datetimes), so every
    other reader stays on SQLAlchemy.
    """

    def __init__(self, dialect: str) -> None:
        self.mark = "?" if dialect == "sqlite" else "%s"
        self.postgresql = dialect == "postgresql"
        self.time = storage_time(dialect)
        self.read_time = read_time(dialect)
        mark = self.mark
        self.node_columns = tuple(c.name for c in nodes.columns)
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

    def node_rows(self, states: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Parameters of `insert_node` for new nodes' states."""
        return [self._node_row(s) for s in states]

    def update_rows(self, states: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        """Parameters of `update_node` for known nodes' states."""
        return [self._set_row(s) for s in states]

    def write_nodes(self, conn: Connection, inserts: list[dict[str, Any]], updates: list[dict[str, Any]]) -> None:
        """Insert new nodes' states and update known ones (whole rows; `first_seen_at` is kept on update)."""
        if inserts:
            conn.exec_driver_sql(self.insert_node, self.node_rows(inserts))
        if updates:
            conn.exec_driver_sql(self.update_node, self.update_rows(updates))

    def known_reports(self, conn: Connection, report_ids: list[str]) -> set[str]:
        """Which of `report_ids` are stored already."""
        return {row[0] for row in conn.exec_driver_sql(self._known_query(len(report_ids)), tuple(report_ids))}

    def node_states(self, conn: Connection, node_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored state (`STATE_COLUMNS`, times as aware datetimes) of those of `node_ids` that are known;
        locked for this transaction on PostgreSQL."""
        return self._states(conn.exec_driver_sql(self._states_query(len(node_ids)), tuple(node_ids)))

    def read_batch(
        self, conn: Connection, node_ids: list[str], report_ids: list[str]
    ) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """`node_states` of `node_ids` (locking them on PostgreSQL), then `known_reports` of `report_ids`, in this
        order: a report another writer commits while this one waits for its node is then seen as stored.  On
        PostgreSQL both go in one round trip (a pipeline: `_pipeline`)."""
        if not self.postgresql:
            return self.node_states(conn, node_ids), self.known_reports(conn, report_ids)
        with _pipeline(conn) as raw:
            states = raw.cursor()
            states.execute(self._states_query(len(node_ids)), tuple(node_ids))
            known = raw.cursor()
            known.execute(self._known_query(len(report_ids)), tuple(report_ids))
        return self._states(states.fetchall()), {row[0] for row in known.fetchall()}

    def write_batch(
        self,
        conn: Connection,
        history: list[tuple[Any, ...]],
        inserts: list[dict[str, Any]],
        updates: list[dict[str, Any]],
        cells: list[tuple[Any, ...]],
    ) -> None:
        """Write a batch: its `history` rows, new and changed node states, the rollup `cells` (`Deltas.rows`), and
        last the audit chain's entry for the stored reports (`api.audit.log`: the head row is locked until the
        commit).  On PostgreSQL in two round trips (pipelines): everything up to the locked head, then the entry."""
        if not self.postgresql:
            if history:
                conn.exec_driver_sql(self.insert_report, history)
            self.write_nodes(conn, inserts, updates)
            if cells:
                conn.exec_driver_sql(UPSERTS[conn.dialect.name], cells)
            if history:  # last: the chain's head is locked until the commit (api.audit.log.append)
                audit.record_reports(conn, history)
            return
        chain = audit.statements(conn.dialect.name)
        with _pipeline(conn) as raw:
            cursor = raw.cursor()
            for statement, rows in (
                (self.insert_report, history),
                (self.insert_node, self.node_rows(inserts)),
                (self.update_node, self.update_rows(updates)),
                (UPSERTS[conn.dialect.name], cells),
            ):
                if rows:
                    cursor.executemany(statement, rows)
            head = raw.cursor()
            if history:
                head.execute(chain.lock_head)
        if not history:
            return
        action, actor, subject, detail = audit.reports_entry(history)
        entry, move = audit.next_entry(chain, head.fetchone(), action, actor, subject=subject, detail=detail)
        with _pipeline(conn) as raw:
            cursor = raw.cursor()
            cursor.execute(chain.insert, entry)
            cursor.execute(chain.move_head, move)

    def _states_query(self, count: int) -> str:
        query = f"SELECT {', '.join(STATE_COLUMNS)} FROM nodes WHERE node_id IN ({', '.join([self.mark] * count)})"  # noqa: S608
        if self.postgresql:  # locked in key order, by every writer alike: no two writers wait for each other's rows
            query += " ORDER BY node_id FOR UPDATE"
        return query

    def _known_query(self, count: int) -> str:
        return f"SELECT report_id FROM reports WHERE report_id IN ({', '.join([self.mark] * count)})"  # noqa: S608

    def _states(self, rows: Iterable[Sequence[Any]]) -> dict[str, dict[str, Any]]:
        found = {}
        for values in rows:
            row = dict(zip(STATE_COLUMNS, values, strict=True))
            row["last_generated_at"] = self.read_time(row["last_generated_at"])
            found[row["node_id"]] = row
        return found


@contextmanager
def _pipeline(conn: Connection) -> Iterator[Any]:
    """The PostgreSQL driver's (psycopg 3) connection under `conn`, in pipeline mode: statements sent inside go to
    the server together and their results come back in one round trip when the block ends (results are read from
    the cursors after it).  The driver's errors become SQLAlchemy's, as `conn` would raise them, so callers
    classify them alike (`api.errors.database_error`, `RETRY_SQLSTATES`)."""
    raw = conn.connection.dbapi_connection
    dbapi = conn.dialect.loaded_dbapi
    try:
        with raw.pipeline():  # type: ignore[union-attr]
            yield raw
    except dbapi.Error as exc:
        raise DBAPIError.instance(None, None, exc, dbapi.Error, dialect=conn.dialect) from exc


class Ingestor:
    """Stores priced reports in group commits (one transaction for all reports waiting together)."""

    def __init__(self, engine: Engine, model: ComputeModel, region_codes: set[str]) -> None:
        self.engine = engine
        self.region_codes = region_codes
        self.pricer = Pricer(model, region_codes, engine.dialect.name)
        # Held for each batch and by housekeeping, so two writers of this process never overlap (SQLite allows one at
        # a time; across processes its own lock, taken at BEGIN, does the same: `write_transaction`).
        self.write_lock = threading.Lock()
        self._bindings: dict[int, str] = {}  # agent token id -> the node it is bound to
        self._pending: list[tuple[Prepared, asyncio.Future[IngestResult]]] = []
        self._writer: asyncio.Task[None] | None = None
        # Batches are written and committed here (`write`): waiting for the disk or the server off the event loop.
        self._committer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="suanli-commit")
        self.statements = Statements(engine.dialect.name)

    # --- the caller's side -----------------------------------------------------------------------------

    async def store(self, prepared: Prepared) -> IngestResult:
        """Queue a prepared report and wait until its batch is committed (or fails with the reason)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IngestResult] = loop.create_future()
        self._pending.append((prepared, future))
        if self._writer is None:
            self._writer = loop.create_task(self._drain())
        return await future

    def close(self) -> None:
        """Stop the commit thread (after the batch it may be committing)."""
        self._committer.shutdown(wait=True)

    # --- the writer ------------------------------------------------------------------------------------

    async def _drain(self) -> None:
        """Write batches until none is waiting: the first is what arrived in this turn of the loop (and in
        `GROUP_COMMIT_WINDOW_S`), each later one whatever arrived while the previous batch was being committed, so
        batches grow with the load and an idle service answers at once.  Each batch is written by `write` on the
        commit thread, which waits for the disk or the database server while the loop reads and prices the next
        requests."""
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(GROUP_COMMIT_WINDOW_S)
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    outcomes = await loop.run_in_executor(self._committer, self.write, [p for p, _ in batch])
                except BaseException as exc:  # cancelled at shutdown, or a bug: no caller is left waiting forever
                    error = exc if isinstance(exc, Exception) else DatabaseUnavailable("the service is shutting down")
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    raise
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # the client went away
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._writer = None

    def write(self, batch: list[Prepared]) -> list[IngestResult | Exception]:
        """Store `batch` in one transaction on this thread, or each report alone if the batch fails: each report's
        answer, or the error to answer it with.  The one way reports are stored, by the service's commit thread
        (`store`) and by a storing pricing worker (`api.ingest.pool`)."""
        bindings: dict[int, str] = {}  # agent tokens bound in this transaction: remembered once it has committed
        try:
            outcomes = self._transaction(batch, bindings)
        except Exception as exc:
            mapped = database_error(exc) if isinstance(exc, DBAPIError) else None
            if mapped is not None:  # the database's state, not a report, is at fault: the same answer for each
                log.error("could not store %d report(s): %s: %s", len(batch), mapped.title, mapped.detail)
                return [mapped, *(type(mapped)(mapped.detail) for _ in batch[1:])]
            if len(batch) > 1:  # one of the reports is at fault: store them one by one to isolate it
                return [outcome for item in batch for outcome in self.write([item])]
            log.exception("could not store report %s", batch[0].report_id)
            return [exc]
        self._bindings |= bindings
        return [o if isinstance(o, Exception) else item.result(o) for item, o in zip(batch, outcomes, strict=True)]

    def _transaction(self, batch: list[Prepared], bindings: dict[int, str]) -> list[str | Exception]:
        """`_store` in one write transaction, run again (up to `RETRIES` tries) when PostgreSQL rolled it back for
        a collision with another writer (`RETRY_SQLSTATES`)."""
        for attempt in range(1, RETRIES + 1):
            bindings.clear()
            try:
                with self.write_lock, write_transaction(self.engine) as conn:
                    return self._store(conn, batch, bindings)
            except DBAPIError as exc:
                state = getattr(exc.orig, "sqlstate", None)
                if not self.statements.postgresql or state not in RETRY_SQLSTATES or attempt == RETRIES:
                    raise
                log.info("storing %d report(s) collided with another writer (%s); try %d", len(batch), state, attempt)
                time.sleep(random.uniform(0, RETRY_PAUSE_S * attempt / RETRIES))  # noqa: S311 - jitter, not secrets
        raise AssertionError("unreachable")  # pragma: no cover

    def _store(self, conn: Connection, batch: list[Prepared], bindings: dict[int, str]) -> list[str | Exception]:
        sql = self.statements
        node_ids = sorted({item.node_id for item in batch})
        stored, seen = sql.read_batch(conn, node_ids, [item.report_id for item in batch])
        current: dict[str, dict[str, Any] | None] = {n: stored.get(n) for n in node_ids}
        before = dict(current)
        order: dict[str, tuple[datetime, int]] = {
            n: (row["last_generated_at"], row["last_sequence"]) for n, row in stored.items()
        }
        updated: set[str] = set()

        outcomes: list[str | Exception] = []
        history: list[tuple[Any, ...]] = []
        for item in batch:
            report_id, node_id = item.report_id, item.node_id
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
            # A node's own report always replaces what was discovered about it some other way (Kubernetes).
            newer = old is None or old["source"] != AGENT or item.order > order[node_id]
            history.append(item.history(newer))
            if newer:
                current[node_id] = item.state
                order[node_id] = item.order
                updated.add(node_id)
            outcomes.append("stored" if newer else "stored-as-history")
        states = {n: current[n] for n in sorted(updated)}
        inserts = [s for n, s in states.items() if s is not None and before[n] is None]
        updates = [s for n, s in states.items() if s is not None and before[n] is not None]
        sql.write_batch(conn, history, inserts, updates, self.deltas(before, states).rows())
        return outcomes

    @staticmethod
    def apply_rollups(
        conn: Connection, before: dict[str, dict[str, Any] | None], after: dict[str, dict[str, Any] | None]
    ) -> None:
        """Move each node's contribution from the cell it was in (`before`) to the one it is in now (`after`)."""
        Ingestor.deltas(before, after).apply(conn)

    @staticmethod
    def deltas(before: dict[str, dict[str, Any] | None], after: dict[str, dict[str, Any] | None]) -> Deltas:
        """The rollup changes that move each node's contribution from the cell it was in (`before`) to the one it
        is in now (`after`); a node whose cell and figures did not change (most reports) costs nothing."""
        deltas = Deltas()
        for node_id, new in after.items():
            old = before[node_id]
            if old is not None and new is not None and cell_of(old) == cell_of(new) and measures(old) == measures(new):
                continue
            if old is not None:
                deltas.add(cell_of(old), old, -1)
            if new is not None:
                deltas.add(cell_of(new), new, 1)
        return deltas
