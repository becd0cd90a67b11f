"""Several real service processes on one real PostgreSQL.  Taking reports at once, for the same nodes: the
writers of both (each replica's storing pricing workers, `api.ingest.pool`) lock node rows and rollup cells in one
order and rerun a transaction the server rolled back for a collision (`api.ingest.writer`), so no report is lost,
stored twice or applied twice, and the rollups stay the sums over the nodes.  Starting together: they migrate
one after another (`api.db.engine.migrate`)."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, select

from api.audit.log import verify
from api.census.arithmetic import UNASSIGNED
from api.db.engine import MIGRATIONS, make_engine
from api.db.tables import MEASURE_COLUMNS, nodes, reports, rollups
from census_agent.models import NodeInventory
from tests.integration.service.helpers import host_inventory, make_report, planned_inventory
from tests.service import PostgresCluster, ServiceProcess

NODES = 10
THREADS_PER_REPLICA = 8
REPORTS_PER_THREAD = 20
RACED = 60  # reports sent to both replicas at the same moment (the same report id)
REGIONS = ("440112", "440106", None)


@pytest.fixture
def replicas(postgres: PostgresCluster, tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    """Two `suanli serve` processes on one fresh PostgreSQL database, two storing workers each; the first is
    started alone (it migrates the database and makes the admin token), then the second."""
    url = postgres.create_database()
    started: list[ServiceProcess] = []
    try:
        for index in range(2):
            folder = tmp_path / f"replica-{index}"
            folder.mkdir()
            service = ServiceProcess(url, folder, ingest_workers="2", log_level="WARNING")
            service.admin_token_file = tmp_path / "admin.token"
            started.append(service.start())
        yield started
    finally:
        for service in started:
            service.stop()


def inventory(node: int, rng: random.Random) -> NodeInventory:
    """Node `node`'s machine for one report: a DGX or a Xeon host (two tiers), in one of three regions (or none),
    so that reports move nodes between rollup cells."""
    node_id = f"replica-node-{node}"
    region = rng.choice(REGIONS)
    if rng.random() < 0.5:
        return planned_inventory(node_id, region=region)
    return host_inventory("xeon-platinum-8380-2s", node_id, region=region)


def bodies(seed: int, count: int) -> list[bytes]:
    """`count` reports for random nodes of the shared pool, each with its own report id and a random place in its
    node's order (so some become the node's state and some history)."""
    rng = random.Random(seed)
    start = datetime.now(tz=UTC) - timedelta(hours=1)
    made = []
    for _ in range(count):
        step = rng.randrange(1, 3000)
        report = make_report(
            inventory(rng.randrange(NODES), rng), sequence=step, generated_at=start + timedelta(seconds=step)
        )
        made.append(report.model_dump_json().encode())
    return made


def send(
    url: str, token: str, payloads: list[bytes], in_step: threading.Barrier | None = None
) -> list[tuple[bytes, httpx.Response]]:
    """POST every payload in turn on one connection, each (with `in_step`) at the same moment as the other
    parties' same payload; each payload with its answer."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    answers = []
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for payload in payloads:
            if in_step is not None:
                in_step.wait(timeout=60)
            answers.append((payload, client.post("/v1/reports", content=payload)))
    return answers


def rollups_from_nodes(conn: Connection) -> dict[tuple[str, str, str], tuple[float, ...]]:
    """The rollup cells summed straight from the nodes table."""
    query = select(
        nodes.c.tier,
        func.coalesce(nodes.c.region_code, UNASSIGNED),
        nodes.c.status,
        func.count(),
        *[func.sum(nodes.c[name]) for name in MEASURE_COLUMNS],
    ).group_by(nodes.c.tier, nodes.c.region_code, nodes.c.status)
    return {(r[0], r[1], r[2]): tuple(float(v) for v in r[3:]) for r in conn.execute(query)}


