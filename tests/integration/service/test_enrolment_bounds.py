"""Bounded enrolment and failed-authentication limits, against the application in process on a real SQLite file and
the real PostgreSQL: enrolment tokens expire (a default and a maximum), only nodes known to the census may enrol
when the service says so, and an address that fails authentication too often is refused 429 with Retry-After
until its allowance refills (an injected clock, no sleeping); other addresses are not affected."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from api.db.tables import tokens
from api.ratelimit import FailureLimiter
from api.state import ServiceState
from tests.inprocess import AppService
from tests.integration.service.helpers import (
    create_token,
    make_report,
    planned_inventory,
    start_module_app,
    stored,
)

TTL = 3600
MAX_TTL = 7 * 86_400
BURST = 3
WINDOW = 60.0
PROXY = "10.9.8.7"  # in trusted_proxies below


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def bounded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppService]:
    """One service per backend enrolling known nodes only, with a 1 h default enrolment-token lifetime, a 7 d
    maximum, three failures allowed per address and 10.0.0.0/8 trusted as proxies."""
    app = start_module_app(
        request,
        tmp_path_factory.mktemp(f"bounded-{request.param}"),
        enrol_known_nodes_only="true",
        enrol_token_ttl_seconds=str(TTL),
        enrol_token_max_ttl_seconds=str(MAX_TTL),
        auth_failure_burst=str(BURST),
        auth_failure_window_seconds=str(WINDOW),
        trusted_proxies='["10.0.0.0/8"]',
    )
    yield app
    app.stop()


class Clock:
    """The limiter's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(bounded: AppService) -> Clock:
    """A fresh limiter (the service's settings) on a clock of the test's, so each test starts with no failures."""
    moved = Clock()
    state(bounded).auth_failures = FailureLimiter(BURST, WINDOW, clock=moved)
    return moved


def state(app: AppService) -> ServiceState:
    service: ServiceState = app.app.state.service
    return service


def address() -> str:
    """An address of the test's own (documentation range 198.51.100.0/24 is too small for every test run)."""
    return f"172.16.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250 + 1}"


def discover(admin: httpx.Client, node_id: str) -> None:
    """Record `node_id` as Kubernetes discovery does (POST /v1/nodes/discovered)."""
    inventory = planned_inventory(node_id).model_dump(mode="json")
    body = {"nodes": [{"name": node_id, "inventory": inventory, "ready": True}]}
    response = admin.post("/v1/nodes/discovered", json=body)
    assert response.status_code == 200, response.text


def enrol(app: AppService, token: str, node_id: str, at: str = "127.0.0.1") -> httpx.Response:
    with app.client(token, address=at) as client:
        return client.post("/v1/agents/enrol", json={"node_id": node_id})


def token_count(admin: httpx.Client) -> int:
    return len(admin.get("/v1/tokens").json())


# --- enrolment tokens expire ---------------------------------------------------------------------------------


def test_an_enrolment_token_created_without_expiry_gets_the_default_lifetime(bounded: AppService) -> None:
    """`POST /v1/tokens` with role enrol and no expires_in_seconds answers (and lists) an expiry the service's
    default away; other roles without one still never expire; an enrol token may ask for less."""
    with bounded.client() as admin:
        before = datetime.now(tz=UTC)
        made = create_token(admin, "enrol")
        expires = datetime.fromisoformat(made["expires_at"])
        assert before + timedelta(seconds=TTL - 5) <= expires <= datetime.now(tz=UTC) + timedelta(seconds=TTL)
        listed = {t["id"]: t for t in admin.get("/v1/tokens").json()}
        assert datetime.fromisoformat(listed[made["id"]]["expires_at"]) == expires
        assert create_token(admin, "user")["expires_at"] is None
        short = create_token(admin, "enrol", expires_in_seconds=60)
        assert datetime.fromisoformat(short["expires_at"]) <= datetime.now(tz=UTC) + timedelta(seconds=60)


def test_an_enrolment_token_longer_than_the_maximum_is_refused_and_nothing_created(bounded: AppService) -> None:
    """Asking for an enrol token that outlives enrol_token_max_ttl_seconds is a 422 naming the maximum and the
    field; no token is created. Other roles may still ask for that long."""
    with bounded.client() as admin:
        before = token_count(admin)
        response = admin.post("/v1/tokens", json={"name": "fleet", "role": "enrol", "expires_in_seconds": MAX_TTL + 1})
        assert response.status_code == 422, response.text
        assert str(MAX_TTL) in response.json()["detail"]
        assert response.json()["field"] == "expires_in_seconds"
        assert token_count(admin) == before
        assert create_token(admin, "user", expires_in_seconds=MAX_TTL + 1)["expires_at"] is not None


