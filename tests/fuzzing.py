"""Fuzzing the running census service from its own OpenAPI document with schemathesis.

Used by the CI test (a bounded number of cases) and by ``benchmarks/fuzz.py`` (as many as asked). The service
runs as a real process (`tests.service.ServiceProcess`) on SQLite with a scheduler configured for a Ray
address where nothing listens, so the job routes accept and queue jobs without a Ray cluster. Before
fuzzing, a few nodes, jobs and spare tokens are stored, and generated path ids are now and then swapped for
those, so the routes with ids are exercised on things that exist as well as on things that do not.

Each operation is fuzzed with positive data (valid by the schema) and negative data (invalid by it), and every
answer is checked: not a 5xx, a status code the document declares, a declared content type, and a body that
matches the declared schema. The fuzzer's own admin token is never revoked (a DELETE of its id is sent for a
spare token instead), so one lucky case cannot turn the rest of the run into 401s.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from census_agent.report import ComputeModel, build_report, inventory_from_document
from tests.servers import free_port
from tests.service import ServiceProcess

FIXTURES = Path(__file__).resolve().parent / "fixtures"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
AnyCase = Case[Any]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


def fuzz_service(workdir: Path, database_url: str | None = None) -> ServiceProcess:
    """The service under test: jobs accepted without Ray (its address is a closed port on 127.0.0.1)."""
    config = workdir / "scheduler.toml"
    config.write_text(f'[ray]\naddress = "http://127.0.0.1:{free_port()}"\n')
    url = database_url or f"sqlite:///{workdir / 'suanli.db'}"
    return ServiceProcess(url, workdir, scheduler_config=str(config), log_level="WARNING").start()


@dataclass
class Seeded:
    """What was stored before fuzzing: ids the fuzzer may use, and the token it must not revoke."""

    own_token_id: int
    ids: dict[str, list[Any]] = field(default_factory=dict)  # path parameter name -> existing ids


def seed(service: ServiceProcess) -> Seeded:
    """Three nodes (by report), two queued jobs and three spare tokens, through the API."""
    planned = inventory_from_document((FIXTURES / "inventories" / "dgx-h100-planned.json").read_text())
    with service.client() as admin:
        listing = admin.get("/v1/tokens").json()
        own = next(t["id"] for t in listing if t["role"] == "admin")
        node_ids = []
        for i in range(3):
            node_id = f"fuzz-node-{i}"
            host = planned.host.model_copy(update={"node_id": node_id, "node_id_source": "override"})
            report = build_report(
                planned.model_copy(update={"host": host}),
                ComputeModel(),
                report_id=uuid.uuid4(),
                sequence=1,
                generated_at=datetime.now(tz=UTC),
            )
            response = admin.post(
                "/v1/reports", content=report.model_dump_json(), headers={"Content-Type": "application/json"}
            )
            response.raise_for_status()
            node_ids.append(node_id)
        job_ids = []
        for klass in ("general", "hpc"):
            response = admin.post("/v1/jobs", json={"name": f"fuzz {klass}", "class": klass, "entrypoint": "true"})
            response.raise_for_status()
            job_ids.append(response.json()["job_id"])
        spare = []
        for role in ("planner", "user", "agent"):
            orgs = {"organisations": ["fuzz"]} if role == "user" else {}
            response = admin.post("/v1/tokens", json={"name": f"fuzz spare {role}", "role": role, **orgs})
            response.raise_for_status()
            spare.append(response.json()["id"])
    return Seeded(own_token_id=own, ids={"node_id": node_ids, "job_id": job_ids, "token_id": spare})


@dataclass
class FuzzResult:
    """What a run did: cases sent, distinct failures (operation, check and a curl line to reproduce), time."""

    cases: int = 0
    failures: dict[str, str] = field(default_factory=dict)  # a failure's key -> its report
    seconds: float = 0.0
    by_status: dict[int, int] = field(default_factory=dict)
    operations: int = 0
    seconds_by_operation: dict[str, float] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # operation and mode with no case to generate


def fuzz(service: ServiceProcess, seeded: Seeded, *, max_examples: int, seed_value: int = 0) -> FuzzResult:
    """Fuzz every operation of the service's OpenAPI document, `max_examples` cases per operation and mode
    (the same `seed_value` draws the same cases)."""
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    fuzzer = _Fuzzer(service, seeded, random.Random(seed_value))
    configured = hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )
    try:
        for found in schema.get_all_operations():
            if isinstance(found, Err):
                raise found.err()
            operation = found.ok()
            fuzzer.result.operations += 1
            for mode in MODES:
                label = f"{operation.method.upper()} {operation.path} ({mode.value})"
                strategy = st.tuples(operation.as_strategy(generation_mode=mode), st.booleans())

                test = hypothesis.seed(seed_value)(configured(hypothesis.given(strategy)(fuzzer.runner(label))))
                began = time.monotonic()
                try:
                    test()
                except Unsatisfiable:  # nothing to make invalid (no parameters, no body): no negative case exists
                    fuzzer.result.skipped.append(label)
                fuzzer.result.seconds_by_operation[label] = time.monotonic() - began
    finally:
        fuzzer.session.close()
    fuzzer.result.seconds = time.monotonic() - started
    return fuzzer.result


class _Fuzzer:
    """Sends cases, checks the answers, records what failed (and goes on)."""

    def __init__(self, service: ServiceProcess, seeded: Seeded, chooser: random.Random) -> None:
        self.service = service
        self.seeded = seeded
        self.chooser = chooser
        self.session = requests.Session()
        self.headers = {"Authorization": f"Bearer {service.admin_token}"}
        self.result = FuzzResult()

    def runner(self, label: str) -> Callable[[tuple[AnyCase, bool]], None]:
        """The test function for one operation and mode (a case and whether to steer it to existing ids)."""

        def run(drawn: tuple[AnyCase, bool]) -> None:
            self.send(label, *drawn)

        return run

    def send(self, label: str, case: AnyCase, existing: bool) -> None:
        """One case: steer its ids, send it, check the answer against the document."""
        _steer(case, self.seeded, self.chooser if existing else None)
        self.result.cases += 1
        try:
            response = case.call(base_url=self.service.url, headers=self.headers, session=self.session, timeout=30)
        except requests.RequestException as exc:
            key = f"{label}: {type(exc).__name__}"
            self.result.failures.setdefault(key, f"{key}: {exc}\n{case.as_curl_command()}")
            return
        by_status = self.result.by_status
        by_status[response.status_code] = by_status.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS, headers=self.headers)
        except (AssertionError, FailureGroup) as exc:
            title = (exc.exceptions[0] if isinstance(exc, FailureGroup) else exc).__class__.__name__
            key = f"{label}: {response.status_code} {title}"
            report = str(exc).replace(self.service.admin_token, "[token]")
            self.result.failures.setdefault(key, f"{key}\n{report}")


def _steer(case: AnyCase, seeded: Seeded, chooser: random.Random | None) -> None:
    """Now and then use an id that exists; never revoke the fuzzer's own token."""
    params = case.path_parameters
    if not params:
        return
    for name, existing in seeded.ids.items():
        if name in params and chooser is not None:
            params[name] = chooser.choice(existing)
    if "token_id" in params and str(params["token_id"]) == str(seeded.own_token_id):
        params["token_id"] = seeded.ids["token_id"][0]


def still_serving(service: ServiceProcess) -> dict[str, Any]:
    """After fuzzing: the service answers, and the admin token still works (its census document)."""
    with service.client() as admin:
        response = admin.get("/v1/census")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = json.loads(response.text)
    return document
