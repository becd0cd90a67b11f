"""Ingest throughput and latency of ``POST /v1/reports``, beside a no-op endpoint on the same server.

    uv run python -m benchmarks.ingest [--seconds 20] [--connections 32,64] [--ingest-workers N]
                                       [--uvicorn-workers N] [--database-url URL | --postgres]
                                       [--replicas 1,2,3] [--json]

Method: the census service (one uvicorn worker, its default pricing workers, SQLite by default) runs with an
extra ``POST /bench/noop`` route (`benchmarks.ingest_server`). `wrk` (Debian package wrk) on 127.0.0.1 sends,
for --seconds each, at each number of --connections in turn, (1) distinct, valid reports (a 160-thread Xeon's
real inventory with utilisation on: a usage section whose busy cores differ from request to request, and a RAPL
reading; unique report ids; --nodes node ids per run, each reporting with rising sequence and time, starting a day
ago one second apart, so every report upserts a node, appends history and moves the rollups) to ``/v1/reports``,
then (2) the same bytes to ``/bench/noop`` (``--rounds N``: N such pairs, the no-op first in every other one, the
round with the median ratio printed).  Printed: requests/s and latency percentiles of both, the ratio,
every non-2xx answer, and a loss check: the reports stored in the database must equal the 2xx answers wrk
counted.  Targets: >= 2,000 reports/s and >= 0.7 of the no-op rate.  ``--uvicorn-workers N`` serves with N uvicorn
worker processes instead of one (each a full copy of the service: a comparison, not a way to deploy it).

Replicas: ``--replicas 1,2,3`` measures each count in turn on a fresh database (``--postgres``: a throwaway
PostgreSQL cluster, as the tests make one; ``--database-url``: databases must then be fresh by hand, so use one
count).  N service processes (the first started alone, so it migrates; the others then) share the database; N
wrk processes run at once, one per replica, each with --connections to its own replica and its own node ids, then
the same against every replica's no-op.  Printed per count: the sum of the replicas' rates, the rate per replica,
the ratio to the no-op run at the same count, and the scaling factor against one replica.  Every process shares
the machine's cores with PostgreSQL and wrk: on 2 cores more replicas add no CPU, only contention.

Connections: the target's fleet (60,000 agents every 30 s) has far more reports in flight than 32, and the
service batches whatever is in flight into one commit, so a closed loop of few connections measures the
fsync's latency more than the service.  Both 32 and 64 are measured by default and printed side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select

from api.cli.client import wait_until_ready
from api.db.tables import reports
from census_agent.collectors.inventory import collect_inventory
from census_agent.models import Labels, PowerReading, Usage
from census_agent.report import ComputeModel, build_report
from tests.servers import free_port, stop_process
from tests.service import PostgresCluster

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hosts" / "xeon-platinum-8380-2s"
MARK_ID, MARK_NODE, MARK_SEQ, MARK_TIME = "@@ID@@", "@@NODE@@", "987654321", "@@TIME@@"
MARK_BUSY = 77.654321  # the usage's busy cores: each request writes its own, so every report moves the rollups

LUA = r"""
local template = [==[@TEMPLATE@]==]
local nodes = @NODES@
local counter = 0
local base = @BASE@
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  math.randomseed(os.time() * 1000 + tid * 7919 + @SEED@)
end
function request()
  counter = counter + 1
  local id = string.format("%08x-%04x-4%03x-8%03x-%06x%06x", math.random(0, 0x7fffffff), math.random(0, 0xffff),
    math.random(0, 0xfff), math.random(0, 0xfff), math.random(0, 0xffffff), math.random(0, 0xffffff))
  local node = string.format("bench-@RUN@-%d-%d", tid, counter % nodes)
  local t = base + counter
  local stamp = os.date("!%Y-%m-%dT%H:%M:%S", t) .. "Z"
  local body = template:gsub("@@ID@@", id, 1):gsub("@@NODE@@", node, 1):gsub("987654321", tostring(counter), 1)
  body = body:gsub("@@TIME@@", stamp, 1):gsub("77%.654321", string.format("%.2f", (counter * 7) % 150 + 0.5), 1)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Authorization"] = "Bearer @TOKEN@"}, body)
