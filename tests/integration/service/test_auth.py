"""Authentication and authorisation of the census service: every route is walked with every role and without a
token, tokens die when revoked or expired, their secrets are shown once and stored only hashed, and the
operator's /metrics passes promtool."""

from __future__ import annotations

import hashlib
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fastapi.routing
import psycopg
import pytest
from fastapi import APIRouter, Depends, FastAPI
from fastapi.dependencies.models import Dependant
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql

from api.app import create_app
from api.auth import Role
from api.deps import Require
from api.routers.dashboard import DASHBOARD_PATHS
from api.routers.health import PUBLIC_PATHS as HEALTH_AND_DOCS
from api.settings import Settings
from tests.inprocess import AppService
from tests.integration.service.helpers import (
    ROLES,
    create_token,
    make_report,
    module_app,
    planned_inventory,
    stored,
    token_row,
)

PROBLEM = "application/problem+json"
# Routes that need no token: health, the API docs, and the dashboard's page and static files (they carry no data;
# the page reads the API with the user's token).
PUBLIC_PATHS = HEALTH_AND_DOCS | DASHBOARD_PATHS
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppService]:
    """One service per backend for this module, in process (its tests create their own tokens)."""
    yield from module_app(request, tmp_path_factory)


# --- the route table -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One method of one route, with the roles its `Require` dependencies admit (None: no Require at all)."""

    method: str
    path: str
    roles: frozenset[Role] | None

    def url(self) -> str:
        """The path with every parameter filled with a dummy value that names nothing stored."""
        return re.sub(r"\{[^}]+\}", "999999", self.path)


def requirements(dependant: Dependant) -> list[Require]:
    """Every `Require` among the dependencies of `dependant`, at any depth."""
    found: list[Require] = []
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Require):
            found.append(dependency.call)
        found += requirements(dependency)
    return found


def flattened_routes(app: FastAPI) -> list[Any]:
    """The app's routes with included routers expanded (FastAPI >= 0.16x keeps an included router as one lazy
    entry of `app.routes`; `iter_route_contexts` yields each route with its effective path and dependencies,
    router-level ones included). Older FastAPI lists the routes themselves."""
    expand = getattr(fastapi.routing, "iter_route_contexts", None)
    return list(expand(app.routes)) if expand is not None else list(app.routes)


def the_app() -> FastAPI:
    """The application exactly as the service builds it (no lifespan runs: nothing is opened)."""
    return create_app(Settings(database_url="sqlite://", admin_token_file=None))


def endpoints(app: FastAPI | None = None) -> list[Endpoint]:
    """Every method of every route of `app` (default: the service's), docs routes included."""
    app = app or the_app()
    table: list[Endpoint] = []
    for route in flattened_routes(app):
        path = str(getattr(route, "path", None) or repr(route))
        methods: set[str] = set(getattr(route, "methods", None) or {"GET"})
        dependant = getattr(route, "dependant", None)
        roles = None
        if isinstance(dependant, Dependant):
            found = requirements(dependant)
            if found:
                roles = frozenset.intersection(*(r.roles for r in found))
        table += [Endpoint(method, path, roles) for method in sorted(methods - {"HEAD"})]
    return table


def protected() -> list[Endpoint]:
    """The endpoints that must ask for a token."""
    return [e for e in endpoints() if e.roles is not None]


def unprotected_paths(table: list[Endpoint]) -> set[str]:
    """Paths with a method that has no Require dependency."""
    return {e.path for e in table if e.roles is None}


