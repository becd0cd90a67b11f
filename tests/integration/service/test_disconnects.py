"""Clients that hang up mid-request (an agent's timeout against an overloaded service) cost the service one log
line each, never a traceback: under overload, formatting a traceback per impatient client would itself eat the
time the service is short of (found by `benchmarks.load_agents` at 10,000 agents)."""

from __future__ import annotations

import socket
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.service.helpers import create_token
from tests.servers import wait_for
from tests.service import ServiceProcess


def hang_up_mid_body(service: ServiceProcess, token: str) -> None:
    """POST /v1/reports announcing 3,000 bytes, send 100, close the connection."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as conn:
        head = (
            f"POST /v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 3000\r\n\r\n"
        )
        conn.sendall(head.encode() + b'{"schema_version": 1, ' + b" " * 78)


def test_clients_that_hang_up_mid_body_get_one_log_line_each_and_the_service_carries_on(tmp_path: Path) -> None:
    """Twenty clients send half a report and hang up: the log has one line for each and no traceback, the
    request metrics count them under status 499, and the service still answers."""
    service = ServiceProcess(f"sqlite:///{tmp_path / 'suanli.db'}", tmp_path).start()
    try:
        with service.client() as admin:
            agent = create_token(admin, "agent")["token"]
            for _ in range(20):
                hang_up_mid_body(service, agent)

            def all_logged() -> bool:
                return service.log.read_text().count("closed the connection before sending") >= 20

            wait_for(all_logged, 30, "a log line per client that hung up")
            log = service.log.read_text()
            assert "Traceback" not in log
            assert "Exception in ASGI application" not in log
            metrics = admin.get("/metrics")
            assert metrics.status_code == 200
            hung_up = sum(
                sample.value
                for family in text_string_to_metric_families(metrics.text)
                for sample in family.samples
                if sample.name == "suanli_http_request_duration_seconds_count"
                and sample.labels.get("route") == "/v1/reports"
                and sample.labels.get("status") == "499"
            )
            assert hung_up == 20
            assert admin.get("/v1/census").status_code == 200
    finally:
        service.stop()
