"""The audit chain against the real service on SQLite and PostgreSQL: every privileged act appends an entry naming
its actor, `GET /v1/audit` lists them (admin only, filtered, paged), and `GET /v1/audit/verify` and `suanli audit
--verify` name the first entry edited, removed or reordered and every report changed, removed or added behind the
service's back, with the database edited directly (sqlite3 on the file, psycopg on PostgreSQL)."""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import Engine

from api.audit import log as audit_log
from api.audit.chain import Entry, canonical_json
from api.db.engine import make_engine, migrate, write_transaction
from tests.inprocess import AppService
from tests.integration.service.helpers import clean_env, create_token, make_report, planned_inventory, stored
from tests.integration.service.test_cli import SUANLI
from tests.servers import free_port
from tests.service import PostgresCluster, ServiceProcess

PROBLEM = "application/problem+json"


@pytest.fixture(params=["sqlite", "postgresql"])
def audited(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AppService]:
    """The application on a fresh database of each backend, with a scheduler whose Ray is unreachable (jobs queue,
    nothing runs them)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'suanli.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database()
    config = tmp_path / "scheduler.toml"
    config.write_text(f'[ray]\naddress = "http://127.0.0.1:{free_port()}"\n')
    app = AppService(url, tmp_path, scheduler_config=str(config)).start()
    yield app
    app.stop()


def execute(database_url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one SQL statement straight on the service's database (``?`` placeholders), as an intruder with the
    database's credentials would; returns the rows it gives."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            return list(conn.execute(statement, params))
    with psycopg.connect(database_url) as conn:
        cursor = conn.execute(statement.replace("?", "%s"), params)
        return list(cursor) if cursor.description else []


def entries(admin: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    """Every entry of `GET /v1/audit` with `params`, oldest first (paging through `next_before`)."""
    found: list[dict[str, Any]] = []
    before = None
    while True:
        response = admin.get("/v1/audit", params={**params, **({"before": before} if before else {})})
        assert response.status_code == 200, response.text
        page = response.json()
        found += page["items"]
        before = page["next_before"]
        if before is None:
            return found[::-1]


def verify(admin: httpx.Client, **params: str) -> dict[str, Any]:
    """`GET /v1/audit/verify`."""
    response = admin.get("/v1/audit/verify", params=params)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_every_privileged_act_is_an_entry_naming_its_actor_and_the_listing_filters_and_pages(
    audited: AppService,
) -> None:
    """Start-up (chain begun, regions seeded, settings, first admin token: by the service), a token created and
    revoked and a job submitted and cancelled (by the admin or user token), an enrolment (by the enrol token), a
    report (its group commit, holding its id), and nodes recorded from Kubernetes (by the operator token) each append
    one entry with the acting token's id and name; the chain verifies, and a client recomputes every hash from the
    listing alone; filters by action, actor and time and paging by cursor return exactly the matching entries;
    non-admins get 403 and bad filters 422 with nothing changed."""
    with audited.client() as admin:
        users = {
            role: create_token(admin, role, name=f"{role}-{uuid.uuid4().hex[:6]}")
            for role in ("user", "operator", "enrol")
        }
        doomed = create_token(admin, "planner")
        assert admin.delete(f"/v1/tokens/{doomed['id']}").status_code == 204
        admin_id = next(t["id"] for t in admin.get("/v1/tokens").json() if audited.admin_token.startswith(t["prefix"]))
    user, operator, enrol = (users[r] for r in ("user", "operator", "enrol"))
    with audited.client(user["token"]) as as_user:
        job = as_user.post("/v1/jobs", json={"name": "audited", "class": "general", "entrypoint": "true"})
        assert job.status_code == 201, job.text
        job_id = job.json()["job_id"]
        assert as_user.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        assert as_user.get("/v1/audit").status_code == 403
        assert as_user.get("/v1/audit/verify").status_code == 403
    with audited.client(enrol["token"]) as as_enrol:
        minted = as_enrol.post("/v1/agents/enrol", json={"node_id": "audit-node-1"})
        assert minted.status_code == 201, minted.text
    with audited.client(minted.json()["token"]) as agent:
        report = make_report(planned_inventory("audit-node-1"))
        stored(agent, report)
    inventory = planned_inventory("audit-k8s-1").model_dump(mode="json")
    with audited.client(operator["token"]) as as_operator:
        recorded = as_operator.post(
            "/v1/nodes/discovered", json={"nodes": [{"name": "k1", "inventory": inventory, "ready": True}]}
        )
        assert recorded.status_code == 200, recorded.text
    with audited.client("") as anonymous:
        assert anonymous.get("/v1/audit").status_code == 401

    with audited.client() as admin:
        chain = entries(admin, limit=2)
        acts = [(e["action"], e["actor_id"], e["actor"], e["subject"]) for e in chain]
        assert [e["seq"] for e in chain] == list(range(1, len(chain) + 1))
        assert acts[:4] == [
            ("audit.start", None, "service", None),
            ("regions.seed", None, "service", None),
            ("settings.change", None, "service", None),
            ("token.create", None, "service", f"token:{admin_id}"),
        ]
        admin_name = acts[3][3] and chain[3]["detail"]["name"]
        assert acts[4:] == [
            *[
                ("token.create", admin_id, admin_name, f"token:{t['id']}")
                for t in (user, users["operator"], enrol, doomed)
            ],
            ("token.revoke", admin_id, admin_name, f"token:{doomed['id']}"),
            ("job.submit", user["id"], user["name"], f"job:{job_id}"),
            ("job.cancel", user["id"], user["name"], f"job:{job_id}"),
            ("agent.enrol", enrol["id"], enrol["name"], "node:audit-node-1"),
            ("reports.store", None, "service", "reports:1"),
            ("nodes.discover", operator["id"], operator["name"], None),
        ]
        assert chain[4]["detail"] == {"name": user["name"], "role": "user", "expires_at": None}
        assert chain[-3]["detail"] == {"token_id": minted.json()["id"]}
        assert list(chain[-2]["detail"]["reports"]) == [str(report.report_id)]
        assert chain[-1]["detail"]["added"] == ["audit-k8s-1"]
        assert all(e["prev_hash"] == p["hash"] for p, e in itertools.pairwise(chain))
        for e in chain:  # a client can recompute every hash from the listing alone
            fields = (e["action"], e["actor_id"], e["actor"], e["subject"], canonical_json(e["detail"]))
            listed = Entry(e["seq"], datetime.fromisoformat(e["at"]), *fields, e["prev_hash"], e["hash"])
            assert listed.computed_hash() == e["hash"], e

        result = verify(admin)
        assert result["ok"] is True, result
        assert (result["entries"], result["reports"]) == (len(chain), 1)
        assert result["head"] == {"seq": chain[-1]["seq"], "hash": chain[-1]["hash"]}
        assert verify(admin, anchor=f"{chain[5]['seq']}:{chain[5]['hash']}")["ok"] is True

        assert [e["seq"] for e in entries(admin, action="token.create")] == [4, 5, 6, 7, 8]
        assert [e["seq"] for e in entries(admin, actor=user["name"])] == [10, 11]
        since, until = chain[9]["at"], chain[11]["at"]
        assert [e["seq"] for e in entries(admin, since=since, until=until)] == [10, 11]
        assert entries(admin, since="2999-01-01T00:00:00Z") == []
        before = admin.get("/v1/audit").json()
        for bad in (
            {"limit": "0"},
            {"limit": "1001"},
            {"action": "DROP TABLE"},
            {"before": "0"},
            {"before": str(2**63)},
            {"since": "yesterday"},
            {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
            {"since": "0001-01-01T00:00:00+01:00"},
        ):
            response = admin.get("/v1/audit", params=bad)
            assert response.status_code == 422, (bad, response.text)
            assert response.headers["content-type"].startswith(PROBLEM)
        for anchor in ("1:xyz", "0:" + "0" * 64, "seq:hash"):
            assert admin.get("/v1/audit/verify", params={"anchor": anchor}).status_code == 422, anchor
        assert admin.get("/v1/audit").json() == before


def test_verify_names_each_edit_removal_and_move_made_straight_in_the_database(audited: AppService) -> None:
    """With the database edited directly: an entry's field changed is ``edited`` at that entry; an entry deleted is
    ``removed`` at its seq (the last one, against the chain's head); two entries swapped are ``reordered``; a stored
    report changed or deleted is named with the entry covering it, and one inserted behind the service's back as
    ``unrecorded``; an anchor kept outside catches a chain rewritten whole.  Each edit undone, the chain holds
    again: verification reads exactly what is stored."""
    url = audited.database_url
    with audited.client() as admin:
        agent = create_token(admin, "agent")
    reports = [make_report(planned_inventory(f"tamper-{i}"), sequence=1) for i in range(3)]
    with audited.client(agent["token"]) as as_agent:
        stored(as_agent, reports[0])
    with audited.client() as admin:
        create_token(admin, "user")
        create_token(admin, "planner")
    with audited.client() as admin:
        assert verify(admin)["ok"] is True
        head = verify(admin)["head"]
        last = head["seq"]
        covering = next(e["seq"] for e in entries(admin, action="reports.store"))

        original = execute(url, "SELECT actor FROM audit_log WHERE seq = ?", (3,))[0][0]
        execute(url, "UPDATE audit_log SET actor = ? WHERE seq = ?", ("mallory", 3))
        broken = verify(admin)
        assert broken["ok"] is False
        assert broken["first_break"]["seq"] == 3
        assert broken["first_break"]["kind"] == "edited"
        execute(url, "UPDATE audit_log SET actor = ? WHERE seq = ?", (original, 3))
        assert verify(admin)["ok"] is True
        if url.startswith("sqlite"):  # SQLite keeps a value of another type than the column's: still named, no 500
            when = execute(url, "SELECT at FROM audit_log WHERE seq = ?", (2,))[0][0]
            report_id = str(reports[0].report_id)
            threads = execute(url, "SELECT threads FROM reports WHERE report_id = ?", (report_id,))[0][0]
            execute(url, "UPDATE audit_log SET at = ? WHERE seq = ?", ("not a time", 2))
            execute(url, "UPDATE reports SET threads = ? WHERE report_id = ?", ("many", report_id))
            broken = verify(admin)
            assert (broken["first_break"]["seq"], broken["first_break"]["kind"]) == (2, "edited")
            assert [m["kind"] for m in broken["mismatches"]] == ["edited"]
            assert admin.get("/v1/audit").status_code == 200
            execute(url, "UPDATE audit_log SET at = ? WHERE seq = ?", (when, 2))
            execute(url, "UPDATE reports SET threads = ? WHERE report_id = ?", (threads, report_id))

        columns = "seq, at, action, actor_id, actor, subject, detail, prev_hash, hash"
        for seq in (4, last):
            row = execute(url, f"SELECT {columns} FROM audit_log WHERE seq = ?", (seq,))[0]
            execute(url, "DELETE FROM audit_log WHERE seq = ?", (seq,))
            broken = verify(admin)
            assert (broken["first_break"]["seq"], broken["first_break"]["kind"]) == (seq, "removed"), broken
            execute(url, f"INSERT INTO audit_log ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
        assert verify(admin)["ok"] is True

        execute(url, "UPDATE audit_log SET seq = ? WHERE seq = ?", (-1, 5))
        execute(url, "UPDATE audit_log SET seq = ? WHERE seq = ?", (5, 6))
        execute(url, "UPDATE audit_log SET seq = ? WHERE seq = ?", (6, -1))
        broken = verify(admin)
        assert (broken["first_break"]["seq"], broken["first_break"]["kind"]) == (5, "reordered"), broken
        assert "written as entry 6" in broken["first_break"]["detail"]
        execute(url, "UPDATE audit_log SET seq = ? WHERE seq = ?", (-1, 5))
        execute(url, "UPDATE audit_log SET seq = ? WHERE seq = ?", (5, 6))
        execute(url, "UPDATE audit_log SET seq = ? WHERE seq = ?", (6, -1))
        assert verify(admin)["ok"] is True

        report_id = str(reports[0].report_id)
        execute(url, "UPDATE reports SET fp16_flops = fp16_flops * 2 WHERE report_id = ?", (report_id,))
        broken = verify(admin)
        assert broken["ok"] is False
        assert broken["first_break"] is None
        assert broken["mismatches"] == [
            {
                "seq": covering,
                "report_id": report_id,
                "kind": "edited",
                "detail": f"report {report_id} no longer matches its digest in entry {covering}",
            }
        ]
        execute(url, "UPDATE reports SET fp16_flops = fp16_flops / 2 WHERE report_id = ?", (report_id,))
        assert verify(admin)["ok"] is True

        row = execute(url, "SELECT * FROM reports WHERE report_id = ?", (report_id,))[0]
        execute(url, "DELETE FROM reports WHERE report_id = ?", (report_id,))
        broken = verify(admin)
        assert [(m["report_id"], m["kind"], m["seq"]) for m in broken["mismatches"]] == [
            (report_id, "removed", covering)
        ]
        forged = (row[0] + 1000, str(uuid.uuid4()), *row[2:])
        marks = ", ".join("?" * len(row))
        execute(url, f"INSERT INTO reports VALUES ({marks})", row)
        execute(url, f"INSERT INTO reports VALUES ({marks})", forged)
        broken = verify(admin)
        assert [(m["report_id"], m["kind"], m["seq"]) for m in broken["mismatches"]] == [
            (forged[1], "unrecorded", None)
        ]
        execute(url, "DELETE FROM reports WHERE report_id = ?", (forged[1],))
        assert verify(admin)["ok"] is True

        anchor = f"{head['seq']}:{head['hash']}"
        execute(url, "UPDATE audit_log SET hash = ? WHERE seq = ?", ("f" * 64, head["seq"]))
        execute(url, "UPDATE audit_head SET hash = ? WHERE id = 1", ("f" * 64,))
        broken = verify(admin, anchor=anchor)
        assert (broken["first_break"]["seq"], broken["first_break"]["kind"]) == (head["seq"], "edited"), broken


@pytest.fixture(params=["sqlite"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceProcess]:
    """The service under uvicorn on 127.0.0.1, on a fresh SQLite database. Its test is about `suanli audit`
    against a service in another process; the chain's verification of edits made straight in each backend's
    database is test_verify_names_each_edit_removal_and_move_made_straight_in_the_database [sqlite] and
    [postgresql]."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'suanli.db'}"
    else:
        cluster: PostgresCluster = request.getfixturevalue("postgres")
        url = cluster.create_database()
    process = ServiceProcess(url, tmp_path).start()
    yield process
    process.stop()


def test_suanli_audit_lists_entries_and_verify_exits_1_naming_an_edited_report_of_a_remote_service(
    remote: ServiceProcess, tmp_path: Path
) -> None:
    """`suanli audit` against a service in another process lists the entries; `--verify` exits 0 while the chain
    holds and 1 once a stored report is edited in the database, naming the report on standard error."""
    with httpx.Client(base_url=remote.url, headers={"Authorization": f"Bearer {remote.admin_token}"}) as admin:
        agent = create_token(admin, "agent", name="cli-agent")
    report = make_report(planned_inventory("cli-audit-1"))
    with httpx.Client(base_url=remote.url, headers={"Authorization": f"Bearer {agent['token']}"}) as as_agent:
        stored(as_agent, report)
    token_file = tmp_path / "admin.token.copy"
    token_file.write_text(remote.admin_token)

    def suanli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [str(SUANLI), "audit", "--server", remote.url, "--token-file", str(token_file), *args]
        return subprocess.run(
            command, capture_output=True, text=True, cwd=tmp_path, env=clean_env(), timeout=60, check=False
        )

    listing = suanli("--action", "token.create")
    assert listing.returncode == 0, listing.stderr
    assert '"name":"cli-agent","role":"agent"' in listing.stdout  # the created token, in the entry's detail
    assert listing.stdout.count("token.create") == 2, listing.stdout
    holds = suanli("--verify")
    assert holds.returncode == 0, holds.stderr
    assert "the audit chain holds" in holds.stdout

    execute(
        remote.database_url, "UPDATE reports SET threads = threads + 1 WHERE report_id = ?", (str(report.report_id),)
    )
    broken = suanli("--verify")
    assert broken.returncode == 1, broken.stdout
    assert f"REPORT {report.report_id} (edited)" in broken.stderr


def test_appends_from_two_replicas_at_once_never_fork_the_chain(database_url: str) -> None:
    """Two engines on one database (two replicas), four threads each appending 25 entries in transactions of their
    own, all at once: the chain has 200 entries numbered 1..200 without a gap, each following the one before, and
    verifies (PostgreSQL: the head row's lock; SQLite: the write lock taken at BEGIN IMMEDIATE)."""
    engines = [make_engine(database_url) for _ in range(2)]
    try:
        migrate(engines[0])
        with write_transaction(engines[0]) as conn:
            audit_log.start(conn)
        start = threading.Barrier(8)

        def appender(engine: Engine, worker: int) -> None:
            start.wait()
            for n in range(25):
                with write_transaction(engine) as conn:
                    audit_log.append(conn, "token.create", audit_log.Actor(worker, f"w{worker}"), detail={"n": n})

        threads = [threading.Thread(target=appender, args=(engines[i % 2], i)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        with engines[1].connect() as conn:
            page = audit_log.search(conn, limit=1000)
        result = audit_log.verify(engines[1])
    finally:
        for engine in engines:
            engine.dispose()
    seqs = [e["seq"] for e in page["items"]][::-1]
    assert seqs == list(range(1, 202))
    assert result["ok"] is True, result
    assert result["entries"] == 201


def test_reports_sent_at_once_are_all_covered_by_group_commit_entries(audited: AppService) -> None:
    """Sixty reports of six nodes sent by six agents at once (stored in group commits, by the pricing worker's
    process where there is one): every report is covered by exactly one ``reports.store`` entry, and the chain and
    every report verify."""
    with audited.client() as admin:
        tokens = [create_token(admin, "agent")["token"] for _ in range(6)]
    sent: list[str] = []

    def agent(index: int) -> None:
        with audited.client(tokens[index]) as client:
            node = planned_inventory(f"burst-{index}")
            for sequence in range(1, 11):
                report = make_report(node, sequence=sequence)
                stored(client, report)
                sent.append(str(report.report_id))

    threads = [threading.Thread(target=agent, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    with audited.client() as admin:
        commits = entries(admin, action="reports.store")
        result = verify(admin)
    covered = [report_id for entry in commits for report_id in entry["detail"]["reports"]]
    assert sorted(covered) == sorted(sent)
    assert len(sent) == 60
    assert result["ok"] is True, result
    assert result["reports"] == 60
