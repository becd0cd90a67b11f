"""The service's pricing worker SIGKILLed in the middle of a burst of reports: the service goes on answering
(pricing in process until the pool has started a new worker), what it acknowledged is stored, what it could not
price is refused with a retryable 503, and the agents' spools deliver every report once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from tests.integration.faults.harness import Burst, FaultAgent, assert_delivered_once, drain_and_stop, tear_down
from tests.integration.service.helpers import create_token
from tests.servers import wait_for
from tests.service import ServiceProcess

AGENTS = 2
LAST_SUCCESS = "suanli_agent_last_push_success_timestamp_seconds"


def pricing_workers(service: ServiceProcess) -> list[int]:
    """Process ids of the service's pricing workers (its children running ``api.ingest.pool``)."""
    assert service.proc is not None
    return [
        child.pid
        for child in psutil.Process(service.proc.pid).children()
        if "api.ingest.pool" in " ".join(child.cmdline())
    ]


def test_a_killed_pricing_worker_is_replaced_and_loses_no_acknowledged_report(tmp_path: Path) -> None:
    """Two real agents and four threads POSTing as fast as the service answers; the service's one pricing worker
    is SIGKILLed mid-burst.  The service keeps acknowledging reports, starts a new worker process, and afterwards
    every acknowledged report is stored once, every refusal is a 503 with Retry-After, and each agent's stored
    sequence numbers are 1..N with none missing and none twice."""
    url = f"sqlite:///{tmp_path / 'suanli.db'}"
    service = ServiceProcess(url, tmp_path, ingest_workers="1").start()
    agents: list[FaultAgent] = []
    burst: Burst | None = None
    try:
        (worker,) = pricing_workers(service)
        with service.client() as admin:
            tokens = [create_token(admin, "agent")["token"] for _ in range(AGENTS)]
        agents = [FaultAgent(tmp_path, service.url, t, f"priced-{n}").start() for n, t in enumerate(tokens)]
        burst = Burst(service.url, service.admin_token).start()
        wait_for(
            lambda: burst.acked_count() >= 50 and all(a.metric(LAST_SUCCESS) for a in agents),
            60,
            "the burst and every agent to be acknowledged",
        )

        acked_before = burst.acked_count()
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: burst.acked_count() >= acked_before + 50, 60, "reports acknowledged after the kill")
        wait_for(lambda: [p for p in pricing_workers(service) if p != worker], 30, "a new pricing worker")
        acked_again = burst.acked_count()
        wait_for(lambda: burst.acked_count() >= acked_again + 50, 60, "reports acknowledged by the new worker")
        left = drain_and_stop(burst, agents)
        assert "pricing worker 0 exited" in service.log.read_text()
    finally:
        tear_down(burst, agents, service)

    assert set(burst.answers) <= {200, 503}, f"answers other than 200 and 503: {burst.answers}"
    for status, _, retry_after, problem in burst.refusals:
        assert (status, problem.get("title")) == (503, "Pricing unavailable")
        assert retry_after is not None
    assert_delivered_once(url, burst.acked, left)
