"""``GET /v1/census`` latency as the fleet grows, beside a scan of the nodes table measured in the same run.

    uv run python -m benchmarks.census_query [--sizes 0,100000,1000000] [--requests 200] [--json]

Method: for each size, a fresh SQLite database is migrated and seeded, that many node rows (spread over the
11 districts, four tiers and three statuses) are bulk-inserted and the rollups rebuilt from them
(`api.census.rollups.rebuild`, the same cells ingest maintains), with utilisation on (usage and power figures in every
row) and a day of hourly snapshots (the default 24 h utilisation window reads them); then the real service (uvicorn)
is started on it and ``GET /v1/census`` is requested --requests times, one after the other.  Beside it, the query a
census would need without rollups (a GROUP BY over every node) is timed on the same database.  Target: p99 under
50 ms at 1,000,000 nodes, and not growing with the fleet.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from api.census.liveness import snapshot
from api.census.rollups import rebuild
from api.cli.client import wait_until_ready
from api.db.engine import make_engine, migrate
from api.db.seed import region_rows, seed_regions
from api.db.tables import MEASURE_COLUMNS, nodes
from tests.servers import free_port, stop_process

TIERS = ("general", "ai", "hpc", "edge")
STATUSES = ("active", "active", "active", "stale", "offline")
SNAPSHOT_HOURS = 24  # hourly snapshots over the default 24 h utilisation window


def fill(engine: Engine, count: int, chunk: int = 20_000) -> float:
    """Insert `count` synthetic nodes and rebuild the rollups; returns the seconds it took."""
    districts = [r["code"] for r in region_rows() if r["level"] == "district"]
    rng = random.Random(7)
    now = datetime.now(tz=UTC)
    started = time.perf_counter()
    for offset in range(0, count, chunk):
        rows = []
        for i in range(offset, min(offset + chunk, count)):
            tier = TIERS[i % 4]
            gpus = 8 if tier == "ai" else 0
            rows.append(
                {
                    "node_id": f"node-{i:08d}",
                    "source": "agent",
                    "hostname": f"host-{i}",
                    "region_code": districts[i % len(districts)],
                    "organisation": f"org-{i % 97}",
                    "site": None,
                    "tier": tier,
                    "tier_reason": "benchmark",
                    "status": STATUSES[rng.randrange(5)],
                    "first_seen_at": now,
                    "last_report_at": now,
                    "last_generated_at": now,
                    "last_sequence": 1,
                    "last_report_id": f"00000000-0000-4000-8000-{i:012d}",
                    "physical_cores": 64,
                    "threads": 128,
                    "accelerators": gpus,
                    "memory_bytes": 512 * 2**30,
                    "fp64_flops": 2.5e12 + gpus * 67e12,
                    "fp32_flops": 5e12 + gpus * 67e12,
                    "fp16_flops": 5e12 + gpus * 989.5e12,
                    "int8_ops": 1e13 + gpus * 1979e12,
                    # utilisation on (issue 15): usage and power, so the census computes every layer
                    "accelerator_fp16_flops": gpus * 989.5e12,
                    "usage_nodes": 1,
                    "cpu_busy_cores": 32.0 + i % 64,
                    "accelerators_busy": gpus * 0.6,
                    "consumed_fp16_flops": (5e12 + gpus * 989.5e12) * 0.5,
                    "measured_power_nodes": 1,
                    "measured_watts": 600.0 + gpus * 700.0,
                    "facility_watts": (600.0 + gpus * 700.0) * 1.3,
                    "pue_nodes": 1,
                    "inventory": "{}",
                    "peaks": "{}",
                    "agent_peaks": "{}",
                }
            )
        with engine.begin() as conn:
            conn.execute(nodes.insert(), rows)
    with engine.begin() as conn:
        rebuild(conn)
    for hours_ago in range(SNAPSHOT_HOURS, 0, -1):  # a day of hourly history: the utilisation window reads it
        snapshot(engine, now - timedelta(hours=hours_ago))
    return time.perf_counter() - started


def scan_ms(engine: Engine, repeats: int = 3) -> float:
    """Best time of the census a scan would give: sums per tier, region and status over every node."""
    sums = [func.count(), *[func.sum(nodes.c[c]) for c in MEASURE_COLUMNS]]
    query = select(nodes.c.tier, nodes.c.region_code, nodes.c.status, *sums).group_by(
        nodes.c.tier, nodes.c.region_code, nodes.c.status
    )
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        with engine.connect() as conn:
            conn.execute(query).all()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def measure(size: int, requests: int, work: Path) -> dict[str, Any]:
    """Fill a database of `size` nodes, serve it, time the census endpoint and the scan."""
    folder = work / f"n{size}"
    folder.mkdir()
    url = f"sqlite:///{folder / 'suanli.db'}"
    engine = make_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        seed_regions(conn)
    fill_seconds = fill(engine, size) if size else 0.0
    scan = scan_ms(engine)
    engine.dispose()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
    env |= {
        "SUANLI_DATABASE_URL": url,
        "SUANLI_PORT": str(port),
        "SUANLI_LOG_LEVEL": "WARNING",
        "SUANLI_ADMIN_TOKEN_FILE": str(folder / "admin.token"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "serve"],
        env=env,
        stdout=(folder / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        if not wait_until_ready(base, server, timeout=120):
            raise RuntimeError((folder / "server.log").read_text()[-2000:])
        token = (folder / "admin.token").read_text().strip()
        latencies = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
            for i in range(requests + 5):
                started = time.perf_counter()
                response = client.get("/v1/census")
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                if i >= 5:  # warm-up
                    latencies.append(elapsed * 1000)
            counted = response.json()["totals"]["nodes"]
    finally:
        stop_process(server)
    latencies.sort()
    return {
        "nodes": size,
        "active_nodes_in_census": counted,
        "fill_seconds": fill_seconds,
        "census_ms": {
            "p50": statistics.median(latencies),
            "p95": latencies[int(len(latencies) * 0.95) - 1],
            "p99": latencies[int(len(latencies) * 0.99) - 1],
        },
        "scan_ms": scan,
    }


def main() -> int:
    """Run every size and print the table (or --json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="0,100000,1000000", help="comma-separated fleet sizes")
    parser.add_argument("--requests", type=int, default=200, help="census requests per size (default 200)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="suanli-census-bench-"))
    try:
        results = []
        for size in sizes:
            if not args.json:
                print(f"[census_query] {size:,} nodes ...", file=sys.stderr, flush=True)
            results.append(measure(size, args.requests, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    largest = results[-1]
    verdict = {"p99_under_50ms_at_largest": largest["census_ms"]["p99"] < 50}
    if args.json:
        print(json.dumps({"results": results, "targets": verdict}, indent=2))
        return 0
    print("GET /v1/census latency by fleet size (SQLite, sequential requests), beside a scan of the nodes table")
    print(f"{'nodes':>10} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'scan ms':>9}  {'fill s':>7}")
    for r in results:
        c = r["census_ms"]
        timing = f"{c['p50']:8.2f} {c['p95']:8.2f} {c['p99']:8.2f}"
        print(f"{r['nodes']:>10,} {timing} {r['scan_ms']:9.1f}  {r['fill_seconds']:7.1f}")
    for target, ok in verdict.items():
        print(
            f"{'PASS' if ok else 'FAIL'}  {target} ({largest['census_ms']['p99']:.2f} ms at {largest['nodes']:,} nodes)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
