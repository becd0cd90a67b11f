"""CPU time and resident memory of the census agent per report cycle, beside node_exporter per scrape.

    uv run python -m benchmarks.agent_cycle            # table (about 1.5 minutes on 2 cores)
    uv run python -m benchmarks.agent_cycle --json     # the same figures as one JSON document

Phases, one after the other, each on an otherwise idle machine, everything on 127.0.0.1 on free ports:

0. **priming**: the agent runs until its first reports with an empty private bytecode cache
   (``PYTHONPYCACHEPREFIX`` in the work folder), so that the measured runs import from ``.pyc`` files as an
   installed agent does; its memory is kept as "started without .pyc files" (off with ``--no-pyc-cache``).
1. **agent, cached inventory** (the steady state): the real agent (``python -m census_agent.cli run``) as a
   subprocess, reporting every ``--interval`` seconds to a sink HTTP server in this process that answers
   ``POST /v1/reports`` with 200 (keep-alive, TCP_NODELAY) and counts the reports.  After
   ``--warmup-cycles`` reports, the agent's CPU time is read after each of ``--cycles`` further reports,
   once it is idle again; CPU per cycle is the CPU spent divided by the reports the sink received.
2. **agent, full inventory each cycle** (the worst case): the same with
   ``SUANLI_AGENT_INVENTORY_REFRESH_SECONDS=1`` and an interval of at least 1.25 s, so that every jittered
   cycle re-collects the whole inventory (CPU topology, NUMA, NVML, interconnects) instead of memory alone;
   the full scans are counted in the agent's INFO log.
3. **node_exporter**: ``prometheus-node-exporter`` (default collectors) scraped ``--scrapes`` times every
   ``--scrape-interval`` seconds the way Prometheus scrapes (keep-alive, ``Accept-Encoding: gzip``) after
   ``--warmup-scrapes`` scrapes; CPU per scrape likewise.

CPU time is the process-wide CPU clock (``clock_gettime`` on the process's CPU-time clock: every thread,
nanoseconds), cross-checked with psutil's user+system time (10 ms ticks).  Idle time between cycles or
scrapes is included on both sides, at the same cadence by default: a process that sleeps between events
pays for cold caches, so a cycle costs about twice what a tight loop of cycles suggests.  RSS is psutil's;
peak RSS is ``VmHWM`` from ``/proc/PID/status`` (the high-water mark since the start, start-up included).

The agent reads what the node uses every cycle (utilisation: /proc/stat, memory, RAPL where readable, NVML
unless ``--no-nvml``); the sink counts the reports that carry ``usage``, so a run with it off cannot pass.

Targets (PASS/FAIL): the agent's CPU per cycle (both variants) below node_exporter's CPU per scrape, every
measured report carrying usage, and the agent's peak RSS (both variants) at most ``--rss-target-mib`` (40 MiB,
issue 15's target).  Exit status: 0 when measured (1 with
--strict if a target was missed), 2 when the benchmark could not run, 130 on Ctrl-C or SIGTERM.  Every
process started here is stopped (SIGTERM, then SIGKILL after a timeout) on the way out, errors included.

The agent runs on this interpreter by default, i.e. the dev venv; ``--agent-python`` runs it on another
venv's interpreter (a base install).  The agent imports no HTTP client library (``http.client`` only), so the
dev venv's extra packages no longer reach its memory.

Linux only (process CPU clocks, /proc).
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import http.client
import itertools
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from tests.servers import stop_process

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # `-m census_agent.cli` runs this checkout's agent
REPORTS_PATH = "/v1/reports"
MIB = 2**20
HOST = "127.0.0.1"
# Inventory refresh forced in the full-inventory variant, and the shortest interval that, with the agent's
# +/-10 % jitter, keeps every cycle at least that far apart (so each one re-collects the inventory).
FULL_REFRESH_SECONDS = 1
FULL_MIN_INTERVAL = 1.25
# What Prometheus 2.x sends when it scrapes a target.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
STOP_TIMEOUT = 5.0
EXIT_OK, EXIT_MISSED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


class BenchmarkError(RuntimeError):
    """The benchmark cannot go on (a process died or never answered); the message says why."""


# --- the sink: a stand-in census server -------------------------------------------------------------------


class Sink(ThreadingHTTPServer):
    """Accepts ``POST /v1/reports`` with 200 (keep-alive, like the real service) and counts the reports."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), _SinkHandler)
        self._cond = threading.Condition()
        self.reports = 0
        self.reports_with_usage = 0
        self.report_bytes = 0
        self.last_report_bytes = 0

    @property
    def url(self) -> str:
        """Base URL to give the agent as ``--server``."""
        return f"http://{HOST}:{self.server_address[1]}"

    def record(self, size: int, *, with_usage: bool) -> None:
        """Count one stored report (and whether it carried the consumed layer, ``usage``)."""
        with self._cond:
            self.reports += 1
            self.reports_with_usage += with_usage
            self.report_bytes += size
            self.last_report_bytes = size
            self._cond.notify_all()

    def count(self) -> int:
        """Reports received so far."""
        with self._cond:
            return self.reports

    def count_with_usage(self) -> int:
        """Reports received so far that carried usage."""
        with self._cond:
            return self.reports_with_usage

    def wait_for(self, target: int, timeout: float, alive: Callable[[], bool]) -> None:
        """Block until `target` reports have arrived; raise if the sender dies or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.reports < target:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchmarkError(f"timed out after {timeout:.0f} s waiting for report {target}")
                if not alive():
                    raise BenchmarkError(f"the agent exited before report {target} arrived")
                self._cond.wait(min(left, 0.5))


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: without TCP_NODELAY, Nagle's algorithm holds the body back
    # until the agent's delayed ACK (40 ms) comes. Real servers (uvicorn) set it too.
    disable_nagle_algorithm = True
    server: Sink

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != REPORTS_PATH:
            self._reply(404, b'{"detail":"not found"}')
            return
        self._reply(200, b'{"status":"stored"}')
        try:
            with_usage = json.loads(body).get("usage") is not None
        except (ValueError, AttributeError):
            with_usage = False
        self.server.record(len(body), with_usage=with_usage)

    def _reply(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: one line per report would only be noise."""


