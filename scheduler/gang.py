"""The entrypoint of a multi-node gang job: reserve the gang's nodes with a placement group, then run the command.

    python -m scheduler.gang --cpus C [--gpus G] [--memory-bytes M] --node NODE_ID [--node NODE_ID ...] -- COMMAND

The dispatcher submits this (instead of the user's command) for a job of more than one node. Running inside the
Ray job, it creates a STRICT_SPREAD placement group with one bundle of the per-node share on each node the policy
chose (pinned by Ray's ``ray.io/node-id`` label), waits until Ray has reserved them, then runs the user's command
verbatim in a shell with ``SUANLI_GANG_NODES`` (the node ids, comma-separated, bundle order) and
``SUANLI_GANG_SIZE`` in its environment, for an MPI launcher or the job's own Ray tasks (which can target the
group). The reservation is released when the command ends (and by Ray if this process is stopped); the exit code is
the command's.

Must not: interpret the command (it goes to the shell exactly as the user gave it) or outlive it.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from collections.abc import Sequence

NODE_ID_LABEL = "ray.io/node-id"
EXIT_NOT_RESERVED = 75  # EX_TEMPFAIL: the nodes could not be reserved in time


def bundles(cpus: float, gpus: float, memory_bytes: int, count: int) -> list[dict[str, float]]:
    """The placement group's bundles: one per-node share per node (zero resources left out)."""
    share = {"CPU": cpus, "GPU": gpus, "memory": float(memory_bytes)}
    return [{k: v for k, v in share.items() if v > 0} or {"CPU": 0.001} for _ in range(count)]


def command_line(entrypoint: str, cpus: float, gpus: float, memory_bytes: int, node_ids: Sequence[str]) -> str:
    """The entrypoint the dispatcher submits for a gang (the user's command as one quoted argument)."""
    import shlex  # noqa: PLC0415 - only the dispatcher needs it

    nodes = " ".join(f"--node {shlex.quote(n)}" for n in node_ids)
    return (
        f"python -m scheduler.gang --cpus {cpus:g} --gpus {gpus:g} --memory-bytes {memory_bytes} {nodes} -- "
        f"{shlex.quote(entrypoint)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Reserve, run, release; returns the command's exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m scheduler.gang", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cpus", type=float, required=True)
    parser.add_argument("--gpus", type=float, default=0.0)
    parser.add_argument("--memory-bytes", dest="memory_bytes", type=int, default=0)
    parser.add_argument("--node", dest="nodes", action="append", required=True, help="a node id (repeat per node)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the reservation")
    parser.add_argument("command", help="the command, run in a shell")
    args = parser.parse_args(argv)

    import ray  # noqa: PLC0415 - only inside a Ray job
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group  # noqa: PLC0415

    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False, logging_level=logging.WARNING)
    group = placement_group(
        bundles(args.cpus, args.gpus, args.memory_bytes, len(args.nodes)),
        strategy="STRICT_SPREAD",
        bundle_label_selector=[{NODE_ID_LABEL: node} for node in args.nodes],
    )
    if not group.wait(timeout_seconds=args.timeout):
        print(f"suanli gang: could not reserve {len(args.nodes)} nodes within {args.timeout:g} s", file=sys.stderr)
        remove_placement_group(group)
        return EXIT_NOT_RESERVED
    placed = placement_group_table(group)["bundles_to_node_id"]
    nodes = [str(placed[i]) for i in range(len(args.nodes))]
    print(f"suanli gang: {len(nodes)} nodes reserved (STRICT_SPREAD): {','.join(nodes)}", flush=True)
    env = {**os.environ, "SUANLI_GANG_NODES": ",".join(nodes), "SUANLI_GANG_SIZE": str(len(nodes))}
    try:
        return subprocess.call(args.command, shell=True, env=env)  # noqa: S602 - the user's command, verbatim
    finally:
        remove_placement_group(group)


if __name__ == "__main__":
    sys.exit(main())
