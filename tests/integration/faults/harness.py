"""What the fault tests share: real `census-agent run` processes, a burst of report POSTs that records every
acknowledgement, a direct view of the reports table, and a small tmpfs to fill up."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import httpx
from sqlalchemy import select

from api.db.engine import make_engine
from api.db.tables import reports
from tests.integration.service.helpers import clean_env, document, make_report, planned_inventory
from tests.servers import free_port, wait_for
from tests.service import ServiceProcess

FAST_RETRY = {"JITTER": "0", "BACKOFF_MAX_SECONDS": "1", "REQUEST_TIMEOUT_SECONDS": "5"}


class FaultAgent:
    """`census-agent run` reporting this machine every second as `node_id`, with its own spool and exporter."""

    def __init__(self, workdir: Path, server: str, token: str, node_id: str, **settings: str) -> None:
        self.node_id = node_id
        self.spool = workdir / f"{node_id}-spool"
        self.token_file = workdir / f"{node_id}.token"
        self.token_file.write_text(token + "\n")
        self.log = workdir / f"{node_id}.log"
        self.metrics_port = free_port()
        self.argv = [
            sys.executable,
            "-m",
            "census_agent.cli",
            "run",
            "--server",
            server,
            "--token-file",
            str(self.token_file),
            "--interval",
            "1",
            "--no-nvml",
            "--node-id",
            node_id,
            "--region",
            "440106",
            "--spool-dir",
            str(self.spool),
            "--metrics-port",
            str(self.metrics_port),
            "--metrics-host",
            "127.0.0.1",
        ]
        self.env = clean_env() | {f"SUANLI_AGENT_{k}": v for k, v in (FAST_RETRY | settings).items()}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> FaultAgent:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, env=self.env)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def metric(self, name: str) -> float | None:
        """One unlabelled sample of the agent's exporter (None before the exporter answers)."""
        try:
            with urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
                text: str = response.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def spooled(self) -> list[int]:
        """Sequence numbers of the complete reports in the spool (not a write in progress, not rejected/)."""
        return sorted(int(p.stem) for p in self.spool.glob("*.json") if p.stem.isdigit())

    def stop(self) -> int:
        """SIGTERM and wait: the agent's exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()


@dataclass
class Burst:
    """Threads POSTing reports as fast as the service answers, each for its own nodes, recording what the service
    acknowledged (2xx) and every other answer.  A report that got no answer is not retried: it may or may not be
    stored; an acknowledged one must be."""

    url: str
    token: str
    threads: int = 4
    acked: list[str] = field(default_factory=list)
    answers: Counter[int] = field(default_factory=Counter)
    no_answer: int = 0
    refusals: list[tuple[int, str, str | None, dict[str, Any]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Burst:
        run = uuid.uuid4().hex[:6]
        for n in range(self.threads):
            worker = threading.Thread(target=self._post, args=(f"burst-{run}-{n}",), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def _post(self, node_id: str) -> None:
        base = document(make_report(planned_inventory(node_id)))
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=10) as client:
            sequence = 0
            while not self._stop.is_set():
                sequence += 1
                report_id = str(uuid.uuid4())
                body = base | {
                    "report_id": report_id,
                    "sequence": sequence,
                    "generated_at": datetime.now(tz=UTC).isoformat(),
                }
                try:
                    response = client.post("/v1/reports", content=json.dumps(body).encode())
                except httpx.HTTPError:
                    with self._lock:
                        self.no_answer += 1
                    self._stop.wait(0.05)  # a load generator's pause while the service is away, not a wait for it
                    continue
                with self._lock:
                    self.answers[response.status_code] += 1
                    if response.is_success:
                        self.acked.append(report_id)
                    else:
                        problem = response.json() if response.content else {}
                        self.refusals.append(
                            (
                                response.status_code,
                                response.headers.get("content-type", ""),
                                response.headers.get("retry-after"),
                                problem,
                            )
                        )
                if not response.is_success:
                    self._stop.wait(0.05)

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=30)
        assert not any(w.is_alive() for w in self._workers), "a burst thread did not stop"


@dataclass(frozen=True)
class StoredReport:
    row: int  # the reports table's own id: the order rows were written in
    report_id: str
    node_id: str
    sequence: int


def stored_reports(database_url: str) -> list[StoredReport]:
    """Every row of the reports table, read straight from the database (not through the service), in write order."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(reports.c.id, reports.c.report_id, reports.c.node_id, reports.c.sequence).order_by(reports.c.id)
            ).all()
    finally:
        engine.dispose()
    return [StoredReport(r.id, r.report_id, r.node_id, r.sequence) for r in rows]


def sequences_of(rows: list[StoredReport], node_id: str) -> list[int]:
    """A node's stored sequence numbers in the order they were written."""
    return [r.sequence for r in rows if r.node_id == node_id]


def drain_and_stop(burst: Burst, agents: list[FaultAgent]) -> dict[str, list[int]]:
    """Stop the burst, wait for every agent's spool to drain and stop the agents (each must exit 0); returns what
    each agent's spool still holds (a report made after the drain, before the stop)."""
    burst.stop()
    wait_for(lambda: not any(a.spooled() for a in agents), 60, "every agent's spool to drain")
    left = {a.node_id: a.spooled() for a in agents}
    assert [a.stop() for a in agents] == [0] * len(agents)
    return left


def tear_down(burst: Burst | None, agents: list[FaultAgent], service: ServiceProcess) -> None:
    """Whatever a fault test started, stopped, whether it passed or not."""
    if burst is not None:
        burst.stop()
    for agent in agents:
        agent.kill()
    service.stop()


def assert_delivered_once(database_url: str, acked: list[str], left: dict[str, list[int]]) -> list[StoredReport]:
    """Every report id in `acked` is stored, no report id twice, and for each agent (node id -> the sequence numbers
    still in its spool) the stored sequence numbers and the spooled ones are 1..N, none stored twice.  Returns the
    stored rows, for a test's own further checks."""
    rows = stored_reports(database_url)
    counts = Counter(r.report_id for r in rows)
    assert len(counts) == len(rows), f"report ids stored twice: {[i for i, c in counts.items() if c > 1][:5]}"
    missing = set(acked) - set(counts)
    assert not missing, f"{len(missing)} acknowledged report(s) lost, e.g. {sorted(missing)[:3]}"
    for node_id, spooled in left.items():
        stored = sequences_of(rows, node_id)
        assert len(stored) == len(set(stored)), f"{node_id}: a sequence stored twice: {stored}"
        made = set(stored) | set(spooled)
        assert made == set(range(1, max(made) + 1)), f"{node_id}: reports lost: {sorted(made)}"
    return rows


@contextlib.contextmanager
def tmpfs(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of `size_bytes` mounted on `path` (needs root; unmounted on exit whatever happens)."""
    path.mkdir(parents=True, exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "suanli-test", str(path)],
        capture_output=True,
        check=False,
        timeout=30,
    )
    if mount.returncode != 0:
        raise OSError(f"cannot mount a tmpfs on {path}: {mount.stderr.decode().strip()}")
    try:
        yield path
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True, check=False, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False, timeout=30)


def fill(directory: Path, leave_bytes: int = 0) -> Path:
    """Fill the filesystem of `directory` with one file until the disk is full, then give back `leave_bytes`."""
    filler = directory / "filler"
    chunk = b"\0" * 4096
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    written = 0
    try:
        while True:
            try:
                written += os.write(fd, chunk)
            except OSError:
                break
        os.ftruncate(fd, max(0, written - leave_bytes))
    finally:
        os.close(fd)
    return filler


def can_mount_tmpfs() -> bool:
    return os.geteuid() == 0
