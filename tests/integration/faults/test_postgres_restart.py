"""PostgreSQL stopped and started again under load: the service answers 503 (never 500) while it is down,
recovers by itself when it is back, and loses no write it acknowledged."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.faults.harness import Burst, FaultAgent, sequences_of, stored_reports
from tests.integration.service.helpers import create_token
from tests.servers import wait_for
from tests.service import PostgresCluster, ServiceProcess


def _is_503_problem(response: httpx.Response) -> bool:
    return (
        response.status_code == 503
        and response.headers["content-type"] == "application/problem+json"
        and response.headers.get("retry-after", "").isdigit()
        and response.json()["title"] == "Database unavailable"
    )


def test_postgres_restart_under_load_answers_503_then_recovers_without_losing_acknowledged_reports(
    tmp_path: Path, private_postgres: PostgresCluster
) -> None:
    """A real agent and four threads report to a service on PostgreSQL; its server is stopped (`pg_ctl stop -m
    fast`) and started again.  While it is down, reports, node reads and a token the service has not seen yet all
    get 503 problem+json with Retry-After, and /readyz says 503; afterwards the same service process (not
    restarted) is ready and stores reports again, no request was ever answered 500, every acknowledged report is
    stored, and the agent's spool delivered everything it made, in order."""
    url = private_postgres.create_database()
    service = ServiceProcess(url, tmp_path).start()
    agent: FaultAgent | None = None
    burst: Burst | None = None
    try:
        with service.client() as admin:
            agent_token = create_token(admin, "agent")["token"]
            planner_token = create_token(admin, "planner")["token"]  # not used before the outage: not cached
        agent = FaultAgent(tmp_path, service.url, agent_token, "pg-restart-agent").start()
        burst = Burst(service.url, service.admin_token).start()
        wait_for(
            lambda: burst.acked_count() >= 50 and agent.metric("suanli_agent_last_push_success_timestamp_seconds"),
            60,
            "the burst and the agent to be acknowledged",
        )
        assert service.proc is not None
        pid = service.proc.pid

        private_postgres.stop_server("fast")
        refused_before = len(burst.refusals)
        wait_for(lambda: len(burst.refusals) >= refused_before + 10, 30, "reports refused while PostgreSQL is down")
        with service.client() as admin, service.client(planner_token) as planner:
            readyz = admin.get("/readyz")
            node = admin.get("/v1/nodes/pg-restart-agent")
            census = planner.get("/v1/census")
        wait_for(agent.spooled, 30, "the agent to keep a report in its spool")
        acked_during = burst.acked_count()

        private_postgres.start_server()
        wait_for(lambda: httpx.get(f"{service.url}/readyz", timeout=5).status_code == 200, 60, "/readyz to recover")
        wait_for(lambda: burst.acked_count() >= acked_during + 50, 60, "reports to be acknowledged again")
        burst.stop()
        wait_for(lambda: not agent.spooled(), 60, "the agent's spool to drain")
        left = agent.spooled()
        assert agent.stop() == 0
        assert service.proc.pid == pid
        assert service.proc.poll() is None, "the service died"
    finally:
        if burst is not None:
            burst.stop()
        if agent is not None:
            agent.kill()
        service.stop()

    assert readyz.status_code == 503
    assert readyz.json()["status"] == "unavailable"
    assert _is_503_problem(node), node.text
    assert _is_503_problem(census), census.text
    assert set(burst.answers) == {200, 503}, burst.answers
    for status, content_type, retry_after, problem in burst.refusals:
        assert (status, content_type, problem["title"]) == (503, "application/problem+json", "Database unavailable")
        assert retry_after is not None
        assert retry_after.isdigit()
    rows = stored_reports(url)
    ids = [r.report_id for r in rows]
    assert len(ids) == len(set(ids))
    missing = set(burst.acked) - set(ids)
    assert not missing, f"{len(missing)} acknowledged report(s) lost"
    stored = sequences_of(rows, agent.node_id)
    made = set(stored) | set(left)
    assert stored == sorted(set(stored))
    assert made == set(range(1, max(made) + 1))