# --- measuring a process ---------------------------------------------------------------------------------


def process_cpu_ns(pid: int) -> int:
    """CPU time of every thread of `pid`, live and exited, in ns (Linux's process CPU-time clock)."""
    return time.clock_gettime_ns(((~pid) << 3) | 2)  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)


def peak_rss_bytes(pid: int) -> int:
    """``VmHWM`` of `pid`: its resident-set high-water mark."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise BenchmarkError(f"no VmHWM in /proc/{pid}/status")


@dataclass(frozen=True, slots=True)
class Sample:
    """One reading of a process."""

    wall: float
    cpu_ns: int
    cpu_psutil_s: float
    rss: int
    peak_rss: int


def sample(proc: psutil.Process) -> Sample:
    """Read `proc`'s CPU time and memory now."""
    times = proc.cpu_times()
    return Sample(
        wall=time.monotonic(),
        cpu_ns=process_cpu_ns(proc.pid),
        cpu_psutil_s=times.user + times.system,
        rss=proc.memory_info().rss,
        peak_rss=peak_rss_bytes(proc.pid),
    )


@dataclass
class PhaseResult:
    """What one phase measured; CPU per event (a report cycle or a scrape), memory in MiB."""

    name: str
    unit: str
    events: int
    wall_s: float
    cpu_ms_per_event: float
    cpu_psutil_ms_per_event: float
    cpu_ms_median: float
    cpu_ms_max: float
    rss_mib_start: float
    rss_mib_end: float
    rss_mib_max: float
    peak_rss_mib: float
    uss_mib: float | None
    threads: int
    extra: dict[str, Any] = field(default_factory=dict)


def measure(name: str, unit: str, proc: psutil.Process, events: int, step: Callable[[int], None]) -> PhaseResult:
    """Sample `proc`, run `step(i)` for each event (it returns once the process is idle again), sample again."""
    samples = [sample(proc)]
    for i in range(events):
        step(i)
        samples.append(sample(proc))
    first, last = samples[0], samples[-1]
    per_event = [(b.cpu_ns - a.cpu_ns) / 1e6 for a, b in itertools.pairwise(samples)]
    try:
        uss: float | None = proc.memory_full_info().uss / MIB
    except psutil.Error:
        uss = None
    return PhaseResult(
        name=name,
        unit=unit,
        events=events,
        wall_s=last.wall - first.wall,
        cpu_ms_per_event=(last.cpu_ns - first.cpu_ns) / 1e6 / events,
        cpu_psutil_ms_per_event=(last.cpu_psutil_s - first.cpu_psutil_s) * 1e3 / events,
        cpu_ms_median=statistics.median(per_event),
        cpu_ms_max=max(per_event),
        rss_mib_start=first.rss / MIB,
        rss_mib_end=last.rss / MIB,
        rss_mib_max=max(s.rss for s in samples) / MIB,
        peak_rss_mib=last.peak_rss / MIB,
        uss_mib=uss,
        threads=proc.num_threads(),
    )


