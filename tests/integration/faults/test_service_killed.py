"""The census service SIGKILLed in the middle of a burst of reports and restarted on the same port and database:
nothing it acknowledged is lost, the agents' spools deliver the rest, nothing is stored twice."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.integration.faults.harness import (
    Burst,
    FaultAgent,
    assert_delivered_once,
    drain_and_stop,
    sequences_of,
    tear_down,
)
from tests.integration.service.helpers import create_token
from tests.servers import wait_for
from tests.service import PostgresCluster, ServiceProcess

AGENTS = 3
LAST_SUCCESS = "suanli_agent_last_push_success_timestamp_seconds"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_during_a_report_burst_loses_no_acknowledged_report_and_stores_none_twice(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Three real agents (one report a second each) and four threads POSTing as fast as the service answers; the
    service is SIGKILLed mid-burst and restarted on the same port and database.  Afterwards every report the
    service acknowledged is in the reports table, every agent's spool has drained, each agent's stored sequence
    numbers are 1..N with none missing and none twice, and no report id is stored twice."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'suanli.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database()
    service = ServiceProcess(url, tmp_path).start()
    agents: list[FaultAgent] = []
    burst: Burst | None = None
    try:
        with service.client() as admin:
            tokens = [create_token(admin, "agent")["token"] for _ in range(AGENTS)]
        agents = [
            FaultAgent(tmp_path, service.url, token, f"killed-{backend}-{n}").start() for n, token in enumerate(tokens)
        ]
        burst = Burst(service.url, service.admin_token).start()
        wait_for(
            lambda: burst.acked_count() >= 50 and all(a.metric(LAST_SUCCESS) for a in agents),
            60,
            "the burst and every agent to be acknowledged",
        )

        assert service.proc is not None
        acked_before = burst.acked_count()
        service.proc.send_signal(signal.SIGKILL)
        assert service.proc.wait(timeout=30) == -signal.SIGKILL
        # While it is down each agent keeps reporting into its spool.
        wait_for(lambda: all(a.spooled() for a in agents), 30, "each agent to spool a report while the service is down")
        service.start()
        wait_for(lambda: burst.acked_count() >= acked_before + 50, 60, "the burst to be acknowledged after the restart")
        left = drain_and_stop(burst, agents)
    finally:
        tear_down(burst, agents, service)

    assert burst.no_answer > 0, "the kill did not interrupt the burst: the test proved nothing"
    assert set(burst.answers) == {200}, f"answers other than 200: {burst.answers}, {burst.refusals[:3]}"
    rows = assert_delivered_once(url, burst.acked, left)
    for agent in agents:
        stored = sequences_of(rows, agent.node_id)
        assert stored == sorted(stored), f"{agent.node_id}: delivered out of order: {stored}"
