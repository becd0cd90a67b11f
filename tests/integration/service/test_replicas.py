"""Several `suanli serve` processes on one PostgreSQL: exactly one holds each singleton duty; SIGKILL the leader
during a burst of job submissions and reports and another takes over within the lease's bound, losing no job
and no acknowledged report, the rollups still the sums over the nodes; a leader paused (SIGSTOP) past its lease and
resumed stands down and does not take the duty back; a token revoked on one replica is refused by another within
the revocation check's interval.

Jobs stay queued here (the scheduler's Ray address answers nothing): what is tested is which process acts on
the queue (the dispatcher records each waiting job's reason, fenced by its lease term), not Ray. Leases are short
(3 s, renewed every 0.5 s, 1 s margin: takeover within 3.5 s) to keep the wall time small.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from api.db.engine import make_engine
from api.db.tables import MEASURE_COLUMNS, jobs, nodes, rollups
from api.duties.lease import Timing
from tests.integration.faults.harness import Burst, assert_delivered_once
from tests.servers import free_port, wait_for
from tests.service import PostgresCluster, ServiceProcess

pytestmark = pytest.mark.integration

TIMING = Timing(lease_seconds=3.0, renew_seconds=0.5, margin_seconds=1.0)
CHECK_INTERVAL = 0.5  # token_check_interval_seconds
# What a busy 2-core machine adds to a bound measured from outside: the follower's thread waking late, and the
# test's own polling of /readyz. The bound itself is lease + renew (TIMING.takeover_bound).
SLACK = 2.0
ADMIN = "sl_admin_" + "r" * 40  # every replica's admin token file holds this one token


def replica(workdir: Path, database_url: str, name: str, role: str = "all") -> ServiceProcess:
    """A replica's process (not started): its own folder, log and port; the shared admin token; a scheduler whose
    Ray answers nothing (jobs wait); short leases."""
    folder = workdir / name
    folder.mkdir()
    (folder / "admin.token").write_text(ADMIN + "\n")
    config = workdir / "scheduler.toml"
    if not config.exists():
        config.write_text(f'[ray]\naddress = "http://127.0.0.1:{free_port()}"\n')
    return ServiceProcess(
        database_url,
        folder,
        serve_role=role,
        scheduler_config=str(config),
        dispatch_interval_seconds="0.3",
        lease_seconds=str(TIMING.lease_seconds),
        lease_renew_seconds=str(TIMING.renew_seconds),
        lease_margin_seconds=str(TIMING.margin_seconds),
        token_check_interval_seconds=str(CHECK_INTERVAL),
        sweep_interval_seconds="1",
        ingest_workers="0",
    )


def start_all(processes: list[ServiceProcess]) -> list[ServiceProcess]:
    """Launch every replica at once (they migrate one after the other), then wait for each."""
    for p in processes:
        p.launch()
    for p in processes:
        p.wait_ready()
    return processes


def duties(p: ServiceProcess) -> dict[str, int]:
    """The duties `p` holds now, with their terms (its /readyz)."""
    doc = httpx.get(f"{p.url}/readyz", timeout=5).json()
    held: dict[str, int] = doc["duties"]
    return held


def holders(processes: list[ServiceProcess], duty: str) -> list[ServiceProcess]:
    """The processes that say they hold `duty` now."""
    return [p for p in processes if duty in duties(p)]


def wait_for_one_holder(processes: list[ServiceProcess], duty: str, timeout: float) -> ServiceProcess:
    """Poll until exactly one of `processes` holds `duty`; return it."""
    found: list[ServiceProcess] = []

    def one() -> bool:
        found[:] = holders(processes, duty)
        return len(found) == 1

    wait_for(one, timeout, f"one holder of {duty}")
    return found[0]


def leader_gauge(p: ServiceProcess, duty: str) -> float:
    """`suanli_leader{duty}` in `p`'s /metrics."""
    text = httpx.get(f"{p.url}/metrics", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith(f'suanli_leader{{duty="{duty}"}}'))
    return float(line.rsplit(" ", 1)[1])


