"""Load: thousands of simulated census agents reporting to a real ``suanli serve``, on SQLite and on PostgreSQL.

    uv run python -m benchmarks.load_agents [--agents 10000] [--interval 30] [--duration 600] [--backend both]
                                            [--replicas 1,2]

``--replicas`` runs PostgreSQL once per count, with that many service processes on one database and the agents
spread over them (agent i reports to replica i mod N, as a load balancer keeping each connection where it went).

Method. This process is the load generator (asyncio, raw HTTP/1.1 keep-alive connections on 127.0.0.1, no HTTP
library in the hot path); the service runs as its own process (``python -m api.cli serve``, one uvicorn worker,
log level WARNING so no access log). Each simulated agent is one node of ``tests.fleet.generate_fleet`` (its own
node id, labels and hardware: reports of 1.8-6.2 KB, about 2.4 KB on average, built once per node by the agent's
own ``build_report`` and then given a new report id, sequence number and time for every report), with its own
agent token bound to its node (as enrolment makes them; inserted into the database before the run, so its first
report pays the real token check and later ones hit the service's 60 s token cache), its own sequence numbers and
its own keep-alive connection (reopened when the service has closed it or it has been idle 5 s, as the agent's
``census_agent.push`` does: with the service's 5 s keep-alive and a 30 s interval, every report opens a new
connection).

Every agent behaves as ``census_agent.agent.Agent.run`` does: it starts at a random moment within the first
interval, builds a report every --interval seconds (+/- 10% jitter), appends it to its spool (in memory here)
and pushes the spool oldest first; an answer is classified by the agent's own ``classify_status`` (2xx: stored,
dropped from the spool; 401/403/408/425/429/5xx, a timeout (10 s, the agent's default) or a connection error:
kept, the push is retried after the agent's own ``backoff_delay`` (base min(interval, 5) s, cap 300 s, equal
jitter); another 4xx: set aside, never resent, counted as "rejected"). After --duration no new report is made;
for up to --drain seconds more the agents push what their spools still hold, then the run stops.

Checked at the end, on the database itself: every report the service acknowledged (2xx) must be stored - per
node, the set of acknowledged sequence numbers against the sequence numbers in the ``reports`` table. "Lost" =
acknowledged but not stored (must be 0); "duplicates" = a node's sequence number stored more than once (must be
0); "stored, never acknowledged" = stored although the agent never saw the 2xx (a request that timed out on the
agent's side after the service had committed it, still in its spool when the run stopped); "left in spools" =
reports the agents still held at the end (a real agent keeps them for later).

Baseline, measured first in the same run: the same generator (same agents, interval, reports and connections)
for --baseline-duration seconds against ``POST /bench/noop`` of ``benchmarks.ingest_server`` (the same app and
HTTP stack; the body is read and ``{}`` answered: no validation, authentication or storage), so the service's
figures can be read as a ratio to what the HTTP layer alone gives on this machine. Printed per run: offered and
acknowledged reports/s, p50/p99/max latency of every answered request, errors by kind, the service's and the
generator's CPU use, and the checks. Progress every --progress seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import select

from api.auth import Role, create_token
from api.cli.client import wait_until_ready
from api.db.engine import make_engine
from api.db.tables import reports
from census_agent.agent import MAX_PUSHES_PER_DRAIN
from census_agent.backoff import backoff_delay, jittered
from census_agent.push import Outcome, classify_status
from tests.fleet import generate_fleet
from tests.servers import free_port, stop_process
from tests.service import PostgresCluster, ServiceProcess

NODE_PREFIX = "load"
MARK_ID, MARK_SEQ, MARK_TIME = "@@REPORT-ID@@", 987654321, "@@GENERATED-AT@@"
REQUEST_TIMEOUT_S = 10.0  # the agent's default request_timeout_seconds
JITTER = 0.1  # the agent's default jitter
BACKOFF_CAP_S = 300.0  # the agent's default backoff_max_seconds
KEEPALIVE_EXPIRY_S = 5.0  # census_agent.push's: the agent never reuses a connection idle this long
_NAMESPACE = uuid.UUID("5a4e1c3e-0000-4000-8000-00000000b0ad")


# --- the simulated agents ------------------------------------------------------------------------------------


def templates(agents: int) -> tuple[list[str], list[str]]:
    """Node ids and one report document per node with markers for its report id, sequence and time."""
    fleet = generate_fleet(agents, prefix=NODE_PREFIX)
    documents = []
    for node in fleet:
        report = node.report(MARK_SEQ, generated_at=datetime(2026, 1, 1, tzinfo=UTC))
        text = report.model_dump_json().replace(str(report.report_id), MARK_ID, 1)
        text = re.sub(r'"generated_at":"[^"]+"', f'"generated_at":"{MARK_TIME}"', text, count=1)
        if MARK_ID not in text or f'"sequence":{MARK_SEQ}' not in text:
            raise RuntimeError("the report template has no place for the report id or sequence")
        documents.append(text)
    return [n.node_id for n in fleet], documents


@dataclass
class Stats:
    """What one run of the generator saw (shared by all agents; asyncio: no locks needed)."""

    offered: int = 0  # reports built by the agents while the run lasted
    requests: int = 0  # HTTP requests sent (a report may need several)
    acknowledged: int = 0  # 2xx answers (each report at most once: it leaves the spool)
    acknowledged_in_run: int = 0  # of which before --duration ended
    rejected: int = 0  # 4xx other than auth and throttling: set aside as the agent does
    outcomes: Counter[str] = field(default_factory=Counter)  # the service's "outcome" of 2xx answers
    errors: Counter[str] = field(default_factory=Counter)  # every non-2xx answer or failed request, by kind
    latencies: list[float] = field(default_factory=list)  # seconds, every answered request
    window: list[float] = field(default_factory=list)  # the same since the last progress line
    connections: int = 0  # TCP connections opened


@dataclass
class Agent:
    """One simulated agent: its node, token, report template, sequence numbers, spool and connection."""

    node_id: str
    token: str
    template: str
    rng: random.Random
    sequence: int = 0
    spool: deque[tuple[int, bytes]] = field(default_factory=deque)
    acknowledged: set[int] = field(default_factory=set)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    last_used: float = 0.0  # time.monotonic() of the last answer on the connection
    failures: int = 0

    def collect(self) -> None:
        """Build the next report and spool it."""
        self.sequence += 1
        report_id = str(uuid.uuid5(_NAMESPACE, f"{self.node_id}/{self.sequence}"))
        now = datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        text = self.template.replace(MARK_ID, report_id, 1).replace(
            f'"sequence":{MARK_SEQ}', f'"sequence":{self.sequence}', 1
        )
        self.spool.append((self.sequence, text.replace(MARK_TIME, now, 1).encode()))

    def close(self) -> None:
        """Drop the connection."""
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class NoAnswer(ConnectionError):
    """The connection closed before the status line of the answer."""


@dataclass(frozen=True)
class Target:
    """Where the agents report: a port on 127.0.0.1 and a path."""

    port: int
    path: str

    def request(self, agent: Agent, body: bytes) -> bytes:
        """The bytes of one POST."""
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAuthorization: Bearer {agent.token}\r\n"
            f"User-Agent: suanli-census-agent/load\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body and whether the connection may be reused, of one HTTP/1.1 answer."""
    line = await reader.readline()
    if not line:
        raise NoAnswer("connection closed before an answer")
    status = int(line.split(None, 2)[1])
    length, keep, chunked = 0, True, False
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b""):
            break
        name, _, value = header.partition(b":")
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value == b"close":
            keep = False
        elif name == b"transfer-encoding" and b"chunked" in value:
            chunked = True
    if not chunked:
        return status, await reader.readexactly(length), keep
    parts = []
    while True:
        size = int((await reader.readline()).split(b";")[0], 16)
        parts.append(await reader.readexactly(size + 2))
        if size == 0:
            return status, b"".join(parts), keep


