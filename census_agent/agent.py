"""The agent process: build a report every interval, spool it, push the spool in order, back off on failure.

One thread runs `Agent.run`; the Prometheus exporter reads `AgentState` from its own thread.  The full
inventory (CPU topology, GPUs, interconnects) is collected at start, every ``inventory_refresh_seconds`` and on
`request_refresh` (SIGHUP); in between only memory is re-read, which keeps a cycle cheap.  Each cycle also reads
what the node consumes (`UsageSampler`: /proc/stat, RAPL counters, NVML utilisation and power) and attaches it
to the report from the second cycle on; a failure there costs that cycle its usage, never its report.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from census_agent.backoff import backoff_delay, jittered
from census_agent.collectors.inventory import collect_inventory, refresh_memory
from census_agent.collectors.memory import collect_memory
from census_agent.collectors.nvml import NvmlApi
from census_agent.collectors.usage import UsageSampler
from census_agent.collectors.vendor_tools import collect_vendor_facts
from census_agent.config import AgentConfig
from census_agent.models import Measurement, NodeInventory, Report, Usage
from census_agent.push import Outcome, Pusher
from census_agent.report import ComputeModel, build_report
from census_agent.spool import Spool, SpoolEntry, SpoolError

log = logging.getLogger(__name__)

MAX_PUSHES_PER_DRAIN = 1000


@dataclass
class AgentState:
    """What the exporter shows: the latest report and the agent's health counters."""

    report: Report | None = None
    last_success_unixtime: float | None = None
    pushes_total: int = 0
    push_failures_total: int = 0
    consecutive_failures: int = 0
    spool_write_errors_total: int = 0
    collect_errors_total: int = 0
    cycles_total: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Agent:
    """Collects, spools and pushes reports until `stop` is called."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        spool: Spool,
        pusher: Pusher | None,
        nvml: NvmlApi | None,
        model: ComputeModel | None = None,
        measurements: list[Measurement] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.spool = spool
        self.pusher = pusher
        self.nvml = nvml
        self.model = model or ComputeModel()
        self.measurements = measurements or []
        self.state = AgentState()
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._stop = threading.Event()
        self._refresh = threading.Event()
        self._inventory: NodeInventory | None = None
        self._inventory_at = 0.0
        self._usage = UsageSampler(config.root, nvml, monotonic=monotonic)

    # --- control ---------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish its current step and return."""
        self._stop.set()

    def request_refresh(self) -> None:
        """Re-collect the full inventory before the next report (SIGHUP)."""
        self._refresh.set()

    # --- one step at a time ------------------------------------------------------------------------------

    def inventory(self) -> NodeInventory:
        """The node's inventory: a full scan when due, else the cached one with fresh memory figures."""
        now = self._clock()
        due = now - self._inventory_at >= self.config.inventory_refresh_seconds
        if self._inventory is None or due or self._refresh.is_set():
            self._refresh.clear()
            self._inventory, scan = collect_inventory(
                self.config.root,
                labels=self.config.labels,
                declared_accelerators=self.config.accelerators,
                node_id=self.config.node_id,
                nvml=self.nvml,
                vendor_facts=collect_vendor_facts if self.config.vendor_tools else None,
            )
            self._inventory_at = now
            self._usage.reset_accelerators()  # NVML opened again next cycle: a device may have come or gone
            log.info(
                "inventory collected: node %s, %d cores, %d accelerator(s); %s",
                self._inventory.host.node_id,
                self._inventory.cpu.physical_cores,
                len(self._inventory.accelerators),
                scan.status,
            )
            return self._inventory
        self._inventory = refresh_memory(self._inventory, collect_memory(self.config.root))
        return self._inventory

    def usage(self, inventory: NodeInventory) -> Usage | None:
        """What the node consumed since the previous cycle (None on the first); a failure is logged, not raised."""
        try:
            return self._usage.sample(inventory.memory, inventory.accelerators)
        except Exception:
            log.exception("could not read this cycle's usage; the report goes without it")
            return None

    def make_report(self) -> tuple[Report, bytes, int]:
        """Build the next report (reserving its sequence number) and its JSON document."""
        sequence = self.spool.next_sequence()
        inventory = self.inventory()
        report = build_report(
            inventory,
            self.model,
            report_id=uuid.uuid4(),
            sequence=sequence,
            generated_at=datetime.fromtimestamp(self._clock(), tz=UTC),
            measurements=self.measurements,
            usage=self.usage(inventory),
        )
        return report, report.model_dump_json().encode(), sequence

    def collect_once(self) -> SpoolEntry | None:
        """Build a report and store it in the spool. On a spool write failure, push it directly instead."""
        report, document, sequence = self.make_report()
        with self.state.lock:
            self.state.report = report
            self.state.cycles_total += 1
        try:
            return self.spool.append(sequence, document)
        except SpoolError as exc:
            with self.state.lock:
                self.state.spool_write_errors_total += 1
            log.error("spool write failed (%s): sending report %s without a spool copy", exc, report.report_id)
            if self.pusher is not None:
                result = self.pusher.push(document)
                self._record(result.outcome, result.status, result.detail, sequence)
            return None

    def drain(self) -> bool:
        """Push spooled reports oldest first until the spool is empty or a push must be retried later.

        Returns True when nothing is left to retry.
        """
        if self.pusher is None:
            return True
        for _ in range(MAX_PUSHES_PER_DRAIN):
            entry = self.spool.oldest()
            if entry is None or self._stop.is_set():
                return entry is None
            try:
                document = entry.read()
            except OSError as exc:
                log.error("spooled report %d unreadable (%s): set aside", entry.sequence, exc)
                self.spool.reject(entry, f"unreadable: {exc}")
                continue
            result = self.pusher.push(document)
            self._record(result.outcome, result.status, result.detail, entry.sequence)
            if result.outcome is Outcome.STORED:
                self.spool.acknowledge(entry)
            elif result.outcome is Outcome.INVALID:
                self.spool.reject(entry, f"HTTP {result.status}: {result.detail}")
            else:
                return False
        return self.spool.depth == 0

    def _record(self, outcome: Outcome, status: int | None, detail: str, sequence: int) -> None:
        with self.state.lock:
            self.state.pushes_total += 1
            if outcome is Outcome.STORED:
                self.state.last_success_unixtime = self._clock()
                if self.state.consecutive_failures:
                    log.info("server reachable again after %d failed push(es)", self.state.consecutive_failures)
                self.state.consecutive_failures = 0
                return
            self.state.push_failures_total += 1
            if outcome is Outcome.INVALID:
                log.error("server refused report %d as invalid (HTTP %s): %s", sequence, status, detail)
                return
            self.state.consecutive_failures += 1
            failures = self.state.consecutive_failures
        level = logging.ERROR if outcome is Outcome.UNAUTHORISED else logging.WARNING
        if failures == 1 or failures % 10 == 0:
            log.log(
                level,
                "push of report %d failed (%s, HTTP %s): %s; %d report(s) kept in the spool",
                sequence,
                outcome.value,
                status,
                detail.strip()[:200],
                self.spool.depth,
            )

    # --- the loop ------------------------------------------------------------------------------------------

    def _collect_guarded(self) -> None:
        """`collect_once`, but a failure to read the machine is logged and counted, never fatal to the loop."""
        try:
            self.collect_once()
        except Exception:
            with self.state.lock:
                self.state.collect_errors_total += 1
            log.exception("could not build a report this cycle; will try again next interval")

    def run(self) -> None:
        """Report every interval (jittered) and push, backing off exponentially while pushes fail."""
        cfg = self.config
        next_report = self._clock()
        next_drain = next_report
        while not self._stop.is_set():
            now = self._clock()
            if now >= next_report:
                self._collect_guarded()
                next_report = now + jittered(cfg.interval_seconds, cfg.jitter, self._rng)
            if now >= next_drain:
                if self.drain():
                    next_drain = next_report
                else:
                    failures = max(self.state.consecutive_failures, 1)
                    delay = backoff_delay(
                        failures,
                        base=min(cfg.interval_seconds, 5.0),
                        cap=cfg.backoff_max_seconds,
                        rng=self._rng,
                    )
                    next_drain = self._clock() + delay
            self._stop.wait(max(0.0, min(next_report, next_drain) - self._clock()))
        self._usage.reset_accelerators()
        log.info("agent stopped; %d report(s) left in the spool for the next start", self.spool.depth)
