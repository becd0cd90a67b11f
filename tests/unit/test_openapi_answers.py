"""The API document describes every answer: each operation's 2xx response has a schema (a named model for JSON, a
content type for text, CSV and streams), so a route added without a response model fails here; and the schemas'
package stays importable without the server's stack."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

from fastapi import FastAPI

from api.app import create_app
from api.auth import Role
from api.schemas.tokens import RoleName
from api.settings import Settings

JSON_TYPES = ("application/json", "application/problem+json")
NO_BODY = {"204", "304"}


def _is_json(media_type: str) -> bool:
    return media_type in JSON_TYPES or media_type.endswith("+json")


def _names_a_model(schema: dict[str, Any]) -> bool:
    """A ``$ref`` to a component, or an array of them (the lists answered as JSON arrays)."""
    if "$ref" in schema:
        return True
    items = schema.get("items")
    return schema.get("type") == "array" and isinstance(items, dict) and "$ref" in items


def undocumented_answers(document: dict[str, Any]) -> list[str]:
    """Every operation of `document` whose success is not described: no 2xx response, a 2xx with a body but no
    content, a JSON content whose schema is not a named model, or a content with no schema at all."""
    problems = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            label = f"{method.upper()} {path}"
            successes = {s: r for s, r in operation["responses"].items() if s.startswith("2")}
            if not successes:
                problems.append(f"{label}: no 2xx response")
            for status, response in successes.items():
                content = response.get("content") or {}
                if status in NO_BODY:
                    if content:
                        problems.append(f"{label} {status}: a body-less status with content {sorted(content)}")
                    continue
                if not content:
                    problems.append(f"{label} {status}: no content described")
                for media_type, described in content.items():
                    schema = described.get("schema")
                    if not schema:
                        problems.append(f"{label} {status} {media_type}: no schema")
                    elif _is_json(media_type) and not _names_a_model(schema):
                        problems.append(f"{label} {status} {media_type}: not a named model: {schema}")
    return problems


def _service_app(tmp_path: Path) -> FastAPI:
    return create_app(Settings(database_url=f"sqlite:///{tmp_path / 'never-opened.db'}"))


def test_every_operation_of_the_service_documents_its_successful_answer(tmp_path: Path) -> None:
    """Walking /openapi.json of the real application: every operation says what it answers on success."""
    document = _service_app(tmp_path).openapi()
    assert len(document["paths"]) >= 15
    assert undocumented_answers(document) == []


def test_the_walk_flags_a_route_without_a_response_model() -> None:
    """A route answering a bare dict (no model) or nothing declared is reported; a route with a model is not."""
    from pydantic import BaseModel

    class Thing(BaseModel):
        """A documented answer."""

        name: str

    app = FastAPI()

    @app.get("/untyped")
    def untyped():  # type: ignore[no-untyped-def]  # the omission under test
        return {"name": "x"}

    @app.get("/dict")
    def as_dict() -> dict[str, Any]:
        return {"name": "x"}

    @app.get("/typed", response_model=Thing)
    def typed() -> dict[str, Any]:
        return {"name": "x"}

    problems = undocumented_answers(app.openapi())
    flagged = [p.split(":")[0] for p in problems]
    assert flagged == ["GET /untyped 200 application/json", "GET /dict 200 application/json"]


def test_the_documented_json_answers_are_named_models_and_text_answers_name_their_type(tmp_path: Path) -> None:
    """Spot checks of what the walk accepts: the census is `CensusPublic`, the CSV export is text/csv, the job
    logs and metrics are text, and a job resubmitted with its Idempotency-Key (200) is described like a new one."""
    paths = _service_app(tmp_path).openapi()["paths"]

    def content(path: str, method: str = "get", status: str = "200") -> dict[str, Any]:
        found: dict[str, Any] = paths[path][method]["responses"][status]["content"]
        return found

    assert content("/v1/census")["application/json"]["schema"] == {"$ref": "#/components/schemas/CensusPublic"}
    assert content("/v1/reports", "post")["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReportAccepted"
    }
    assert list(content("/v1/census/export.csv")) == ["text/csv"]
    assert list(content("/v1/jobs/{job_id}/logs")) == ["text/plain"]
    assert list(content("/metrics")) == ["text/plain"]
    assert content("/v1/jobs", "post", "200") == content("/v1/jobs", "post", "201")


def test_the_token_roles_of_the_schemas_are_the_roles_of_the_service() -> None:
    """`api.schemas.tokens.RoleName` repeats `api.auth.Role` (the schemas may not import api.auth): same values."""
    assert set(get_args(RoleName)) == {role.value for role in Role}


def test_importing_the_schemas_loads_no_server_package_and_no_other_api_module() -> None:
    """A client can import `api.schemas` with pydantic alone: no FastAPI, SQLAlchemy, Ray, kubernetes or httpx,
    and no part of the service besides the schemas."""
    code = (
        "import json, sys, pkgutil, importlib; import api.schemas; "
        "[importlib.import_module(f'api.schemas.{m.name}') for m in pkgutil.iter_modules(api.schemas.__path__)]; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'sqlalchemy', 'ray', 'kubernetes', 'httpx', 'uvicorn') "
        "or (m.startswith('api.') and not m.startswith('api.schemas')))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == []
