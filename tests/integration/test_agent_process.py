"""The real `census-agent run` process against a real HTTP server on 127.0.0.1, stopped and restarted
mid-run, and its Prometheus exporter checked by the real `promtool`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ReportSink, free_port, wait_for

TOKEN = "process-test-token"


class AgentProcess:
    """`census-agent run` as a child process with its own spool and metrics port."""

    def __init__(self, tmp_path: Path, server: str) -> None:
        self.spool = tmp_path / "spool"
        self.token_file = tmp_path / "token"
        self.token_file.write_text(TOKEN)
        self.metrics_port = free_port()
        self.server = server
        self.log = tmp_path / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
        env["SUANLI_AGENT_REGION"] = "440106"
        cmd = [
            sys.executable,
            "-m",
            "census_agent.cli",
            "run",
            "--server",
            self.server,
            "--token-file",
            str(self.token_file),
            "--interval",
            "1",
            "--spool-dir",
            str(self.spool),
            "--metrics-port",
            str(self.metrics_port),
            "--metrics-host",
            "127.0.0.1",
            "--no-nvml",
            "--organisation",
            "test-org",
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, env=env)
        return self

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            body: bytes = response.read()
        return body.decode()

    def spooled(self) -> list[int]:
        # Only complete reports: a write in progress is a ".tmp-<sequence>.json" file (pathlib's * matches it).
        return sorted(int(p.stem) for p in self.spool.glob("*.json") if p.stem.isdigit())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)


@pytest.fixture
def sink() -> Iterator[ReportSink]:
    server = ReportSink(token=TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def agent(tmp_path: Path, sink: ReportSink) -> Iterator[AgentProcess]:
    process = AgentProcess(tmp_path, sink.url).start()
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


def assert_in_order_without_gaps_or_duplicates(sequences: list[int]) -> None:
    assert sequences == sorted(set(sequences)), f"out of order or duplicated: {sequences}"
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences))), f"gap in {sequences}"


def test_server_outage_mid_run_loses_nothing_duplicates_nothing_keeps_order(
    agent: AgentProcess, sink: ReportSink
) -> None:
    """Stop the server for a few seconds while the agent reports every second, then restart it: every report
    arrives exactly once, in order, and the spool empties."""
    wait_for(lambda: len(sink.received) >= 2, 30, "the first reports")
    sink.stop()
    stopped_at = len(sink.received)
    wait_for(lambda: len(agent.spooled()) >= 3, 20, "reports to pile up in the spool")
    sink.start()
    wait_for(lambda: not agent.spooled() and len(sink.received) >= stopped_at + 3, 40, "the spool to drain")
    assert agent.stop() == 0
    sequences = sink.sequences()
    assert sequences[0] == 1
    assert_in_order_without_gaps_or_duplicates(sequences)
    assert sink.receipts == len(sequences)
    assert sink.received[0]["inventory"]["labels"] == {
        "region": "440106",
        "organisation": "test-org",
        "site": None,
        "tier": None,
        "declared_peaks": {"fp64": None, "fp32": None, "fp16": None, "int8": None},
        "cpu_fp64_flops_per_cycle": None,
        "cpu_base_clock_hz": None,
        "power_watts": None,
        "site_pue": None,
    }


def test_agent_killed_while_server_is_down_delivers_its_spool_after_restart(
    tmp_path: Path, agent: AgentProcess, sink: ReportSink
) -> None:
    """SIGKILL the agent while reports wait in its spool; a new agent on the same spool delivers them, and
    every later report, in order and once."""
    wait_for(lambda: len(sink.received) >= 1, 30, "the first report")
    sink.stop()
    wait_for(lambda: len(agent.spooled()) >= 2, 20, "reports to pile up in the spool")
    agent.stop(signal.SIGKILL)
    waiting = agent.spooled()
    sink.start()
    agent.start()
    wait_for(lambda: set(waiting) <= set(sink.sequences()), 40, "the dead agent's spool to be delivered")
    wait_for(lambda: len(sink.sequences()) >= len(waiting) + 3, 30, "new reports after the restart")
    assert agent.stop() == 0
    sequences = sink.sequences()
    assert sequences == sorted(set(sequences))
    assert set(waiting) <= set(sequences)


def test_exporter_output_passes_promtool_and_shows_peaks_and_health(agent: AgentProcess, sink: ReportSink) -> None:
    """/metrics passes `promtool check metrics` and carries the node's peaks per precision, push health and,
    from the second cycle on, what the node uses (busy cores, memory used)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed; .ci/run installs it"
    wait_for(lambda: len(sink.received) >= 2, 30, "the second report")
    wait_for(lambda: "suanli_agent_last_push_success_timestamp_seconds " in agent.metrics(), 10, "metrics")
    wait_for(lambda: "suanli_node_cpu_busy_cores " in agent.metrics(), 10, "usage metrics")
    text = agent.metrics()
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    for precision in ("fp64", "fp32", "fp16", "int8"):
        assert f'suanli_node_peak_flops{{precision="{precision}",provenance="formula"}}' in text
    assert 'region="440106"' in text
    assert "# TYPE suanli_agent_spool_reports gauge" in text
    assert "# TYPE suanli_node_memory_used_bytes gauge" in text
    last_push = next(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("suanli_agent_last_push_success_timestamp_seconds ")
    )
    assert abs(last_push - time.time()) < 60
    assert agent.stop() == 0


def test_exporter_counts_push_failures_and_spool_depth_while_server_is_down(
    agent: AgentProcess, sink: ReportSink
) -> None:
    """With the server gone, push failures rise and the spool depth grows in the exported metrics."""
    wait_for(lambda: len(sink.received) >= 1, 30, "the first report")
    sink.stop()

    def value(name: str) -> float:
        line = next(x for x in agent.metrics().splitlines() if x.startswith(name + " "))
        return float(line.split()[1])

    wait_for(lambda: value("suanli_agent_spool_reports") >= 2, 20, "spool depth to rise")
    assert value("suanli_agent_push_failures_total") >= 1
    assert value("suanli_agent_consecutive_push_failures") >= 1
    sink.start()
    assert agent.stop() == 0
