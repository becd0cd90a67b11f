"""Hostile input against the service's application (in process, its lifespan running; SQLite and PostgreSQL):
bodies too large, too deep or not UTF-8, huge values, region codes that do not exist, shell metacharacters,
absurd resources. Each gets a precise 4xx (problem+json naming what is wrong) and stores nothing; the entrypoint
is stored verbatim and never run.

Malformed or absurd reports (negative cores, 10^30 FLOPS, unknown region...) and the body limit on reports are
in test_ingest.py; jobs refused by what Ray offers are in tests/integration/jobs. Here the service has a
scheduler whose Ray address is a closed port on 127.0.0.1: jobs are accepted and wait, and nothing runs them.
"""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.inprocess import AppService
from tests.integration.service.helpers import (
    create_token,
    document,
    holdings,
    make_report,
    node,
    planned_inventory,
    post_report,
    start_module_app,
    stored,
)
from tests.servers import free_port, wait_for

PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}
BODY_ROUTES = ("/v1/reports", "/v1/jobs", "/v1/tokens")
# What each body route says before the parser's message when the body is not JSON it can read.
NOT_JSON = {
    "/v1/reports": "body: Invalid JSON",
    "/v1/jobs": "body: Invalid JSON",
    "/v1/tokens": "invalid token request: Invalid JSON",
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def hostile(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppService]:
    """One service per backend, with a scheduler whose Ray is unreachable (jobs queue, nothing runs them)."""
    workdir = tmp_path_factory.mktemp(f"hostile-{request.param}")
    config = workdir / "scheduler.toml"
    config.write_text(f'[ray]\naddress = "http://127.0.0.1:{free_port()}"\n')
    process = start_module_app(request, workdir, scheduler_config=str(config))
    yield process
    process.stop()


def everything(admin: httpx.Client) -> dict[str, Any]:
    """The census, every node, every job and every token's metadata: equal before and after a refusal."""
    jobs = admin.get("/v1/jobs", params={"limit": 1000})
    tokens = admin.get("/v1/tokens")
    assert jobs.status_code == tokens.status_code == 200, (jobs.text, tokens.text)
    return {**holdings(admin), "jobs": jobs.json(), "tokens": tokens.json()}


def problem_of(response: httpx.Response, status: int, where: str) -> dict[str, Any]:
    """The problem document of a refusal that must have `status`."""
    assert response.status_code == status, f"{where}: {response.status_code} {response.text[:300]}"
    assert response.headers["content-type"].startswith(PROBLEM), where
    answer: dict[str, Any] = response.json()
    assert answer["status"] == status, where
    return answer


def job(**extra: Any) -> dict[str, Any]:
    """A valid job document with `extra` fields."""
    return {"name": "hostile", "class": "general", "entrypoint": "true", **extra}


def test_bodies_too_deep_or_not_utf8_get_422_and_store_nothing(hostile: AppService) -> None:
    """100,000 levels of `[`, 50,000 nested objects, bytes that are not UTF-8, a lone UTF-16 surrogate and a raw
    NUL sent to each body route (reports, jobs, tokens) get 422 problem+json saying the body is not valid
    JSON (no 500, no 413: each is well under the size limit), and the census, nodes, jobs and tokens are as
    before."""
    bodies = {
        "100,000 levels of [": b"[" * 100_000,
        "50,000 nested objects": b'{"a":' * 50_000,
        "invalid UTF-8": b'{"name": "\xff\xfe\xc0\xaf", "class": "general", "entrypoint": "true"}',
        "lone surrogate": b'{"name": "\\ud800", "class": "general", "entrypoint": "true"}',
        "raw NUL": b'{"name": "a\x00b", "role": "user"}',
    }
    with hostile.client() as admin:
        before = everything(admin)
        failures = []
        for route in BODY_ROUTES:
            for name, body in bodies.items():
                response = admin.post(route, content=body, headers=JSON)
                answer = problem_of(response, 422, f"{route} {name}") if response.status_code == 422 else None
                if answer is None or not answer["detail"].startswith(NOT_JSON[route]):
                    failures.append(f"{route} {name}: {response.status_code} {response.text[:200]}")
        assert not failures, "\n".join(failures)
        assert everything(admin) == before


def test_bodies_over_the_limit_on_jobs_and_tokens_get_413_and_store_nothing(hostile: AppService) -> None:
    """With the default 1 MiB limit, a 2 MiB job and a 2 MiB token request get 413 naming the limit, whether
    sent with a Content-Length or chunked without one, and nothing is stored (reports: test_ingest.py)."""
    padding = "x" * (2 * 2**20)
    bodies = {
        "/v1/jobs": json.dumps(job(entrypoint=padding)).encode(),
        "/v1/tokens": json.dumps({"name": padding, "role": "admin"}).encode(),
    }
    with hostile.client() as admin:
        before = everything(admin)
        for route, body in bodies.items():
            for how, content in (("Content-Length", body), ("chunked", iter([body[:4096], body[4096:]]))):
                answer = problem_of(admin.post(route, content=content, headers=JSON), 413, f"{route} {how}")
                assert "1048576 bytes" in answer["detail"]
        assert everything(admin) == before


def test_huge_values_get_422_naming_the_field_and_store_nothing(hostile: AppService) -> None:
    """A 60,000-character organisation label on a report, a job name, organisation, environment value or
    entrypoint over their bounds, a 10,000-character Idempotency-Key, a 60,000-character query filter and a
    token id past 64 bits each get 422 naming the field (the token id was a 500 until fuzzing found it);
    nothing is stored."""
    huge = "x" * 60_000
    report = document(make_report(planned_inventory("huge-label")))
    report["inventory"]["labels"]["organisation"] = huge
    with hostile.client() as admin:
        before = everything(admin)
        cases: dict[str, tuple[httpx.Response, str]] = {
            "report organisation": (post_report(admin, report), "inventory.labels.organisation: "),
            "job name": (admin.post("/v1/jobs", json=job(name=huge)), "name: "),
            "job organisation": (admin.post("/v1/jobs", json=job(organisation=huge)), "organisation: "),
            "job entrypoint": (admin.post("/v1/jobs", json=job(entrypoint="y" * 8193)), "entrypoint: "),
            "job environment": (
                admin.post("/v1/jobs", json=job(runtime_env={"env_vars": {"A": huge}})),
                "runtime_env.env_vars.A: ",
            ),
            "Idempotency-Key": (
                admin.post("/v1/jobs", json=job(), headers={"Idempotency-Key": "k" * 10_000}),
                "header.idempotency-key",
            ),
            "nodes filter": (admin.get("/v1/nodes", params={"organisation": huge}), "query.organisation: "),
            "token id": (admin.delete(f"/v1/tokens/{2**64}"), "path.token_id: "),
        }
        failures = []
        for name, (response, field) in cases.items():
            answer = problem_of(response, 422, name)
            if not answer["detail"].startswith(field):
                failures.append(f"{name}: {answer['detail'][:200]!r} does not name {field!r}")
        assert not failures, "\n".join(failures)
        assert everything(admin) == before
        assert node(admin, "huge-label") is None


def test_nul_characters_in_paths_and_query_filters_get_422_on_both_backends(hostile: AppService) -> None:
    """A NUL character in a node id, a job id or a query filter (which PostgreSQL text cannot hold) gets 422 on
    both backends alike, or 404 for an id that names nothing on SQLite; never a 500 (found on PostgreSQL)."""
    with hostile.client() as admin:
        answers = {
            "node id": admin.get("/v1/nodes/a%00b"),
            "job id": admin.get("/v1/jobs/job-%00"),
            "organisation filter": admin.get("/v1/nodes", params={"organisation": "a\x00b"}),
            "after cursor": admin.get("/v1/nodes", params={"after": "\x00"}),
            "job owner filter": admin.get("/v1/jobs", params={"owner": "\x00"}),
            "job tier filter": admin.get("/v1/jobs", params={"tier": "\x00"}),
        }
    wanted = {422} if hostile.database_url.startswith("postgresql") else {200, 404, 422}
    wrong = {k: (r.status_code, r.text[:150]) for k, r in answers.items() if r.status_code not in wanted}
    assert not wrong, wrong
    assert "unexpected error" not in hostile.log.read_text(errors="replace")


def test_a_256_character_accelerator_model_is_stored_not_a_500(hostile: AppService) -> None:
    """A report whose accelerator model (not in the catalogue) is as long as the schema allows, 256 characters,
    is stored: the server's note quoting the model is cut to fit instead of failing validation (fuzzing found
    this answering 500)."""
    doc = document(make_report(planned_inventory("long-model")))
    doc["inventory"]["accelerators"][0]["model"] = "Z" * 256
    with hostile.client() as admin:
        answer = stored(admin, doc)
        detail = node(admin, "long-model")
    assert answer["outcome"] == "stored"
    assert detail is not None
    notes = [c["note"] for c in detail["peaks"]["components"] if c["component"].startswith("accelerator")]
    assert notes
    assert all(len(n) <= 256 for n in notes)
    assert notes[0].startswith("Z" * 200)


def test_region_codes_that_do_not_exist_get_422_and_store_nothing(hostile: AppService) -> None:
    """A job for region 999999 or 000000, and the census, its history, its CSV and the node list asked for
    those regions, each get 422 naming the unknown code; no job is stored (reports: test_ingest.py)."""
    with hostile.client() as admin:
        before = everything(admin)
        for code in ("999999", "000000"):
            answers = {
                "job": admin.post("/v1/jobs", json=job(**{"class": "edge"}, region=code)),
                "census": admin.get("/v1/census", params={"region": code}),
                "history": admin.get("/v1/census/history", params={"region": code}),
                "csv": admin.get("/v1/census/export.csv", params={"region": code}),
                "nodes": admin.get("/v1/nodes", params={"region": code}),
            }
            for name, response in answers.items():
                answer = problem_of(response, 422, f"{name} in {code}")
                assert f"unknown region code '{code}'" in answer["detail"], (name, answer)
        assert everything(admin) == before


def test_entrypoint_with_shell_metacharacters_is_stored_and_shown_verbatim_and_never_run(
    hostile: AppService, tmp_path: Path
) -> None:
    """An entrypoint full of shell syntax (; rm -rf / $(...) `...` | && > < quotes, tab, non-ASCII) and
    environment values with $(...) are accepted (201) and come back byte for byte from POST, GET /v1/jobs/{id}
    and GET /v1/jobs; the whole spec round-trips. The service runs no shell: the files the command would touch
    do not exist after several dispatcher steps (its Ray is unreachable, so nothing may run it at all)."""
    canaries = [tmp_path / f"canary-{i}" for i in range(5)]
    entrypoint = (
        f"touch {canaries[0]}; rm -rf / $(touch {canaries[1]}) `touch {canaries[2]}` | cat && echo x > {canaries[3]}"
        f" < /etc/passwd || touch {canaries[4]} & 'quoted' \"double\" \\back\\slash\t$HOME ${{IFS}} 算力 %s %n"
    )
    spec = {
        "name": "metacharacters; $(id)",
        "class": "general",
        "entrypoint": entrypoint,
        "runtime_env": {"working_dir": "/tmp/$(id)", "env_vars": {"EVIL": f"$(touch {canaries[0]})"}, "pip": []},
        "resources": {"cpus": 0.5, "gpus": 0, "memory_bytes": 2**20, "nodes": 1},
        "priority": 3,
        "organisation": "org | tee",
        "time_limit_seconds": 60,
        "max_retries": 0,
    }
    with hostile.client() as admin:
        made = admin.post("/v1/jobs", json=spec)
        assert made.status_code == 201, made.text
        job_id = made.json()["job_id"]
        shown = admin.get(f"/v1/jobs/{job_id}").json()
        listed = next(j for j in admin.get("/v1/jobs").json()["items"] if j["job_id"] == job_id)
        wait_for(lambda: "waits for" in admin.get(f"/v1/jobs/{job_id}").json()["reason"], 30, "a dispatcher step")
        later = admin.get(f"/v1/jobs/{job_id}").json()
    for where, seen in (("POST", made.json()), ("GET one", shown), ("GET list", listed), ("later", later)):
        assert seen["spec"]["entrypoint"] == entrypoint, where
        assert {k: seen["spec"][k] for k in spec} == spec, where
        assert seen["name"] == spec["name"], where
    assert later["state"] == "queued", later
    assert [c for c in canaries if c.exists()] == []


# name, change to a valid job, the field the 422 must name
ABSURD_JOBS: list[tuple[str, dict[str, Any], str]] = [
    ("negative CPUs", {"resources": {"cpus": -1}}, "resources.cpus: "),
    ("zero CPUs", {"resources": {"cpus": 0}}, "resources.cpus: "),
    ("10^308 CPUs", {"resources": {"cpus": 1e308}}, "resources.cpus: "),
    ("negative GPUs", {"resources": {"gpus": -1}}, "resources.gpus: "),
    ("a million GPUs", {"resources": {"gpus": 10**6}}, "resources.gpus: "),
    ("half a GPU", {"resources": {"gpus": 2.5}}, "resources.gpus: "),
    ("negative memory", {"resources": {"memory_bytes": -1}}, "resources.memory_bytes: "),
    ("2^80 bytes of memory", {"resources": {"memory_bytes": 2**80}}, "resources.memory_bytes: "),
    ("a gang of 0 nodes", {"resources": {"nodes": 0}}, "resources.nodes: "),
    ("a gang of a million nodes", {"resources": {"nodes": 10**6}}, "resources.nodes: "),
    ("negative time limit", {"time_limit_seconds": -5}, "time_limit_seconds: "),
    ("a time limit of 30,000 years", {"time_limit_seconds": 10**12}, "time_limit_seconds: "),
    ("priority 10^9", {"priority": 10**9}, "priority: "),
    ("negative retries", {"max_retries": -1}, "max_retries: "),
    ("a million retries", {"max_retries": 10**6}, "max_retries: "),
    ("a resource nobody knows", {"resources": {"qubits": 5}}, "resources.qubits: "),
]


def test_negative_or_absurd_job_resources_get_422_naming_the_field_and_store_nothing(
    hostile: AppService,
) -> None:
    """Each absurd job (negative, zero, fractional or astronomically large CPUs, GPUs, memory, gang size, time
    limit, priority or retries; NaN and Infinity CPUs; an unknown resource) gets 422 naming the field, as
    problem+json; no job is stored. (Absurd reports: test_ingest.py.)"""
    with hostile.client() as admin:
        before = everything(admin)
        failures = []
        for name, change, field in ABSURD_JOBS:
            answer = problem_of(admin.post("/v1/jobs", json=job(**change)), 422, name)
            if not answer["detail"].startswith(field):
                failures.append(f"{name}: {answer['detail'][:200]!r} does not name {field!r}")
        for literal in (b"NaN", b"Infinity", b"-Infinity"):
            body = b'{"name": "x", "class": "general", "entrypoint": "true", "resources": {"cpus": ' + literal + b"}}"
            answer = problem_of(admin.post("/v1/jobs", content=body, headers=JSON), 422, literal.decode())
            if not answer["detail"].startswith("resources.cpus: "):
                failures.append(f"{literal.decode()} CPUs: {answer['detail'][:200]!r}")
        assert not failures, "\n".join(failures)
        assert everything(admin) == before


def test_absurd_reports_not_covered_elsewhere_get_422_naming_the_field(hostile: AppService) -> None:
    """Negative memory, 0 sockets, a billion threads, negative accelerator memory and a NaN peak in a report
    each get 422 naming the field; the agent token stays unbound and no node appears."""
    with hostile.client() as admin:
        agent_token = create_token(admin, "agent")
        base = document(make_report(planned_inventory("absurd-report")))
        changes: list[tuple[list[str | int], Any]] = [
            (["inventory", "memory", "total_bytes"], -1),
            (["inventory", "cpu", "sockets"], 0),
            (["inventory", "cpu", "threads"], 10**9),
            (["inventory", "accelerators", 0, "memory_bytes"], -5),
        ]
        before = everything(admin)
        with hostile.client(agent_token["token"]) as agent:
            for path, value in changes:
                doc = copy.deepcopy(base)
                doc["report_id"] = str(uuid.uuid4())
                target: Any = doc
                for key in path[:-1]:
                    target = target[key]
                target[path[-1]] = value
                field = ".".join(str(p) for p in path)
                answer = problem_of(post_report(agent, doc), 422, field)
                assert answer["detail"].startswith(f"{field}: "), answer["detail"]
            nan = json.dumps(base).replace(
                f'"flops": {json.dumps(base["peaks"]["figures"]["fp64"]["flops"])}', '"flops": NaN', 1
            )
            answer = problem_of(post_report(agent, nan.encode()), 422, "NaN peak")
            assert answer["detail"].startswith("peaks.figures.fp64.flops: "), answer["detail"]
        after = everything(admin)
    assert after == before
    assert "absurd-report" not in {n["node_id"] for n in after["nodes"]}
    bound = next(t for t in after["tokens"] if t["id"] == agent_token["id"])
    assert bound["node_id"] is None