async def post(agent: Agent, target: Target, body: bytes, stats: Stats) -> tuple[int, bytes]:
    """One POST on the agent's connection (opened again if the service closed it while idle)."""
    idle = time.monotonic() - agent.last_used
    if (
        agent.writer is None
        or agent.writer.is_closing()
        or agent.reader is None
        or agent.reader.at_eof()
        or idle >= KEEPALIVE_EXPIRY_S
    ):
        agent.close()
        agent.reader, agent.writer = await asyncio.open_connection("127.0.0.1", target.port)
        stats.connections += 1
    assert agent.reader is not None
    assert agent.writer is not None
    agent.writer.write(target.request(agent, body))
    await agent.writer.drain()
    status, answer, keep = await read_answer(agent.reader)
    agent.last_used = time.monotonic()
    if not keep:
        agent.close()
    return status, answer


def error_kind(exc: BaseException) -> str:
    """A short name for a failed request."""
    if isinstance(exc, TimeoutError):
        return f"timeout ({REQUEST_TIMEOUT_S:.0f} s)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, NoAnswer | asyncio.IncompleteReadError):
        return "closed without (a full) answer"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "connection reset"
    return type(exc).__name__


async def drain(agent: Agent, target: Target, stats: Stats, in_run: bool) -> bool:
    """Push the spool oldest first, as `Agent.drain` does; True when nothing is left to retry."""
    for _ in range(MAX_PUSHES_PER_DRAIN):
        if not agent.spool:
            return True
        sequence, body = agent.spool[0]
        stats.requests += 1
        began = time.perf_counter()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                status, answer = await post(agent, target, body, stats)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as exc:
            agent.close()
            stats.errors[error_kind(exc)] += 1
            return False
        latency = time.perf_counter() - began
        stats.latencies.append(latency)
        stats.window.append(latency)
        outcome = classify_status(status)
        if outcome is Outcome.STORED:
            agent.spool.popleft()
            agent.acknowledged.add(sequence)
            stats.acknowledged += 1
            stats.acknowledged_in_run += in_run
            with contextlib.suppress(ValueError, AttributeError):
                stats.outcomes[json.loads(answer).get("outcome", "?")] += 1
            continue
        stats.errors[f"HTTP {status}"] += 1
        if outcome is Outcome.INVALID:
            agent.spool.popleft()
            stats.rejected += 1
            continue
        return False
    return not agent.spool