def test_an_expired_enrolment_token_gets_401_saying_when_and_what_to_do(bounded: AppService, clock: Clock) -> None:
    """An enrolment token past its expiry (set in the database: no waiting) is refused 401 with the moment it
    expired and how to get a new one, and mints nothing."""
    node = f"expired-{uuid.uuid4().hex[:8]}"
    with bounded.client() as admin:
        discover(admin, node)
        made = create_token(admin, "enrol")
        past = datetime.now(tz=UTC) - timedelta(minutes=5)
        with state(bounded).engine.begin() as conn:
            conn.execute(update(tokens).where(tokens.c.id == made["id"]).values(expires_at=past))
        before = token_count(admin)
        response = enrol(bounded, made["token"], node, at=address())
        assert response.status_code == 401, response.text
        detail = response.json()["detail"]
        assert detail.startswith("token expired at ")
        assert "--role enrol" in detail
        assert token_count(admin) == before


# --- only known nodes ----------------------------------------------------------------------------------------


def test_a_node_unknown_to_the_census_is_refused_403_and_nothing_is_minted(bounded: AppService, clock: Clock) -> None:
    """With enrol_known_nodes_only, a node id that discovery has not recorded is refused 403 saying why; no token
    is minted. Once discovery records it, the same enrolment token enrols it (201, bound to it)."""
    node = f"unknown-{uuid.uuid4().hex[:8]}"
    with bounded.client() as admin:
        fleet = create_token(admin, "enrol")["token"]
        before = token_count(admin)
        refused = enrol(bounded, fleet, node, at=address())
        assert refused.status_code == 403, refused.text
        assert "not known to the census" in refused.json()["detail"]
        assert token_count(admin) == before
        discover(admin, node)
        enrolled = enrol(bounded, fleet, node, at=address())
        assert enrolled.status_code == 201, enrolled.text
        assert enrolled.json()["node_id"] == node


def test_a_node_that_reported_before_may_enrol_again_after_its_token_is_revoked(
    bounded: AppService, clock: Clock
) -> None:
    """A discovered node, enrolled, reports (the agent's record replaces the discovered one); after an admin
    revokes its token it is still known, so it may enrol again."""
    node = f"again-{uuid.uuid4().hex[:8]}"
    with bounded.client() as admin:
        discover(admin, node)
        fleet = create_token(admin, "enrol")["token"]
        first = enrol(bounded, fleet, node).json()
        with bounded.client(first["token"]) as agent:
            assert stored(agent, make_report(planned_inventory(node)))["outcome"] == "stored"
        assert admin.get(f"/v1/nodes/{node}").json()["source"] == "agent"
        assert admin.delete(f"/v1/tokens/{first['id']}").status_code == 204
        again = enrol(bounded, fleet, node)
        assert again.status_code == 201, again.text


# --- failed authentication is limited per address ------------------------------------------------------------


def test_an_address_failing_authentication_is_refused_429_until_its_allowance_refills(
    bounded: AppService, clock: Clock
) -> None:
    """Three bad tokens from one address get 401; then that address gets 429 with Retry-After (seconds) even for
    a valid token it had not used lately, while another address is unaffected. When the clock passes Retry-After
    the address may try again (a valid token works); /metrics counts the failures and the refusals."""
    here, there = address(), address()
    with bounded.client() as admin:
        planner, other_planner = create_token(admin, "planner")["token"], create_token(admin, "planner")["token"]
    with bounded.client("sl_admin_not-a-token", address=here) as bad:
        for _ in range(BURST):
            assert bad.get("/v1/census").status_code == 401
        refused = bad.get("/v1/census")
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    wait = int(refused.headers["Retry-After"])
    assert wait == WINDOW / BURST
    with bounded.client(planner, address=here) as valid:
        assert valid.get("/v1/census").status_code == 429
    with bounded.client("", address=here) as anonymous:
        assert anonymous.get("/v1/census").status_code == 429
    with bounded.client(other_planner, address=there) as elsewhere:
        assert elsewhere.get("/v1/census").status_code == 200
    with bounded.client("sl_admin_not-a-token", address=there) as bad_elsewhere:
        assert bad_elsewhere.get("/v1/census").status_code == 401
    clock.now += wait - 1
    with bounded.client(planner, address=here) as valid:
        assert valid.get("/v1/census").status_code == 429
    clock.now += 1
    with bounded.client(planner, address=here) as valid:
        assert valid.get("/v1/census").status_code == 200
    with bounded.client() as admin:
        families = {f.name: f for f in text_string_to_metric_families(admin.get("/metrics").text)}
    assert families["suanli_auth_throttled"].samples[0].value >= 3
    samples = families["suanli_auth_failures"].samples
    failures = {s.labels["kind"]: s.value for s in samples if s.name.endswith("_total")}
    assert failures["unauthorised"] >= BURST + 1


