"""The agent DaemonSet's init container (deploy/helm/suanli/files/node-labels.py), run for real as a process.

It is pointed (SUANLI_K8S_API) at a small HTTP server on 127.0.0.1 that answers ``GET /api/v1/nodes/NAME`` with
a Node object, like the Kubernetes API would; the config file it writes must load in the agent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from census_agent.config import load_config
from tests.deploy.helm import CHART

SCRIPT = CHART / "files" / "node-labels.py"
NODE = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {"name": "node-a", "labels": {"suanli.io/region": "440106", "topology.kubernetes.io/zone": 'hall "B"'}},
}


class NodeAPI(BaseHTTPRequestHandler):
    """Answers GET /api/v1/nodes/node-a; 404 for anything else."""

    def do_GET(self) -> None:
        body = json.dumps(NODE).encode() if self.path == "/api/v1/nodes/node-a" else b'{"kind": "Status"}'
        self.send_response(200 if self.path == "/api/v1/nodes/node-a" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def api_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NodeAPI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run_script(api: str, node: str, mapping: dict[str, str], out: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SUANLI_K8S_API": api,
        "NODE_NAME": node,
        "SUANLI_NODE_LABELS": json.dumps(mapping),
        "SUANLI_AGENT_CONFIG_OUT": str(out),
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_node_labels_become_the_agents_labels(api_url: str, tmp_path: Path) -> None:
    """The node's region and zone labels land in [labels] of a file the agent loads; a mapped label the node lacks
    (tier) is left out with a note, and an unmapped one ("") is ignored."""
    out = tmp_path / "agent.toml"
    mapping = {
        "region": "suanli.io/region",
        "site": "topology.kubernetes.io/zone",
        "tier": "suanli.io/tier",
        "organisation": "",
    }
    result = run_script(api_url, "node-a", mapping, out)
    assert result.returncode == 0, result.stderr
    config = load_config(out, environ={})
    assert config.labels.region == "440106"
    assert config.labels.site == 'hall "B"'
    assert config.labels.tier is None
    assert "no label 'suanli.io/tier'" in result.stderr


def test_unreadable_node_fails_the_init_container(api_url: str, tmp_path: Path) -> None:
    """When the Node cannot be read (here: 404 for an unknown node) the script exits 1 without writing a config,
    so the kubelet retries the pod instead of starting an agent without its labels."""
    out = tmp_path / "agent.toml"
    result = run_script(api_url, "node-z", {"region": "suanli.io/region"}, out)
    assert result.returncode == 1
    assert not out.exists()