async def run_agent(
    agent: Agent, target: Target, stats: Stats, *, interval: float, stop_at: float, drain_until: float
) -> None:
    """The agent's loop (`census_agent.agent.Agent.run`), on the event loop's clock, until the run ends."""
    loop = asyncio.get_running_loop()
    next_report = loop.time() + agent.rng.uniform(0, interval)  # a fleet is not booted in step
    next_drain = next_report
    while True:
        now = loop.time()
        if now >= stop_at:
            next_report = float("inf")
            if not agent.spool or now >= drain_until:
                return
        if now >= next_report:
            agent.collect()
            stats.offered += 1
            next_report = now + jittered(interval, JITTER, agent.rng)
        if now >= next_drain:
            if await drain(agent, target, stats, in_run=loop.time() < stop_at):
                agent.failures = 0
                next_drain = next_report
            else:
                agent.failures += 1
                delay = backoff_delay(agent.failures, base=min(interval, 5.0), cap=BACKOFF_CAP_S, rng=agent.rng)
                next_drain = loop.time() + delay
        wake = min(next_report, next_drain, max(stop_at, loop.time()) if now < stop_at else drain_until)
        await asyncio.sleep(max(0.0, wake - loop.time()))


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of `values`, 0 if empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def generate(
    agents: list[Agent],
    targets: list[Target],
    *,
    interval: float,
    duration: float,
    drain_s: float,
    label: str,
    progress_s: float,
    service_pids: list[int],
) -> dict[str, Any]:
    """Run every agent for `duration` seconds (then up to `drain_s` more for their spools); the figures.  Agent i
    reports to ``targets[i % len(targets)]`` (replicas behind a load balancer that keeps a connection where it
    went); the service CPU is summed over `service_pids`."""
    stats = Stats()
    loop = asyncio.get_running_loop()
    began = loop.time()
    stop_at, drain_until = began + duration, began + duration + drain_s
    cpu_began = time.process_time()
    services = [psutil.Process(pid) for pid in service_pids]
    service_cpu_began = sum(sum(service.cpu_times()[:2]) for service in services)

    async def progress() -> None:
        while True:
            await asyncio.sleep(progress_s)
            elapsed = loop.time() - began
            spooled = sum(len(a.spool) for a in agents)
            errors = sum(stats.errors.values())
            phase = "" if elapsed <= duration + 1 else " (draining spools)"
            print(
                f"  [{label}] {elapsed:5.0f} s{phase}: offered {stats.offered / min(elapsed, duration):7.1f}/s, "
                f"acknowledged {stats.acknowledged / elapsed:7.1f}/s, p99 {percentile(stats.window, 99) * 1e3:7.1f} "
                f"ms (last {progress_s:.0f} s), {percentile(stats.latencies, 99) * 1e3:7.1f} ms (so far), "
                f"errors {errors}, in spools {spooled}",
                flush=True,
            )
            stats.window = []

    reporter = asyncio.create_task(progress())
    try:
        await asyncio.gather(
            *(
                run_agent(
                    a, targets[i % len(targets)], stats, interval=interval, stop_at=stop_at, drain_until=drain_until
                )
                for i, a in enumerate(agents)
            )
        )
    finally:
        reporter.cancel()
        for agent in agents:
            agent.close()
    ended = loop.time()
    lat = stats.latencies
    return {
        "agents": len(agents),
        "seconds": duration,
        "drain_seconds": ended - stop_at,
        "offered": stats.offered,
        "offered_per_s": stats.offered / duration,
        "acknowledged": stats.acknowledged,
        "acknowledged_per_s": stats.acknowledged_in_run / duration,
        "requests": stats.requests,
        "connections_opened": stats.connections,
        "latency_ms": {
            "p50": percentile(lat, 50) * 1e3,
            "p99": percentile(lat, 99) * 1e3,
            "max": max(lat, default=0.0) * 1e3,
        },
        "errors": dict(stats.errors),
        "rejected": stats.rejected,
        "outcomes": dict(stats.outcomes),
        "left_in_spools": sum(len(a.spool) for a in agents),
        "generator_cpu_s": time.process_time() - cpu_began,
        "service_cpu_s": (sum(sum(s.cpu_times()[:2]) for s in services) - service_cpu_began) if services else None,
        "replicas": len(targets),
    }


