"""The service's own Kubernetes discovery: every ``k8s_sync_interval_seconds``, list the cluster's Nodes and
record them (`api.discovery.record.record`), as `suanli k8s-sync` does once from outside.

Runs on a thread of its own; a failed listing is logged and tried again at the next interval, and never stops
the service.  Must not: translate Nodes (`api.discovery.nodes`) or write other than through `api.discovery.record`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from api.discovery.nodes import discover_all
from api.discovery.record import MAX_NODES_PER_REQUEST, DiscoveryResult, record
from api.ingest.writer import Ingestor
from census_agent.catalogue import load_default_catalogue

log = logging.getLogger(__name__)

Lister = Callable[[], Iterable[dict[str, Any]]]


def sync_once(ingestor: Ingestor, list_nodes: Lister, now: datetime) -> tuple[DiscoveryResult, int]:
    """List, translate and record every Node; returns what was recorded and how many Nodes were unusable."""
    found, unusable = discover_all(list(list_nodes()), ingestor.region_codes, load_default_catalogue())
    for name, why in unusable:
        log.warning("kubernetes node %r not recorded: %s", name, why)
    total = DiscoveryResult()
    for start in range(0, len(found), MAX_NODES_PER_REQUEST):
        part = record(ingestor, found[start : start + MAX_NODES_PER_REQUEST], now)
        total.added += part.added
        total.changed += part.changed
        total.refreshed += part.refreshed
        total.has_agent += part.has_agent
    return total, len(unusable)


class KubernetesSync(threading.Thread):
    """Records the cluster's Nodes at start and then every `interval` seconds until `stop` is set, each time only
    while `may_act` (this process holds the kubernetes-sync lease, `api.duties`)."""

    def __init__(
        self,
        ingestor: Ingestor,
        list_nodes: Lister,
        interval: float,
        stop: threading.Event,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__(name="suanli-k8s-sync", daemon=True)
        self.ingestor = ingestor
        self.list_nodes = list_nodes
        self.interval = interval
        self.stop = stop
        self.may_act = may_act

    def run(self) -> None:
        while True:
            if not self.may_act():
                if self.stop.wait(min(self.interval, 1.0)):
                    return
                continue
            try:
                result, unusable = sync_once(self.ingestor, self.list_nodes, datetime.now(tz=UTC))
                log.info(
                    "kubernetes sync: %d added, %d changed, %d refreshed, %d left to their agents, %d unusable",
                    len(result.added),
                    len(result.changed),
                    len(result.refreshed),
                    len(result.has_agent),
                    unusable,
                )
            except Exception:
                log.exception("kubernetes sync failed; trying again in %.0f s", self.interval)
            if self.stop.wait(self.interval):
                return
