"""Takeover after the dispatcher's holder dies: SIGKILL the leader, time until another replica holds the duty and
dispatches.

    uv run python -m benchmarks.takeover [--trials 10] [--replicas 2] [--lease 15] [--renew 5] [--margin 2] [--json]

Method: a throwaway PostgreSQL cluster and a local Ray cluster (a 0-CPU head and one general raylet of 2
logical CPUs) on this machine; --replicas `suanli serve` processes (role all, dispatcher stepping every 0.2 s)
on one database. Each trial: find the holder of the dispatcher lease (its ``/readyz``), SIGKILL it, and at once
submit a job (``true``) to a survivor. Measured from the kill: *held*, until a survivor's ``/readyz`` names the
dispatcher duty (polled every 20 ms), and *dispatched*, until that job has left ``queued`` (polled every 20
ms). The killed replica is then started again (not timed) so every trial has --replicas processes. Printed:
p50 and max of both over the trials, and the bound the lease timing states (lease + renew). Nothing is lost by a
kill: the job submitted to a survivor is always dispatched (checked).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from scheduler.local_cluster import LocalRayCluster
from scheduler.slicing import MIB, RayletSpec
from tests.service import PostgresCluster, ServiceProcess

ADMIN = "sl_admin_" + "b" * 40  # every replica reads this first admin token from its file
POLL = 0.02


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=10, help="leaders to kill (default 10)")
    p.add_argument("--replicas", type=int, default=2, help="service processes on the database (default 2)")
    p.add_argument("--lease", type=float, default=15.0, help="lease_seconds (default 15, the service's default)")
    p.add_argument("--renew", type=float, default=5.0, help="lease_renew_seconds (default 5)")
    p.add_argument("--margin", type=float, default=2.0, help="lease_margin_seconds (default 2)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    return p


def replica(work: Path, url: str, config: Path, n: int, args: argparse.Namespace) -> ServiceProcess:
    """Replica number `n` (a process not yet started) with its own folder and the shared admin token."""
    folder = work / f"replica-{n}"
    folder.mkdir(exist_ok=True)
    (folder / "admin.token").write_text(ADMIN + "\n")
    return ServiceProcess(
        url,
        folder,
        scheduler_config=str(config),
        dispatch_interval_seconds="0.2",
        lease_seconds=str(args.lease),
        lease_renew_seconds=str(args.renew),
        lease_margin_seconds=str(args.margin),
        ingest_workers="0",
        log_level="WARNING",
    )


def holds_dispatcher(p: ServiceProcess) -> bool:
    """Whether `p` says it holds the dispatcher lease (False when it does not answer)."""
    try:
        return "dispatcher" in httpx.get(f"{p.url}/readyz", timeout=2).json()["duties"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def trial(processes: list[ServiceProcess]) -> tuple[int, float, float]:
    """Kill the leader, submit a job to a survivor; (the leader's index, seconds until held, until dispatched)."""
    deadline = time.monotonic() + 120
    while not (leaders := [i for i, p in enumerate(processes) if holds_dispatcher(p)]):
        if time.monotonic() > deadline:
            raise TimeoutError("no replica holds the dispatcher lease")
        time.sleep(POLL)
    leader = leaders[0]
    survivors = [p for i, p in enumerate(processes) if i != leader]
    victim = processes[leader].proc
    assert victim is not None
    headers = {"Authorization": f"Bearer {ADMIN}"}
    killed = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    job = httpx.post(
        f"{survivors[0].url}/v1/jobs",
        json={"name": "takeover", "class": "general", "entrypoint": "true"},
        headers=headers,
        timeout=30,
    )
    job.raise_for_status()
    job_id = job.json()["job_id"]
    held: float | None = None
    while True:
        now = time.monotonic()
        if held is None and any(holds_dispatcher(p) for p in survivors):
            held = now - killed
        answer = httpx.get(f"{survivors[0].url}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        state = answer["state"]
        if now - killed > 300:
            taken = "no survivor holds the dispatcher lease" if held is None else f"held after {held:.2f} s"
            raise TimeoutError(f"job {job_id} still {state} 300 s after the kill ({answer['reason']}); {taken}")
        if state != "queued":
            return leader, held if held is not None else now - killed, now - killed
        time.sleep(POLL)


def main(argv: list[str] | None = None) -> int:
    """Run the trials and print the figures."""
    args = parser().parse_args(argv)
    if args.trials < 1 or args.replicas < 2:
        parser().error("at least one trial and two replicas")
    work = Path(tempfile.mkdtemp(prefix="suanli-bench-takeover-"))
    postgres = PostgresCluster().start()
    raylet = RayletSpec("general", cpus=2, memory_bytes=1024 * MIB, object_store_bytes=80 * MIB)
    held: list[float] = []
    dispatched: list[float] = []
    processes: list[ServiceProcess] = []
    try:
        with LocalRayCluster(work / "ray", [raylet]) as cluster:
            config = work / "scheduler.toml"
            config.write_text(
                f'[ray]\naddress = "{cluster.dashboard_url}"\ngcs_address = "{cluster.address}"\n'
                f'token_file = "{cluster.token_file}"\n'
            )
            url = postgres.create_database()
            processes = [replica(work, url, config, n, args) for n in range(args.replicas)]
            for p in processes:
                p.launch()
            for p in processes:
                p.wait_ready()
            for n in range(args.trials):
                leader, to_hold, to_dispatch = trial(processes)
                held.append(to_hold)
                dispatched.append(to_dispatch)
                print(f"trial {n + 1}: held after {to_hold:.2f} s, dispatched after {to_dispatch:.2f} s", flush=True)
                processes[leader] = replica(work, url, config, leader, args).start()
    finally:
        for p in processes:
            p.stop()
        postgres.stop()
    figures: dict[str, Any] = {
        "trials": args.trials,
        "replicas": args.replicas,
        "lease_seconds": args.lease,
        "renew_seconds": args.renew,
        "bound_seconds": args.lease + args.renew,
        "held_p50_s": statistics.median(held),
        "held_max_s": max(held),
        "dispatched_p50_s": statistics.median(dispatched),
        "dispatched_max_s": max(dispatched),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"{args.trials} kills of the leader among {args.replicas} replicas (lease {args.lease:g} s, renew "
            f"{args.renew:g} s; bound {args.lease + args.renew:g} s): held again after p50 "
            f"{figures['held_p50_s']:.2f} s, max {figures['held_max_s']:.2f} s; a job submitted at the kill "
            f"dispatched after p50 {figures['dispatched_p50_s']:.2f} s, max {figures['dispatched_max_s']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
