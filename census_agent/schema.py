"""The published contract: the JSON Schema of the report document, generated from the `Report` model.

The committed copy (``census_agent/schemas/report-v1.schema.json``) is what other implementations read; a
test keeps it equal to the model, so a change to the contract is always a deliberate, reviewed change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from census_agent.models import REPORT_SCHEMA_VERSION, Report

SCHEMA_ID = f"https://suanli.io/schemas/report-v{REPORT_SCHEMA_VERSION}.schema.json"
PUBLISHED_SCHEMA = Path(__file__).parent / "schemas" / f"report-v{REPORT_SCHEMA_VERSION}.schema.json"


def report_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of `Report`, as the census service accepts it at ``/v1/reports``."""
    schema = Report.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}
