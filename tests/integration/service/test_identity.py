"""Identity is the token's, not the request's: unique token names, jobs owned by the token's id, the organisations
a user token carries enforced on its jobs (and so on quotas and fair share), and environment values shown to the
job's owner and admins only.

In process (`tests.inprocess.AppService`) on a real SQLite file and on the session's PostgreSQL, with a scheduler
whose Ray cannot be reached: jobs are accepted and queue, nothing runs them, and what the scheduler would see is
read back from the database (`api.jobs.store.SqlJobStore`) and planned (`scheduler.queue.plan`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from api.cli.jobs import render_job
from api.db.engine import make_engine
from api.jobs.store import SqlJobStore
from census_agent.models import Tier
from scheduler.config import SchedulerConfig
from scheduler.models import NodeView
from scheduler.queue import Wait, plan
from tests.inprocess import AppService
from tests.integration.service.helpers import create_token, module_database
from tests.servers import free_port

GiB = 2**30
QUOTA = "[policy.quotas.physics.general]\njobs = 1\n"  # physics may run one general job at a time
SECRET = "s3cr3t-" + uuid.uuid4().hex  # an environment value only its owner and admins may read


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppService]:
    """The application per backend with a scheduler (a quota for `physics`) whose Ray cannot be reached."""
    workdir = tmp_path_factory.mktemp(f"identity-{request.param}")
    config = workdir / "scheduler.toml"
    config.write_text(f'[ray]\naddress = "http://127.0.0.1:{free_port()}"\n{QUOTA}')
    app = AppService(module_database(request, workdir), workdir, scheduler_config=str(config)).start()
    yield app
    app.stop()


def unique(stem: str) -> str:
    """A token name no other test of the module uses."""
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def job(name: str, **extra: Any) -> dict[str, Any]:
    """A general job document."""
    return {"name": name, "class": "general", "entrypoint": "true", **extra}


def all_jobs(admin: httpx.Client) -> list[dict[str, Any]]:
    """Every job, as an admin lists them."""
    response = admin.get("/v1/jobs", params={"limit": 1000})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def tokens_named(admin: httpx.Client, name: str) -> list[dict[str, Any]]:
    """The GET /v1/tokens entries of `name`."""
    return [t for t in admin.get("/v1/tokens").json() if t["name"] == name]


def test_a_second_token_of_a_taken_name_is_409_and_a_revoked_tokens_name_stays_taken(service: AppService) -> None:
    """POST /v1/tokens with a name already used answers 409 problem+json naming it, whatever the role, and
    stores nothing; a revoked token keeps its name (it names one principal in every job and record)."""
    name = unique("alice")
    with service.client() as admin:
        first = create_token(admin, "user", name=name, organisations=["physics"])
        for role, extra in (("user", {"organisations": ["physics"]}), ("operator", {})):
            again = admin.post("/v1/tokens", json={"name": name, "role": role, **extra})
            assert again.status_code == 409, again.text
            assert again.headers["content-type"].startswith("application/problem+json")
            assert name in again.json()["detail"]
        assert [t["id"] for t in tokens_named(admin, name)] == [first["id"]]

        assert admin.delete(f"/v1/tokens/{first['id']}").status_code == 204
        revoked = admin.post("/v1/tokens", json={"name": name, "role": "planner"})
        assert revoked.status_code == 409, revoked.text
        assert [t["id"] for t in tokens_named(admin, name)] == [first["id"]]


def test_organisations_belong_to_user_tokens_only_and_are_listed(service: AppService) -> None:
    """A user token without organisations, another role with some, repeated or malformed organisations: 422 and
    no token stored. A user token's organisations are in the creation's answer and in GET /v1/tokens, in order;
    other roles list []."""
    with service.client() as admin:
        before = admin.get("/v1/tokens").json()
        bad = {
            "user without": {"name": unique("u"), "role": "user"},
            "user with none": {"name": unique("u"), "role": "user", "organisations": []},
            "operator with": {"name": unique("o"), "role": "operator", "organisations": ["physics"]},
            "admin with": {"name": unique("a"), "role": "admin", "organisations": ["physics"]},
            "repeated": {"name": unique("u"), "role": "user", "organisations": ["physics", "physics"]},
            "empty name": {"name": unique("u"), "role": "user", "organisations": [""]},
            "control character": {"name": unique("u"), "role": "user", "organisations": ["a\nb"]},
            "not a list": {"name": unique("u"), "role": "user", "organisations": "physics"},
        }
        wrong = {}
        for case, body in bad.items():
            response = admin.post("/v1/tokens", json=body)
            if response.status_code != 422 or not response.headers["content-type"].startswith("application/problem"):
                wrong[case] = (response.status_code, response.text[:200])
        assert not wrong, wrong
        assert admin.get("/v1/tokens").json() == before

        made = create_token(admin, "user", name=unique("carol"), organisations=["physics", "chem"])
        planner = create_token(admin, "planner")
        assert made["organisations"] == ["physics", "chem"]
        listed = {t["id"]: t for t in admin.get("/v1/tokens").json()}
        assert listed[made["id"]]["organisations"] == ["physics", "chem"]
        assert listed[planner["id"]]["organisations"] == []


def test_a_token_named_like_another_sees_none_of_its_jobs(service: AppService) -> None:
    """Alice's job is invisible (404 on read, logs and cancel; absent from lists, also when filtering by her name)
    to tokens whose names only look like hers (case, a trailing space, a Cyrillic а): ownership is the token's
    id, not its name."""
    name = unique("alice")
    with service.client() as admin:
        alice = create_token(admin, "user", name=name, organisations=["physics"])
        lookalikes = [
            create_token(admin, "user", name=spoof, organisations=["physics"])["token"]
            for spoof in (name.upper(), name + " ", name.replace("a", "\u0430", 1))
        ]
    with service.client(alice["token"]) as client:
        made = client.post("/v1/jobs", json=job("alice's", runtime_env={"env_vars": {"API_KEY": SECRET}}))
        assert made.status_code == 201, made.text
    job_id = made.json()["job_id"]
    assert made.json()["owner_id"] == alice["id"]
    for token in lookalikes:
        with service.client(token) as other:
            answers = {
                "get": other.get(f"/v1/jobs/{job_id}").status_code,
                "logs": other.get(f"/v1/jobs/{job_id}/logs").status_code,
                "cancel": other.post(f"/v1/jobs/{job_id}/cancel").status_code,
                "by her name": other.get("/v1/jobs", params={"owner": name}).status_code,
            }
            assert answers == {"get": 404, "logs": 404, "cancel": 404, "by her name": 404}
            listed = other.get("/v1/jobs", params={"limit": 1000})
            assert listed.status_code == 200
            assert job_id not in {j["job_id"] for j in listed.json()["items"]}
            assert SECRET not in listed.text
    with service.client(alice["token"]) as client:
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "queued"


def test_a_user_submits_only_for_its_own_organisations_and_a_job_naming_none_takes_the_first(
    service: AppService,
) -> None:
    """A user token carrying physics and chem: naming another organisation is 403 problem+json naming both
    sides, and no job is stored; naming none stores physics (its first); naming chem stores chem. Admin and
    operator tokens may name any organisation; naming none, theirs is ``default``."""
    with service.client() as admin:
        user = create_token(admin, "user", name=unique("dora"), organisations=["physics", "chem"])
        operator = create_token(admin, "operator")
        before = all_jobs(admin)
    with service.client(user["token"]) as client:
        refused = client.post("/v1/jobs", json=job("escape", organisation="biology"))
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
        detail = refused.json()["detail"]
        assert "'biology'" in detail
        assert "physics, chem" in detail
        keyed = client.post("/v1/jobs", json=job("escape"), headers={"Idempotency-Key": "k1"})
        assert keyed.status_code == 201, keyed.text
        with service.client() as admin:
            after_first = all_jobs(admin)
        assert (
            client.post(
                "/v1/jobs", json=job("escape", organisation="biology"), headers={"Idempotency-Key": "k2"}
            ).status_code
            == 403
        )
        with service.client() as admin:
            # the refusal stored nothing (ids only: the dispatcher may have updated the stored job's reason meanwhile)
            assert [j["job_id"] for j in all_jobs(admin)] == [j["job_id"] for j in after_first]
        assert keyed.json()["organisation"] == "physics"
        assert keyed.json()["spec"]["organisation"] == "physics"
        chem = client.post("/v1/jobs", json=job("chem's", organisation="chem"))
        assert (chem.status_code, chem.json()["organisation"]) == (201, "chem"), chem.text
    assert len(after_first) == len(before) + 1
    for token in (service.admin_token, operator["token"]):
        with service.client(token) as staff:
            anywhere = staff.post("/v1/jobs", json=job("staff", organisation="biology"))
            unnamed = staff.post("/v1/jobs", json=job("staff"))
            assert (anywhere.status_code, anywhere.json()["organisation"]) == (201, "biology"), anywhere.text
            assert (unnamed.status_code, unnamed.json()["organisation"]) == (201, "default"), unnamed.text


def test_the_quota_binds_the_enforced_organisation_so_a_user_cannot_escape_it(service: AppService) -> None:
    """physics may run one general job at a time. A physics user submits two jobs, one naming no organisation,
    and tries a third for chem (403). What the dispatcher reads back has both as physics, and planning them on a
    free general node starts one and holds the other for physics's quota."""
    with service.client() as admin:
        user = create_token(admin, "user", name=unique("erin"), organisations=["physics"])
    with service.client(user["token"]) as client:
        ids = [
            client.post("/v1/jobs", json=job("q1")).json()["job_id"],
            client.post("/v1/jobs", json=job("q2", organisation="physics")).json()["job_id"],
        ]
        assert client.post("/v1/jobs", json=job("q3", organisation="chem")).status_code == 403
    engine = make_engine(service.database_url)
    try:
        waiting = [q for q in SqlJobStore(engine).waiting() if q.job_id in ids]
    finally:
        engine.dispose()
    assert sorted(q.job_id for q in waiting) == sorted(ids)
    assert {q.spec.organisation for q in waiting} == {"physics"}
    policy = SchedulerConfig.parse(f'[ray]\naddress = "http://127.0.0.1:1"\n{QUOTA}').policy  # the service's
    node = NodeView("g1", Tier.GENERAL, 64, 0, 256 * GiB, 64, 0, 256 * GiB)
    result = plan(waiting, [], [node], policy, now=waiting[0].submitted_at + 1)
    assert len(result.starts) == 1
    held = [w for w in result.waits if isinstance(w, Wait)]
    assert len(held) == 1
    assert "physics's general quota of 1 running job(s) is reached" in held[0].reason


