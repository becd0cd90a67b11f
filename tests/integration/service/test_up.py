"""`suanli up`, the README's main command: service, local agent and a Ray raylet per tier, stopped by one Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from scheduler.local_cluster import CLUSTER_ENV
from tests.servers import free_port, wait_for

pytestmark = pytest.mark.ray  # starts a Ray cluster of its own: one at a time (tests/conftest.py)

MARK = "TEST_SUANLI_UP_MARK"  # inherited by everything `up` starts, so its cluster is told from any other


def ray_clusters(mark: str | None = None) -> dict[str, set[int]]:
    """Processes of local Ray clusters started by Suanli, by cluster (their SUANLI_RAY_CLUSTER value); with
    `mark`, only the processes that inherited this test's mark (another test or session may start a cluster of
    its own meanwhile on a shared machine)."""
    found: dict[str, set[int]] = {}
    for proc in psutil.process_iter():
        try:
            environ = proc.environ()
        except (psutil.Error, OSError):
            continue
        tag = environ.get(CLUSTER_ENV)
        if tag and (mark is None or environ.get(MARK) == mark):
            found.setdefault(tag, set()).add(proc.pid)
    return found


def test_up_starts_service_agent_and_ray_tiers_then_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """`suanli up`: the census counts this machine (one active node in region 440106, reported by the local
    agent with its own bound token), every tier is served by a raylet of the local Ray cluster, and a job
    submitted with `suanli submit` runs; the cluster's Jobs API refuses a call without the Ray token that `up`
    wrote (0600) into its scheduler.toml, and the token appears nowhere in `up`'s output; SIGINT then stops the
    agent, the service and every Ray process it started (and no other), and `up` exits 0."""
    before = set(ray_clusters())
    port = free_port()
    data = tmp_path / "data"
    mark = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")} | {MARK: mark}
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "up", "--data-dir", str(data), "--port", str(port)],
        stdout=log,
        stderr=log,
        env=env,
    )
    try:
        token_file = data / "admin.token"
        wait_for(token_file.exists, 240, "the admin token file (written once Ray's tiers and the service are up)")

        def census_nodes() -> int:
            try:
                headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
                response = httpx.get(f"http://127.0.0.1:{port}/v1/census", headers=headers, timeout=5)
            except httpx.HTTPError:
                return 0
            return int(response.json()["totals"]["nodes"]) if response.status_code == 200 else 0

        wait_for(lambda: census_nodes() == 1, 90, "the local agent's report in the census")
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        nodes = httpx.get(f"http://127.0.0.1:{port}/v1/nodes", headers=headers, timeout=5).json()["items"]
        assert nodes[0]["region_code"] == "440106"
        tokens = httpx.get(f"http://127.0.0.1:{port}/v1/tokens", headers=headers, timeout=5).json()
        assert any(t["role"] == "agent" and t["node_id"] == nodes[0]["node_id"] for t in tokens)
        tiers = httpx.get(f"http://127.0.0.1:{port}/v1/tiers", headers=headers, timeout=10).json()["tiers"]
        assert {t["tier"]: (t["served"], t["reachable"], t["nodes"]) for t in tiers} == {
            tier: (True, True, 1) for tier in ("general", "ai", "hpc", "edge")
        }
        submitted = subprocess.run(
            [
                sys.executable,
                "-m",
                "api.cli",
                "submit",
                "--class",
                "general",
                "--server",
                f"http://127.0.0.1:{port}",
                "--token-file",
                str(token_file),
                "--json",
                "--",
                "echo",
                "hello from up",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        job_id = json.loads(submitted.stdout)["job_id"]

        def job_state() -> str:
            return str(
                httpx.get(f"http://127.0.0.1:{port}/v1/jobs/{job_id}", headers=headers, timeout=5).json()["state"]
            )

        wait_for(lambda: job_state() == "succeeded", 90, "the job submitted to `suanli up`")
        ray = tomllib.loads((data / "scheduler.toml").read_text())["ray"]
        ray_token_file = Path(ray["token_file"])
        assert ray_token_file.stat().st_mode & 0o777 == 0o600
        ray_token = ray_token_file.read_text().strip()
        assert httpx.get(f"{ray['address']}/api/jobs/", timeout=10).status_code == 401
        bearer = {"Authorization": f"Bearer {ray_token}"}
        assert httpx.get(f"{ray['address']}/api/jobs/", headers=bearer, timeout=10).status_code == 200
        mine = ray_clusters(mark)
        assert len(mine) == 1, mine
        assert not set(mine) & before
        ray_pids = ray_clusters()[next(iter(mine))]
        others = {tag: pids for tag, pids in ray_clusters().items() if tag in before}
        children = psutil.Process(up.pid).children()
        assert len(children) == 2
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=90) == 0
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert not [p for p in ray_pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        assert all(psutil.pid_exists(p) for pids in others.values() for p in pids)  # nothing else stopped
    finally:
        if up.poll() is None:  # the test failed: stop what `up` started (they run in sessions of their own)
            for child in psutil.Process(up.pid).children():
                child.kill()
            up.kill()
            up.wait()
        log.close()
    output = (tmp_path / "up.log").read_text()
    assert "stopped the agent and the service and the Ray cluster" in output
    assert ray_token not in output  # the Ray token is never printed or logged
