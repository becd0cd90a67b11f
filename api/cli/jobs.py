"""The job commands of ``suanli``: submit, jobs, job, logs, cancel, tiers (through `api.cli.client.SuanliClient`).

    suanli submit --class ai --gpus 1 --time-limit 2h -- python train.py
    suanli jobs [--state queued] [--class hpc] [--all]
    suanli job ID            the job, its events and why it waits
    suanli logs ID [--follow]
    suanli cancel ID
    suanli tiers

Must not: decide or validate beyond argument syntax (the service's answer is the truth, shown as it is).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from typing import Any

from api.cli.client import SuanliClient
from census_agent.units import human_bytes, table

ClientFactory = Callable[[argparse.Namespace], SuanliClient]

EXAMPLES = """\
examples:
  suanli submit --class ai --gpus 1 --time-limit 2h -- python train.py --epochs 3
  suanli submit --class hpc --nodes 2 --cpus 2 --name lammps -- mpirun -n 4 lmp -in in.lj
  suanli submit --class edge --region 440106 -- ./detect --camera 7
  suanli submit --class in-memory --memory 64GiB -- python join.py
"""


def parse_bytes(text: str) -> int:
    """``512MiB``, ``64GiB``, ``2TiB``, ``1.5G`` or plain bytes."""
    units = {
        "": 1,
        "k": 10**3,
        "kb": 10**3,
        "m": 10**6,
        "mb": 10**6,
        "g": 10**9,
        "gb": 10**9,
        "t": 10**12,
        "tb": 10**12,
        "kib": 2**10,
        "mib": 2**20,
        "gib": 2**30,
        "tib": 2**40,
    }
    t = text.strip().lower()
    number = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(number) :]
    if not number or unit not in units:
        raise ValueError(f"not a size: {text!r} (use e.g. 512MiB, 64GiB)")
    return int(float(number) * units[unit])


def add_commands(
    sub: Any,  # noqa: ANN401 - argparse's subparsers action has no public type
    client_flags: Callable[[argparse.ArgumentParser], None],
    parse_duration: Callable[[str], int],
) -> None:
    """Add the job commands to the `suanli` parser's subcommands."""
    submit = sub.add_parser(
        "submit",
        help="submit a job: suanli submit --class ai --gpus 1 -- python train.py",
        description="Submit a job; its command follows `--` and is run verbatim by Ray on the node chosen.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument(
        "--class",
        dest="klass",
        required=True,
        choices=["general", "in-memory", "hpc", "ai", "edge"],
        help="workload class: decides the tier",
    )
    submit.add_argument("--name", help="a name for the job (default: the command's first word)")
    submit.add_argument("--cpus", type=float, default=1.0, help="CPUs per node (default 1)")
    submit.add_argument("--gpus", type=int, default=0, help="GPUs per node (default 0)")
    submit.add_argument("--memory", type=parse_bytes, default=0, help="memory per node, e.g. 8GiB")
    submit.add_argument("--nodes", type=int, default=1, help="nodes in the gang (hpc; default 1)")
    submit.add_argument("--priority", type=int, default=0, help="higher runs first (-1000..1000)")
    submit.add_argument(
        "--organisation",
        "--org",
        dest="organisation",
        help="the organisation it runs for (a user token: one it carries; default: the token's first)",
    )
    submit.add_argument("--region", help="edge locality: region code whose nodes are tried first")
    submit.add_argument(
        "--time-limit",
        dest="time_limit",
        type=parse_duration,
        default=3600,
        help="e.g. 90s, 30m, 2h (default 1h); the job is stopped past it",
    )
    submit.add_argument("--retries", type=int, default=0, help="times a failed run is retried (default 0)")
    submit.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="environment (repeatable)")
    submit.add_argument(
        "--workdir",
        help="absolute directory on the node that runs the job (the command runs there; nothing is uploaded)",
    )
    submit.add_argument("--pip", action="append", default=[], help="pip requirement for the job (repeatable)")
    submit.add_argument("--json", action="store_true", help="print the job as JSON")
    submit.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command, after --")

    jobs = sub.add_parser("jobs", help="list jobs (yours; operators see all)")
    jobs.add_argument("--state", choices=["queued", "dispatching", "running", "succeeded", "failed", "cancelled"])
    jobs.add_argument("--class", dest="klass", choices=["general", "in-memory", "hpc", "ai", "edge"])
    jobs.add_argument("--tier", choices=["general", "ai", "hpc", "edge"])
    jobs.add_argument("--limit", type=int, default=50)
    jobs.add_argument("--json", action="store_true")

    job = sub.add_parser("job", help="one job: state, events, and why it waits")
    job.add_argument("job_id")
    job.add_argument("--json", action="store_true")

    logs = sub.add_parser("logs", help="a job's output")
    logs.add_argument("job_id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")

    cancel = sub.add_parser("cancel", help="cancel a job (queued: at once; running: stopped)")
    cancel.add_argument("job_id")

    tiers = sub.add_parser("tiers", help="capacity, free resources and jobs per tier")
    tiers.add_argument("--json", action="store_true")
    for p in (submit, jobs, job, logs, cancel, tiers):
        client_flags(p)


