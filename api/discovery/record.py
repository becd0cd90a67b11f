"""Recording nodes discovered without an agent (Kubernetes) in the census, never counting a node twice.

A discovered node is priced by the same compute model as a report and stored as a `nodes` row whose source is
``kubernetes``; its rollup contribution moves with it exactly as for a report.  A node that already reports
through an agent is left alone (the agent knows the machine better), and an agent's first report replaces the
discovered record (see `api.ingest.writer`).  Each sync refreshes ``last_report_at``, so a node that leaves the cluster
goes stale, then offline, through the ordinary liveness sweep.  A node whose Ready condition is not True is
recorded as ``stale``: known, but not counted among the active.

Writes run under the ingestor's write lock, in one transaction per call with its audit entry: a request either
records every node it carries or none (a bad region code refuses the whole request before anything is written).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from api.audit import log as audit
from api.db.engine import write_transaction
from api.db.tables import MEASURE_COLUMNS
from api.discovery.nodes import SOURCE, DiscoveredNode
from api.errors import InvalidReport
from api.ingest.pricing import ACTIVE, AGENT, node_state
from api.ingest.writer import Ingestor
from census_agent.models import NodeInventory, ShortText

STALE = "stale"
MAX_NODES_PER_REQUEST = 500
# What decides a node's census figures: when none of these changes, a sync only refreshes the node.
FIGURE_COLUMNS = ("tier", "region_code", "status", *MEASURE_COLUMNS)


class DiscoveredNodeIn(BaseModel):
    """One discovered node, as `suanli k8s-sync` sends it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: ShortText  # the node's name in its cluster
    inventory: NodeInventory
    ready: bool


class DiscoveryIn(BaseModel):
    """``POST /v1/nodes/discovered``: the nodes one listing found (at most 500 per request)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Annotated[str, Field(pattern=f"^{SOURCE}$")] = SOURCE
    nodes: Annotated[list[DiscoveredNodeIn], Field(max_length=MAX_NODES_PER_REQUEST)]


@dataclass
class DiscoveryResult:
    """What one call recorded."""

    added: list[str] = field(default_factory=list)  # node ids seen for the first time
    changed: list[str] = field(default_factory=list)  # known nodes whose figures, tier, region or status changed
    refreshed: list[str] = field(default_factory=list)  # known nodes, unchanged: only their liveness renewed
    has_agent: list[str] = field(default_factory=list)  # left alone: an agent reports for them

    def as_dict(self) -> dict[str, Any]:
        """The API's answer: counts and the ids behind them."""
        return {
            "added": len(self.added),
            "changed": len(self.changed),
            "refreshed": len(self.refreshed),
            "has_agent": len(self.has_agent),
            "added_ids": self.added,
            "changed_ids": self.changed,
            "has_agent_ids": self.has_agent,
        }


def record(
    ingestor: Ingestor,
    discovered: Sequence[DiscoveredNodeIn | DiscoveredNode],
    now: datetime,
    actor: audit.Actor = audit.SERVICE,
) -> DiscoveryResult:
    """Record `discovered` (the last entry wins when a node id repeats), with an audit entry naming `actor` (the
    calling token, or the service's own sync); returns what changed."""
    states: dict[str, dict[str, Any]] = {}
    received = ingestor.statements.time(now)  # as the database driver takes it
    for index, item in enumerate(discovered):
        region = item.inventory.labels.region
        if region is not None and region not in ingestor.region_codes:
            raise InvalidReport(
                f"unknown region code {region!r}: see GET /v1/regions", field=f"nodes.{index}.inventory.labels.region"
            )
        state = node_state(
            item.inventory,
            ingestor.pricer.assess(item.inventory),
            source=SOURCE,
            now=received,
            generated_at=received,
            sequence=0,
            report_id=str(uuid.uuid4()),
            agent_peaks="{}",
            status=ACTIVE if item.ready else STALE,
        )
        states[item.inventory.host.node_id] = state
    result = DiscoveryResult()
    if not states:
        return result
    with ingestor.write_lock, write_transaction(ingestor.engine) as conn:
        stored = ingestor.statements.node_states(conn, sorted(states))
        current: dict[str, dict[str, Any] | None] = {n: stored.get(n) for n in states}
        before: dict[str, dict[str, Any] | None] = {}
        after: dict[str, dict[str, Any] | None] = {}
        inserts, updates = [], []
        for node_id, state in states.items():
            old = current[node_id]
            if old is not None and old["source"] == AGENT:
                result.has_agent.append(node_id)
                continue
            before[node_id], after[node_id] = old, state
            if old is None:
                inserts.append(state)
                result.added.append(node_id)
                continue
            updates.append(state)
            same = all(old[c] == state[c] for c in FIGURE_COLUMNS)
            (result.refreshed if same else result.changed).append(node_id)
        ingestor.statements.write_nodes(conn, inserts, updates)
        Ingestor.apply_rollups(conn, before, after)
        audit.nodes_discovered(conn, actor, result.as_dict(), now)
    return result