# --- starting and stopping processes ---------------------------------------------------------------------


def start_process(
    stack: contextlib.ExitStack, argv: list[str], log_path: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` in the project root with stdout and stderr in `log_path`, stopped when `stack` closes."""
    with log_path.open("ab") as log:
        popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=PROJECT_ROOT)
    stack.callback(stop_process, popen, STOP_TIMEOUT)
    return popen


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log, indented, for an error message."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "    (no log)"
    return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty log)"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


# --- the phases ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """The run's parameters (from the command line)."""

    cycles: int
    warmup_cycles: int
    interval: float
    scrapes: int
    warmup_scrapes: int
    scrape_interval: float
    gzip: bool
    full: bool
    nvml: bool
    agent_metrics: bool
    agent_log_level: str
    node_exporter: str
    node_exporter_args: tuple[str, ...]
    rss_target_mib: float
    start_timeout: float
    pyc_cache: bool
    agent_python: str
    keep_workdir: bool


def progress(message: str, *, quiet: bool) -> None:
    """A progress line on stderr (stdout is kept for the result)."""
    if not quiet:
        print(f"[agent_cycle] {message}", file=sys.stderr, flush=True)


def agent_env(settings: Settings, workdir: Path, extra: dict[str, str]) -> dict[str, str]:
    """The agent's environment: no SUANLI_AGENT_* from outside; a private bytecode cache unless told otherwise."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_AGENT_")}
    if settings.pyc_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    return env | extra


class AgentProcess:
    """One ``census-agent run`` reporting to the sink, stopped when `stack` closes."""

    def __init__(
        self,
        stack: contextlib.ExitStack,
        settings: Settings,
        sink: Sink,
        workdir: Path,
        *,
        variant: str,
        interval: float,
        env_extra: dict[str, str],
    ) -> None:
        self.sink = sink
        self.interval = interval
        self.spool = workdir / f"spool-{variant.replace(' ', '-')}"
        self.log_path = workdir / f"agent-{variant.replace(' ', '-')}.log"
        config = workdir / "empty.toml"  # so that an /etc/suanli/agent.toml on this machine is not read
        config.write_text("")
        argv = [
            settings.agent_python,
            "-m",
            "census_agent.cli",
            "run",
            "--config",
            str(config),
            "--server",
            sink.url,
            "--interval",
            repr(interval),
            "--spool-dir",
            str(self.spool),
            "--log-level",
            settings.agent_log_level,
        ]
        if settings.agent_metrics:
            argv += ["--metrics-port", "0"]
        if not settings.nvml:
            argv.append("--no-nvml")
        self.base = sink.count()
        started = time.monotonic()
        self.popen = start_process(stack, argv, self.log_path, agent_env(settings, workdir, env_extra))
        self.proc = psutil.Process(self.popen.pid)
        self.wait_report(1, settings.start_timeout)
        self.first_report_s = time.monotonic() - started

    def alive(self) -> bool:
        """Whether the agent is still running."""
        return self.popen.poll() is None

    def received(self) -> int:
        """Reports this agent has delivered."""
        return self.sink.count() - self.base

    def wait_report(self, n: int, timeout: float | None = None) -> None:
        """Block until this agent's `n`-th report has arrived, then until it is idle again."""
        try:
            self.sink.wait_for(self.base + n, timeout or self.interval * 3 + 10, self.alive)
        except BenchmarkError as exc:
            raise BenchmarkError(
                f"{exc}; the end of the agent's log ({self.log_path.name}):\n{log_tail(self.log_path)}"
            ) from exc
        time.sleep(min(0.25, self.interval / 4))  # a cycle takes milliseconds: by now the agent is idle

    def log_size(self) -> int:
        """Bytes logged so far."""
        return self.log_path.stat().st_size

    def log_since(self, offset: int) -> str:
        """What the agent logged after `offset`."""
        return self.log_path.read_bytes()[offset:].decode(errors="replace")


def prime_bytecode(settings: Settings, sink: Sink, workdir: Path) -> dict[str, Any]:
    """Run the agent once to fill the private bytecode cache; its memory is that of a start without .pyc files."""
    with contextlib.ExitStack() as stack:
        agent = AgentProcess(
            stack, settings, sink, workdir, variant="priming", interval=settings.interval, env_extra={}
        )
        agent.wait_report(settings.warmup_cycles)
        reading = sample(agent.proc)
        stop_process(agent.popen, STOP_TIMEOUT)
    return {
        "rss_mib": reading.rss / MIB,
        "peak_rss_mib": reading.peak_rss / MIB,
        "first_report_s": agent.first_report_s,
        "after_reports": settings.warmup_cycles,
    }


def run_agent(
    settings: Settings, sink: Sink, workdir: Path, *, variant: str, interval: float, env_extra: dict[str, str]
) -> PhaseResult:
    """Start the agent, let it warm up, measure `settings.cycles` report cycles, stop it."""
    with contextlib.ExitStack() as stack:
        agent = AgentProcess(stack, settings, sink, workdir, variant=variant, interval=interval, env_extra=env_extra)
        agent.wait_report(settings.warmup_cycles)
        start_reports = agent.received()
        start_usage = sink.count_with_usage()
        counts = [start_reports]  # reports received at each sample
        log_start = agent.log_size()

        def step(i: int) -> None:
            agent.wait_report(start_reports + i + 1)
            counts.append(agent.received())

        result = measure(f"agent, {variant}", "cycle", agent.proc, settings.cycles, step)
        log_text = agent.log_since(log_start)
        with_usage = sink.count_with_usage() - start_usage
        stop_process(agent.popen, STOP_TIMEOUT)
    received = counts[-1] - start_reports
    if received != settings.cycles:  # a report arrived during a settle pause: per-cycle figures stay right
        result.events = received
        result.cpu_ms_per_event *= settings.cycles / received
        result.cpu_psutil_ms_per_event *= settings.cycles / received
    scans = log_text.count("inventory collected") if settings.agent_log_level.upper() in ("DEBUG", "INFO") else None
    result.extra = {
        "interval_s": interval,
        "first_report_s": agent.first_report_s,
        "full_inventory_scans": scans,
        "report_bytes": sink.last_report_bytes,
        "reports_with_usage": with_usage,
        "warnings_or_errors": sum(1 for line in log_text.splitlines() if " WARNING " in line or " ERROR " in line),
        "spool_left": len(list(agent.spool.glob("*.json"))),
        "exit_code": agent.popen.returncode,
    }
    return result


def node_exporter_version(binary: str) -> str:
    """First line of ``--version``."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchmarkError(f"cannot run {binary}: {exc}") from exc
    return ((out.stdout or out.stderr).splitlines() or ["unknown"])[0]


class Scraper:
    """Scrapes one /metrics endpoint like Prometheus: a kept-alive connection, gzip asked for."""

    def __init__(self, port: int, *, use_gzip: bool) -> None:
        self._port = port
        self._headers = {"Accept": PROMETHEUS_ACCEPT, "User-Agent": "Prometheus/2.45.0"}
        if use_gzip:
            self._headers["Accept-Encoding"] = "gzip"
        self._conn: http.client.HTTPConnection | None = None
        self.last_body = b""
        self.last_encoding = ""
        self.seconds: list[float] = []

    def scrape(self) -> None:
        """GET /metrics once; raise `OSError` or `http.client.HTTPException` on failure."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection(HOST, self._port, timeout=30)
        start = time.monotonic()
        try:
            self._conn.request("GET", "/metrics", headers=self._headers)
            response = self._conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        self.seconds.append(time.monotonic() - start)
        if response.status != 200:
            raise http.client.HTTPException(f"HTTP {response.status} from node_exporter")
        self.last_body, self.last_encoding = body, response.getheader("Content-Encoding") or ""

    def samples(self) -> int:
        """Sample lines in the last scrape."""
        body = gzip.decompress(self.last_body) if self.last_encoding == "gzip" else self.last_body
        return sum(1 for line in body.decode(errors="replace").splitlines() if line and not line.startswith("#"))

    def close(self) -> None:
        """Drop the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def start_node_exporter(
    stack: contextlib.ExitStack, settings: Settings, workdir: Path
) -> tuple[subprocess.Popen[bytes], Scraper]:
    """Start node_exporter on a free port and wait until it answers a scrape (three tries at a port)."""
    log_path = workdir / "node_exporter.log"
    for _attempt in range(3):
        port = free_port()
        argv = [settings.node_exporter, f"--web.listen-address={HOST}:{port}", *settings.node_exporter_args]
        popen = start_process(stack, argv, log_path)
        scraper = Scraper(port, use_gzip=settings.gzip)
        stack.callback(scraper.close)
        deadline = time.monotonic() + settings.start_timeout
        while popen.poll() is None and time.monotonic() < deadline:
            try:
                scraper.scrape()
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
                continue
            return popen, scraper
        stop_process(popen, STOP_TIMEOUT)
    raise BenchmarkError(f"node_exporter did not start; the end of its log:\n{log_tail(log_path)}")


def run_node_exporter(settings: Settings, workdir: Path) -> PhaseResult:
    """Start node_exporter, warm it up, measure `settings.scrapes` scrapes, stop it."""
    with contextlib.ExitStack() as stack:
        popen, scraper = start_node_exporter(stack, settings, workdir)
        proc = psutil.Process(popen.pid)
        for _ in range(max(settings.warmup_scrapes - 1, 0)):  # the start-up check was the first
            time.sleep(settings.scrape_interval)
            scraper.scrape()
        settle = min(0.1, settings.scrape_interval / 4)
        time.sleep(settle)
        scraper.seconds.clear()
        begin = time.monotonic()

        def step(i: int) -> None:
            time.sleep(max(0.0, begin + i * settings.scrape_interval - time.monotonic()))
            scraper.scrape()
            time.sleep(settle)

        result = measure("node_exporter", "scrape", proc, settings.scrapes, step)
        result.extra = {
            "scrape_interval_s": settings.scrape_interval,
            "gzip": settings.gzip,
            "scrape_bytes": len(scraper.last_body),
            "content_encoding": scraper.last_encoding or "identity",
            "samples": scraper.samples(),
            "scrape_ms_median": statistics.median(scraper.seconds) * 1e3,
            "args": list(settings.node_exporter_args),
        }
    return result


# --- results -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One PASS/FAIL line; an informational one does not count towards the verdict."""

    name: str
    value: float
    limit: float
    unit: str
    passed: bool
    note: str = ""
    informational: bool = False
    relation: str = "<"  # what `value` must be to `limit` to pass: "<", "<=" or ">="


def judge(
    agents: list[PhaseResult], exporter: PhaseResult, rss_target_mib: float, without_pyc: dict[str, Any] | None
) -> list[Target]:
    """The targets: agent CPU per cycle below node_exporter's per scrape; agent peak RSS under the limit."""
    targets = []
    for agent in agents:
        worst = "full" in agent.name
        targets.append(
            Target(
                name=f"{agent.name}: CPU per cycle < node_exporter CPU per scrape",
                value=agent.cpu_ms_per_event,
                limit=exporter.cpu_ms_per_event,
                unit="ms",
                passed=agent.cpu_ms_per_event < exporter.cpu_ms_per_event,
                note="worst case: full inventory every cycle (the agent's default is once an hour)" if worst else "",
            )
        )
    for agent in agents:
        with_usage = agent.extra.get("reports_with_usage", 0)
        targets.append(
            Target(
                name=f"{agent.name}: utilisation on (reports carrying usage of those measured)",
                value=with_usage,
                limit=agent.events,
                unit="reports",
                passed=with_usage >= agent.events,
                relation=">=",
            )
        )
    peak = max(a.peak_rss_mib for a in agents)
    targets.append(
        Target(
            name="agent peak RSS (VmHWM, start-up included, every variant) at most the target",
            value=peak,
            limit=rss_target_mib,
            unit="MiB",
            passed=peak <= rss_target_mib,
            relation="<=",
        )
    )
    if without_pyc is not None:
        targets.append(
            Target(
                name="agent peak RSS when started without .pyc files at most the target",
                value=without_pyc["peak_rss_mib"],
                limit=rss_target_mib,
                unit="MiB",
                passed=without_pyc["peak_rss_mib"] <= rss_target_mib,
                relation="<=",
                note="not counted: an install whose bytecode is not compiled and cannot be written",
                informational=True,
            )
        )
    return targets


def host_info(settings: Settings) -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node_exporter": node_exporter_version(settings.node_exporter),
        "agent_python": settings.agent_python,
        "load_avg_1m_at_end": os.getloadavg()[0],
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _mib(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def render_table(doc: dict[str, Any]) -> str:
    """The human-readable result."""
    host, phases = doc["host"], doc["phases"]
    exporter = phases[-1]
    bytecode = "private .pyc cache, primed first" if doc["settings"]["pyc_cache"] else ".pyc as inherited"
    lines = [
        "Suanli census agent vs node_exporter: CPU time and resident memory",
        f"host: {host['cpus']} CPUs ({host['cpu_model']}), Linux {host['kernel']}, Python {host['python']}",
        f"      {host['node_exporter']}",
        f"agent: {host['agent_python']} ({bytecode})",
        "",
        f"{'process (CPU per event)':<36} {'CPU ms':>7} {'median':>7} {'max':>7} {'vs n_e':>7} "
        f"{'RSS MiB':>8} {'peak MiB':>9} {'events':>7}",
    ]
    for p in phases:
        ratio = p["cpu_ms_per_event"] / exporter["cpu_ms_per_event"] if exporter["cpu_ms_per_event"] else math.inf
        label = f"{p['name']} (per {p['unit']})"
        lines.append(
            f"{label:<36} {p['cpu_ms_per_event']:>7.2f} {p['cpu_ms_median']:>7.2f} {p['cpu_ms_max']:>7.2f} "
            f"{ratio:>6.2f}x {p['rss_mib_end']:>8.1f} {p['peak_rss_mib']:>9.1f} {p['events']:>7}"
        )
    cold = doc["without_pyc"]
    if cold is not None:
        label = "agent, started without .pyc files"
        lines.append(
            f"{label:<36} {'':>7} {'':>7} {'':>7} {'':>7} {cold['rss_mib']:>8.1f} {cold['peak_rss_mib']:>9.1f}"
        )
    lines.append("")
    for p in phases:
        x = p["extra"]
        if p["unit"] == "cycle":
            scans = x["full_inventory_scans"]
            lines.append(
                f"  {p['name']}: a report every {x['interval_s']:g} s ({x['report_bytes']} B), "
                f"{scans if scans is not None else '?'} full inventory scan(s) in {p['events']} cycles, "
                f"RSS {p['rss_mib_start']:.1f} -> {p['rss_mib_end']:.1f} MiB (USS {_mib(p['uss_mib'])}), "
                f"psutil {p['cpu_psutil_ms_per_event']:.2f} ms/cycle, first report after {x['first_report_s']:.1f} s"
                + (f", {x['warnings_or_errors']} warning(s)" if x["warnings_or_errors"] else "")
            )
        else:
            lines.append(
                f"  {p['name']}: a scrape every {x['scrape_interval_s']:g} s ({x['samples']} samples, "
                f"{x['scrape_bytes']} B {x['content_encoding']}, {x['scrape_ms_median']:.1f} ms), "
                f"USS {_mib(p['uss_mib'])} MiB, psutil {p['cpu_psutil_ms_per_event']:.2f} ms/scrape"
            )
    if cold is not None:
        lines.append(
            f"  agent without .pyc files (compiles its modules at start): first report after "
            f"{cold['first_report_s']:.1f} s, RSS after {cold['after_reports']} reports"
        )
    lines += [
        "  CPU: the process CPU clock (every thread, ns), idle time between events included; median and max of "
        "single events; psutil user+system (10 ms ticks) as a check.",
        "",
    ]
    for t in doc["targets"]:
        verdict = "info" if t["informational"] else ("PASS" if t["passed"] else "FAIL")
        note = f"  [{t['note']}]" if t["note"] else ""
        relation = t.get("relation", "<")
        op = relation if t["passed"] else {"<": ">=", "<=": ">", ">=": "<"}[relation]
        spec = ".0f" if t["unit"] == "reports" else ".2f"
        value, limit = format(t["value"], spec), format(t["limit"], spec)
        lines.append(f"{verdict}  {t['name']}: {value} {t['unit']} {op} {limit} {t['unit']}{note}")
    lines.append(f"targets {'met' if doc['passed'] else 'MISSED'} ({doc['wall_s']:.0f} s)")
    return "\n".join(lines)


# --- the command line -------------------------------------------------------------------------------------------

DESCRIPTION = """\
Measure the census agent's CPU time per report cycle and its resident memory beside node_exporter's CPU
time per scrape and memory, in one run, and print PASS/FAIL for the targets: the agent's CPU per cycle
below node_exporter's per scrape, and the agent's peak RSS under --rss-target-mib.

Phases (one after the other; all on 127.0.0.1, free ports):
  priming          the agent runs until its first reports to fill a private bytecode cache; its memory
                   is shown as "started without .pyc files" (skipped with --no-pyc-cache)
  cached inventory the real agent (python -m census_agent.cli run) reports every --interval seconds to a
                   sink HTTP server in this process (POST /v1/reports -> 200, counted); after
                   --warmup-cycles reports, --cycles more are measured: CPU per cycle = CPU spent / reports
  full inventory   the same with SUANLI_AGENT_INVENTORY_REFRESH_SECONDS=1 (and an interval of at least
                   1.25 s) so every cycle re-collects the whole inventory; scans counted from its log
  node_exporter    prometheus-node-exporter (default collectors) scraped like Prometheus does
                   (keep-alive, gzip) every --scrape-interval seconds: --scrapes after --warmup-scrapes

CPU is the process CPU-time clock (all threads, nanoseconds; psutil user+system shown as a check), idle
time between events included. RSS from psutil; peak RSS is VmHWM from /proc/PID/status. Every report the
agent sends carries its usage (busy cores, memory used, power where readable) from its second cycle on: the
sink counts them, and a measured report without usage fails the run.
"""

EPILOG = """\
exit status: 0 measured (1 with --strict when a target is missed), 2 could not run, 130 interrupted.
Every process started is stopped (SIGTERM, then SIGKILL) on exit, Ctrl-C and errors included.

The agent's spool lives in the temporary work folder: TMPDIR chooses the disk whose fsync it pays for.

examples:
  uv run python -m benchmarks.agent_cycle                     # about 1.5 minutes
  uv run python -m benchmarks.agent_cycle --json > result.json
  uv run python -m benchmarks.agent_cycle --cycles 60 --scrapes 60 --no-gzip
  uv run python -m benchmarks.agent_cycle --agent-python /opt/suanli/venv/bin/python   # a base install
"""


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's options."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.agent_cycle",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cycles", type=int, default=25, help="agent report cycles measured per variant (default %(default)s)"
    )
    parser.add_argument(
        "--warmup-cycles",
        type=int,
        default=2,
        help="reports to let through before measuring; the first carries the start-up (default %(default)s)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="agent --interval in seconds, at least 1 (default %(default)s); the full-inventory variant uses at "
        f"least {FULL_MIN_INTERVAL} s so that its jittered cycles stay longer than its 1 s inventory refresh",
    )
    parser.add_argument("--scrapes", type=int, default=25, help="node_exporter scrapes measured (default %(default)s)")
    parser.add_argument(
        "--warmup-scrapes", type=int, default=2, help="node_exporter scrapes before measuring (default %(default)s)"
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        help="seconds between scrapes (default: the agent's --interval, so idle time weighs the same on both sides)",
    )
    parser.add_argument(
        "--no-gzip",
        dest="gzip",
        action="store_false",
        help="scrape without Accept-Encoding: gzip (Prometheus sends it)",
    )
    parser.add_argument("--no-full", dest="full", action="store_false", help="skip the full-inventory variant")
    parser.add_argument("--no-nvml", dest="nvml", action="store_false", help="run the agent with --no-nvml")
    parser.add_argument(
        "--no-agent-metrics",
        dest="agent_metrics",
        action="store_false",
        help="run the agent without its Prometheus exporter (default: --metrics-port 0, serving, not scraped)",
    )
    parser.add_argument(
        "--no-pyc-cache",
        dest="pyc_cache",
        action="store_false",
        help="run the agent with this environment's bytecode settings (with PYTHONDONTWRITEBYTECODE=1 every start "
        "compiles from source, costing memory) instead of a private, primed PYTHONPYCACHEPREFIX",
    )
    parser.add_argument(
        "--agent-python",
        default=sys.executable,
        metavar="PYTHON",
        help="interpreter that runs the agent (default: this one, i.e. the project's dev venv; give a "
        "production-like venv's python to measure a base install: the agent's code still comes from this checkout)",
    )
    parser.add_argument(
        "--agent-log-level",
        default="INFO",
        help="the agent's --log-level (default %(default)s, the agent's own; INFO lets full scans be counted)",
    )
    parser.add_argument(
        "--node-exporter",
        default=shutil.which("prometheus-node-exporter") or shutil.which("node_exporter") or "prometheus-node-exporter",
        help="node_exporter binary (default %(default)s)",
    )
    parser.add_argument(
        "--node-exporter-arg",
        dest="node_exporter_args",
        action="append",
        default=[],
        metavar="ARG",
        help="extra node_exporter flag, repeatable, e.g. --node-exporter-arg=--no-collector.hwmon",
    )
    parser.add_argument(
        "--rss-target-mib",
        type=float,
        default=40.0,
        help="the agent's peak RSS target in MiB (default %(default)s, issue 15's)",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for a started process to answer (default %(default)s)",
    )
    parser.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the temporary folder (logs of every process, spools) instead of deleting it; set TMPDIR to "
        "choose where it goes (the agent's spool is written and fsynced there)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def settings_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Settings:
    """Validated settings."""
    if args.cycles < 1 or args.scrapes < 1:
        parser.error("--cycles and --scrapes must be at least 1")
    if args.warmup_cycles < 1 or args.warmup_scrapes < 1:
        parser.error("--warmup-cycles and --warmup-scrapes must be at least 1")
    if args.interval < 1:
        parser.error("--interval must be at least 1 (the agent's minimum)")
    scrape_interval = args.interval if args.scrape_interval is None else args.scrape_interval
    if scrape_interval <= 0:
        parser.error("--scrape-interval must be positive")
    return Settings(
        cycles=args.cycles,
        warmup_cycles=args.warmup_cycles,
        interval=args.interval,
        scrapes=args.scrapes,
        warmup_scrapes=args.warmup_scrapes,
        scrape_interval=scrape_interval,
        gzip=args.gzip,
        full=args.full,
        nvml=args.nvml,
        agent_metrics=args.agent_metrics,
        agent_log_level=args.agent_log_level,
        node_exporter=args.node_exporter,
        node_exporter_args=tuple(args.node_exporter_args),
        rss_target_mib=args.rss_target_mib,
        start_timeout=args.start_timeout,
        pyc_cache=args.pyc_cache,
        agent_python=args.agent_python,
        keep_workdir=args.keep_workdir,
    )


def run(settings: Settings, *, quiet: bool) -> dict[str, Any]:
    """All phases; the result document."""
    if shutil.which(settings.node_exporter) is None:
        raise BenchmarkError(f"node_exporter not found: {settings.node_exporter} (see --node-exporter)")
    started = time.monotonic()
    phases: list[PhaseResult] = []
    without_pyc = None
    with contextlib.ExitStack() as stack:
        if settings.keep_workdir:
            workdir = Path(tempfile.mkdtemp(prefix="agent-cycle-"))
            progress(f"logs and spools stay in {workdir}", quiet=quiet)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agent-cycle-")))
        sink = Sink()
        threading.Thread(target=sink.serve_forever, name="sink", daemon=True).start()
        stack.callback(sink.server_close)
        stack.callback(sink.shutdown)
        if settings.pyc_cache:
            progress("priming the agent's bytecode cache (one short run)", quiet=quiet)
            without_pyc = prime_bytecode(settings, sink, workdir)
        progress(f"agent, cached inventory: {settings.cycles} cycles every {settings.interval:g} s", quiet=quiet)
        phases.append(
            run_agent(settings, sink, workdir, variant="cached inventory", interval=settings.interval, env_extra={})
        )
        if settings.full:
            interval = max(settings.interval, FULL_MIN_INTERVAL)
            progress(f"agent, full inventory: {settings.cycles} cycles every {interval:g} s", quiet=quiet)
            env = {"SUANLI_AGENT_INVENTORY_REFRESH_SECONDS": str(FULL_REFRESH_SECONDS)}
            phases.append(
                run_agent(settings, sink, workdir, variant="full inventory", interval=interval, env_extra=env)
            )
        progress(f"node_exporter: {settings.scrapes} scrapes every {settings.scrape_interval:g} s", quiet=quiet)
        phases.append(run_node_exporter(settings, workdir))
    agents, exporter = phases[:-1], phases[-1]
    targets = judge(agents, exporter, settings.rss_target_mib, without_pyc)
    return {
        "benchmark": "agent_cycle",
        "settings": asdict(settings),
        "host": host_info(settings),
        "phases": [asdict(p) for p in phases],
        "without_pyc": without_pyc,
        "ratios": {
            p.name: (p.cpu_ms_per_event / exporter.cpu_ms_per_event if exporter.cpu_ms_per_event else None)
            for p in agents
        },
        "targets": [asdict(t) for t in targets],
        "passed": all(t.passed for t in targets if not t.informational),
        "wall_s": time.monotonic() - started,
    }


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = settings_from(args, parser)
    if not sys.platform.startswith("linux"):
        print("agent_cycle: Linux only (process CPU clocks and /proc)", file=sys.stderr)
        return EXIT_ERROR
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # so SIGTERM also stops what was started
    try:
        doc = run(settings, quiet=args.quiet)
    except BenchmarkError as exc:
        print(f"agent_cycle: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("agent_cycle: interrupted; the processes started were stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(doc, indent=2) if args.json else render_table(doc))
    return EXIT_MISSED if args.strict and not doc["passed"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