class Submitter(threading.Thread):
    """Submits jobs round-robin to `processes` until stopped, recording the ids acknowledged (201)."""

    def __init__(self, processes: list[ServiceProcess]) -> None:
        super().__init__(daemon=True)
        self.processes = processes
        self.acked: list[str] = []
        self.failed = 0
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        headers = {"Authorization": f"Bearer {ADMIN}"}
        while not self.halt.is_set():
            p = self.processes[n % len(self.processes)]
            n += 1
            doc = {"name": f"burst-{n}", "class": "general", "entrypoint": "true"}
            try:
                response = httpx.post(f"{p.url}/v1/jobs", json=doc, headers=headers, timeout=10)
            except httpx.HTTPError:
                self.failed += 1
                continue
            if response.status_code == 201:
                self.acked.append(response.json()["job_id"])
            else:
                self.failed += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=30)


def rollups_and_sums(database_url: str) -> tuple[dict[tuple[str, str, str], tuple[float, ...]], ...]:
    """The rollups as stored, and as summed from the nodes (cells with no node left out of both)."""
    engine = make_engine(database_url)
    try:
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
    finally:
        engine.dispose()
    return stored, summed


def stored_jobs(database_url: str) -> dict[str, tuple[str, str]]:
    """Every job's (state, reason), read straight from the database."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return {
                r.job_id: (r.state, r.reason) for r in conn.execute(select(jobs.c.job_id, jobs.c.state, jobs.c.reason))
            }
    finally:
        engine.dispose()


@pytest.fixture
def three(postgres: PostgresCluster, tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    """Two replicas of role all and one of role api on one fresh PostgreSQL database, started together."""
    url = postgres.create_database()
    processes = [replica(tmp_path, url, "r1"), replica(tmp_path, url, "r2"), replica(tmp_path, url, "r3", "api")]
    try:
        yield start_all(processes)
    finally:
        for p in processes:
            p.stop()


def test_three_replicas_elect_one_leader_and_a_killed_leader_is_replaced_within_the_bound_losing_nothing(
    three: list[ServiceProcess],
) -> None:
    """Exactly one replica holds the dispatcher, one housekeeping (the api replica none; `suanli_leader` says so).
    Reports stream to every replica and jobs are submitted to every one; the leader is SIGKILLed: the other
    replica of role all holds both duties within lease + renew seconds (a newer term) and records the waiting
    jobs' reasons; every acknowledged job and report is stored once, and the rollups equal the sums over the
    nodes."""
    api = three[2]
    leader = wait_for_one_holder(three, "dispatcher", 30)
    assert leader is not api
    assert len(holders(three, "housekeeping")) == 1  # usually the same process: each duty is elected alone
    assert duties(api) == {}
    follower = next(p for p in three[:2] if p is not leader)
    assert leader_gauge(leader, "dispatcher") == 1.0
    assert leader_gauge(follower, "dispatcher") == 0.0
    old_term = duties(leader)["dispatcher"]

    bursts = [Burst(p.url, ADMIN, threads=1).start() for p in three]
    submitter = Submitter(three)
    submitter.start()
    try:
        wait_for(lambda: len(submitter.acked) >= 5 and all(b.acked_count() for b in bursts), 60, "a burst under way")
        assert leader.proc is not None
        leader.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: "dispatcher" in duties(follower), TIMING.takeover_bound + 30, "the follower to take over")
        took = time.monotonic() - killed_at
        assert took <= TIMING.takeover_bound + SLACK, f"takeover took {took:.2f} s"
        held = duties(follower)
        assert held["dispatcher"] > old_term
        wait_for(lambda: "housekeeping" in duties(follower), TIMING.takeover_bound + SLACK, "housekeeping taken over")
        after = len(submitter.acked)
        wait_for(lambda: len(submitter.acked) >= after + 5, 60, "jobs submitted after the takeover")
    finally:
        submitter.stop()
        for b in bursts:
            b.stop()

    assert duties(api) == {}
    url = follower.database_url
    assert_delivered_once(url, [r for b in bursts for r in b.acked], {})
    stored = stored_jobs(url)
    assert len(set(submitter.acked)) == len(submitter.acked)
    missing = set(submitter.acked) - set(stored)
    assert not missing, f"{len(missing)} acknowledged job(s) lost"
    assert {state for state, _ in stored.values()} == {"queued"}
    # The new leader's dispatcher acts: every job, those submitted after the takeover too, waits with the reason it
    # recorded (the tiers have no nodes: Ray is unreachable), no longer the one given at submission.
    wait_for(
        lambda: all(reason.startswith("waits for") for _, reason in stored_jobs(url).values()),
        20,
        "the new dispatcher to record why every job waits",
    )
    stored_cells, summed = rollups_and_sums(url)
    assert stored_cells.keys() == summed.keys()
    for key, figures in summed.items():
        assert stored_cells[key] == pytest.approx(figures, rel=1e-12), key


@pytest.fixture(scope="module")
def pair(postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[ServiceProcess]]:
    """Two replicas of role all on one fresh PostgreSQL database (the first started holds the duties)."""
    workdir = tmp_path_factory.mktemp("pair")
    url = postgres.create_database()
    processes = [replica(workdir, url, "a"), replica(workdir, url, "b")]
    try:
        yield start_all(processes)
    finally:
        for p in processes:
            if p.proc is not None and p.proc.poll() is None:
                os.kill(p.proc.pid, signal.SIGCONT)  # a test that failed while it was stopped
            p.stop()


def test_a_token_revoked_on_one_replica_is_refused_by_the_other_within_the_check_interval(
    pair: list[ServiceProcess],
) -> None:
    """An operator token is used on replica B (B caches it), then revoked through replica A: A refuses it at once,
    B within the revocation check's interval (0.5 s here) plus one query."""
    a, b = pair
    with a.client() as admin:
        made = admin.post("/v1/tokens", json={"name": "ops-revoked", "role": "operator"})
        assert made.status_code == 201, made.text
    token, token_id = made.json()["token"], made.json()["id"]
    with b.client(token) as on_b, a.client(token) as on_a:
        assert on_b.get("/v1/nodes").status_code == 200
        assert on_b.get("/v1/nodes").status_code == 200  # now from B's cache
        with a.client() as admin:
            assert admin.delete(f"/v1/tokens/{token_id}").status_code == 204
        revoked_at = time.monotonic()
        assert on_a.get("/v1/nodes").status_code == 401
        wait_for(lambda: on_b.get("/v1/nodes").status_code == 401, 30, "replica B to refuse the revoked token")
        took = time.monotonic() - revoked_at
    assert took <= CHECK_INTERVAL + 1.0, f"replica B honoured the revocation after {took:.2f} s"