def test_every_route_but_health_and_docs_declares_a_require_dependency() -> None:
    """Walking `create_app(...).routes`: the routes without an `api.deps.Require` among their dependencies are
    exactly the public ones (/healthz, /readyz, the API docs and the dashboard's static page and files), so a new
    route cannot ship unprotected; the walk itself notices a route added without one, directly or through an
    included router."""
    table = endpoints()
    unprotected = unprotected_paths(table)
    assert not unprotected - PUBLIC_PATHS, f"routes without a Require dependency: {sorted(unprotected - PUBLIC_PATHS)}"
    assert not PUBLIC_PATHS - unprotected, f"public paths missing or protected: {sorted(PUBLIC_PATHS - unprotected)}"
    admitted = {(e.method, e.path): e.roles for e in table if e.roles is not None}
    assert admitted[("POST", "/v1/reports")] == {Role.ADMIN, Role.AGENT}
    assert admitted[("POST", "/v1/tokens")] == {Role.ADMIN}
    assert admitted[("GET", "/metrics")] == {Role.ADMIN, Role.OPERATOR}
    assert admitted[("GET", "/v1/nodes/{node_id}")] == {Role.ADMIN, Role.OPERATOR, Role.PLANNER}
    assert admitted[("POST", "/v1/agents/enrol")] == {Role.ADMIN, Role.ENROL}
    # Jobs: users (their own), operators (all, environment values redacted) and admins; never planners.
    for method, path in (("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("GET", "/v1/jobs/{job_id}")):
        assert admitted[(method, path)] == {Role.ADMIN, Role.OPERATOR, Role.USER}
    assert admitted[("GET", "/v1/audit")] == admitted[("GET", "/v1/audit/verify")] == {Role.ADMIN}
    # What-if plans: those who decide what to build; never job submitters (users) (api.routers.planning).
    assert admitted[("POST", "/v1/census/plan")] == {Role.ADMIN, Role.OPERATOR, Role.PLANNER}
    assert [path for (_, path), roles in admitted.items() if Role.ENROL in roles] == ["/v1/agents/enrol"]
    assert all(Role.ADMIN in roles for roles in admitted.values())
    assert len(admitted) >= 10, sorted(admitted)

    app = the_app()
    app.add_api_route("/v1/leak", lambda: {"secret": 1}, methods=["GET"])
    router = APIRouter(prefix="/v1/also")
    router.add_api_route("/leaky", lambda: {"secret": 2}, methods=["DELETE"])
    guarded = APIRouter(prefix="/v1/guarded", dependencies=[Depends(Require(Role.PLANNER))])
    guarded.add_api_route("/fine", lambda: {}, methods=["GET"])
    app.include_router(router)
    app.include_router(guarded)
    probe = endpoints(app)
    assert unprotected_paths(probe) - PUBLIC_PATHS == {"/v1/leak", "/v1/also/leaky"}
    assert Endpoint("GET", "/v1/guarded/fine", frozenset({Role.ADMIN, Role.PLANNER})) in probe


def test_every_protected_route_refuses_bad_tokens_with_401_and_roles_it_does_not_admit_with_403(
    shared: AppService,
) -> None:
    """Against the running service, every non-public route answers 401 (problem+json, WWW-Authenticate: Bearer)
    with no token, a garbage token, a non-Bearer scheme, or malformed query parameters and no token; with a token
    of each role it answers 403 exactly when its Require does not admit that role, and never 401; the public
    routes (/healthz, /readyz, docs, the dashboard's page and files) answer 200 without a token."""
    with shared.client() as admin:
        tokens = {role: create_token(admin, role)["token"] for role in ROLES}
    anonymous = {
        "no token": {},
        "garbage token": {"Authorization": "Bearer sl_admin_" + "x" * 43},
        "bearer without a token": {"Authorization": "Bearer"},
        "basic scheme": {"Authorization": f"Basic {tokens['admin']}"},
    }
    failures: list[str] = []
    walked = 0
    with shared.client("") as http:
        for endpoint in protected():
            assert endpoint.roles is not None
            body: dict[str, Any] = {"json": {}} if endpoint.method in BODY_METHODS else {}
            where = f"{endpoint.method} {endpoint.path}"
            for how, headers in anonymous.items():
                response = http.request(endpoint.method, endpoint.url(), headers=headers, **body)
                if response.status_code != 401:
                    failures.append(f"{where} with {how}: {response.status_code}, wanted 401")
                elif not response.headers.get("content-type", "").startswith(PROBLEM):
                    failures.append(f"{where} with {how}: 401 is not problem+json")
                elif response.headers.get("www-authenticate") != "Bearer":
                    failures.append(f"{where} with {how}: 401 without WWW-Authenticate: Bearer")
            bad_query = {"include": "bogus", "limit": "0", "tier": "bogus", "from": "yesterday"}
            response = http.request(endpoint.method, endpoint.url(), params=bad_query, **body)
            if response.status_code != 401:
                failures.append(f"{where} with bad query parameters and no token: {response.status_code}")
            for role, token in tokens.items():
                headers = {"Authorization": f"Bearer {token}"}
                response = http.request(endpoint.method, endpoint.url(), headers=headers, **body)
                admitted = Role(role) in endpoint.roles
                if admitted and response.status_code in (401, 403):
                    failures.append(f"{where} as {role} (admitted): {response.status_code} {response.text[:120]}")
                if not admitted and response.status_code != 403:
                    failures.append(f"{where} as {role} (not admitted): {response.status_code}, wanted 403")
                walked += 1
        for path in sorted(PUBLIC_PATHS):
            response = http.get(path)
            if response.status_code != 200:
                failures.append(f"public GET {path} without a token: {response.status_code}, wanted 200")
        health = http.get("/healthz").json(), http.get("/readyz").json()
    assert not failures, "\n".join(failures)
    assert walked >= 10 * len(ROLES)
    assert health[0] == {"status": "ok"}
    assert health[1]["status"] == "ready"
    assert health[1]["role"] == "all"  # and the duties it holds: names and terms only (docs/operations.md)
    assert set(health[1]["duties"]) <= {"dispatcher", "housekeeping", "kubernetes-sync"}


def test_a_malformed_body_without_a_valid_token_gets_401_not_a_validation_error(shared: AppService) -> None:
    """Every protected route that takes a body answers 401 to a request without a valid token even when the
    body is not JSON: authentication comes before reading the request."""
    failures = []
    with shared.client("") as http:
        for endpoint in protected():
            if endpoint.method not in BODY_METHODS:
                continue
            for how, headers in (("no token", {}), ("garbage token", {"Authorization": "Bearer nonsense"})):
                response = http.request(
                    endpoint.method,
                    endpoint.url(),
                    content=b"{not json",
                    headers={"Content-Type": "application/json", **headers},
                )
                if response.status_code != 401:
                    failures.append(f"{endpoint.method} {endpoint.path} with {how}: {response.status_code}")
    assert not failures, "\n".join(failures)


# --- token life and secrecy ----------------------------------------------------------------------------------


def test_revoked_and_expired_tokens_get_401(shared: AppService) -> None:
    """A token works until revoked (then 401 'token revoked', and GET /v1/tokens shows when), a token created
    with expires_in_seconds=1 works at once and gets 401 'token expired' two seconds later, a revoked admin
    token can no longer create tokens, and revoking an unknown id is a 404."""
    with shared.client() as admin:
        planner = create_token(admin, "planner")
        other_admin = create_token(admin, "admin")
        expiring = create_token(admin, "user", expires_in_seconds=1)
        created = time.monotonic()
        assert expiring["expires_at"] is not None
        for made in (planner, other_admin, expiring):
            with shared.client(made["token"]) as client:
                assert client.get("/v1/census").status_code == 200
        for made in (planner, other_admin):
            assert admin.delete(f"/v1/tokens/{made['id']}").status_code == 204
            assert token_row(admin, made["id"])["revoked_at"] is not None
        assert admin.delete("/v1/tokens/999999").status_code == 404
        with shared.client(planner["token"]) as client:
            response = client.get("/v1/census")
        assert response.status_code == 401
        assert response.json()["detail"] == "token revoked"
        with shared.client(other_admin["token"]) as client:
            response = client.post("/v1/tokens", json={"name": "sneaky", "role": "admin"})
        assert response.status_code == 401
        time.sleep(max(0.0, 2.0 - (time.monotonic() - created)))
        with shared.client(expiring["token"]) as client:
            response = client.get("/v1/census")
        assert response.status_code == 401
        assert response.json()["detail"] == "token expired"
        assert "sneaky" not in {t["name"] for t in admin.get("/v1/tokens").json()}


def database_values(database_url: str) -> list[str]:
    """Every value of every row of every table of the service's database, as text."""
    values: list[str] = []
    if database_url.startswith("sqlite"):
        path = database_url.removeprefix("sqlite:///")
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for row in conn.execute(f'SELECT * FROM "{table}"'):
                    values += [str(v) for v in row]
        return values
    with psycopg.connect(database_url) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_type = 'BASE TABLE'"
            )
        ]
        for table in tables:
            for row in conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table))):
                values += [str(v) for v in row]
    return values


