"""Storing pricing workers (`api.ingest.pool` on an SQLite file) against real worker processes and real SQLite
files: a worker stores a report exactly as the service's own writer does, binds agent tokens as it does, and
writes beside the service's housekeeping (each taking SQLite's write lock when it begins) without an error and
without the rollups drifting from the nodes they sum."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from api.auth import Principal, Role, create_token
from api.census.liveness import snapshot, sweep
from api.census.query import load_regions
from api.db.engine import make_engine, migrate, sqlite_file_url, write_transaction
from api.db.seed import seed_regions
from api.db.tables import MEASURE_COLUMNS, nodes, reports, rollups
from api.errors import Forbidden, ServiceError
from api.ingest.pool import PricingPool
from api.ingest.pricing import IngestResult
from api.ingest.writer import Ingestor
from census_agent.report import ComputeModel
from tests.integration.service.helpers import document, make_report, planned_inventory

NOW = datetime.now(tz=UTC)
ADMIN = Principal(token_id=1, name="admin", role=Role.ADMIN, node_id=None)


def body(node_id: str, generated_at: datetime, sequence: int) -> bytes:
    """A valid report document for `node_id` with its own report id."""
    doc = document(make_report(planned_inventory(node_id))) | {
        "report_id": str(uuid.uuid4()),
        "generated_at": generated_at.isoformat(),
        "sequence": sequence,
    }
    return json.dumps(doc).encode()


@dataclass
class Database:
    """A migrated, seeded SQLite file and the service's writer on it."""

    url: str
    engine: Engine
    ingestor: Ingestor


def database(path: Path) -> Database:
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        seed_regions(conn)
        regions = load_regions(conn)
    return Database(url, engine, Ingestor(engine, ComputeModel(), set(regions)))


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    made = database(tmp_path / "suanli.db")
    yield made
    made.ingestor.close()
    made.engine.dispose()


def storing_pool(db: Database, size: int = 1) -> PricingPool:
    url = sqlite_file_url(db.engine)
    assert url == db.url
    return PricingPool(size, db.ingestor.pricer, "sqlite", ingestor=db.ingestor, database_url=url)


def run_with(pool: PricingPool, bodies: list[bytes], principal: Principal = ADMIN) -> list[IngestResult | Exception]:
    """Start `pool`, ingest `bodies` one after another, stop it; each answer or refusal."""

    async def scenario() -> list[IngestResult | Exception]:
        await pool.start()
        answers: list[IngestResult | Exception] = []
        try:
            for payload in bodies:
                try:
                    answers.append(await pool.ingest(payload, principal, NOW))
                except ServiceError as exc:
                    answers.append(exc)
        finally:
            await pool.close()
        return answers

    return asyncio.run(scenario())


