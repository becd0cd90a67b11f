"""The Grafana dashboard (deploy/grafana/suanli.json): valid JSON, the data source a template variable used by every
panel, and every metric its queries name really exposed, by the census service's /metrics (its application
running in the test process) and by the agent's exporter (its registry, built from census_agent.metrics); no list
of names is written down here."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client import generate_latest

from census_agent.agent import Agent
from census_agent.config import AgentConfig
from census_agent.metrics import registry_for
from census_agent.spool import Spool
from tests.deploy.helm import ROOT
from tests.inprocess import AppService

DASHBOARD = ROOT / "deploy" / "grafana" / "suanli.json"
# PromQL words that look like metric names: functions are followed by "(", so only these need naming.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
    "info": ("_info",),
    "gauge": ("",),
    "untyped": ("",),
}


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but rows (and the panels inside collapsed rows)."""
    found = []
    for panel in doc["panels"]:
        if panel["type"] == "row":
            found += panel.get("panels", [])
        else:
            found.append(panel)
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: label matchers, ranges, strings, grouping clauses and
    function calls taken out, what is left that looks like a name is a metric."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*(?!\s*\()\b", text))
    functions = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", text))
    return {n for n in names - functions - PROMQL_WORDS if not n.startswith("$")}


def exposed(exposition: str) -> set[str]:
    """Every sample name an exposition can carry, from its # TYPE lines (so families with no sample yet count)."""
    names = set()
    for match in re.finditer(r"^# TYPE (\S+) (\S+)$", exposition, re.MULTILINE):
        family, kind = match.groups()
        base = family.removesuffix("_total") if kind == "counter" else family
        names |= {base + suffix for suffix in SUFFIXES[kind]}
    return names


@pytest.fixture(scope="module")
def service_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    workdir = tmp_path_factory.mktemp("grafana-service")
    service = AppService(f"sqlite:///{workdir / 'suanli.db'}", workdir).start()
    try:
        with service.client() as client:
            client.get("/v1/census")  # one request, so the latency histogram has a child
            response = client.get("/metrics")
        response.raise_for_status()
        return exposed(response.text)
    finally:
        service.stop()


@pytest.fixture(scope="module")
def agent_metrics(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    spool_dir = tmp_path_factory.mktemp("grafana-agent") / "spool"
    config = AgentConfig(spool_dir=spool_dir)
    spool = Spool(spool_dir, max_reports=config.spool_max_reports, max_bytes=config.spool_max_bytes)
    agent = Agent(config, spool=spool, pusher=None, nvml=None)
    return exposed(generate_latest(registry_for(agent)).decode())


def test_dashboard_is_valid_json_with_a_prometheus_datasource_variable() -> None:
    """The file parses, has a uid and a title, and declares a template variable of type datasource (prometheus)."""
    doc = dashboard()
    assert doc["uid"]
    assert doc["title"]
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"


def test_every_panel_and_query_uses_the_datasource_variable() -> None:
    """No panel or query is tied to one Prometheus: each names ${datasource}, and each has at least one query."""
    wanted = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(dashboard()):
        assert panel["datasource"] == wanted, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == wanted, panel["title"]


def test_dashboard_covers_census_ingest_latency_queue_outcomes_and_agents() -> None:
    """The panels the issues ask for are there: census by tier, nodes, ingest rate, p99 latency, queue depth per
    tier, job outcomes, the agents' spool, and the utilisation row (layers, utilisation, power, unpriced)."""
    exprs = " ".join(t["expr"] for p in panels(dashboard()) for t in p["targets"])
    for needle in (
        "suanli_census_peak_flops",
        "suanli_census_nodes",
        "suanli_ingest_reports_total",
        "histogram_quantile(0.99",
        'suanli_jobs{state="queued"}',
        "suanli_jobs_finished_total",
        "suanli_agent_spool_reports",
        "suanli_agent_spool_bytes",
        "suanli_utilisation_headline_flops",
        "suanli_utilisation_ratio",
        "suanli_power_watts",
        "suanli_census_unpriced_accelerators",
    ):
        assert needle in exprs


def test_metric_name_extraction_reads_promql() -> None:
    """The helper that reads metric names out of PromQL skips labels, grouping, functions and ranges."""
    expr = 'histogram_quantile(0.99, sum by (le, route) (rate(x_bucket{route!="/"}[5m]))) / on (a) y or z > 0'
    assert metric_names(expr) == {"x_bucket", "y", "z"}


def test_every_metric_in_the_dashboard_is_exposed(service_metrics: set[str], agent_metrics: set[str]) -> None:
    """Each metric a query names is exposed by the running service's /metrics or by the agent's exporter."""
    assert "suanli_census_peak_flops" in service_metrics
    assert "suanli_agent_spool_reports" in agent_metrics
    real = service_metrics | agent_metrics
    for panel in panels(dashboard()):
        for target in panel["targets"]:
            missing = metric_names(target["expr"]) - real
            assert not missing, f"{panel['title']}: {sorted(missing)} not exposed"
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            (metric,) = re.findall(r"label_values\((\w+),", variable["definition"])
            assert metric in real, f"variable {variable['name']}: {metric} not exposed"