end
"""


def report_template() -> str:
    """A real report document with markers where each request puts its own id, node, sequence and time."""
    inventory, _ = collect_inventory(
        FIXTURE, labels=Labels(region="440106"), declared_accelerators=[], node_id="placeholder-node", nvml=None
    )
    report = build_report(
        inventory,
        ComputeModel(),
        report_id=uuid.UUID(int=1),
        sequence=int(MARK_SEQ),
        generated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    usage = Usage(  # utilisation on, as an agent sends it: busy cores, used memory, a RAPL reading
        interval_seconds=30,
        cpu_busy_cores=MARK_BUSY,
        memory_used_bytes=inventory.memory.total_bytes // 3,
        power=[PowerReading(watts=420.5, coverage="cpu-package", source="rapl")],
    )
    text = report.model_copy(update={"usage": usage}).model_dump_json()
    assert str(MARK_BUSY) in text
    text = text.replace(str(uuid.UUID(int=1)), MARK_ID).replace("placeholder-node", MARK_NODE)
    return re.sub(r'"generated_at":"[^"]+"', f'"generated_at":"{MARK_TIME}"', text)


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, latency percentiles (ms), request count and non-2xx count from `wrk --latency` output."""

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]

    pct = {p: ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", output, re.MULTILINE)}
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),  # type: ignore[union-attr]
        "requests": requests,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1).strip() if errors else "",
        "latency_ms": {f"p{p}": v for p, v in pct.items()},
    }