def test_a_token_verified_lately_is_not_held_up_by_its_addresss_failures(bounded: AppService, clock: Clock) -> None:
    """A client whose token this service verified within its cache's lifetime keeps working from an address
    that others behind it (a NAT) made fail too often: it cannot be a guess. That holds after a revocation of
    another token has emptied the cache (its token is looked up again, not refused 429); a health check needs no
    token and is never refused."""
    shared = address()
    with bounded.client() as admin:
        planner = create_token(admin, "planner")["token"]
        other = create_token(admin, "planner")
    with bounded.client(planner, address=shared) as established:
        assert established.get("/v1/census").status_code == 200
        with bounded.client("sl_user_guess", address=shared) as guesser:
            for _ in range(BURST):
                assert guesser.get("/v1/census").status_code == 401
            assert guesser.get("/v1/census").status_code == 429
            assert guesser.get("/healthz").status_code == 200
        assert established.get("/v1/census").status_code == 200
        with bounded.client() as admin:
            assert admin.delete(f"/v1/tokens/{other['id']}").status_code == 204
        assert established.get("/v1/census").status_code == 200


def test_refused_enrolments_count_and_then_even_a_valid_enrolment_token_gets_429(
    bounded: AppService, clock: Clock
) -> None:
    """Enrolments refused 403 (unknown node) and 409 (already enrolled) count against the address; once over the
    allowance, enrolment is refused 429 before anything is read or minted, even for a known node with a valid
    (and lately verified) enrolment token. After Retry-After it enrols."""
    here = address()
    node, enrolled = f"late-{uuid.uuid4().hex[:8]}", f"taken-{uuid.uuid4().hex[:8]}"
    with bounded.client() as admin:
        discover(admin, node)
        discover(admin, enrolled)
        fleet = create_token(admin, "enrol")["token"]
        assert enrol(bounded, fleet, enrolled, at=here).status_code == 201
        assert enrol(bounded, fleet, enrolled, at=here).status_code == 409
        assert enrol(bounded, fleet, f"nowhere-{uuid.uuid4().hex[:8]}", at=here).status_code == 403
        assert enrol(bounded, fleet, enrolled, at=here).status_code == 409
        before = token_count(admin)
        refused = enrol(bounded, fleet, node, at=here)
        assert refused.status_code == 429, refused.text
        assert token_count(admin) == before
        clock.now += int(refused.headers["Retry-After"])
        assert enrol(bounded, fleet, node, at=here).status_code == 201


def test_x_forwarded_for_is_believed_only_from_a_trusted_proxy(bounded: AppService, clock: Clock) -> None:
    """Behind a trusted proxy (10.0.0.0/8 here) the client named in X-Forwarded-For is the one limited: two
    clients behind one proxy count apart. From an untrusted peer the header is ignored, so a client cannot
    escape its limit by naming another address."""
    behind_a, behind_b, direct = address(), address(), address()
    with bounded.client("sl_user_wrong", address=PROXY) as proxy:
        for _ in range(BURST):
            assert proxy.get("/v1/census", headers={"X-Forwarded-For": behind_a}).status_code == 401
        assert proxy.get("/v1/census", headers={"X-Forwarded-For": behind_a}).status_code == 429
        assert proxy.get("/v1/census", headers={"X-Forwarded-For": behind_b}).status_code == 401
    with bounded.client("sl_user_wrong", address=direct) as spoofer:
        for n in range(BURST):
            assert spoofer.get("/v1/census", headers={"X-Forwarded-For": f"192.0.2.{n + 1}"}).status_code == 401
        assert spoofer.get("/v1/census", headers={"X-Forwarded-For": "192.0.2.200"}).status_code == 429
