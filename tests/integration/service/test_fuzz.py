"""The service fuzzed from its own OpenAPI document (schemathesis): a bounded run for CI.

`benchmarks/fuzz.py` runs the same fuzzer with as many cases as asked. Every route declares its answer's model
(`api.schemas`; tests/unit/test_openapi_answers.py checks that), so schemathesis's response_schema_conformance
compares each JSON body with the schema of that model in the document.
"""

from __future__ import annotations

from pathlib import Path

from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.fuzzing import CHECKS, fuzz, fuzz_service, seed, still_serving

CASES_PER_OPERATION_AND_MODE = 10


def test_fuzzing_every_endpoint_finds_no_server_error_and_no_answer_outside_the_document(tmp_path: Path) -> None:
    """Every operation of /openapi.json, with schema-valid and schema-invalid data (bodies, query and path
    parameters; ids that exist and ids that do not) sent with an admin token to a real service holding nodes,
    queued jobs and tokens: no answer is a 5xx, each status code and content type is one the document declares
    for that operation, each body matches its declared schema, nothing is logged as an unexpected error, and the
    service still answers afterwards."""
    assert response_schema_conformance in CHECKS  # the answers are checked against their models' schemas
    service = fuzz_service(tmp_path)
    try:
        result = fuzz(service, seed(service), max_examples=CASES_PER_OPERATION_AND_MODE)
        census = still_serving(service)
    finally:
        service.stop()
    assert not result.failures, "\n\n".join(result.failures.values())
    assert result.operations >= 18, result.operations
    assert result.cases >= 10 * result.operations, result.cases
    assert {200, 201, 204, 404, 409, 422} <= set(result.by_status), result.by_status  # the handlers were reached
    assert not [status for status in result.by_status if status >= 500], result.by_status
    assert "unexpected error" not in service.log.read_text(errors="replace")
    assert census["totals"]["nodes"] >= 3