def test_token_secret_is_shown_only_at_creation_and_stored_only_as_a_hash(shared: AppService) -> None:
    """The plaintext of a new token (``sl_<role>_...``) is in the create answer only: GET /v1/tokens lists
    name, role, prefix and dates but neither the secret nor its hash, the service log never shows it, and the
    database (read directly: sqlite3 on the file, psycopg on PostgreSQL) holds its SHA-256 digest and no
    column anywhere holds or contains the plaintext."""
    with shared.client() as admin:
        made = {role: create_token(admin, role) for role in ROLES}
        listing = admin.get("/v1/tokens")
        metrics = admin.get("/metrics").text
    assert listing.status_code == 200
    entries = {t["id"]: t for t in listing.json()}
    values = database_values(shared.database_url)
    log = shared.log.read_text(errors="replace")
    assert shared.admin_token not in log
    for role, answer in made.items():
        secret = answer["token"]
        digest = hashlib.sha256(secret.encode()).hexdigest()
        assert secret.startswith(f"sl_{role}_")
        assert len(secret) >= len(f"sl_{role}_") + 40
        entry = entries[answer["id"]]
        assert (entry["role"], entry["prefix"]) == (role, secret[:12])
        assert not {k for k in entry if "hash" in k or k in ("token", "secret")}, entry
        for where, text in (("token list", listing.text), ("metrics", metrics), ("service log", log)):
            assert secret not in text, f"{role} token's plaintext in the {where}"
            assert digest not in text, f"{role} token's hash in the {where}"
        assert digest in values, "the token's SHA-256 digest is stored"
        assert not [v for v in values if secret in v], f"{role} token's plaintext stored in the database"