def spec_from(args: argparse.Namespace) -> dict[str, Any]:
    """The job document for ``submit``'s arguments."""
    command = list(args.argv)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise ValueError("no command: put it after --, e.g. suanli submit --class general -- echo hello")
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--env {item!r}: use NAME=VALUE")
        env[name] = value
    runtime_env: dict[str, Any] = {"env_vars": env, "pip": args.pip}
    if args.workdir:
        runtime_env["working_dir"] = args.workdir
    return {
        "name": args.name or command[0].rsplit("/", 1)[-1][:128],
        "class": args.klass,
        "entrypoint": shlex.join(command) if len(command) > 1 else command[0],
        "resources": {"cpus": args.cpus, "gpus": args.gpus, "memory_bytes": args.memory, "nodes": args.nodes},
        "priority": args.priority,
        **({"organisation": args.organisation} if args.organisation else {}),
        "region": args.region,
        "time_limit_seconds": args.time_limit,
        "max_retries": args.retries,
        "runtime_env": runtime_env,
    }


def _line(job: dict[str, Any]) -> list[str]:
    where = job["tier"] or "-"
    if job["state"] == "queued" and job["position"]:
        where += f" #{job['position']}"
    return [
        job["job_id"],
        job["name"][:24],
        job["class"],
        job["state"],
        where,
        job["owner"][:16],
        job["submitted_at"][:19].replace("T", " "),
        job["reason"][:60],
    ]


def render_job(job: dict[str, Any]) -> str:
    """The human view of one job."""
    r = job["spec"]["resources"]
    lines = [
        f"{job['job_id']}  {job['name']}  ({job['class']}, priority {job['priority']}, {job['organisation']})",
        f"state    {job['state']}"
        + (
            f"  (place {job['position']} in the {job['tier']} queue)"
            if job["state"] == "queued" and job["position"]
            else ""
        ),
        f"reason   {job['reason']}",
        f"asks     {r['cpus']:g} CPUs, {r['gpus']} GPUs, {human_bytes(r['memory_bytes'])} x {r['nodes']} node(s); "
        f"time limit {job['spec']['time_limit_seconds']} s; retries {job['spec']['max_retries']}",
        f"command  {job['spec']['entrypoint']}",
    ]
    env = job["spec"].get("runtime_env", {}).get("env_vars", {})
    if env:
        redacted = bool(job.get("env_values_redacted"))
        shown = " ".join(f"{name}={value if redacted else shlex.quote(value)}" for name, value in env.items())
        note = "  (values shown to its owner and admins only)" if redacted else ""
        lines.append(f"env      {shown}{note}")
    if job["node_ids"]:
        lines.append(f"nodes    {', '.join(job['node_ids'])} ({job['tier']})")
    if job["exit_code"] is not None:
        lines.append(f"exit     {job['exit_code']}")
    lines.append("")
    lines.append(
        table(
            [[e["at"][:19].replace("T", " "), e["state"], e["reason"]] for e in job["events"]],
            ["at (UTC)", "state", "reason"],
        )
    )
    return "\n".join(lines)


def render_tiers(doc: dict[str, Any]) -> str:
    """The human view of ``/v1/tiers``."""
    rows = []
    for t in doc["tiers"]:
        cap, free = t["capacity"], t["free"]
        status = "not served" if not t["served"] else ("up" if t["reachable"] else "unreachable")
        rows.append(
            [
                t["tier"],
                status,
                str(t["nodes"]),
                f"{free['cpus']:g}/{cap['cpus']:g}",
                f"{free['gpus']:g}/{cap['gpus']:g}",
                f"{human_bytes(free['memory_bytes'])}/{human_bytes(cap['memory_bytes'])}",
                str(t["running"] + t["dispatching"]),
                str(t["queued"]),
                str(t["census_active_nodes"]),
            ]
        )
    return table(
        rows, ["tier", "ray", "nodes", "CPUs free", "GPUs free", "memory free", "running", "queued", "census nodes"]
    )


def _dump(doc: object) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _submit(client: SuanliClient, args: argparse.Namespace) -> None:
    job = client.submit(spec_from(args))
    print(
        _dump(job)
        if args.json
        else f"submitted {job['job_id']} ({job['class']}): {job['state']}; follow it with `suanli job {job['job_id']}`"
    )


def _jobs(client: SuanliClient, args: argparse.Namespace) -> None:
    page = client.jobs(state=args.state, **{"class": args.klass}, tier=args.tier, limit=args.limit)
    headers = ["job", "name", "class", "state", "tier", "owner", "submitted (UTC)", "reason"]
    print(_dump(page) if args.json else table([_line(j) for j in page["items"]], headers))


def _job(client: SuanliClient, args: argparse.Namespace) -> None:
    job = client.job(args.job_id)
    print(_dump(job) if args.json else render_job(job))


def _logs(client: SuanliClient, args: argparse.Namespace) -> None:
    if not args.follow:
        sys.stdout.write(client.logs(args.job_id))
        return
    for chunk in client.follow_logs(args.job_id):
        sys.stdout.write(chunk)
        sys.stdout.flush()


def _cancel(client: SuanliClient, args: argparse.Namespace) -> None:
    job = client.cancel(args.job_id)
    if job["state"] == "cancelled":
        print(f"{job['job_id']}: cancelled")
    else:
        print(f"{job['job_id']}: cancel requested; stopping it on Ray (now {job['state']})")


def _tiers(client: SuanliClient, args: argparse.Namespace) -> None:
    doc = client.tiers()
    print(_dump(doc) if args.json else render_tiers(doc))


HANDLERS: dict[str, Callable[[SuanliClient, argparse.Namespace], None]] = {
    "submit": _submit,
    "jobs": _jobs,
    "job": _job,
    "logs": _logs,
    "cancel": _cancel,
    "tiers": _tiers,
}
COMMANDS = tuple(HANDLERS)


def run(args: argparse.Namespace, client_for: ClientFactory) -> int:
    """Run one job command; returns the exit code."""
    with client_for(args) as client:
        HANDLERS[args.command](client, args)
    return 0
