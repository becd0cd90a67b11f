"""`suanli up`, the README's main command: the service and a local agent, stopped together by one Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from tests.servers import free_port, wait_for


def test_up_starts_service_and_agent_then_ctrl_c_stops_both(tmp_path: Path) -> None:
    """Within a minute the census counts this machine (one active node in region 440106, reported by the local
    agent with its own bound token); SIGINT then stops the agent and the service and `up` exits 0."""
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
    log = (tmp_path / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "up", "--data-dir", str(data), "--port", str(port)],
        stdout=log, stderr=log, env=env,
    )  # fmt: skip
    try:
        token_file = data / "admin.token"
        wait_for(token_file.exists, 60, "the admin token file")

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
        children = psutil.Process(up.pid).children()
        assert len(children) == 2
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if up.poll() is None:  # the test failed: stop what `up` started (they run in sessions of their own)
            for child in psutil.Process(up.pid).children():
                child.kill()
            up.kill()
            up.wait()
        log.close()
    assert "stopped the agent and the service" in (tmp_path / "up.log").read_text()