def test_environment_values_are_shown_to_the_owner_and_admins_only(service: AppService) -> None:
    """A job with API_KEY=<secret>: its owner and an admin read the value (submit, get, list); an operator reads
    the names with ``***`` and ``env_values_redacted: true`` (get, list, cancel), and so does `suanli job`'s
    view of its answer; another user gets 404, a planner 403; the secret is in no such answer and not in the
    service's log."""
    with service.client() as admin:
        owner = create_token(admin, "user", name=unique("fay"), organisations=["physics"])
        operator = create_token(admin, "operator")
        other = create_token(admin, "user", name=unique("gus"), organisations=["physics"])
        planner = create_token(admin, "planner")
    env = {"API_KEY": SECRET, "MODE": "fast"}
    with service.client(owner["token"]) as client:
        submitted = client.post("/v1/jobs", json=job("secretive", runtime_env={"env_vars": env}))
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["job_id"]
        assert submitted.json()["spec"]["runtime_env"]["env_vars"] == env
        assert submitted.json()["env_values_redacted"] is False
        mine = client.get(f"/v1/jobs/{job_id}").json()
        assert (mine["spec"]["runtime_env"]["env_vars"], mine["env_values_redacted"]) == (env, False)
        listed = next(j for j in client.get("/v1/jobs").json()["items"] if j["job_id"] == job_id)
        assert listed["spec"]["runtime_env"]["env_vars"] == env
    with service.client() as admin:
        assert admin.get(f"/v1/jobs/{job_id}").json()["spec"]["runtime_env"]["env_vars"] == env
        assert next(j for j in all_jobs(admin) if j["job_id"] == job_id)["spec"]["runtime_env"]["env_vars"] == env

    redacted = {"API_KEY": "***", "MODE": "***"}
    with service.client(operator["token"]) as ops:
        seen = ops.get(f"/v1/jobs/{job_id}")
        page = ops.get("/v1/jobs", params={"limit": 1000})
        cancelled = ops.post(f"/v1/jobs/{job_id}/cancel")
    for answer in (seen, page, cancelled):
        assert answer.status_code == 200, answer.text
        assert SECRET not in answer.text
    in_page = next(j for j in page.json()["items"] if j["job_id"] == job_id)
    for doc in (seen.json(), in_page, cancelled.json()):
        assert (doc["spec"]["runtime_env"]["env_vars"], doc["env_values_redacted"]) == (redacted, True)
    shown = render_job(seen.json())
    assert "API_KEY=*** MODE=***" in shown
    assert SECRET not in shown
    with service.client(other["token"]) as stranger, service.client(planner["token"]) as plan_client:
        assert stranger.get(f"/v1/jobs/{job_id}").status_code == 404
        assert plan_client.get(f"/v1/jobs/{job_id}").status_code == 403
        assert plan_client.get("/v1/jobs").status_code == 403
    assert SECRET not in service.log.read_text(encoding="utf-8")
    with service.client(owner["token"]) as client:
        assert client.get(f"/v1/jobs/{job_id}").json()["spec"]["runtime_env"]["env_vars"] == env


def test_an_operators_own_job_shows_it_its_values(service: AppService) -> None:
    """Ownership, not role, decides: an operator reads the values of the job it submitted itself (and
    `suanli job` prints them), while another operator sees them redacted."""
    with service.client() as admin:
        mine, theirs = create_token(admin, "operator"), create_token(admin, "operator")
    with service.client(mine["token"]) as client:
        made = client.post("/v1/jobs", json=job("ops job", runtime_env={"env_vars": {"TOKEN": SECRET}}))
        assert made.status_code == 201, made.text
        doc = client.get(f"/v1/jobs/{made.json()['job_id']}").json()
    assert doc["spec"]["runtime_env"]["env_vars"] == {"TOKEN": SECRET}
    assert f"TOKEN={SECRET}" in render_job(doc)
    with service.client(theirs["token"]) as client:
        other = client.get(f"/v1/jobs/{made.json()['job_id']}").json()
    assert other["spec"]["runtime_env"]["env_vars"] == {"TOKEN": "***"}
    assert json.dumps(other).count(SECRET) == 0
