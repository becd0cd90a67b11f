"""Reading Nodes from a Kubernetes API server with the official `kubernetes` client.

Configuration, in order: an explicit kubeconfig file (and context), the in-cluster service account when asked,
else the default kubeconfig (``$KUBECONFIG`` or ``~/.kube/config``).  Listing is paginated and keeps only what
the census reads (metadata and the capacity, allocatable, node info and conditions of the status), so a
5,000-node listing does not hold every node's image list in memory.

Must not: interpret the Nodes (that is `api.discovery.nodes`) or write anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

PAGE_SIZE = 500
KEPT_STATUS = ("capacity", "allocatable", "nodeInfo", "conditions")


class KubernetesUnavailable(RuntimeError):
    """The Kubernetes API cannot be configured or reached, or refused the listing."""


class KubernetesNodes:
    """The Nodes of one cluster: ``KubernetesNodes(kubeconfig, context).list()``."""

    def __init__(
        self,
        kubeconfig: Path | None = None,
        context: str | None = None,
        *,
        in_cluster: bool = False,
        timeout: float = 30.0,
    ) -> None:
        configuration = client.Configuration()
        try:
            if in_cluster:
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=str(kubeconfig) if kubeconfig else None,
                    context=context,
                    client_configuration=configuration,
                )
        except (ConfigException, OSError) as exc:
            raise KubernetesUnavailable(f"cannot configure the Kubernetes client: {exc}") from exc
        configuration.retries = 2
        self.host = str(configuration.host)
        self.timeout = timeout
        self.api = client.CoreV1Api(client.ApiClient(configuration))
        self.api.api_client.user_agent = "suanli-k8s-sync"

    def list(self, page_size: int = PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Every Node as a plain dict (the API's JSON form, reduced to what the census reads), page by page.

        The JSON is read as it is (``_preload_content=False``): the client's models would refuse a Node that lacks
        a field the census does not need, and cost more than the census's own reading for thousands of Nodes."""
        token: str | None = None
        while True:
            try:
                response = self.api.list_node(
                    limit=page_size, _continue=token, _request_timeout=self.timeout, _preload_content=False
                )
                page = json.loads(response.data)  # type: ignore[attr-defined]  # a urllib3 response, unparsed
            except ApiException as exc:
                raise KubernetesUnavailable(f"listing nodes failed: HTTP {exc.status} {exc.reason}") from exc
            except urllib3.exceptions.HTTPError as exc:
                raise KubernetesUnavailable(f"cannot reach the Kubernetes API at {self.host}: {exc}") from exc
            except ValueError as exc:
                raise KubernetesUnavailable(f"the Kubernetes API at {self.host} did not answer JSON: {exc}") from exc
            for item in page.get("items") or []:
                yield _slim(item)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return


def _slim(node: dict[str, Any]) -> dict[str, Any]:
    status = node.get("status") or {}
    metadata = node.get("metadata") or {}
    return {
        "metadata": {k: metadata[k] for k in ("name", "uid", "labels") if k in metadata},
        "status": {k: status[k] for k in KEPT_STATUS if k in status},
    }
