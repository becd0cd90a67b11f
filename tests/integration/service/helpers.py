"""Shared helpers for the service tests: reports built from the fixtures, a module-wide service (the
application in process, or a real uvicorn), polling, and views of what the service stores (to check that a
refused request stored nothing)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select

from api.db.tables import MEASURE_COLUMNS, nodes, rollups
from census_agent.collectors.inventory import collect_inventory
from census_agent.models import Labels, NodeInventory, Report
from census_agent.report import ComputeModel, build_report, inventory_from_document
from tests.inprocess import AppService
from tests.service import PostgresCluster, Service, ServiceProcess

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
HOSTS = FIXTURES / "hosts"
PLANNED_DGX = FIXTURES / "inventories" / "dgx-h100-planned.json"
MODEL = ComputeModel()
ROLES = ("admin", "operator", "planner", "user", "agent", "enrol")
# GET /v1/nodes/{id} summary field of each census precision.
NODE_FIELD = {"fp64": "fp64_flops", "fp32": "fp32_flops", "fp16": "fp16_flops", "int8": "int8_ops"}
COUNTS = ("physical_cores", "threads", "accelerators", "memory_bytes")


def clean_env() -> dict[str, str]:
    """This process's environment without any SUANLI_ setting (so children read only what a test gives)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}


def module_database(request: pytest.FixtureRequest, workdir: Path) -> str:
    """A fresh database of the backend named by `request.param` ("sqlite" or "postgresql")."""
    if request.param == "sqlite":
        return f"sqlite:///{workdir / 'suanli.db'}"
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.create_database()


def start_module_service(request: pytest.FixtureRequest, workdir: Path, **settings: str) -> ServiceProcess:
    """A service under uvicorn on a fresh database of the backend named by `request.param`."""
    return ServiceProcess(module_database(request, workdir), workdir, **settings).start()


def start_module_app(request: pytest.FixtureRequest, workdir: Path, **settings: str) -> AppService:
    """The service's application in process on a fresh database of the backend named by `request.param`."""
    return AppService(module_database(request, workdir), workdir, **settings).start()


def module_service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceProcess]:
    """Body of a module-scoped fixture: one service under uvicorn per backend shared by the module's tests (each
    test uses its own node ids and checks changes relative to what it saw first)."""
    process = start_module_service(request, tmp_path_factory.mktemp(f"service-{request.param}"))
    yield process
    process.stop()


def module_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppService]:
    """Body of a module-scoped fixture: the application in process per backend, shared by the module's tests
    (each test uses its own node ids and tokens and checks changes relative to what it saw first)."""
    app = start_module_app(request, tmp_path_factory.mktemp(f"app-{request.param}"))
    yield app
    app.stop()


def backend(service: Service) -> str:
    """``sqlite`` or ``postgresql``."""
    return "sqlite" if service.database_url.startswith("sqlite") else "postgresql"


# --- reports -------------------------------------------------------------------------------------------------


def planned_inventory(
    node_id: str, *, region: str | None = "440112", organisation: str = "planning-office"
) -> NodeInventory:
    """The planned DGX H100 of tests/fixtures/inventories with its own node id, region and organisation."""
    inventory = inventory_from_document(PLANNED_DGX.read_text(encoding="utf-8"))
    host = inventory.host.model_copy(
        update={"node_id": node_id, "hostname": f"{node_id}.example", "node_id_source": "override"}
    )
    labels = inventory.labels.model_copy(update={"region": region, "organisation": organisation})
    return inventory.model_copy(update={"host": host, "labels": labels})


def host_inventory(host: str, node_id: str, *, region: str | None) -> NodeInventory:
    """The inventory the agent collects from the fixture tree tests/fixtures/hosts/`host` (no NVML)."""
    inventory, _ = collect_inventory(
        HOSTS / host, labels=Labels(region=region), declared_accelerators=[], node_id=node_id, nvml=None
    )
    return inventory


def make_report(
    inventory: NodeInventory,
    *,
    sequence: int = 1,
    generated_at: datetime | None = None,
    report_id: uuid.UUID | None = None,
) -> Report:
    """A report of `inventory` as the agent builds it."""
    return build_report(
        inventory,
        MODEL,
        report_id=report_id or uuid.uuid4(),
        sequence=sequence,
        generated_at=generated_at or datetime.now(tz=UTC),
    )


def document(report: Report) -> dict[str, Any]:
    """The report as the JSON object the agent sends (to be doctored by a test)."""
    result: dict[str, Any] = json.loads(report.model_dump_json())
    return result


