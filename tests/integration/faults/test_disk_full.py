"""A full disk under the agent's spool and under the service's SQLite file (a small tmpfs, filled up): a clear
error in the log and a metric or a problem answer, the process keeps going, nothing is corrupted."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.faults.harness import (
    FaultAgent,
    can_mount_tmpfs,
    fill,
    sequences_of,
    stored_reports,
    tmpfs,
)
from tests.integration.service.helpers import create_token, make_report, planned_inventory, post_report, token_row
from tests.servers import wait_for
from tests.service import ServiceProcess

DIRECT = re.compile(r"sending report ([0-9a-f-]{36}) without a spool copy")
pytestmark = pytest.mark.skipif(not can_mount_tmpfs(), reason="mounting a small tmpfs needs root")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted after the test."""
    with tmpfs(tmp_path / "small-disk", 8 << 20) as mounted:
        yield mounted


def test_full_spool_disk_is_logged_and_counted_and_the_agent_keeps_running_with_an_intact_spool(
    tmp_path: Path, small_disk: Path
) -> None:
    """The agent's spool is on a tmpfs filled up but for a few pages, and the service is not up yet: the agent
    spools what fits, then logs "spool write failed ... No space left on device" and counts each failure in
    `suanli_agent_spool_write_errors_total` while it keeps running.  What it spooled reads back as whole reports
    (no partial or temporary files); once the service is up the spooled reports are delivered, and with the disk
    full again the reports that cannot be spooled are pushed directly and stored."""
    admin_token = secrets.token_urlsafe(32)
    (tmp_path / "admin.token").write_text(admin_token + "\n")
    service = ServiceProcess(f"sqlite:///{tmp_path / 'suanli.db'}", tmp_path)  # started later
    agent = FaultAgent(tmp_path, service.url, admin_token, "full-spool-agent")
    agent.spool = small_disk / "spool"
    agent.argv[agent.argv.index("--spool-dir") + 1] = str(agent.spool)
    agent.spool.mkdir()
    fill(small_disk, leave_bytes=3 * 4096)  # room for the sequence file and two reports
    try:
        agent.start()
        wait_for(
            lambda: (agent.metric("suanli_agent_spool_write_errors_total") or 0) >= 2,
            60,
            "spool write errors to be counted",
        )
        assert agent.alive
        kept = agent.spooled()
        assert kept, "nothing fitted in the spool"
        assert not [p.name for p in agent.spool.iterdir() if p.name.startswith(".tmp-")]
        documents = [json.loads((agent.spool / f"{s:020d}.json").read_bytes()) for s in kept]
        assert [d["sequence"] for d in documents] == kept

        service.start()
        wait_for(lambda: not agent.spooled(), 60, "the spool to drain")
        fill(small_disk)  # the drain freed the spool's pages: take them too
        log_seen = len(agent.log.read_bytes())

        def direct_pushes_stored() -> bool:
            ids = set(DIRECT.findall(agent.log.read_bytes()[log_seen:].decode()))
            return bool(ids) and ids <= {r.report_id for r in stored_reports(service.database_url)}

        wait_for(direct_pushes_stored, 30, "reports made while the disk is full to be pushed directly and stored")
        assert agent.alive
        assert agent.stop() == 0
    finally:
        agent.kill()
        service.stop()

    assert set(kept) <= set(sequences_of(stored_reports(service.database_url), agent.node_id))
    log = agent.log.read_text()
    assert "spool write failed" in log
    assert "No space left on device" in log


def test_full_sqlite_disk_answers_507_keeps_the_database_intact_and_recovers_when_space_returns(
    tmp_path: Path, small_disk: Path
) -> None:
    """The service's SQLite file is on a tmpfs that is filled up (after a WAL checkpoint, so the next write needs
    new space); then each report, for a new node with a fresh agent token, is answered 507 problem+json with
    Retry-After and a detail saying the disk is full, while the service stays up and ready to read and logs why.
    When the space is freed the same process stores the refused node's report, and that token is bound to its node
    (a binding made in the failed transaction was rolled back, not kept in memory).  Every acknowledged report is in
    the database, and `PRAGMA integrity_check` says ok."""
    database = small_disk / "suanli.db"
    service = ServiceProcess(f"sqlite:///{database}", tmp_path).start()
    acked: list[str] = []
    try:
        with service.client() as admin:
            tokens = [create_token(admin, "agent") for _ in range(20)]

            def post(n: int) -> httpx.Response:
                report = make_report(planned_inventory(f"full-disk-{n}"))
                with service.client(tokens[n]["token"]) as agent:
                    response = post_report(agent, report)
                if response.is_success:
                    acked.append(str(report.report_id))
                return response

            def checkpointed() -> bool:
                with sqlite3.connect(database) as conn:
                    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                return bool(busy == 0)

            wait_for(checkpointed, 30, "a checkpoint that empties the WAL")
            filler = fill(small_disk)
            answers = []
            for n in range(len(tokens)):
                answers.append(post(n))
                if answers[-1].status_code != 200:
                    break
            refused, n = answers[-1], len(answers) - 1
            assert service.proc is not None
            assert service.proc.poll() is None
            assert admin.get("/healthz").status_code == 200
            assert admin.get("/v1/census").status_code == 200
            again = post(n)

            filler.unlink()
            wait_for(lambda: post(n).is_success, 30, "the refused node's report to be stored once space is back")
            bound = token_row(admin, int(tokens[n]["id"]))["node_id"]
    finally:
        service.stop()

    assert refused.status_code == 507, [a.status_code for a in answers]
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"].isdigit()
    assert "disk full" in refused.json()["detail"]
    assert again.status_code == 507, again.text
    assert bound == f"full-disk-{n}"
    assert set(acked) <= {r.report_id for r in stored_reports(service.database_url)}
    with sqlite3.connect(database) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert "Insufficient storage" in service.log.read_text()
