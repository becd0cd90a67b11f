"""Duty leases in the database (`api.duties`) on SQLite and PostgreSQL, with two engines as two processes would
hold them: one contender acquires, another only once the lease expired by the database's clock (with a new term),
a released lease is taken at once, and a dispatcher write under an older term is refused and changes nothing
(fencing by term) while the writer still believes it holds the lease (its clock stopped, as a paused process's)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from api.db.engine import make_engine, migrate, write_transaction
from api.db.tables import job_events, jobs
from api.duties import store
from api.duties.elector import Elector
from api.duties.lease import LeaseLost, Timing
from api.jobs.scheduling import FencedBackend
from api.jobs.store import SqlJobStore, create
from census_agent.models import Tier
from scheduler.models import JobSpec
from tests.service import PostgresCluster

SHORT = Timing(lease_seconds=1.0, renew_seconds=0.25, margin_seconds=0.2)


@pytest.fixture(params=["sqlite", "postgresql"])
def engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one fresh, migrated database: what two service processes hold."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'suanli.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database()
    a, b = make_engine(url), make_engine(url)
    migrate(a)
    yield a, b
    a.dispose()
    b.dispose()


def test_one_contender_acquires_another_only_after_expiry_with_a_new_term_and_a_release_hands_over_at_once(
    engines: tuple[Engine, Engine],
) -> None:
    """A takes term 1; B is refused while it lasts and cannot renew A's term; once expired by the database's clock
    B takes term 2 and A can neither renew nor release term 1; B's release lets A take term 3 at once."""
    a, b = engines
    assert store.acquire(a, "dispatcher", "A", 1.0) == 1
    assert store.acquire(b, "dispatcher", "B", 1.0) is None
    assert not store.renew(b, "dispatcher", "B", 1, 1.0)
    assert store.renew(a, "dispatcher", "A", 1, 1.0)
    time.sleep(1.1)
    assert store.acquire(b, "dispatcher", "B", 30.0) == 2
    assert not store.renew(a, "dispatcher", "A", 1, 1.0)
    assert not store.release(a, "dispatcher", "A", 1)
    assert store.acquire(a, "dispatcher", "A", 30.0) is None
    assert store.release(b, "dispatcher", "B", 2)
    assert store.acquire(a, "dispatcher", "A", 30.0) == 3
    with a.connect() as conn:
        holders = store.holders(conn)
    assert holders["dispatcher"][:2] == ("A", 3)
    assert holders["housekeeping"][:2] == ("", 0)  # each duty has its own lease


def test_of_many_contenders_at_once_exactly_one_acquires(engines: tuple[Engine, Engine]) -> None:
    """Eight threads (over two engines) ask for the same expired lease at the same moment: one term is granted,
    to one of them."""
    a, b = engines
    barrier = threading.Barrier(8)
    granted: list[tuple[int, int | None]] = []

    def contend(n: int) -> None:
        barrier.wait()
        granted.append((n, store.acquire(a if n % 2 else b, "housekeeping", f"H{n}", 30.0)))

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [(n, term) for n, term in granted if term is not None]
    assert len(granted) == 8
    assert len(winners) == 1, granted
    assert winners[0][1] == 1


def _queued_job(engine: Engine) -> str:
    spec = JobSpec.model_validate({"name": "fenced", "class": "general", "entrypoint": "true"})
    with write_transaction(engine) as conn:
        return create(conn, spec, "alice", datetime.now(tz=UTC), "queued", owner_id=None)


def _dispatch(job_store: SqlJobStore, job_id: str) -> bool:
    return job_store.dispatch(
        job_id,
        attempt=0,
        tier=Tier.GENERAL,
        node_ids=["n1"],
        submission_id=f"{job_id}-0",
        reason="fits",
        now=time.time(),
    )


def _job(engine: Engine, job_id: str) -> tuple[str, int, int]:
    with engine.connect() as conn:
        state, attempt = conn.execute(select(jobs.c.state, jobs.c.attempt).where(jobs.c.job_id == job_id)).one()
        events = conn.execute(select(func.count()).where(job_events.c.job_id == job_id)).scalar_one()
    return state, attempt, int(events)


