"""The agent's collect-spool-push cycle against a real HTTP server on 127.0.0.1 (in-process agent)."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from census_agent.agent import Agent
from census_agent.config import AgentConfig
from census_agent.push import Pusher
from census_agent.spool import Spool
from tests.fakes import FakeNvml, h100_node
from tests.servers import ReportSink

TOKEN = "agent-token-for-tests"


@pytest.fixture
def sink() -> Iterator[ReportSink]:
    server = ReportSink(token=TOKEN).start()
    yield server
    server.stop()


class Clock:
    """A hand-moved clock, so inventory refreshes happen when the test says."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _agent(tmp_path: Path, sink: ReportSink, *, nvml: FakeNvml | None = None, clock: Clock | None = None) -> Agent:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    config = AgentConfig(server=sink.url, token_file=token_file, spool_dir=tmp_path / "spool", interval_seconds=1)
    spool = Spool(config.spool_dir, max_reports=config.spool_max_reports, max_bytes=config.spool_max_bytes)
    pusher = Pusher(sink.url, token_file, ca_file=None, timeout=5)
    return Agent(config, spool=spool, pusher=pusher, nvml=nvml, clock=clock or Clock(), rng=random.Random(1))


def test_reports_reach_the_server_in_order_with_the_bearer_token(tmp_path: Path, sink: ReportSink) -> None:
    """Three cycles give three stored reports, in sequence order, each sent with the token from the file."""
    agent = _agent(tmp_path, sink)
    for _ in range(3):
        agent.collect_once()
        assert agent.drain()
    assert sink.sequences() == [1, 2, 3]
    assert all(h["Authorization"] == f"Bearer {TOKEN}" for h in sink.headers_seen)
    assert agent.spool.depth == 0
    assert agent.state.last_success_unixtime is not None


def test_server_down_then_back_delivers_everything_once_in_order(tmp_path: Path, sink: ReportSink) -> None:
    """Reports made while the server is down wait in the spool and are replayed in order, none twice."""
    agent = _agent(tmp_path, sink)
    agent.collect_once()
    assert agent.drain()
    sink.stop()
    for _ in range(5):
        agent.collect_once()
        assert not agent.drain()
    assert agent.spool.depth == 5
    assert agent.state.consecutive_failures == 5
    sink.start()
    assert agent.drain()
    assert sink.sequences() == [1, 2, 3, 4, 5, 6]
    assert sink.receipts == 6
    assert agent.state.consecutive_failures == 0


def test_report_refused_as_invalid_is_set_aside_and_the_queue_moves_on(tmp_path: Path, sink: ReportSink) -> None:
    """A 422 moves the report to rejected/ and the next report is still delivered."""
    agent = _agent(tmp_path, sink)
    agent.collect_once()
    sink.status_override = 422
    assert agent.drain()
    sink.status_override = None
    agent.collect_once()
    assert agent.drain()
    assert sink.sequences() == [2]
    assert agent.spool.rejected_total == 1
    assert list((tmp_path / "spool" / "rejected").glob("*.json"))


@pytest.mark.parametrize("status", [401, 403, 429, 500, 503])
def test_auth_failures_and_server_errors_keep_the_report_for_later(
    tmp_path: Path, sink: ReportSink, status: int
) -> None:
    """401/403/429/5xx are not the report's fault: it stays spooled and is delivered once the server accepts."""
    agent = _agent(tmp_path, sink)
    agent.collect_once()
    sink.status_override = status
    assert not agent.drain()
    assert agent.spool.depth == 1
    sink.status_override = None
    assert agent.drain()
    assert sink.sequences() == [1]


def test_wrong_token_is_refused_and_kept(tmp_path: Path, sink: ReportSink) -> None:
    """With a token the server does not know, nothing is stored and the report is kept; a fixed token file
    is picked up without a restart."""
    agent = _agent(tmp_path, sink)
    (tmp_path / "token").write_text("wrong-token")
    agent.collect_once()
    assert not agent.drain()
    assert sink.received == []
    (tmp_path / "token").write_text(TOKEN)
    assert agent.drain()
    assert sink.sequences() == [1]


def test_spool_write_failure_sends_the_report_directly(tmp_path: Path, sink: ReportSink) -> None:
    """When the spool cannot be written, the report is still pushed and the error is counted."""
    agent = _agent(tmp_path, sink)
    next_seq = agent.spool._last_sequence + 1
    (tmp_path / "spool" / f"{next_seq:020d}.json").mkdir()  # the rename onto it fails, like a full disk
    assert agent.collect_once() is None
    assert agent.state.spool_write_errors_total == 1
    assert sink.sequences() == [next_seq]


def test_full_inventory_is_collected_at_start_and_when_due_only(
    tmp_path: Path, sink: ReportSink, caplog: pytest.LogCaptureFixture
) -> None:
    """GPUs are scanned on the first report and after inventory_refresh_seconds, not on every cycle (a scan is
    the one log line it writes; NVML's usage readings between scans are no scan)."""
    clock = Clock()
    nvml = h100_node()
    agent = _agent(tmp_path, sink, nvml=nvml, clock=clock)

    def scans() -> int:
        return sum(1 for r in caplog.records if r.getMessage().startswith("inventory collected"))

    with caplog.at_level(logging.INFO, logger="census_agent.agent"):
        agent.collect_once()
        clock.now += 60
        agent.collect_once()
        assert scans() == 1
        clock.now += agent.config.inventory_refresh_seconds
        agent.collect_once()
        assert scans() == 2
        agent.request_refresh()
        agent.collect_once()
        assert scans() == 3


def test_report_document_is_the_versioned_contract(tmp_path: Path, sink: ReportSink) -> None:
    """What reaches the server carries schema version 1, a unique report id and the node's peaks and tier."""
    agent = _agent(tmp_path, sink, nvml=h100_node())
    agent.collect_once()
    agent.collect_once()
    agent.drain()
    first, second = sink.received
    assert first["schema_version"] == 1
    assert first["report_id"] != second["report_id"]
    assert first["tier"]["tier"] == "ai"
    assert len(first["inventory"]["accelerators"]) == 8
    assert set(first["peaks"]["figures"]) == {"fp64", "fp32", "fp16", "int8"}
    assert json.dumps(first)  # plain JSON all the way down


def test_a_cycle_that_cannot_read_the_machine_is_counted_and_the_loop_goes_on(tmp_path: Path, sink: ReportSink) -> None:
    """With no /proc/cpuinfo under the root, each cycle fails, is counted and logged, and the agent keeps
    running until asked to stop."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    config = AgentConfig(
        server=sink.url,
        token_file=token_file,
        spool_dir=tmp_path / "spool",
        interval_seconds=1,
        jitter=0.0,
        root=tmp_path,
    )
    spool = Spool(config.spool_dir, max_reports=10, max_bytes=1 << 20)
    agent = Agent(config, spool=spool, pusher=Pusher(sink.url, token_file, ca_file=None, timeout=5), nvml=None)
    thread = threading.Thread(target=agent.run)
    thread.start()
    deadline = time.monotonic() + 15
    while agent.state.collect_errors_total < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    agent.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert agent.state.collect_errors_total >= 2
    assert sink.received == []