def start_servers(
    database_url: str, replicas: int, work: Path, args: argparse.Namespace
) -> list[tuple[subprocess.Popen[bytes], str]]:
    """`replicas` service processes (`benchmarks.ingest_server`) on `database_url`, each ready: (process, URL).
    The first is started alone so that it migrates the database and makes the admin token; the others find both."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
    servers: list[tuple[subprocess.Popen[bytes], str]] = []
    try:
        for index in range(replicas):
            port = free_port()
            log = work / f"server-{index}.log"
            server = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "benchmarks.ingest_server",
                    "--database-url",
                    database_url,
                    "--port",
                    str(port),
                    "--admin-token-file",
                    str(work / "admin.token"),
                    "--uvicorn-workers",
                    str(args.uvicorn_workers),
                    *(["--ingest-workers", str(args.ingest_workers)] if args.ingest_workers is not None else []),
                ],
                env=env,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            url = f"http://127.0.0.1:{port}"
            servers.append((server, url))
            if not wait_until_ready(url, server, timeout=300):  # uvicorn workers start slowly on a busy machine
                raise RuntimeError(f"service {index} did not become ready:\n{log.read_text()[-3000:]}")
    except BaseException:
        for server, _ in servers:
            stop_process(server)
        raise
    return servers


def wrk_script(work: Path, name: str, template: str, token: str, nodes: int, *, seed: int = 0) -> Path:
    """A wrk script sending distinct reports of nodes named after `name`; its report ids are random numbers seeded
    with the time, the wrk thread and `seed` (wrk processes started in the same second need seeds of their own, or
    they send the same report ids, which the service rightly answers as duplicates)."""
    script = work / f"reports-{name}.lua"
    lua = LUA.replace("@TEMPLATE@", template).replace("@NODES@", str(nodes)).replace("@RUN@", name)
    lua = lua.replace("@SEED@", str(seed))
    script.write_text(lua.replace("@BASE@", str(int(time.time()) - 86_400)).replace("@TOKEN@", token))
    return script


def run_wrks(targets: list[tuple[str, Path]], seconds: int, connections: int, threads: int) -> dict[str, Any]:
    """One wrk per (URL, script), all at once; their figures summed (rate, requests, non-2xx) and the worst
    percentiles."""
    procs = [
        subprocess.Popen(
            ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url, script in targets
    ]
    parsed = []
    for proc in procs:
        out, err = proc.communicate(timeout=seconds + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"wrk failed: {err}")
        parsed.append(parse_wrk(out))
    if len(parsed) == 1:
        return parsed[0]
    return {
        "requests_per_second": sum(p["requests_per_second"] for p in parsed),
        "requests": sum(p["requests"] for p in parsed),
        "non_2xx": sum(p["non_2xx"] for p in parsed),
        "socket_errors": "; ".join(p["socket_errors"] for p in parsed if p["socket_errors"]),
        "latency_ms": {k: max(p["latency_ms"].get(k, 0.0) for p in parsed) for k in parsed[0]["latency_ms"]},
        "per_replica": [p["requests_per_second"] for p in parsed],
    }


# (connections, [(reports' figures, the no-op's) per round])
Runs = list[tuple[int, list[tuple[dict[str, Any], dict[str, Any]]]]]


def measure(
    database_url: str, replicas: int, work: Path, args: argparse.Namespace, template: str
) -> tuple[Runs, int, int]:
    """Start `replicas` services on `database_url`, run wrk against them at each connection count (reports, then
    the no-op); the runs, the reports stored and the reports acknowledged."""
    servers = start_servers(database_url, replicas, work, args)
    try:
        token = (work / "admin.token").read_text().strip()
        with httpx.Client(base_url=servers[0][1], headers={"Authorization": f"Bearer {token}"}) as client:
            probe = client.post(
                "/v1/reports",
                content=template.replace(MARK_ID, str(uuid.uuid4()))
                .replace(MARK_NODE, "probe")
                .replace(MARK_TIME, "2026-01-01T00:00:00Z"),
            )
            if probe.status_code != 200:
                raise RuntimeError(f"the benchmark's report is refused: {probe.status_code} {probe.text}")
        runs = []
        for connections in [int(c) for c in args.connections.split(",")]:
            rounds = []
            for turn in range(args.rounds):
                scripts = [
                    wrk_script(
                        work,
                        f"{connections}r{replicas}x{i}t{turn}",
                        template,
                        token,
                        args.nodes,
                        seed=1_000_003 * i + 7_919 * turn,
                    )
                    for i in range(replicas)
                ]
                reports_at = [(f"{url}/v1/reports", s) for (_, url), s in zip(servers, scripts, strict=True)]
                noop_at = [(f"{url}/bench/noop", s) for (_, url), s in zip(servers, scripts, strict=True)]
                # Odd rounds measure the no-op first (A B B A ...), so a drift in the machine's load during the
                # run falls on both sides alike.
                if turn % 2 == 0:
                    ingest = run_wrks(reports_at, args.seconds, connections, args.threads)
                    noop = run_wrks(noop_at, args.seconds, connections, args.threads)
                else:
                    noop = run_wrks(noop_at, args.seconds, connections, args.threads)
                    ingest = run_wrks(reports_at, args.seconds, connections, args.threads)
                rounds.append((ingest, noop))
            runs.append((connections, rounds))
        engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            stored = int(conn.execute(select(func.count()).select_from(reports)).scalar_one()) - 1  # minus the probe
        engine.dispose()
    finally:
        for server, _ in servers:
            stop_process(server)
    accepted = sum(ingest["requests"] - ingest["non_2xx"] for _, rounds in runs for ingest, _ in rounds)
    return runs, stored, accepted


def summarise(measured: list[tuple[int, Runs, int, int]]) -> list[dict[str, Any]]:
    """Per replica count: each run's figures, its ratio to the no-op, the rate per replica and the scaling factor
    against one replica, and the loss check."""
    out: list[dict[str, Any]] = []
    single: dict[int, float] = {}
    for count, runs, stored, accepted in measured:
        entry: dict[str, Any] = {
            "replicas": count,
            "runs": [],
            "stored": stored,
            "acknowledged": accepted,
            "lost": max(accepted - stored, 0),
        }
        for connections, rounds in runs:
            ratios = [ingest["requests_per_second"] / noop["requests_per_second"] for ingest, noop in rounds]
            # The round whose ratio is the median stands for the run (its rates and latencies are printed).
            middle = sorted(range(len(rounds)), key=lambda k: ratios[k])[(len(rounds) - 1) // 2]
            ingest, noop = rounds[middle]
            rate, ratio = ingest["requests_per_second"], ratios[middle]
            if count == 1:
                single[connections] = rate
            entry["runs"].append(
                {
                    "connections": connections,
                    "ingest": ingest,
                    "noop": noop,
                    "ratio_to_noop": ratio,
                    "ratios_by_round": ratios,
                    "per_replica": rate / count,
                    "scaling": rate / single[connections] if connections in single else None,
                    "targets": {
                        "reports_per_second_at_least_2000": rate >= 2000,
                        "at_least_0.7_of_noop": ratio >= 0.7,
                        "no_errors": all(i["non_2xx"] == 0 and not i["socket_errors"] for i, _ in rounds),
                    },
                }
            )
        out.append(entry)
    return out


def main() -> int:
    """Run the benchmark and print (or --json) the figures and the verdict."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20, help="duration of each wrk run (default 20)")
    parser.add_argument(
        "--connections",
        default="32,64",
        help="concurrent connections (per replica), one run each, comma-separated (default 32,64)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure reports and no-op this many times in turn, no-op first every other round, and report the "
        "round with the median ratio (default 1; 3 or 5 on a shared machine)",
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: wrk shares the 2 cores)")
    parser.add_argument("--nodes", type=int, default=5000, help="distinct node ids per wrk thread (default 5000)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
    where.add_argument(
        "--postgres", action="store_true", help="a throwaway PostgreSQL cluster, a fresh database per replica count"
    )
    parser.add_argument(
        "--replicas", default="1", help="service processes on the one database, one measurement each (default 1)"
    )
    parser.add_argument(
        "--ingest-workers", type=int, help="pricing workers (default: the service default; 0: price in process)"
    )
    parser.add_argument(
        "--uvicorn-workers",
        type=int,
        default=1,
        help="uvicorn worker processes, each a full copy of the service (default 1)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("benchmarks.ingest needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    if args.rounds < 1:
        parser.error("--rounds: at least 1")
    counts = [int(c) for c in args.replicas.split(",")]
    if any(c < 1 for c in counts) or (len(counts) > 1 and args.database_url):
        parser.error("--replicas: positive counts; several only on a fresh database each (SQLite or --postgres)")
    if any(c > 1 for c in counts) and not (args.postgres or (args.database_url or "").startswith("postgresql")):
        parser.error("several replicas run only on PostgreSQL (--postgres)")

    work = Path(tempfile.mkdtemp(prefix="suanli-ingest-"))
    cluster = PostgresCluster().start() if args.postgres else None
    template = report_template()
    measured = []
    try:
        for count in counts:
            folder = work / f"replicas-{count}"
            folder.mkdir()
            if cluster is not None:
                database_url = cluster.create_database()
            else:
                database_url = args.database_url or f"sqlite:///{folder / 'suanli.db'}"
            try:
                measured.append((count, *measure(database_url, count, folder, args, template)))
            except RuntimeError as exc:
                print(str(exc), file=sys.stderr)
                return 1
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    database = "postgresql" if args.postgres or (args.database_url or "").startswith("postgresql") else "sqlite"
    result: dict[str, Any] = {
        "database": database,
        "report_bytes": len(template),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "ingest_workers": args.ingest_workers,
        "uvicorn_workers": args.uvicorn_workers,
    }
    result["replicas"] = summarise(measured)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    show(result, args)
    return 0


def show(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the figures and the checks."""
    database, template_bytes = result["database"], result["report_bytes"]
    workers = "default" if args.ingest_workers is None else args.ingest_workers
    print(
        f"Ingest benchmark ({database}, pricing workers: {workers}, uvicorn workers: "
        f"{args.uvicorn_workers}, {args.seconds} s each, {template_bytes} B reports)"
    )
    for entry in result["replicas"]:
        for run in entry["runs"]:
            print(f"{entry['replicas']} replica(s), {run['connections']} connections each:")
            for name, r in (("POST /v1/reports", run["ingest"]), ("POST /bench/noop (baseline)", run["noop"])):
                lat = r["latency_ms"]
                print(
                    f"  {name:28} {r['requests_per_second']:8.0f} req/s   p50 {lat.get('p50', 0):6.1f} ms   "
                    f"p99 {lat.get('p99', 0):6.1f} ms   non-2xx {r['non_2xx']}  {r['socket_errors']}"
                )
            scaling = f", scaling vs 1 replica {run['scaling']:.2f}" if run["scaling"] is not None else ""
            rounds = ""
            if len(run["ratios_by_round"]) > 1:
                rounds = " (median of rounds " + ", ".join(f"{r:.2f}" for r in run["ratios_by_round"]) + ")"
            print(
                f"  ratio ingest / no-op: {run['ratio_to_noop']:.2f}{rounds}; per replica {run['per_replica']:.0f}/s"
                f"{scaling}"
            )
            for target, ok in run["targets"].items():
                print(f"  {'PASS' if ok else 'FAIL'}  {target}")
        print(f"acknowledged {entry['acknowledged']}, stored {entry['stored']}, lost {entry['lost']}")
        print(f"{'PASS' if entry['lost'] == 0 else 'FAIL'}  nothing_lost")


if __name__ == "__main__":
    sys.exit(main())