# --- metrics -------------------------------------------------------------------------------------------------


def test_metrics_for_an_operator_pass_promtool_and_show_census_and_ingest_after_a_report(
    shared: AppService,
) -> None:
    """After one report, GET /metrics with an operator token is Prometheus text that `promtool check metrics`
    accepts, with suanli_census_peak_flops equal to the census (ai tier, active, each precision),
    suanli_ingest_reports_total counting the stored report and the request latency histogram."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed; .ci/run installs it"
    with shared.client() as admin:
        operator = create_token(admin, "operator")["token"]
        assert stored(admin, make_report(planned_inventory("metrics-node", region="440106")))["outcome"] == "stored"
        census = admin.get("/v1/census").json()
    with shared.client(operator) as client:
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    check = subprocess.run(
        [promtool, "check", "metrics"], input=response.content, capture_output=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    assert "suanli_census_peak_flops{" in text
    assert "suanli_ingest_reports_total{" in text

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    ai = next(t for t in census["by_tier"] if t["tier"] == "ai")
    for precision, value in ai["peak_flops"].items():
        key = ("suanli_census_peak_flops", (("precision", precision), ("status", "active"), ("tier", "ai")))
        assert samples[key] == pytest.approx(value, rel=1e-12), precision
    assert samples[("suanli_census_nodes", (("status", "active"), ("tier", "ai")))] == ai["nodes"]
    assert samples[("suanli_ingest_reports_total", (("outcome", "stored"),))] >= 1
    latency = [k for k in samples if k[0] == "suanli_http_request_duration_seconds_count"]
    assert (("method", "POST"), ("route", "/v1/reports"), ("status", "200")) in [k[1] for k in latency]
