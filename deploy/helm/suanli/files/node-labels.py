"""Init container of the agent DaemonSet: copy this pod's Node labels into a config file for ``census-agent``.

The downward API cannot expose node labels, so this reads ``GET /api/v1/nodes/$NODE_NAME`` with the pod's
service-account token (RBAC: ``get`` on nodes, nothing else) and writes ``[labels]`` (region, organisation,
site, tier: whichever ``SUANLI_NODE_LABELS`` maps to a node label) as TOML to ``SUANLI_AGENT_CONFIG_OUT``, which
the agent then reads with ``--config``.  A node without a mapped label simply reports without it.  Standard
library only: it runs in the agent's image.

Environment: NODE_NAME (spec.nodeName), SUANLI_NODE_LABELS (JSON: agent label -> node label key),
SUANLI_AGENT_CONFIG_OUT; the API is found like any in-cluster client (KUBERNETES_SERVICE_HOST/PORT and the
service-account files), or at SUANLI_K8S_API (tests).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
AGENT_LABELS = ("region", "organisation", "site", "tier")
ATTEMPTS = 5


def _api() -> tuple[str, ssl.SSLContext | None, str | None]:
    base = os.environ.get("SUANLI_K8S_API")
    if base is None:
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        base = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    token_file = SERVICE_ACCOUNT / "token"
    token = token_file.read_text(encoding="utf-8").strip() if token_file.exists() else None
    context = None
    if base.startswith("https://"):
        context = ssl.create_default_context(cafile=str(SERVICE_ACCOUNT / "ca.crt"))
    return base.rstrip("/"), context, token


def read_node(name: str) -> dict[str, Any]:
    """The Node object. Network errors are retried a few times (the API may be briefly unreachable while the node
    boots); an HTTP error answer (403: RBAC, 404) is not: the kubelet restarts the init container with backoff."""
    base, context, token = _api()
    request = urllib.request.Request(f"{base}/api/v1/nodes/{name}")  # noqa: S310 - the cluster's API URL
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
                node: dict[str, Any] = json.load(response)
                return node
        except urllib.error.HTTPError:
            raise
        except (urllib.error.URLError, OSError) as exc:
            if attempt == ATTEMPTS:
                raise
            print(f"node-labels: reading node {name} failed ({exc}); retrying", file=sys.stderr)
            time.sleep(2 * attempt)
    raise AssertionError("unreachable")


def config_text(node: dict[str, Any], mapping: dict[str, str]) -> str:
    """The agent config: ``[labels]`` with each mapped node label that is present, as TOML basic strings."""
    node_labels: dict[str, str] = node.get("metadata", {}).get("labels") or {}
    lines = ["# Written by the node-labels init container from this node's labels.", "[labels]"]
    for label in AGENT_LABELS:
        key = mapping.get(label) or ""
        if not key:
            continue
        if key in node_labels:
            lines.append(f"{label} = {json.dumps(node_labels[key])}")
        else:
            print(f"node-labels: node has no label {key!r}: reporting without {label}", file=sys.stderr)
    return "\n".join(lines) + "\n"


def main() -> int:
    """Read the node, write the config; exit 1 (the kubelet retries the pod) when the API cannot be read."""
    name = os.environ["NODE_NAME"]
    mapping: dict[str, str] = json.loads(os.environ.get("SUANLI_NODE_LABELS", "{}"))
    unknown = sorted(set(mapping) - set(AGENT_LABELS))
    if unknown:
        print(f"node-labels: not agent labels: {unknown} (expected {list(AGENT_LABELS)})", file=sys.stderr)
        return 2
    try:
        node = read_node(name)
    except (urllib.error.URLError, OSError) as exc:
        print(f"node-labels: cannot read node {name}: {exc}", file=sys.stderr)
        return 1
    out = Path(os.environ["SUANLI_AGENT_CONFIG_OUT"])
    text = config_text(node, mapping)
    out.write_text(text, encoding="utf-8")
    print(f"node-labels: wrote {out}:\n{text}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
