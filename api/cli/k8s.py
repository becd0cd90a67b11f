"""``suanli k8s-sync``: record a Kubernetes cluster's Nodes in the census, for clusters without agents yet.

    suanli k8s-sync                          the default kubeconfig's current context
    suanli k8s-sync --kubeconfig F --context C
    suanli k8s-sync --in-cluster             from a pod, with its service account
    suanli k8s-sync --dry-run                what the census would record, without sending it

The Nodes are read with the official client (`api.discovery.client`), translated by `api.discovery.nodes` and
sent to the service (``POST /v1/nodes/discovered``, operator role) in batches; the service prices them and leaves alone
every node that already reports through an agent.

Must not: write to the database itself (the service is the only writer) or guess what Kubernetes does not say.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from api.cli.client import SuanliClient
from census_agent.labels import CLOCK_LABEL, REGION_LABEL
from census_agent.units import human_bytes, human_flops, table

if TYPE_CHECKING:
    from api.discovery.nodes import DiscoveredNode

ClientFactory = Callable[[argparse.Namespace], SuanliClient]
BATCH = 500  # the service's limit per request
COMMAND = "k8s-sync"

DESCRIPTION = f"""\
Record a Kubernetes cluster's Nodes in the census (source "kubernetes"), for clusters where agents are not
installed yet. Read from each Node: CPU and memory capacity, nvidia.com/gpu (and amd.com/gpu, huawei.com/Ascend*)
with GPU Feature Discovery's product, memory and compute-capability labels, Node Feature Discovery's CPU labels,
and the labels {REGION_LABEL} (or a topology.kubernetes.io/zone holding a census region code),
suanli.io/organisation, suanli.io/site and suanli.io/tier. Kubernetes does not say a CPU's clock: CPU peaks
stay 0 unless the node is labelled {CLOCK_LABEL}.

A node that also runs an agent (same machine id) is never counted twice: the agent's reports win. Nodes that
leave the cluster go stale, then offline, like silent agents; run this on a schedule shorter than the service's
SUANLI_STALE_AFTER_SECONDS, or let the service do it (SUANLI_K8S_SYNC_INTERVAL_SECONDS).

Needs a token with the operator (or admin) role; --dry-run needs none.
"""


def add_command(sub: Any, client_flags: Callable[[argparse.ArgumentParser], None]) -> None:  # noqa: ANN401
    """Add ``k8s-sync`` to the `suanli` parser's subcommands."""
    p = sub.add_parser(
        COMMAND,
        help="record a Kubernetes cluster's Nodes in the census",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    client_flags(p)
    p.add_argument("--kubeconfig", type=Path, help="kubeconfig file (default $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: its current context)")
    p.add_argument(
        "--in-cluster",
        dest="in_cluster",
        action="store_true",
        help="use the pod's service account instead of a kubeconfig",
    )
    p.add_argument(
        "--dry-run",
        dest="dry_run",
        action="store_true",
        help="show what would be recorded (regions from the built-in seed); send nothing",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _seed_region_codes() -> set[str]:
    from api.db.seed import region_rows  # noqa: PLC0415 - only the dry run needs the seed file

    return {str(row["code"]) for row in region_rows()}


def _rows(found: list[DiscoveredNode]) -> list[list[str]]:
    from api.settings import DEFAULT_HEADLINE  # noqa: PLC0415 - pydantic-settings is in the server extra
    from census_agent.report import ComputeModel  # noqa: PLC0415 - the models load only when this command runs

    model = ComputeModel()
    rows = []
    for node in found:
        inv = node.inventory
        peaks, tier = model.assess(inv)
        gpus = f"{len(inv.accelerators)} x {inv.accelerators[0].model}" if inv.accelerators else "-"
        headline = human_flops(peaks.figures[DEFAULT_HEADLINE[tier.tier]].flops)
        memory = human_bytes(inv.memory.total_bytes)
        rows.append(
            [
                node.name,
                inv.host.node_id[:12],
                "yes" if node.ready else "no",
                tier.tier.value,
                gpus,
                str(inv.cpu.threads),
                memory,
                headline,
                inv.labels.region or "-",
            ]
        )
    return rows


def run(args: argparse.Namespace, make_client: ClientFactory) -> int:
    """Run ``k8s-sync``; returns the exit code."""
    # The kubernetes client is in the server extra: loaded only when this command runs.
    from api.discovery.client import KubernetesNodes, KubernetesUnavailable  # noqa: PLC0415
    from api.discovery.nodes import discover_all  # noqa: PLC0415 - so do the inventory models (pydantic)
    from census_agent.catalogue import load_default_catalogue  # noqa: PLC0415

    try:
        cluster = KubernetesNodes(args.kubeconfig, args.context, in_cluster=args.in_cluster)
        objects = list(cluster.list())
    except KubernetesUnavailable as exc:
        print(f"suanli {COMMAND}: {exc}", file=sys.stderr)
        return 1
    client = None if args.dry_run else make_client(args)
    try:
        codes = _seed_region_codes() if client is None else {r["code"] for r in client.regions()}
        found, unusable = discover_all(objects, codes, load_default_catalogue())
        for name, why in unusable:
            print(f"suanli {COMMAND}: skipping node {name!r}: {why}", file=sys.stderr)
        totals: dict[str, Any] = {
            "listed": len(objects),
            "unusable": len(unusable),
            "added": 0,
            "changed": 0,
            "refreshed": 0,
            "has_agent": 0,
            "has_agent_ids": [],
        }
        if client is not None:
            for start in range(0, len(found), BATCH):
                batch = [
                    {"name": n.name, "inventory": n.inventory.model_dump(mode="json"), "ready": n.ready}
                    for n in found[start : start + BATCH]
                ]
                answer = client.record_discovered(batch)
                for key in ("added", "changed", "refreshed", "has_agent"):
                    totals[key] += answer[key]
                totals["has_agent_ids"] += answer["has_agent_ids"]
                print(f"suanli {COMMAND}: {min(start + BATCH, len(found))}/{len(found)} node(s) sent", file=sys.stderr)
    finally:
        if client is not None:
            client.close()
    if args.json:
        nodes = [
            {
                "name": n.name,
                "node_id": n.inventory.host.node_id,
                "ready": n.ready,
                "notes": list(n.notes),
                "inventory": n.inventory.model_dump(mode="json"),
            }
            for n in found
        ]
        print(json.dumps({**totals, "dry_run": args.dry_run, "nodes": nodes}, indent=2, ensure_ascii=False))
        return 0
    headers = ["node", "node id", "ready", "tier", "accelerators", "cpus", "memory", "headline peak", "region"]
    print(table(_rows(found), headers))
    notes = sorted({note for n in found for note in n.notes})
    for note in notes:
        count = sum(note in n.notes for n in found)
        print(f"note ({count} node(s)): {note}")
    if args.dry_run:
        print(f"dry run: {len(found)} node(s) would be recorded; nothing sent")
    else:
        print(
            f"{len(objects)} node(s) listed: {totals['added']} added, {totals['changed']} changed, "
            f"{totals['refreshed']} refreshed, {totals['has_agent']} left to their agents, "
            f"{len(unusable)} unusable"
        )
    return 0
