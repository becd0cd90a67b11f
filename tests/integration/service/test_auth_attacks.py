"""Attacks on authentication and authorisation the route walk of test_auth.py does not cover, against the real
service on SQLite and PostgreSQL: another user's job (without Ray: the scheduler's Ray address is a closed
port, so jobs wait), a race to bind a fresh agent token to several nodes, tokens verified by their SHA-256
digest alone, and no token, valid or not, ever written to the service's log (uvicorn at trace level).

Already covered elsewhere: revoked and expired tokens, every role on every route, token secrets stored only
hashed (test_auth.py); an agent token bound to another node (test_ingest.py); a user's jobs on a real Ray
cluster (tests/integration/jobs)."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from tests.integration.service.helpers import (
    create_token,
    holdings,
    make_report,
    node,
    planned_inventory,
    post_report,
    start_module_service,
    token_row,
)
from tests.servers import free_port
from tests.service import ServiceProcess


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def guarded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service per backend: jobs accepted without Ray, uvicorn logging at its most verbose (trace)."""
    workdir = tmp_path_factory.mktemp(f"attacks-{request.param}")
    config = workdir / "scheduler.toml"
    config.write_text(f'[ray]\naddress = "http://127.0.0.1:{free_port()}"\n')
    process = start_module_service(request, workdir, scheduler_config=str(config), log_level="trace")
    yield process
    process.stop()


def test_a_user_can_neither_see_nor_cancel_another_users_job(guarded: ServiceProcess) -> None:
    """Bob (role user) asking for Alice's queued job, its logs, her job list, or cancelling it gets 404 (the
    job is not acknowledged to exist); a planner or agent token cancelling it gets 403; the job is still queued
    with the same events afterwards. Alice can cancel her own job, and an operator can cancel anyone's, so the
    refusals are not the route being broken."""
    with guarded.client() as admin:
        tokens = {
            name: create_token(admin, role, name=name)["token"]
            for name, role in (
                ("alice", "user"),
                ("bob", "user"),
                ("ops", "operator"),
                ("plan", "planner"),
                ("probe", "agent"),
            )
        }
    clients = {name: guarded.client(token) for name, token in tokens.items()}
    try:
        alice, bob = clients["alice"], clients["bob"]
        mine = alice.post("/v1/jobs", json={"name": "alice's", "class": "general", "entrypoint": "sleep 1"})
        other = alice.post("/v1/jobs", json={"name": "alice's too", "class": "general", "entrypoint": "true"})
        assert mine.status_code == other.status_code == 201, (mine.text, other.text)
        job_id, other_id = mine.json()["job_id"], other.json()["job_id"]
        before = alice.get(f"/v1/jobs/{job_id}").json()

        refusals = {
            "bob GET": (bob.get(f"/v1/jobs/{job_id}"), 404),
            "bob logs": (bob.get(f"/v1/jobs/{job_id}/logs"), 404),
            "bob cancel": (bob.post(f"/v1/jobs/{job_id}/cancel"), 404),
            "bob lists alice's": (bob.get("/v1/jobs", params={"owner": "alice"}), 404),
            "planner cancel": (clients["plan"].post(f"/v1/jobs/{job_id}/cancel"), 403),
            "agent cancel": (clients["probe"].post(f"/v1/jobs/{job_id}/cancel"), 403),
        }
        wrong = {k: (r.status_code, r.text[:120]) for k, (r, status) in refusals.items() if r.status_code != status}
        assert not wrong, wrong
        assert job_id not in {j["job_id"] for j in bob.get("/v1/jobs").json()["items"]}
        after = alice.get(f"/v1/jobs/{job_id}").json()
        assert after["state"] == "queued"
        assert after["events"] == before["events"]

        own = alice.post(f"/v1/jobs/{job_id}/cancel")
        assert (own.status_code, own.json()["state"]) == (200, "cancelled"), own.text
        by_operator = clients["ops"].post(f"/v1/jobs/{other_id}/cancel")
        assert (by_operator.status_code, by_operator.json()["state"]) == (200, "cancelled"), by_operator.text
    finally:
        for client in clients.values():
            client.close()


def test_a_fresh_agent_token_racing_to_report_for_ten_nodes_binds_to_exactly_one(guarded: ServiceProcess) -> None:
    """Ten reports for ten different nodes sent at once with one fresh agent token: exactly one is stored
    (200) and binds the token to its node; the other nine get 403 and store nothing."""
    with guarded.client() as admin:
        made = create_token(admin, "agent")
        reports = [make_report(planned_inventory(f"race-{i}")) for i in range(10)]
        before = holdings(admin)
        with guarded.client(made["token"]) as agent, ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(lambda r: post_report(agent, r).status_code, reports))
        assert sorted(answers) == [200] + [403] * 9, answers
        winner = f"race-{answers.index(200)}"
        assert token_row(admin, made["id"])["node_id"] == winner
        present = [r.inventory.host.node_id for r in reports if node(admin, r.inventory.host.node_id) is not None]
        assert present == [winner]
        after = holdings(admin)
    assert len(after["nodes"]) == len(before["nodes"]) + 1