def test_two_replicas_taking_reports_for_the_same_nodes_lose_nothing_and_keep_rollups_exact(
    replicas: list[ServiceProcess],
) -> None:
    """Sixteen clients over two replicas post 320 reports for ten shared nodes at once, and 60 more reports are
    each posted to both replicas at the same moment: every answer is 200; each raced report is stored once, one
    replica answering it stored and the other duplicate (or both duplicate-free outcomes of one row); every
    acknowledged report is in the history exactly once; each node's state is its newest stored report; the
    rollup cells equal the sums over the nodes; and the audit chain verifies, covering every report."""
    token = replicas[0].admin_token
    jobs = [
        (replicas[(thread % 2)].url, bodies(seed=thread, count=REPORTS_PER_THREAD))
        for thread in range(2 * THREADS_PER_REPLICA)
    ]
    raced = bodies(seed=1000, count=RACED)
    with ThreadPoolExecutor(max_workers=len(jobs) + 2) as pool:
        answers = [pool.submit(send, url, token, payloads) for url, payloads in jobs]
        in_step = threading.Barrier(len(replicas))
        both = [pool.submit(send, service.url, token, raced, in_step) for service in replicas]
        sent = [pair for future in answers for pair in future.result()]
        raced_answers = [future.result() for future in both]

    refused = [(r.status_code, r.text) for _, r in sent + raced_answers[0] + raced_answers[1] if r.status_code != 200]
    assert not refused
    acknowledged = Counter(response.json()["report_id"] for _, response in sent)
    for (payload, first), (_, second) in zip(*raced_answers, strict=True):
        outcomes = sorted([first.json()["outcome"], second.json()["outcome"]])
        assert outcomes.count("duplicate") == 1, (payload[:80], outcomes)
        acknowledged[first.json()["report_id"]] += 1
    assert len(acknowledged) == 2 * THREADS_PER_REPLICA * REPORTS_PER_THREAD + RACED

    engine = make_engine(replicas[0].database_url)
    try:
        with engine.connect() as conn:
            stored = Counter(r[0] for r in conn.execute(select(reports.c.report_id)))
            assert set(stored) == set(acknowledged)
            assert set(stored.values()) == {1}
            newest: dict[str, tuple[str, datetime, int]] = {}
            history = select(reports.c.node_id, reports.c.report_id, reports.c.generated_at, reports.c.sequence)
            for node_id, report_id, generated_at, sequence in conn.execute(history):
                if node_id not in newest or (generated_at, sequence) > newest[node_id][1:]:
                    newest[node_id] = (report_id, generated_at, sequence)
            states = dict(conn.execute(select(nodes.c.node_id, nodes.c.last_report_id)).all())
            assert states == {node_id: found[0] for node_id, found in newest.items()}
            assert len(states) == NODES
            cells = {
                (r[0], r[1], r[2]): tuple(float(v) for v in r[3:])
                for r in conn.execute(
                    select(
                        rollups.c.tier,
                        rollups.c.region_code,
                        rollups.c.status,
                        rollups.c.nodes,
                        *[rollups.c[n] for n in MEASURE_COLUMNS],
                    )
                )
            }
            summed = rollups_from_nodes(conn)
            emptied = {key: values for key, values in cells.items() if key not in summed}
            assert all(values == pytest.approx([0.0] * len(values), abs=1e-3) for values in emptied.values())
            assert {key: cells[key] for key in summed} == {key: pytest.approx(v) for key, v in summed.items()}
            assert len(summed) > 1  # the reports did spread nodes over several cells
        chain = verify(engine)
        assert chain["ok"], chain
        assert chain["reports"] == len(stored)
    finally:
        engine.dispose()


MIGRATE = "import sys; from api.db.engine import make_engine, migrate; migrate(make_engine(sys.argv[1]))"


def test_replicas_starting_together_migrate_one_after_another(postgres: PostgresCluster) -> None:
    """Three processes migrating one fresh PostgreSQL database at the same moment (a Deployment of three replicas
    on its first install) all succeed, and the schema ends at Alembic's head once: the advisory lock in
    `api.db.engine.migrate` makes them take turns instead of racing to create the same tables."""
    url = postgres.create_database()
    runs = [
        subprocess.Popen([sys.executable, "-c", MIGRATE, url], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for _ in range(3)
    ]
    outputs = [run.communicate(timeout=300)[0].decode(errors="replace") for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outputs
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            versions = [row[0] for row in conn.exec_driver_sql("SELECT version_num FROM alembic_version")]
    finally:
        engine.dispose()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    heads = ScriptDirectory.from_config(config).get_heads()
    assert versions == heads
