"""The agent's consumed layer end to end: an in-process agent on a fixture host whose counters move between two
cycles (tests/fixtures/usage, figures worked out in its generate.py) builds a second report carrying usage,
exports it as Prometheus gauges, and the census service (its application in process, SQLite and PostgreSQL)
accepts the report with an agent token; usage that breaks the contract is refused with a 422 that stores
nothing.  NVML is the fake of tests/fakes.py (the hardware seam)."""

from __future__ import annotations

import copy
import json
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from census_agent.agent import Agent
from census_agent.config import AgentConfig
from census_agent.metrics import registry_for
from census_agent.models import Labels, Report
from census_agent.spool import Spool
from tests.fakes import GIB, FakeGpuUsage, h100_node
from tests.inprocess import AppService
from tests.integration.service.helpers import create_token, holdings, node, post_report

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
HOST = FIXTURES / "hosts" / "xeon-platinum-8380-2s"
READINGS = FIXTURES / "usage" / "xeon-8380-2s"
BUSY_CORES = 49.04  # tests/fixtures/usage/generate.py
MEMORY_USED = (527_773_416 - 300_000_000) * 1024
PACKAGE_WATTS = 425.0


class Clock:
    """A clock the test moves (wall and monotonic alike)."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _busy_agent(tmp_path: Path, node_id: str) -> tuple[Agent, Callable[[], None]]:
    """An agent on a copy of the Xeon 8380 host tree with 8 fake H100s, its counters at t0; the callable moves
    the machine ten seconds on (the t1 counters, the clocks)."""
    root = tmp_path / "root"
    shutil.copytree(HOST, root)
    shutil.copytree(READINGS / "t0", root, dirs_exist_ok=True)
    nvml = h100_node()
    for i, gpu in enumerate(nvml.gpus):
        nvml.usage[gpu.uuid] = FakeGpuUsage(80 + i, (40 + i) * GIB, 600_000 + i * 10_000, 700_000)
    wall, monotonic = Clock(time.time() - 60), Clock(100.0)  # the service refuses reports from the future
    config = AgentConfig(
        root=root, node_id=node_id, spool_dir=tmp_path / "spool", labels=Labels(region="440106", organisation="t")
    )
    spool = Spool(config.spool_dir, max_reports=config.spool_max_reports, max_bytes=config.spool_max_bytes)
    agent = Agent(config, spool=spool, pusher=None, nvml=nvml, clock=wall, monotonic=monotonic)

    def ten_seconds_later() -> None:
        shutil.copytree(READINGS / "t1", root, dirs_exist_ok=True)
        wall.now += 10
        monotonic.now += 10

    return agent, ten_seconds_later


def _two_reports(agent: Agent, later: Callable[[], None]) -> list[bytes]:
    agent.collect_once()
    later()
    agent.collect_once()
    documents = []
    while (entry := agent.spool.oldest()) is not None:
        documents.append(entry.read())
        agent.spool.acknowledge(entry)
    return documents


def test_second_report_carries_usage_and_the_service_accepts_both(service: AppService, tmp_path: Path) -> None:
    """The first report has no usage (no interval yet); the second has the interval's busy cores, memory used,
    each GPU's utilisation, memory and power matched to its index, and CPU-package and accelerator power.  The
    service stores both (POST /v1/reports 200 with an agent token, both in the node's recent reports)."""
    agent, later = _busy_agent(tmp_path, "usage-node-1")
    first, second = (Report.model_validate_json(d) for d in _two_reports(agent, later))
    assert first.usage is None
    usage = second.usage
    assert usage is not None
    assert usage.interval_seconds == pytest.approx(10.0)
    assert usage.cpu_busy_cores == pytest.approx(BUSY_CORES, rel=1e-12)
    assert usage.memory_used_bytes == MEMORY_USED
    assert [(u.index, u.memory_used_bytes) for u in usage.accelerators] == [(i, (40 + i) * GIB) for i in range(8)]
    assert [u.utilisation for u in usage.accelerators] == pytest.approx([(80 + i) / 100 for i in range(8)])
    assert [(p.coverage, p.source) for p in usage.power] == [("cpu-package", "rapl"), ("accelerators", "nvml")]
    assert [p.watts for p in usage.power] == pytest.approx([PACKAGE_WATTS, sum(600 + i * 10 for i in range(8))])

    with service.client() as admin:
        made = create_token(admin, "agent")
        with service.client(made["token"]) as client:
            for report in (first, second):
                response = post_report(client, report)
                assert response.status_code == 200, response.text
                assert response.json()["outcome"] == "stored"
        detail = node(admin, "usage-node-1")
    assert detail is not None
    assert sorted(r["sequence"] for r in detail["recent_reports"]) == [first.sequence, second.sequence]


def _set(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = value

    return change


BAD_USAGE = [
    ("utilisation above 1", _set("usage.accelerators.0.utilisation", 1.5), "usage.accelerators.0.utilisation"),
    ("negative busy cores", _set("usage.cpu_busy_cores", -1), "usage.cpu_busy_cores"),
    ("zero interval", _set("usage.interval_seconds", 0), "usage.interval_seconds"),
    ("absurd power", _set("usage.power.0.watts", 1e12), "usage.power.0.watts"),
    ("unknown coverage", _set("usage.power.0.coverage", "whole-site"), "usage.power.0.coverage"),
    ("unknown field", _set("usage.gpu_temperature", 80), "usage.gpu_temperature"),
    ("memory above 1 EiB", _set("usage.memory_used_bytes", 2**61), "usage.memory_used_bytes"),
]


def test_usage_that_breaks_the_contract_gets_422_and_stores_nothing(service: AppService, tmp_path: Path) -> None:
    """Only an agent token may send usage, inside the report it already sends; each figure outside the contract's
    bounds (or a field it does not know) is a 422 naming the field, and the census and nodes stay as they were."""
    agent, later = _busy_agent(tmp_path, "usage-refused")
    doc = json.loads(_two_reports(agent, later)[1])
    failures = []
    with service.client() as admin:
        made = create_token(admin, "agent")
        before = holdings(admin)
        with service.client(made["token"]) as client:
            for name, change, field in BAD_USAGE:
                bad = copy.deepcopy(doc)
                change(bad)
                bad["report_id"] = str(uuid.uuid4())
                response = post_report(client, bad)
                if response.status_code != 422 or field.split(".")[-1] not in response.text:
                    failures.append(f"{name}: {response.status_code} {response.text[:300]}")
        assert not failures, "\n".join(failures)
        assert holdings(admin) == before
        assert node(admin, "usage-refused") is None


def test_exporter_shows_the_usage_gauges_of_the_latest_report(tmp_path: Path) -> None:
    """After the second cycle the agent's /metrics carries busy cores, memory used, each GPU's utilisation,
    memory and power, and the power per coverage, with the report's values (none before it)."""
    agent, later = _busy_agent(tmp_path, "usage-metrics")
    agent.collect_once()
    text = generate_latest(registry_for(agent)).decode()
    assert "suanli_node_cpu_busy_cores" not in text
    later()
    agent.collect_once()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry_for(agent)).decode())
        for s in family.samples
    }
    assert samples[("suanli_node_cpu_busy_cores", ())] == pytest.approx(BUSY_CORES)
    assert samples[("suanli_node_memory_used_bytes", ())] == MEMORY_USED
    assert samples[("suanli_node_usage_interval_seconds", ())] == pytest.approx(10.0)
    gpu3 = (("index", "3"), ("model", "NVIDIA H100 80GB HBM3"))
    assert samples[("suanli_node_accelerator_utilisation_ratio", gpu3)] == pytest.approx(0.83)
    assert samples[("suanli_node_accelerator_memory_used_bytes", gpu3)] == 43 * GIB
    assert samples[("suanli_node_accelerator_power_watts", gpu3)] == pytest.approx(630.0)
    assert samples[("suanli_node_accelerator_power_limit_watts", gpu3)] == pytest.approx(700.0)
    cpu = (("coverage", "cpu-package"), ("source", "rapl"))
    assert samples[("suanli_node_power_watts", cpu)] == pytest.approx(PACKAGE_WATTS)
    gpus = (("coverage", "accelerators"), ("source", "nvml"))
    assert samples[("suanli_node_power_watts", gpus)] == pytest.approx(5080.0)