def test_a_leader_paused_past_its_lease_and_resumed_stands_down_and_does_not_take_the_duty_back(
    pair: list[ServiceProcess],
) -> None:
    """The dispatcher's holder is SIGSTOPped: the other replica takes the duty within the bound, under a newer
    term. Resumed (SIGCONT), the old holder says within a second that it holds nothing (by its own clock it is
    past its lease) and logs that it stood down; the new holder keeps the same term."""
    leader = wait_for_one_holder(pair, "dispatcher", 30)
    other = next(p for p in pair if p is not leader)
    old_term = duties(leader)["dispatcher"]
    assert leader.proc is not None
    os.kill(leader.proc.pid, signal.SIGSTOP)
    try:
        stopped_at = time.monotonic()
        wait_for(lambda: "dispatcher" in duties(other), TIMING.takeover_bound + 30, "the other replica to take over")
        assert time.monotonic() - stopped_at <= TIMING.takeover_bound + SLACK
        new_term = duties(other)["dispatcher"]
        assert new_term > old_term
        time.sleep(TIMING.renew_seconds * 2)
    finally:
        os.kill(leader.proc.pid, signal.SIGCONT)
    resumed_at = time.monotonic()
    wait_for(lambda: "dispatcher" not in duties(leader), 10, "the resumed replica to stand down")
    assert time.monotonic() - resumed_at <= 1.0 + SLACK
    time.sleep(TIMING.lease_seconds)  # long enough for a stale holder to renew, or to take the lease back
    assert duties(other)["dispatcher"] == new_term
    assert "dispatcher" not in duties(leader)
    assert "stood down" in leader.log.read_text()