def table_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row the writer writes (the history without its surrogate key), in a stable order."""
    with engine.connect() as conn:
        return {
            "nodes": [tuple(r) for r in conn.execute(select(nodes).order_by(nodes.c.node_id))],
            "reports": [tuple(r)[1:] for r in conn.execute(select(reports).order_by(reports.c.report_id))],
            "rollups": [tuple(r) for r in conn.execute(select(rollups).order_by(*rollups.primary_key.columns))],
        }


def test_a_storing_worker_stores_reports_exactly_as_the_service_s_own_writer(tmp_path: Path, db: Database) -> None:
    """The same bodies (new, replayed, older than the node's state) through a storing worker and through the
    service's in-process writer: the same outcomes, and byte-for-byte the same nodes, history and rollups."""
    first = body("stored-1", NOW - timedelta(seconds=30), 2)
    bodies = [first, first, body("stored-1", NOW - timedelta(seconds=60), 1), body("stored-2", NOW, 1)]
    in_worker = run_with(storing_pool(db), bodies)
    assert [a.outcome if isinstance(a, IngestResult) else a for a in in_worker] == [
        "stored",
        "duplicate",
        "stored-as-history",
        "stored",
    ]
    assert db.ingestor.pricer.price(first, ADMIN, NOW).peaks == in_worker[0].peaks  # type: ignore[union-attr]

    other = database(tmp_path / "in-process.db")
    try:
        in_process = run_with(PricingPool(0, other.ingestor.pricer, "sqlite", ingestor=other.ingestor), bodies)
        assert in_process == in_worker
        assert table_rows(other.engine) == table_rows(db.engine)
    finally:
        other.ingestor.close()
        other.engine.dispose()


def test_a_storing_worker_binds_an_agent_token_to_its_first_node_and_refuses_another(db: Database) -> None:
    """An unbound agent token reports through the worker: the token is bound to that node in the database, and
    a report for another node is refused with 403, storing nothing."""
    with db.engine.begin() as conn:
        _, token_id = create_token(conn, name="agent", role=Role.AGENT, now=NOW)
    agent = Principal(token_id=token_id, name="agent", role=Role.AGENT, node_id=None)
    answers = run_with(storing_pool(db), [body("bound-1", NOW, 1), body("bound-2", NOW, 1)], agent)
    assert isinstance(answers[0], IngestResult)
    assert answers[0].outcome == "stored"
    assert isinstance(answers[1], Forbidden)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT node_id FROM tokens WHERE id = ?", (token_id,)).scalar() == "bound-1"
        assert conn.execute(select(nodes.c.node_id)).scalars().all() == ["bound-1"]


Cells = dict[tuple[str, str, str], tuple[float, ...]]


def cells(engine: Engine) -> tuple[Cells, Cells]:
    """The rollups as stored, and as summed from the nodes now (cells with no node left out of both)."""
    with engine.connect() as conn:
        stored = {
            (r.tier, r.region_code, r.status): (float(r.nodes), *(float(r._mapping[c]) for c in MEASURE_COLUMNS))
            for r in conn.execute(select(rollups))
            if r.nodes
        }
        sums = [func.count(), *[func.sum(nodes.c[c]) for c in MEASURE_COLUMNS]]
        query = select(nodes.c.tier, func.coalesce(nodes.c.region_code, ""), nodes.c.status, *sums).group_by(
            nodes.c.tier, nodes.c.region_code, nodes.c.status
        )
        summed = {(r[0], r[1], r[2]): tuple(float(v) for v in r[3:]) for r in conn.execute(query)}
    return stored, summed


def test_housekeeping_and_a_storing_worker_write_together_and_the_rollups_stay_exact(db: Database) -> None:
    """While a storing worker stores reports from 40 nodes (half of them received as if an hour ago), the
    housekeeper's sweep keeps demoting those and snapshotting, in its own thread of the service's process: no write
    fails, and afterwards the rollups equal the sums over the nodes."""
    stop = threading.Event()
    errors: list[BaseException] = []
    sweeps = 0

    def housekeeping() -> None:
        nonlocal sweeps
        while not stop.is_set():
            try:
                sweep(db.engine, datetime.now(tz=UTC), 600, 1200, db.ingestor.write_lock)
                snapshot(db.engine, datetime.now(tz=UTC), db.ingestor.write_lock)
                sweeps += 1
            except BaseException as exc:  # reported by the assertion below
                errors.append(exc)
                return

    async def scenario() -> list[IngestResult | BaseException]:
        pool = storing_pool(db)
        await pool.start()
        try:
            # Odd nodes report as if received an hour ago: the sweep demotes them, their next report revives them.
            received = [NOW - timedelta(hours=n % 2) for n in range(400)]
            bodies = [body(f"busy-{n % 40}", received[n] - timedelta(seconds=400 - n), n + 1) for n in range(400)]
            calls = (pool.ingest(b, ADMIN, at) for b, at in zip(bodies, received, strict=True))
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await pool.close()

    keeper = threading.Thread(target=housekeeping)
    keeper.start()
    try:
        answers = asyncio.run(scenario())
    finally:
        stop.set()
        keeper.join()
    assert not errors, errors
    assert sweeps > 0
    assert all(isinstance(a, IngestResult) and a.outcome in ("stored", "stored-as-history") for a in answers), [
        a for a in answers if not isinstance(a, IngestResult)
    ][:3]
    with db.engine.connect() as conn:
        statuses = set(conn.execute(select(nodes.c.status)).scalars())
    assert statuses - {"active"}, "the sweep demoted no node: the test did not make the two write together"
    stored, summed = cells(db.engine)
    assert stored.keys() == summed.keys()
    for key, figures in summed.items():
        assert stored[key] == pytest.approx(figures, rel=1e-12), key


def test_two_storing_workers_take_turns_and_store_every_report_once(db: Database) -> None:
    """Two storing workers given 300 reports at once from 30 nodes (each worker gets some, by least busy): every
    report is stored once, each node's state is its newest report, and the rollups equal the sums over the
    nodes."""

    async def scenario() -> tuple[list[IngestResult | BaseException], list[int]]:
        pool = storing_pool(db, size=2)
        await pool.start()
        try:
            bodies = [body(f"pair-{n % 30}", NOW - timedelta(seconds=300 - n), n + 1) for n in range(300)]
            calls = [asyncio.ensure_future(pool.ingest(b, ADMIN, NOW)) for b in bodies]
            await asyncio.sleep(0)
            loads = [len(worker.pending) for worker in pool.workers]  # what each worker was handed
            return await asyncio.gather(*calls, return_exceptions=True), loads
        finally:
            await pool.close()

    answers, loads = asyncio.run(scenario())
    assert len(loads) == 2
    assert min(loads) > 0, loads
    assert [a.outcome if isinstance(a, IngestResult) else a for a in answers] == ["stored"] * 300
    with db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(reports)).scalar() == 300
        newest = {row[0]: row[1] for row in conn.execute(select(nodes.c.node_id, nodes.c.last_sequence))}
    assert newest == {f"pair-{n}": 270 + n + 1 for n in range(30)}
    stored, summed = cells(db.engine)
    assert stored.keys() == summed.keys()
    for key, figures in summed.items():
        assert stored[key] == pytest.approx(figures, rel=1e-12), key


def test_a_write_transaction_holds_sqlite_s_write_lock_from_its_start(db: Database) -> None:
    """Inside `write_transaction`, before it has written anything, another connection cannot write: a read
    followed by a write in it can never interleave with another process's writer."""
    with write_transaction(db.engine) as conn:
        conn.execute(select(func.count()).select_from(nodes)).scalar()
        other = sqlite3.connect(db.url.removeprefix("sqlite:///"), timeout=0)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("CREATE TABLE probe (x INTEGER)")
        finally:
            other.close()