def post_report(client: httpx.Client, report: Report | dict[str, Any] | bytes) -> httpx.Response:
    """POST /v1/reports with `report` (a model, a JSON object, or raw bytes sent as they are)."""
    if isinstance(report, Report):
        body = report.model_dump_json().encode()
    elif isinstance(report, dict):
        body = json.dumps(report).encode()
    else:
        body = report
    return client.post("/v1/reports", content=body, headers={"Content-Type": "application/json"})


def stored(client: httpx.Client, report: Report | dict[str, Any]) -> dict[str, Any]:
    """POST a report that must be accepted; returns the answer."""
    response = post_report(client, report)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


# --- what the service holds ----------------------------------------------------------------------------------


def census(client: httpx.Client, **params: str) -> dict[str, Any]:
    """GET /v1/census without what changes with the clock alone (so two readings of an unchanged census compare
    equal): its ``as_of`` stamp, the utilisation window (it ends now), and what is integrated up to now over it
    (hours, their ratios, energy) or counted from now (the queue's wait so far)."""
    response = client.get("/v1/census", params=params)
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    doc.pop("as_of")
    doc.pop("window")
    for section in (doc, *doc["by_tier"], *doc["by_region"]):
        for name in ("capacity_hours", "allocated_hours", "consumed_hours", "utilisation", "allocation"):
            section["utilisation"].pop(name)
        for name in ("energy_kwh", "facility_energy_kwh"):
            section["energy"].pop(name)
        section.get("demand", {}).pop("mean_queued_wait_seconds", None)
    return doc


def all_nodes(client: httpx.Client) -> list[dict[str, Any]]:
    """Every node summary of GET /v1/nodes, following the pages."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 1000, **({"after": after} if after else {})}
        response = client.get("/v1/nodes", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        items += page["items"]
        after = page["next_after"]
        if after is None:
            return items


def node(client: httpx.Client, node_id: str) -> dict[str, Any] | None:
    """GET /v1/nodes/{id}, or None when the service answers 404."""
    response = client.get(f"/v1/nodes/{node_id}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    detail: dict[str, Any] = response.json()
    return detail


def holdings(client: httpx.Client) -> dict[str, Any]:
    """The census and every node: equal before and after a request that must store nothing."""
    return {"census": census(client), "census_all": census(client, include="all"), "nodes": all_nodes(client)}


def create_token(client: httpx.Client, role: str, name: str | None = None, **extra: Any) -> dict[str, Any]:
    """POST /v1/tokens (admin client); returns the answer holding the plaintext token. A user token is given
    organisation ``default`` unless `extra` names its organisations (a user token needs one)."""
    if role == "user":
        extra.setdefault("organisations", ["default"])
    response = client.post(
        "/v1/tokens", json={"name": name or f"test {role} {uuid.uuid4().hex[:8]}", "role": role, **extra}
    )
    assert response.status_code == 201, response.text
    made: dict[str, Any] = response.json()
    return made


def token_row(client: httpx.Client, token_id: int) -> dict[str, Any]:
    """The GET /v1/tokens entry of one token."""
    response = client.get("/v1/tokens")
    assert response.status_code == 200, response.text
    return next(t for t in response.json() if t["id"] == token_id)


# --- rollups against the nodes they sum ----------------------------------------------------------------------


def node_sums(engine: Engine) -> dict[tuple[str, str, str], dict[str, float]]:
    """Every measure summed over the nodes table per (tier, region, status)."""
    sums = [func.count().label("nodes"), *[func.sum(nodes.c[c]).label(c) for c in MEASURE_COLUMNS]]
    with engine.connect() as conn:
        rows = conn.execute(
            select(nodes.c.tier, func.coalesce(nodes.c.region_code, ""), nodes.c.status, *sums).group_by(
                nodes.c.tier, nodes.c.region_code, nodes.c.status
            )
        ).all()
    return {(r[0], r[1], r[2]): {c: float(r[3 + i]) for i, c in enumerate(("nodes", *MEASURE_COLUMNS))} for r in rows}


def rollup_cells(engine: Engine) -> dict[tuple[str, str, str], dict[str, float]]:
    """Every non-empty rollup cell."""
    columns = ("nodes", *MEASURE_COLUMNS)
    with engine.connect() as conn:
        rows = conn.execute(select(rollups)).mappings().all()
    return {(r["tier"], r["region_code"], r["status"]): {c: float(r[c]) for c in columns} for r in rows if r["nodes"]}


def assert_rollups_are_node_sums(engine: Engine) -> None:
    """Every rollup cell equals the sums over the nodes table of every measure (and no other cell is non-empty)."""
    expected, actual = node_sums(engine), rollup_cells(engine)
    assert set(actual) == set(expected)
    for key, values in expected.items():
        for column, value in values.items():
            assert actual[key][column] == pytest.approx(value, rel=1e-9, abs=1e-6), (key, column)