# --- the services --------------------------------------------------------------------------------------------


def clean_env() -> dict[str, str]:
    """This environment without SUANLI_ settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}


@contextlib.contextmanager
def noop_server(work: Path) -> Iterator[tuple[int, int]]:
    """`benchmarks.ingest_server` (the service's app plus ``POST /bench/noop``) on SQLite: (port, pid)."""
    port = free_port()
    log = work / "noop-server.log"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.ingest_server",
            "--database-url",
            f"sqlite:///{work / 'noop.db'}",
            "--port",
            str(port),
            "--admin-token-file",
            str(work / "noop-admin.token"),
        ],
        env=clean_env(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        if not wait_until_ready(f"http://127.0.0.1:{port}", server):
            raise RuntimeError(f"the no-op server did not start:\n{log.read_text()[-3000:]}")
        yield port, server.pid
    finally:
        stop_process(server)


def agent_tokens(database_url: str, node_ids: list[str]) -> list[str]:
    """One agent token per node, bound to it (as enrolment makes them), written straight into the database."""
    engine = make_engine(database_url)
    now = datetime.now(tz=UTC)
    try:
        with engine.begin() as conn:
            return [create_token(conn, name=f"agent-{n}", role=Role.AGENT, now=now, node_id=n)[0] for n in node_ids]
    finally:
        engine.dispose()


def verify(database_url: str, agents: list[Agent]) -> dict[str, int]:
    """Acknowledged against stored, per node and sequence number, on the database itself."""
    engine = make_engine(database_url)
    stored: dict[str, Counter[int]] = {}
    try:
        with engine.connect() as conn:
            query = select(reports.c.node_id, reports.c.sequence).where(reports.c.node_id.like(f"{NODE_PREFIX}-%"))
            for node_id, sequence in conn.execute(query):
                stored.setdefault(node_id, Counter())[sequence] += 1
    finally:
        engine.dispose()
    lost = duplicates = unacknowledged = 0
    for agent in agents:
        mine = stored.get(agent.node_id, Counter())
        lost += len(agent.acknowledged - set(mine))
        duplicates += sum(n - 1 for n in mine.values() if n > 1)
        unacknowledged += len(set(mine) - agent.acknowledged)
    return {
        "stored": sum(sum(c.values()) for c in stored.values()),
        "lost": lost,
        "duplicates": duplicates,
        "stored_never_acknowledged": unacknowledged,
    }


def log_problems(log: Path) -> list[str]:
    """Lines of the service's log that say something went wrong."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line for line in lines if re.search(r"\b(ERROR|CRITICAL|Traceback)\b", line)]


def make_agents(node_ids: list[str], documents: list[str], tokens: list[str], seed: int) -> list[Agent]:
    """Fresh agents (sequence 1 onwards, empty spools)."""
    return [Agent(n, t, d, random.Random(f"{seed}/{n}")) for n, d, t in zip(node_ids, documents, tokens, strict=True)]


def run_backend(
    backend: str,
    work: Path,
    node_ids: list[str],
    documents: list[str],
    *,
    args: argparse.Namespace,
    cluster: PostgresCluster | None,
    replicas: int = 1,
) -> dict[str, Any]:
    """One backend: a fresh database, the service (`replicas` processes on it: the first started alone, so it
    migrates, then the others), the agents' tokens, the load, the checks."""
    folder = work / f"{backend}-{replicas}"
    folder.mkdir()
    database_url = cluster.create_database() if cluster else f"sqlite:///{folder / 'suanli.db'}"
    services: list[ServiceProcess] = []
    label = backend if replicas == 1 else f"{backend} x{replicas}"
    try:
        for index in range(replicas):
            place = folder / f"replica-{index}"
            place.mkdir()
            service = ServiceProcess(database_url, place, log_level="WARNING")
            service.admin_token_file = folder / "admin.token"
            services.append(service.start())
        began = time.monotonic()
        tokens = agent_tokens(database_url, node_ids)
        print(
            f"  [{label}] service up, {len(tokens):,} agent tokens made in {time.monotonic() - began:.1f} s",
            flush=True,
        )
        agents = make_agents(node_ids, documents, tokens, args.seed)
        figures = asyncio.run(
            generate(
                agents,
                [Target(service.port, "/v1/reports") for service in services],
                interval=args.interval,
                duration=args.duration,
                drain_s=args.drain,
                label=label,
                progress_s=args.progress,
                service_pids=[service.proc.pid for service in services if service.proc is not None],
            )
        )
    finally:
        for service in services:
            service.stop()
    figures |= verify(database_url, agents)
    figures["backend"] = label
    problems = [line for service in services for line in log_problems(service.log)]
    figures["service_log_errors"] = len(problems)
    figures["service_log_first_errors"] = problems[:5]
    return figures


# --- output --------------------------------------------------------------------------------------------------


def line(name: str, r: dict[str, Any]) -> str:
    """One row of the table."""
    lat = r["latency_ms"]
    errors = sum(r["errors"].values())
    return (
        f"  {name:26} {r['offered_per_s']:8.1f} {r['acknowledged_per_s']:8.1f} {lat['p50']:8.1f} "
        f"{lat['p99']:8.1f} {lat['max']:8.1f} {errors:7d}"
    )


def show(args: argparse.Namespace, baseline: dict[str, Any] | None, runs: list[dict[str, Any]], size: float) -> None:
    """Print the table and the checks."""
    print(
        f"\nLoad: {args.agents:,} agents reporting every {args.interval:g} s (+/-10%) for {args.duration:g} s; "
        f"reports {size:.0f} B on average"
    )
    print(f"  {'':26} {'offered':>8} {'acked':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}")
    print(f"  {'':26} {'/s':>8} {'/s':>8}")
    if baseline:
        print(line(f"no-op ({args.baseline_duration:g} s, baseline)", baseline))
    for r in runs:
        print(line(f"POST /v1/reports, {r['backend']}", r))
    every: list[dict[str, Any]] = ([baseline] if baseline else []) + runs
    for r in every:
        name = r.get("backend", "no-op")
        cpu = f"service CPU {r['service_cpu_s'] / r['seconds'] * 100:.0f}% of a core" if r["service_cpu_s"] else ""
        print(
            f"  {name}: {r['requests']:,} requests, {r['connections_opened']:,} connections opened, {cpu}, "
            f"generator CPU {r['generator_cpu_s'] / r['seconds'] * 100:.0f}%; errors {r['errors'] or 'none'}"
        )
        if "lost" in r:
            print(
                f"    acknowledged {r['acknowledged']:,} (outcomes {r['outcomes']}), stored {r['stored']:,}, "
                f"lost {r['lost']}, duplicates {r['duplicates']}, stored but never acknowledged "
                f"{r['stored_never_acknowledged']}, left in spools {r['left_in_spools']}, rejected "
                f"{r['rejected']}; service log: {r['service_log_errors']} error line(s)"
            )
            for problem in r["service_log_first_errors"]:
                print(f"      {problem[:200]}")
    if baseline:
        for r in runs:
            b, s = baseline["latency_ms"], r["latency_ms"]
            rate = r["acknowledged_per_s"] / baseline["acknowledged_per_s"] if baseline["acknowledged_per_s"] else 0
            print(
                f"  {r['backend']} / no-op: acknowledged rate {rate:.2f}, p50 {s['p50'] / max(b['p50'], 1e-9):.1f}x, "
                f"p99 {s['p99'] / max(b['p99'], 1e-9):.1f}x"
            )
    for r in runs:
        checks = {
            "nothing_lost": r["lost"] == 0,
            "no_duplicates": r["duplicates"] == 0,
            "no_5xx": not any(k.startswith("HTTP 5") for k in r["errors"]),
            "sustained_offered_rate": r["acknowledged_per_s"] >= 0.95 * r["offered_per_s"],
        }
        for name, ok in checks.items():
            print(f"{'PASS' if ok else 'FAIL'}  {r['backend']}: {name}")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.load_agents",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--agents", type=int, default=10_000, help="simulated agents, one node each (default 10000)")
    p.add_argument(
        "--interval",
        type=float,
        default=30.0,
        help="seconds between an agent's reports, +/-10%% jitter (default 30, the agent's default)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=600.0,
        help="seconds of load per backend; no report is made after it (default 600)",
    )
    p.add_argument(
        "--drain",
        type=float,
        default=60.0,
        help="seconds after --duration for the agents to push what their spools hold (default 60)",
    )
    p.add_argument(
        "--backend",
        choices=("sqlite", "postgresql", "both"),
        default="both",
        help="database of the service: a SQLite file, a throwaway PostgreSQL cluster (initdb in a "
        "temporary folder, as the tests make), or both one after the other (default both)",
    )
    p.add_argument(
        "--baseline-duration",
        type=float,
        default=60.0,
        help="seconds of the same load against the no-op endpoint, first; 0 skips it (default 60)",
    )
    p.add_argument(
        "--replicas",
        default="1",
        help="service processes on the one PostgreSQL database, one run per count, comma-separated; the agents "
        "are spread over them (agent i to replica i mod N); SQLite runs one (default 1)",
    )
    p.add_argument("--progress", type=float, default=30.0, help="seconds between progress lines (default 30)")
    p.add_argument("--seed", type=int, default=1, help="seed of the agents' phases and jitter (default 1)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON document at the end")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the baseline and each backend; print the figures."""
    args = parser().parse_args(argv)
    if args.agents < 1 or args.interval <= 0 or args.duration <= 0 or args.drain < 0 or args.progress <= 0:
        parser().error("--agents, --interval, --duration and --progress must be positive, --drain not negative")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, max(soft, 2 * args.agents + 1024))  # the service (a child) inherits it
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < args.agents + 256:
        print(f"warning: only {wanted} open files allowed (ulimit -n); agents may fail to connect", file=sys.stderr)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    counts = [int(c) for c in args.replicas.split(",")]
    if any(c < 1 for c in counts):
        parser().error("--replicas: positive counts")
    work = Path(tempfile.mkdtemp(prefix="suanli-load-agents-"))
    cluster: PostgresCluster | None = None
    runs: list[dict[str, Any]] = []
    baseline: dict[str, Any] | None = None
    try:
        began = time.monotonic()
        node_ids, documents = templates(args.agents)
        size = sum(len(d) for d in documents) / len(documents)
        print(
            f"{args.agents:,} agents ready in {time.monotonic() - began:.1f} s ({size:.0f} B per report on "
            f"average); offered load {args.agents / args.interval:.1f} reports/s",
            flush=True,
        )
        if args.baseline_duration > 0:
            with noop_server(work) as (port, pid):
                tokens = [f"sl_agent_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}" for _ in node_ids]  # same length
                agents = make_agents(node_ids, documents, tokens, args.seed)
                baseline = asyncio.run(
                    generate(
                        agents,
                        [Target(port, "/bench/noop")],
                        interval=args.interval,
                        duration=args.baseline_duration,
                        drain_s=args.drain,
                        label="no-op",
                        progress_s=args.progress,
                        service_pids=[pid],
                    )
                )
        for backend in backends:
            if backend == "postgresql" and cluster is None:
                cluster = PostgresCluster().start()
            for count in counts if backend == "postgresql" else [1]:
                runs.append(run_backend(backend, work, node_ids, documents, args=args, cluster=cluster, replicas=count))
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    show(args, baseline, runs, size)
    if args.json:
        print(json.dumps({"baseline": baseline, "runs": runs}, indent=2))
    return 0 if all(r["lost"] == 0 and r["duplicates"] == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