def insert_token_row(database_url: str, name: str, digest: str) -> None:
    """A planner token row written straight into the database: a name, a role, a SHA-256 digest, no plaintext."""
    now = datetime.now(tz=UTC).replace(tzinfo=None)
    row = (name, "planner", digest, "sl_planner_", now)
    query = "INSERT INTO tokens (name, role, token_hash, prefix, created_at) VALUES ({0}, {0}, {0}, {0}, {0})"
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            conn.execute(query.format("?"), (*row[:4], now.isoformat(sep=" ")))
        return
    with psycopg.connect(database_url) as conn:
        conn.execute(query.format("%s"), row)


def test_tokens_are_verified_by_their_sha256_digest_alone(guarded: ServiceProcess) -> None:
    """A token row holding only the SHA-256 digest of a secret (written straight into the database, no
    plaintext anywhere) admits that secret, while the secret with its last character changed, its digest sent
    as a token, or the secret in another case, are refused with 401: the service finds a token by the digest
    of what it is sent (then compares the stored digest in constant time), never by the plaintext."""
    secret = f"sl_planner_{secrets.token_urlsafe(32)}"
    digest = hashlib.sha256(secret.encode()).hexdigest()
    insert_token_row(guarded.database_url, f"direct {digest[:8]}", digest)
    altered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    answers = {}
    for name, token in (
        ("secret", secret),
        ("last character changed", altered),
        ("its digest", digest),
        ("upper case", secret.upper()),
    ):
        with guarded.client(token) as client:
            answers[name] = client.get("/v1/census").status_code
    assert answers == {"secret": 200, "last character changed": 401, "its digest": 401, "upper case": 401}


def test_neither_valid_nor_invalid_tokens_are_ever_logged(guarded: ServiceProcess) -> None:
    """With uvicorn logging at trace level (every connection and ASGI message), requests carrying the admin
    token, a fresh user token, a revoked one, an expired one, garbage, a 4,000-character token, a token under
    the Basic scheme and one with non-ASCII bytes (answered 2xx, 4xx, 401, 403, 404, 422) leave the requests in
    the log, but no token and no token's SHA-256 digest anywhere in the service's stdout and stderr."""
    with guarded.client() as admin:
        user = create_token(admin, "user")
        revoked = create_token(admin, "planner")
        expiring = create_token(admin, "operator", expires_in_seconds=1)
        assert admin.delete(f"/v1/tokens/{revoked['id']}").status_code == 204
        admin.post("/v1/jobs", json={"name": "x", "class": "quantum", "entrypoint": "true"})
        admin.get("/v1/nodes/no-such-node")
    time.sleep(1.5)
    secrets_sent = [
        guarded.admin_token,
        user["token"],
        revoked["token"],
        expiring["token"],
        "sl_admin_" + secrets.token_urlsafe(32),
        "sl_user_" + secrets.token_urlsafe(3000),
    ]
    with httpx.Client(base_url=guarded.url, timeout=30) as http:
        seen = set()
        for token in secrets_sent:
            for method, path in (("GET", "/v1/census"), ("GET", "/v1/tokens"), ("POST", "/v1/reports")):
                response = http.request(method, path, headers={"Authorization": f"Bearer {token}"}, json={})
                seen.add(response.status_code)
            seen.add(http.get("/v1/census", headers={"Authorization": f"Basic {token}"}).status_code)
        odd = "sl_admin_\u00e9t\u00e9" + secrets.token_hex(8)
        seen.add(http.get("/v1/census", headers={b"Authorization": b"Bearer " + odd.encode("latin-1")}).status_code)
    assert {200, 401, 403, 422} <= seen, seen
    log = guarded.log.read_text(encoding="utf-8", errors="replace")
    assert '"GET /v1/census HTTP/1.1" 401' in log, "the requests are in the log (it is the right log)"
    assert "ASGI [" in log, "uvicorn traces every ASGI message"
    leaked = []
    for token in [*secrets_sent, odd]:
        digest = hashlib.sha256(token.encode()).hexdigest()
        for what, text in (("token", token), ("digest", digest), ("token's last 16 characters", token[-16:])):
            if text in log:
                leaked.append(f"{what} of {token[:12]}... in the log")
    assert not leaked, leaked
