"""Ingest throughput and latency of ``POST /v1/reports``, beside a no-op endpoint on the same server.

    uv run python -m benchmarks.ingest [--seconds 20] [--connections 32,64] [--ingest-workers N]
                                       [--uvicorn-workers N] [--database-url URL] [--json]

Method: the census service (one uvicorn worker, its default pricing workers, SQLite by default) runs with an
extra ``POST /bench/noop`` route (`benchmarks.ingest_server`). `wrk` (Debian package wrk) on 127.0.0.1 sends,
for --seconds each, at each number of --connections in turn, (1) distinct, valid reports (a 160-thread Xeon's
real inventory with utilisation on: a usage section whose busy cores differ from request to request, and a RAPL
reading; unique report ids; --nodes node ids per run, each reporting with rising sequence and time, starting a day
ago one second apart, so every report upserts a node, appends history and moves the rollups) to ``/v1/reports``,
then (2) the same bytes to ``/bench/noop``.  Printed: requests/s and latency percentiles of both, the ratio,
every non-2xx answer, and a loss check: the reports stored in the database must equal the 2xx answers wrk
counted.  Targets: >= 2,000 reports/s and >= half the no-op rate.  ``--uvicorn-workers N`` serves with N uvicorn
worker processes instead of one (each a full copy of the service: a comparison, not a way to deploy it).

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
  math.randomseed(os.time() * 1000 + tid)
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


def run_wrk(url: str, script: Path, seconds: int, connections: int, threads: int) -> dict[str, Any]:
    """One wrk run; its parsed figures."""
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    return parse_wrk(out)


def main() -> int:
    """Run the benchmark and print (or --json) the figures and the verdict."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20, help="duration of each wrk run (default 20)")
    parser.add_argument(
        "--connections", default="32,64", help="concurrent connections, one run each, comma-separated (default 32,64)"
    )
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: wrk shares the 2 cores)")
    parser.add_argument("--nodes", type=int, default=5000, help="distinct node ids per wrk thread (default 5000)")
    parser.add_argument("--database-url", help="default: a SQLite file in a temporary folder")
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

    work = Path(tempfile.mkdtemp(prefix="suanli-ingest-"))
    database_url = args.database_url or f"sqlite:///{work / 'suanli.db'}"
    port = free_port()
    token_file = work / "admin.token"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
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
            str(token_file),
            "--uvicorn-workers",
            str(args.uvicorn_workers),
            *(["--ingest-workers", str(args.ingest_workers)] if args.ingest_workers is not None else []),
        ],
        env=env,
        stdout=(work / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        if not wait_until_ready(url, server, timeout=300):  # uvicorn workers start slowly on a busy machine
            print(f"the service did not become ready:\n{(work / 'server.log').read_text()}", file=sys.stderr)
            return 1
        token = token_file.read_text().strip()
        template = report_template()
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
            probe = client.post(
                "/v1/reports",
                content=template.replace(MARK_ID, str(uuid.uuid4()))
                .replace(MARK_NODE, "probe")
                .replace(MARK_TIME, "2026-01-01T00:00:00Z"),
            )
            if probe.status_code != 200:
                print(f"the benchmark's report is refused: {probe.status_code} {probe.text}", file=sys.stderr)
                return 1
        runs = []
        for connections in [int(c) for c in args.connections.split(",")]:
            script = work / f"reports-{connections}.lua"
            lua = (
                LUA.replace("@TEMPLATE@", template)
                .replace("@NODES@", str(args.nodes))
                .replace("@RUN@", str(connections))
            )
            lua = lua.replace("@BASE@", str(int(time.time()) - 86_400)).replace("@TOKEN@", token)
            script.write_text(lua)
            ingest = run_wrk(f"{url}/v1/reports", script, args.seconds, connections, args.threads)
            noop = run_wrk(f"{url}/bench/noop", script, args.seconds, connections, args.threads)
            runs.append((connections, ingest, noop))
        engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            stored = int(conn.execute(select(func.count()).select_from(reports)).scalar_one()) - 1  # minus the probe
        engine.dispose()
    finally:
        stop_process(server)
    accepted = sum(ingest["requests"] - ingest["non_2xx"] for _, ingest, _ in runs)
    result: dict[str, Any] = {
        "database": "sqlite" if database_url.startswith("sqlite") else "postgresql",
        "report_bytes": len(template),
        "seconds": args.seconds,
        "ingest_workers": args.ingest_workers,
        "uvicorn_workers": args.uvicorn_workers,
        "runs": [],
        "stored": stored,
        "acknowledged": accepted,
        "lost": max(accepted - stored, 0),
    }
    for connections, ingest, noop in runs:
        ratio = ingest["requests_per_second"] / noop["requests_per_second"]
        result["runs"].append(
            {
                "connections": connections,
                "ingest": ingest,
                "noop": noop,
                "ratio_to_noop": ratio,
                "targets": {
                    "reports_per_second_at_least_2000": ingest["requests_per_second"] >= 2000,
                    "at_least_half_of_noop": ratio >= 0.5,
                    "no_errors": ingest["non_2xx"] == 0 and not ingest["socket_errors"],
                },
            }
        )
    shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    workers = "default" if args.ingest_workers is None else args.ingest_workers
    print(
        f"Ingest benchmark ({result['database']}, pricing workers: {workers}, uvicorn workers: "
        f"{args.uvicorn_workers}, {args.seconds} s each, "
        f"{len(template)} B reports)"
    )
    for run in result["runs"]:
        print(f"{run['connections']} connections:")
        for name, r in (("POST /v1/reports", run["ingest"]), ("POST /bench/noop (baseline)", run["noop"])):
            lat = r["latency_ms"]
            print(
                f"  {name:28} {r['requests_per_second']:8.0f} req/s   p50 {lat.get('p50', 0):6.1f} ms   "
                f"p99 {lat.get('p99', 0):6.1f} ms   non-2xx {r['non_2xx']}  {r['socket_errors']}"
            )
        print(f"  ratio ingest / no-op: {run['ratio_to_noop']:.2f}")
        for target, ok in run["targets"].items():
            print(f"  {'PASS' if ok else 'FAIL'}  {target}")
    print(f"acknowledged {accepted}, stored {stored}, lost {result['lost']}")
    print(f"{'PASS' if stored >= accepted else 'FAIL'}  nothing_lost")
    return 0


if __name__ == "__main__":
    sys.exit(main())