def test_a_paused_dispatchers_writes_under_its_old_term_are_refused_and_it_stands_down(
    engines: tuple[Engine, Engine],
) -> None:
    """A holds the dispatcher lease (term 1); its clock then stops (a paused process: it still believes it holds
    term 1) while the lease expires and B takes term 2. A's dispatch of a queued job raises `LeaseLost`, the job
    is still queued with no new event, and A no longer believes it holds the lease; B's dispatch of the same job
    goes through."""
    a, b = engines
    stop = threading.Event()
    frozen = time.monotonic()
    paused = Elector(a, ["dispatcher"], SHORT, stop, holder="A", clock=lambda: frozen)
    paused.ask_once()
    assert paused.held("dispatcher") == 1
    job_id = _queued_job(a)
    time.sleep(SHORT.lease_seconds + 0.1)
    leader = Elector(b, ["dispatcher"], SHORT, stop, holder="B")
    leader.ask_once()
    assert leader.held("dispatcher") == 2
    assert paused.held("dispatcher") == 1  # by its own (stopped) clock it still holds term 1

    with pytest.raises(LeaseLost):
        _dispatch(SqlJobStore(a, fence=paused.fence("dispatcher")), job_id)

    assert _job(a, job_id) == ("queued", 0, 1)
    assert paused.held("dispatcher") is None  # stood down
    assert _dispatch(SqlJobStore(b, fence=leader.fence("dispatcher")), job_id)
    assert _job(b, job_id) == ("dispatching", 0, 2)


def test_a_dispatcher_whose_lease_expired_unclaimed_is_refused_too_and_takes_a_new_term(
    engines: tuple[Engine, Engine],
) -> None:
    """A's lease expires by the database's clock with no one else asking: a write under term 1 (A's clock stopped)
    is still refused (an expired term is never written under), and A's next ask takes term 2 and writes."""
    a, _ = engines
    stop = threading.Event()
    now = [time.monotonic()]
    elector = Elector(a, ["dispatcher"], SHORT, stop, holder="A", clock=lambda: now[0])
    elector.ask_once()
    job_id = _queued_job(a)
    time.sleep(SHORT.lease_seconds + 0.1)
    fenced = SqlJobStore(a, fence=elector.fence("dispatcher"))
    with pytest.raises(LeaseLost):
        fenced.requeue(job_id, "retry", time.time())
    now[0] = time.monotonic()
    elector.ask_once()
    assert elector.held("dispatcher") == 2
    assert _dispatch(fenced, job_id)


class RecordingRay:
    """Stands in for Ray's Jobs API (the seam `FencedBackend` wraps): records the calls that change Ray."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def submit(self, **kwargs: object) -> bool:
        self.calls.append(f"submit {kwargs['job_id']}")
        return True

    def stop(self, job_id: str, tier: str) -> bool:
        self.calls.append(f"stop {job_id}")
        return True


def test_a_dispatcher_whose_lease_lapsed_submits_and_stops_nothing_on_ray(engines: tuple[Engine, Engine]) -> None:
    """While the lease is held a submit and a stop reach Ray; once it has lapsed by the local clock both raise
    `LeaseLost` and Ray is not called."""
    a, _ = engines
    now = [time.monotonic()]
    elector = Elector(a, ["dispatcher"], SHORT, threading.Event(), holder="A", clock=lambda: now[0])
    elector.ask_once()
    ray = RecordingRay()
    fenced = FencedBackend(ray, elector.fence("dispatcher"))  # type: ignore[arg-type]
    assert fenced.submit(job_id="j-0", tier="general")
    assert fenced.stop("j-0", "general")
    now[0] += SHORT.lease_seconds
    with pytest.raises(LeaseLost):
        fenced.submit(job_id="j-1", tier="general")
    with pytest.raises(LeaseLost):
        fenced.stop("j-0", "general")
    assert ray.calls == ["submit j-0", "stop j-0"]
