"""The published report contract stays equal to the model and rejects what the model rejects."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from census_agent.report import ComputeModel, build_report, inventory_from_document
from census_agent.schema import PUBLISHED_SCHEMA, report_json_schema

FIXTURES = Path(__file__).parent.parent / "fixtures" / "inventories"


def test_committed_schema_equals_the_model() -> None:
    """census_agent/schemas/report-v1.schema.json is regenerated whenever the model changes
    (`census-agent schema > census_agent/schemas/report-v1.schema.json`)."""
    assert json.loads(PUBLISHED_SCHEMA.read_text()) == report_json_schema()


def test_schema_is_valid_draft_2020_12() -> None:
    """The schema itself is a valid JSON Schema document."""
    jsonschema.Draft202012Validator.check_schema(report_json_schema())


def _valid_document() -> dict[str, Any]:
    inventory = inventory_from_document((FIXTURES / "dgx-h100-planned.json").read_text())
    report = build_report(
        inventory, ComputeModel(), report_id=uuid.UUID(int=1), sequence=1, generated_at=datetime.now(tz=UTC)
    )
    document: dict[str, Any] = json.loads(report.model_dump_json())
    return document


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("schema_version",), 2),
        (("inventory", "cpu", "physical_cores"), -1),
        (("peaks", "figures", "fp64", "flops"), 1e30),
        (("inventory", "labels", "region"), "not-a-code"),
        (("inventory", "cpu", "surprise"), 1),
    ],
)
def test_schema_rejects_unknown_versions_absurd_values_and_unknown_fields(path: tuple[str, ...], value: Any) -> None:
    """A real report passes; the same report with an unknown schema version, negative cores, 10^30 FLOPS, a
    malformed region or an unknown field fails the published schema."""
    validator = jsonschema.Draft202012Validator(report_json_schema())
    document = _valid_document()
    assert validator.is_valid(document)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert not validator.is_valid(document)
