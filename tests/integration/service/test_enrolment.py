"""Agent enrolment: a fleet shares one `enrol` token and each node trades it for an agent token of its own
(`POST /v1/agents/enrol`), against the real service on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.service.helpers import (
    HOSTS,
    clean_env,
    create_token,
    make_report,
    module_service,
    planned_inventory,
    post_report,
    stored,
)
from tests.servers import wait_for
from tests.service import ServiceProcess


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service per backend for this module (its tests use node ids of their own)."""
    yield from module_service(request, tmp_path_factory)


def enrol(service: ServiceProcess, token: str, node_id: str) -> httpx.Response:
    """POST /v1/agents/enrol for `node_id` with `token`."""
    with service.client(token) as client:
        return client.post("/v1/agents/enrol", json={"node_id": node_id})


def test_an_enrolled_node_gets_a_token_bound_to_it_and_only_to_it(shared: ServiceProcess) -> None:
    """The minted token is an agent token already bound to the node: it reports for that node (200) and is
    refused for any other (403), and the token list shows it with its node."""
    node, other = f"enrol-{uuid.uuid4().hex[:8]}", f"enrol-{uuid.uuid4().hex[:8]}"
    with shared.client() as admin:
        fleet = create_token(admin, "enrol")["token"]
        answer = enrol(shared, fleet, node)
        assert answer.status_code == 201, answer.text
        minted = answer.json()
        assert (minted["role"], minted["node_id"]) == ("agent", node)
        listed = {t["id"]: t for t in admin.get("/v1/tokens").json()}
        assert listed[minted["id"]]["node_id"] == node
    with shared.client(minted["token"]) as agent:
        assert stored(agent, make_report(planned_inventory(node)))["outcome"] == "stored"
        refused = post_report(agent, make_report(planned_inventory(other)))
        assert refused.status_code == 403, refused.text
        assert node in refused.json()["detail"]


def test_a_node_enrols_once_until_an_admin_revokes_its_token(shared: ServiceProcess) -> None:
    """A second enrolment of the same node is refused (409, naming the token to revoke), so a leaked enrolment
    token cannot take over an enrolled node; after the admin revokes the node's token, it can enrol again (its new
    token named with " (2)", the revoked one keeping the name)."""
    node = f"enrol-{uuid.uuid4().hex[:8]}"
    with shared.client() as admin:
        fleet = create_token(admin, "enrol")["token"]
        first = enrol(shared, fleet, node).json()
        again = enrol(shared, fleet, node)
        assert again.status_code == 409, again.text
        assert f"agent token {first['id']}" in again.json()["detail"]
        assert admin.delete(f"/v1/tokens/{first['id']}").status_code in (200, 204)
        renewed = enrol(shared, fleet, node)
        assert renewed.status_code == 201, renewed.text
        assert renewed.json()["token"] != first["token"]
        assert renewed.json()["name"] == f"{first['name']} (2)"  # names are unique: the revoked token keeps its own


def test_the_enrolment_token_can_do_nothing_but_enrol(shared: ServiceProcess) -> None:
    """With the enrolment token itself a report, a census read and a token listing are refused (403), and a
    malformed node id is a 422 that mints nothing."""
    node = f"enrol-{uuid.uuid4().hex[:8]}"
    with shared.client() as admin:
        fleet = create_token(admin, "enrol")["token"]
        before = len(admin.get("/v1/tokens").json())
    with shared.client(fleet) as client:
        assert post_report(client, make_report(planned_inventory(node))).status_code == 403
        assert client.get("/v1/census").status_code == 403
        assert client.get("/v1/tokens").status_code == 403
        bad = client.post("/v1/agents/enrol", json={"node_id": "../../etc/passwd"})
        assert bad.status_code == 422, bad.text
    with shared.client() as admin:
        assert len(admin.get("/v1/tokens").json()) == before


def agent_argv(service: ServiceProcess, workdir: Path, enrol_token_file: Path, node_id: str) -> list[str]:
    """`census-agent run` for a fixture host with only the fleet's enrolment token (its own token file is the
    default: agent.token beside its spool directory)."""
    return [
        sys.executable,
        "-m",
        "census_agent.cli",
        "run",
        "--server",
        service.url,
        "--enrol-token-file",
        str(enrol_token_file),
        "--interval",
        "1",
        "--no-nvml",
        "--node-id",
        node_id,
        "--region",
        "440106",
        "--root",
        str(HOSTS / "epyc-9654-zen4"),
        "--spool-dir",
        str(workdir / "spool"),
    ]


def test_a_real_agent_enrols_with_the_fleet_token_keeps_its_own_and_a_twin_is_refused(
    shared: ServiceProcess, tmp_path: Path
) -> None:
    """`census-agent run --enrol-token-file` trades the shared token for its node's own on its first push, keeps
    it (mode 0600) and reports with it; restarted, it reuses it (no second token minted). A second machine
    claiming the same node id is refused enrolment and keeps its reports in its spool."""
    node = f"enrol-agent-{uuid.uuid4().hex[:8]}"
    with shared.client() as admin:
        fleet_file = tmp_path / "enrol.token"
        fleet_file.write_text(create_token(admin, "enrol")["token"] + "\n")

        def node_reports() -> int:
            response = admin.get(f"/v1/nodes/{node}")
            return len(response.json()["recent_reports"]) if response.status_code == 200 else 0

        def minted_for_node() -> list[dict[str, Any]]:
            return [t for t in admin.get("/v1/tokens").json() if t["node_id"] == node]

        first_dir = tmp_path / "first"
        log = (tmp_path / "first.log").open("ab")
        agent = subprocess.Popen(
            agent_argv(shared, first_dir, fleet_file, node), stdout=log, stderr=log, env=clean_env()
        )
        try:
            wait_for(lambda: node_reports() >= 2, 60, f"reports of {node} after enrolment")
            agent.send_signal(signal.SIGTERM)
            agent.wait(timeout=20)
            own = first_dir / "agent.token"
            assert own.read_text().startswith("sl_agent_")
            assert stat.S_IMODE(own.stat().st_mode) == 0o600
            assert len(minted_for_node()) == 1

            seen = node_reports()
            agent = subprocess.Popen(
                agent_argv(shared, first_dir, fleet_file, node), stdout=log, stderr=log, env=clean_env()
            )
            wait_for(lambda: node_reports() > seen, 60, f"reports of {node} after the restart")
            assert len(minted_for_node()) == 1
        finally:
            agent.kill()
            agent.wait()
            log.close()

        twin_dir = tmp_path / "twin"
        twin_log = tmp_path / "twin.log"
        with twin_log.open("ab") as out:
            twin = subprocess.Popen(
                agent_argv(shared, twin_dir, fleet_file, node), stdout=out, stderr=out, env=clean_env()
            )
            try:
                wait_for(lambda: "already enrolled" in twin_log.read_text(), 60, "the twin's refused enrolment")
            finally:
                twin.kill()
                twin.wait()
        assert not (twin_dir / "agent.token").exists()
        assert any((twin_dir / "spool").iterdir()), "the twin's reports were not kept in its spool"
        assert len(minted_for_node()) == 1
