"""The ingest route's answers match the schema the API document declares for them, and the answers that go
through a response model are written as before the models.

``POST /v1/reports`` answers a prebuilt JSON document (its model is documented, not applied per request, to keep
the hot path cheap), so nothing at run time checks it against `api.schemas.reports.ReportAccepted`: this test
does, for each outcome, against the schema in the service's own /openapi.json. The service runs in process
(Starlette's test client runs its lifespan) on a real SQLite file, pricing in its own process.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from pydantic_core import to_json

from api.app import create_app
from api.schemas.reports import ReportAccepted
from api.settings import Settings
from census_agent.models import Report
from census_agent.report import ComputeModel, build_report, inventory_from_document
from tests.integration.service.helpers import host_inventory

PLANNED = Path(__file__).resolve().parents[2] / "fixtures" / "inventories" / "dgx-h100-planned.json"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    """The service in process on a fresh SQLite file, with the admin token."""
    token_file = tmp_path / "admin.token"
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'suanli.db'}", admin_token_file=token_file, ingest_workers=0
    )
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as test_client:
        test_client.headers["Authorization"] = f"Bearer {token_file.read_text().strip()}"
        yield test_client


def _report(sequence: int, generated_at: datetime, node_id: str = "openapi-node") -> Report:
    inventory = inventory_from_document(PLANNED.read_text())
    host = inventory.host.model_copy(update={"node_id": node_id, "node_id_source": "override"})
    return build_report(
        inventory.model_copy(update={"host": host}),
        ComputeModel(),
        report_id=uuid.uuid4(),
        sequence=sequence,
        generated_at=generated_at,
    )


def _declared(document: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    """The JSON schema of one answer, with the document's components so that its $refs resolve."""
    schema = document["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    return {**schema, "components": document["components"]}


def test_every_ingest_outcome_answers_the_documented_report_accepted(client: TestClient) -> None:
    """A new report (stored), its replay (duplicate) and an older one (stored-as-history) each answer a body that
    validates against the 200 schema /openapi.json declares for POST /v1/reports, and `ReportAccepted` reads it
    back to the same JSON (the document and the model agree on every key, in order)."""
    schema = _declared(client.get("/openapi.json").json(), "/v1/reports", "post", "200")
    now = datetime.now(tz=UTC)
    newer, older = _report(2, now - timedelta(seconds=1)), _report(1, now - timedelta(seconds=2))
    outcomes = []
    for report in (newer, newer, older):
        response = client.post(
            "/v1/reports", content=report.model_dump_json(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        jsonschema.validate(response.json(), schema)
        assert ReportAccepted.model_validate_json(response.content).model_dump_json() == response.text
        outcomes.append(response.json()["outcome"])
    assert outcomes == ["stored", "duplicate", "stored-as-history"]


def test_the_report_schema_refuses_an_answer_missing_a_field(client: TestClient) -> None:
    """The declared schema is strict enough to catch a drifting answer: without ``peak_flops``, or with a key it
    does not name, a body is invalid."""
    schema = _declared(client.get("/openapi.json").json(), "/v1/reports", "post", "200")
    good = {
        "report_id": str(uuid.uuid4()),
        "node_id": "n",
        "outcome": "stored",
        "tier": "ai",
        "peak_flops": {"fp64": 1.0, "fp32": 2.0, "fp16": 3.0, "int8": 4.0},
    }
    jsonschema.validate(good, schema)
    for bad in ({k: v for k, v in good.items() if k != "peak_flops"}, {**good, "extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


def test_answers_through_a_response_model_write_small_floats_as_pydantic_always_did(client: TestClient) -> None:
    """A small Xeon beside two DGXs makes the general tier's share of the fp16 total tiny; the census writes it as
    pydantic's JSON serialiser does (``0.0000...``), as it did when the route's model was ``dict[str, Any]``,
    not as ``json.dumps`` would (``...e-05``)."""
    now = datetime.now(tz=UTC)
    small = host_inventory("xeon-e5-2692v2-ivybridge", "openapi-small", region="440106")
    for report in (
        _report(1, now),
        _report(1, now, "openapi-node-2"),
        build_report(small, ComputeModel(), report_id=uuid.uuid4(), sequence=1, generated_at=now),
    ):
        response = client.post(
            "/v1/reports", content=report.model_dump_json(), headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.text
    response = client.get("/v1/census")
    share = next(t for t in response.json()["by_tier"] if t["tier"] == "general")["share_by_precision"]["fp16"]
    assert 0 < share < 1e-4
    assert f'"fp16":{to_json(share).decode()}' in response.text
    assert "e-05" not in response.text
