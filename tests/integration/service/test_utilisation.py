"""Utilisation and energy in the census (issue 15 §2-3), on SQLite and PostgreSQL, with the application in process:
reports carrying usage and power summed per tier and region (consumed layer, measured / declared / partial power,
facility power, peak GFLOPS per watt), an unpriced accelerator counted, the rollups equal to the sums over nodes after
newer reports, a region move and status changes (and to `rebuild`), the allocated layer and the scheduler's demand
from real job rows written through the job store, the window's hours and energy from snapshots, history with the
three layers, the CSV columns, window validation and who may read.

Expected figures are computed here from the reports' own peaks (the agent's compute model) and the usage the test
sends, not read back from the service's code."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from api.census.liveness import snapshot, sweep
from api.census.rollups import rebuild
from api.db.engine import make_engine, write_transaction
from api.jobs import store as job_store
from census_agent.compute import accelerator_flops
from census_agent.models import (
    Accelerator,
    AcceleratorUsage,
    NodeInventory,
    PowerReading,
    Precision,
    Report,
    Tier,
    Usage,
)
from scheduler.models import JobSpec, JobState, Resources, WorkloadClass
from scheduler.queue import Wait
from tests.inprocess import AppService
from tests.integration.service.helpers import (
    assert_rollups_are_node_sums,
    create_token,
    host_inventory,
    make_report,
    planned_inventory,
    rollup_cells,
    stored,
)

pytestmark = pytest.mark.integration

CONVENTION = {
    Tier.GENERAL: Precision.FP32,
    Tier.EDGE: Precision.FP32,
    Tier.AI: Precision.FP16,
    Tier.HPC: Precision.FP64,
}
HOUR = 3600.0
# Housekeeping effectively off (sweeps every hour), so the only snapshots are the ones a test takes.
QUIET = {"sweep_interval_seconds": "3600", "snapshot_interval_seconds": "3600"}
MAX_GAP = 7200.0  # snapshot interval + sweep interval


@pytest.fixture
def quiet(database_url: str, tmp_path: Path) -> Iterator[AppService]:
    """The application on a fresh database, with no snapshot taken but by the test."""
    app = AppService(database_url, tmp_path, **QUIET).start()
    yield app
    app.stop()


@pytest.fixture
def engine(quiet: AppService) -> Iterator[Engine]:
    """An engine of the test's own on the service's database."""
    made = make_engine(quiet.database_url)
    yield made
    made.dispose()


# --- the nodes -----------------------------------------------------------------------------------------------


@dataclass
class Sent:
    """One node as reported: its report, the tier the service answered, and what the test expects it to add."""

    report: Report
    tier: str
    region: str | None
    busy: float
    accelerators_busy: float
    measured: float | None
    partial: bool
    declared: float | None
    pue: float | None
    unpriced: int

    @property
    def inventory(self) -> NodeInventory:
        return self.report.inventory

    def consumed(self, precision: Precision) -> float:
        """CPU part x busy/threads + each accelerator x its utilisation, from the report's own peaks."""
        usage = self.report.usage
        if usage is None:
            return 0.0
        cpu = next(c for c in self.report.peaks.components if c.component == "cpu").figures[precision].flops
        total = cpu * min(1.0, usage.cpu_busy_cores / self.inventory.cpu.threads)
        by_index = {a.index: a.utilisation for a in usage.accelerators}
        for component in self.report.peaks.components:
            if component.component.startswith("accelerator:"):
                index = int(component.component.split(":")[1])
                total += component.figures[precision].flops * (by_index.get(index) or 0.0)
        return total

    def watts(self) -> float:
        return (self.measured or 0.0) + (self.declared or 0.0)


def with_usage(
    inventory: NodeInventory,
    *,
    busy: float | None,
    utilisation: list[float | None] | None = None,
    rapl: float | None = None,
    nvml: float | None = None,
    power_watts: float | None = None,
    pue: float | None = None,
    sequence: int = 1,
    generated_at: datetime | None = None,
) -> Report:
    """A report of `inventory` (with declared power and PUE labels) carrying usage, when `busy` is given."""
    labels = inventory.labels.model_copy(update={"power_watts": power_watts, "site_pue": pue})
    inventory = inventory.model_copy(update={"labels": labels})
    report = make_report(inventory, sequence=sequence, generated_at=generated_at)
    if busy is None:
        return report
    power = []
    if rapl is not None:
        power.append(PowerReading(watts=rapl, coverage="cpu-package", source="rapl"))
    if nvml is not None:
        power.append(PowerReading(watts=nvml, coverage="accelerators", source="nvml"))
    usage = Usage(
        interval_seconds=30,
        cpu_busy_cores=busy,
        memory_used_bytes=inventory.memory.total_bytes // 2,
        accelerators=[AcceleratorUsage(index=i, utilisation=u) for i, u in enumerate(utilisation or [])],
        power=power,
    )
    return report.model_copy(update={"usage": usage})


def mystery_inventory(node_id: str, region: str) -> NodeInventory:
    """A Xeon server with one PCI accelerator no catalogue row names and no counter prices."""
    base = host_inventory("xeon-platinum-8380-2s", node_id, region=region)
    unknown = Accelerator(
        index=0, vendor="Acme", model="Acme Mystery NPU 9000", pci_vendor_id="1d17", pci_device_id="abcd", source="pci"
    )
    return base.model_copy(update={"accelerators": [unknown]})


def fleet(client: httpx.Client, prefix: str) -> list[Sent]:
    """Post five nodes covering every power rule and an unpriced accelerator; returns what was sent."""
    plans: list[tuple[Report, dict[str, Any]]] = [
        (  # measured: RAPL and NVML cover a GPU node; its site declares a PUE
            with_usage(
                planned_inventory(f"{prefix}-dgx", region="440112"),
                busy=56.0,
                utilisation=[0.5] * 8,
                rapl=700.0,
                nvml=5600.0,
                pue=1.3,
            ),
            {"measured": 6300.0, "partial": False, "declared": None, "pue": 1.3},
        ),
        (  # measured: RAPL covers a CPU-only node
            with_usage(
                host_inventory("xeon-platinum-8380-2s", f"{prefix}-xeon", region="440106"), busy=40.0, rapl=400.0
            ),
            {"measured": 400.0, "partial": False, "declared": None, "pue": None},
        ),
        (  # declared: no usage at all, the operator's power_watts
            with_usage(
                host_inventory("epyc-9654-zen4", f"{prefix}-epyc", region="440106"), busy=None, power_watts=900.0
            ),
            {"measured": None, "partial": False, "declared": 900.0, "pue": None},
        ),
        (  # partial: RAPL only on a GPU node that declares nothing (two GPUs' utilisation unreadable)
            with_usage(
                planned_inventory(f"{prefix}-dgx2", region="440106"),
                busy=500.0,  # more than its 224 threads: capped
                utilisation=[1.0, 1.0, 0.25, 0.25, None, None],
                rapl=650.0,
            ),
            {"measured": 650.0, "partial": True, "declared": None, "pue": None},
        ),
        (  # declared wins over a reading that does not cover the node (RAPL only, GPUs present)
            with_usage(
                planned_inventory(f"{prefix}-dgx3", region="440112"),
                busy=0.0,
                utilisation=[0.0] * 8,
                rapl=600.0,
                power_watts=10_200.0,
                pue=1.25,
            ),
            {"measured": None, "partial": False, "declared": 10_200.0, "pue": 1.25},
        ),
        (  # an accelerator nobody can price: counted, 0 FLOPS, unpriced; RAPL only, so its power is partial
            with_usage(mystery_inventory(f"{prefix}-mystery", "440112"), busy=8.0, utilisation=[0.9], rapl=300.0),
            {"measured": 300.0, "partial": True, "declared": None, "pue": None, "unpriced": 1},
        ),
    ]
    sent = []
    for report, expect in plans:
        answer = stored(client, report)
        usage = report.usage
        sent.append(
            Sent(
                report=report,
                tier=answer["tier"],
                region=report.inventory.labels.region,
                busy=min(usage.cpu_busy_cores, report.inventory.cpu.threads) if usage else 0.0,
                accelerators_busy=sum(a.utilisation or 0.0 for a in usage.accelerators) if usage else 0.0,
                measured=expect["measured"],
                partial=expect["partial"],
                declared=expect["declared"],
                pue=expect["pue"],
                unpriced=expect.get("unpriced", 0),
            )
        )
    return sent


def tier_entry(doc: dict[str, Any], tier: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(t for t in doc["by_tier"] if t["tier"] == tier)
    return entry


def region_entry(doc: dict[str, Any], code: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(r for r in doc["by_region"] if r["code"] == code)
    return entry


def get_census(client: httpx.Client, **params: str | int) -> dict[str, Any]:
    response = client.get("/v1/census", params=params)
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


# --- ingest: consumed, power, unpriced --------------------------------------------------------------------------


def test_usage_and_power_of_reports_are_summed_per_tier_and_region(quiet: AppService) -> None:
    """Per tier: consumed CPUs are the busy cores (capped at threads), consumed accelerators the summed
    utilisation, consumed headline FLOPS each node's CPU part x busy share + each accelerator x its utilisation at
    the tier's headline precision; power is measured where RAPL (and NVML on GPU nodes) cover the node, declared
    where they do not and the node declares power_watts, measured-partial otherwise; facility power applies each
    site's PUE; peak GFLOPS/W is the powered nodes' peak over their watts; the unpriced accelerator is counted in
    accelerators and unpriced_accelerators of its tier and region. Regions sum their districts."""
    with quiet.client() as client:
        sent = fleet(client, "use")
        doc = get_census(client)
    assert doc["window"]["snapshots"] == 0  # no snapshot yet: no hours, but the layers now are there
    for tier in Tier:
        mine = [s for s in sent if s.tier == tier.value]
        entry = tier_entry(doc, tier.value)
        u, e = entry["utilisation"], entry["energy"]
        precision = CONVENTION[tier]
        assert u["capacity"]["cpus"] == sum(s.inventory.cpu.threads for s in mine)
        assert u["consumed"]["cpus"] == pytest.approx(sum(s.busy for s in mine))
        assert u["consumed"]["accelerators"] == pytest.approx(sum(s.accelerators_busy for s in mine))
        assert u["consumed"]["headline_flops"] == pytest.approx(sum(s.consumed(precision) for s in mine), rel=1e-9)
        assert u["capacity"]["headline_flops"] == pytest.approx(entry["headline_flops"], rel=1e-12)
        assert u["nodes_reporting_usage"] == sum(1 for s in mine if s.report.usage is not None)
        power = e["power"]
        assert power["measured_watts"] == pytest.approx(sum(s.measured or 0.0 for s in mine))
        assert power["declared_watts"] == pytest.approx(sum(s.declared or 0.0 for s in mine))
        assert power["measured_nodes"] == sum(1 for s in mine if s.measured is not None)
        assert power["partially_measured_nodes"] == sum(1 for s in mine if s.partial)
        assert power["declared_nodes"] == sum(1 for s in mine if s.declared is not None)
        assert power["facility_watts"] == pytest.approx(sum(s.watts() * (s.pue or 1.0) for s in mine))
        assert power["pue_declared_nodes"] == sum(1 for s in mine if s.pue is not None)
        watts = sum(s.watts() for s in mine)
        powered = sum(s.report.peaks.figures[precision].flops for s in mine if s.watts())
        if watts:
            assert e["peak_gflops_per_watt"] == pytest.approx(powered / 1e9 / watts, rel=1e-9)
            fp64 = sum(s.report.peaks.figures[Precision.FP64].flops for s in mine if s.watts())
            assert e["peak_fp64_gflops_per_watt"] == pytest.approx(fp64 / 1e9 / watts, rel=1e-9)
        else:
            assert e["peak_gflops_per_watt"] is None
        assert e["headline_precision"] == precision.value
        assert entry["unpriced_accelerators"] == sum(s.unpriced for s in mine)
        assert entry["accelerators"] == sum(len(s.inventory.accelerators) for s in mine)

    mystery = next(s for s in sent if s.inventory.host.node_id.endswith("mystery"))
    assert mystery.unpriced == 1
    tier_doc = tier_entry(doc, mystery.tier)
    assert tier_doc["unpriced_accelerators"] == 1
    for code in ("440112", "440100", "CN"):  # its district and every region above it
        region = region_entry(doc, code)
        assert region["unpriced_accelerators"] == 1
        assert region["by_tier"][mystery.tier]["unpriced_accelerators"] == 1
    assert region_entry(doc, "440106")["unpriced_accelerators"] == 0
    assert doc["totals"]["unpriced_accelerators"] == 1

    tianhe = region_entry(doc, "440106")
    in_tianhe = [s for s in sent if s.region == "440106"]
    assert tianhe["utilisation"]["consumed"]["cpus"] == pytest.approx(sum(s.busy for s in in_tianhe))
    assert tianhe["energy"]["power"]["watts"] == pytest.approx(sum(s.watts() for s in in_tianhe))
    assert tianhe["energy"]["power"]["provenance"] == "mixed"
    assert tianhe["energy"]["headline_precision"] is None  # tiers at their own precisions
    city = region_entry(doc, "440100")
    assert city["energy"]["power"]["watts"] == pytest.approx(sum(s.watts() for s in sent))
    assert doc["energy"]["power"]["watts"] == pytest.approx(sum(s.watts() for s in sent))
    assert doc["utilisation"]["consumed"]["cpus"] == pytest.approx(sum(s.busy for s in sent))


# --- rollups -----------------------------------------------------------------------------------------------------


def test_rollups_of_the_usage_measures_equal_the_sums_over_nodes_after_updates_and_status_changes(
    quiet: AppService, engine: Engine
) -> None:
    """After the nodes, newer reports with other usage and power (one moved to another district, one without usage
    any more), and a sweep that makes every node stale: each rollup cell equals the sums over the nodes table of
    every measure, the usage and power ones included; `rebuild` recomputes the same cells."""
    with quiet.client() as client:
        sent = fleet(client, "roll")
        assert_rollups_are_node_sums(engine)
        later = datetime.now(tz=UTC) + timedelta(seconds=1)
        dgx, xeon = sent[0].inventory, sent[1].inventory
        moved = dgx.model_copy(update={"labels": dgx.labels.model_copy(update={"region": "440106"})})
        stored(
            client,
            with_usage(
                moved, busy=10.0, utilisation=[1.0] * 8, rapl=800.0, nvml=6000.0, sequence=2, generated_at=later
            ),
        )
        stored(client, with_usage(xeon, busy=None, power_watts=450.0, sequence=2, generated_at=later))
    assert_rollups_are_node_sums(engine)
    assert sweep(engine, datetime.now(tz=UTC) + timedelta(minutes=10), 60.0, 3600.0) == len(sent)
    assert {key[2] for key in rollup_cells(engine)} == {"stale"}
    assert_rollups_are_node_sums(engine)
    before = rollup_cells(engine)
    with write_transaction(engine) as conn:
        rebuild(conn)
    after = rollup_cells(engine)
    assert set(after) == set(before)
    for key, values in before.items():
        for column, value in values.items():
            assert after[key][column] == pytest.approx(value, rel=1e-9, abs=1e-6), (key, column)


# --- allocated, demand, window, history ----------------------------------------------------------------------------


def add_job(
    engine: Engine, name: str, resources: Resources, submitted: float, klass: WorkloadClass = WorkloadClass.AI
) -> str:
    """A queued job stored through the job store, submitted at `submitted` (seconds since the epoch)."""
    spec = JobSpec(name=name, workload_class=klass, entrypoint="true", resources=resources)
    with write_transaction(engine) as conn:
        return job_store.create(
            conn, spec, "tester", datetime.fromtimestamp(submitted, tz=UTC), "queued", owner_id=None
        )


def test_allocated_and_demand_come_from_job_rows_and_history_carries_three_layers(
    quiet: AppService, engine: Engine
) -> None:
    """A running 2-node AI job (4 GPUs and 8 CPUs per node) dispatched to a census DGX and to a node the census does
    not know, a finished job and a queued one: the AI tier's allocated layer holds 8 GPUs and 16 CPUs, as FLOPS the
    GPUs x the tier's mean fp16 per accelerator + CPUs x its mean per logical CPU; the DGX's district and the
    regions above it hold half, ``allocated_unattributed`` the other half; demand shows the mean wait, the run and
    expansion factor of the finished job and the queue; two snapshots give the window's hours (utilisation =
    consumed / capacity, energy = watts x hours) and history points with the three layers."""
    jobs = job_store.SqlJobStore(engine)
    now = time.time()
    with quiet.client() as client:
        sent = fleet(client, "alloc")
        running = add_job(engine, "train", Resources(cpus=8, gpus=4, nodes=2), now - 50)
        assert jobs.dispatch(
            running,
            attempt=0,
            tier=Tier.AI,
            node_ids=["alloc-dgx", "not-in-census"],
            submission_id="s1",
            reason="test",
            now=now - 40,
        )
        assert jobs.started(running, None, now - 39)
        done = add_job(engine, "short", Resources(cpus=2), now - 100)
        assert jobs.dispatch(
            done, attempt=0, tier=Tier.AI, node_ids=["alloc-dgx"], submission_id="s2", reason="t", now=now - 70
        )
        assert jobs.finish(done, JobState.SUCCEEDED, "exit 0", 0, now - 10)
        waiting = add_job(engine, "later", Resources(gpus=8), now - 30)
        jobs.record_waits([Wait(waiting, Tier.AI, 1, "no free GPU")])

        taken = datetime.now(tz=UTC)
        snapshot(engine, taken - timedelta(seconds=600))
        snapshot(engine, taken - timedelta(seconds=300))
        doc = get_census(client, window=3600)
        history = client.get("/v1/census/history").json()
        tianhe_history = client.get("/v1/census/history", params={"region": "440112"}).json()
        snapshot(engine, datetime.now(tz=UTC))  # a newer snapshot: the window's reduction is made anew
        third = get_census(client, window=3600)

    ai_nodes = [s for s in sent if s.tier == "ai"]
    assert any(s.inventory.host.node_id == "alloc-dgx" for s in ai_nodes)
    acc_part = sum(accelerator_flops(s.report.peaks, Precision.FP16) for s in ai_nodes)
    accelerators = sum(len(s.inventory.accelerators) for s in ai_nodes)
    threads = sum(s.inventory.cpu.threads for s in ai_nodes)
    cpu_part = sum(s.report.peaks.figures[Precision.FP16].flops for s in ai_nodes) - acc_part
    per_gpu, per_cpu = acc_part / accelerators, cpu_part / threads

    ai = tier_entry(doc, "ai")
    allocated = ai["utilisation"]["allocated"]
    assert (allocated["accelerators"], allocated["cpus"]) == (8, 16)
    assert allocated["headline_flops"] == pytest.approx(8 * per_gpu + 16 * per_cpu, rel=1e-9)
    assert allocated["share_of_capacity"] == pytest.approx(allocated["headline_flops"] / ai["headline_flops"])
    for code in ("440112", "440100", "CN"):
        region = region_entry(doc, code)["utilisation"]["allocated"]
        assert (region["accelerators"], region["cpus"]) == (4, 8), code
    assert region_entry(doc, "440106")["utilisation"]["allocated"]["cpus"] == 0
    unattributed = doc["allocated_unattributed"]["ai"]
    assert (unattributed["accelerators"], unattributed["cpus"]) == (4, 8)
    assert unattributed["headline_flops"] == pytest.approx(4 * per_gpu + 8 * per_cpu, rel=1e-9)
    assert doc["allocated_unattributed"]["hpc"]["cpus"] == 0

    demand = ai["demand"]
    assert demand["jobs_dispatched"] == 2
    assert demand["mean_wait_seconds"] == pytest.approx((10 + 30) / 2, abs=0.01)
    assert demand["jobs_finished"] == 1
    assert demand["mean_run_seconds"] == pytest.approx(60, abs=0.01)
    assert demand["expansion_factor"] == pytest.approx((30 + 60) / 60, abs=1e-3)
    assert demand["queued_now"] == 1
    assert demand["mean_queued_wait_seconds"] >= 30
    assert tier_entry(doc, "hpc")["demand"]["jobs_dispatched"] == 0

    window = doc["window"]
    assert window["seconds"] == 3600
    assert window["snapshots"] == 2
    assert window["covered_seconds"] == pytest.approx(600, abs=5)
    covered_hours = window["covered_seconds"] / HOUR
    u = ai["utilisation"]
    assert u["capacity_hours"]["cpu_hours"] == pytest.approx(threads * covered_hours, rel=1e-6)
    consumed_cpus = sum(s.busy for s in ai_nodes)
    assert u["utilisation"]["cpu"] == pytest.approx(consumed_cpus / threads, rel=1e-9)
    assert u["utilisation"]["accelerators"] == pytest.approx(
        sum(s.accelerators_busy for s in ai_nodes) / accelerators, rel=1e-9
    )
    assert u["utilisation"]["compute"] == pytest.approx(u["consumed"]["share_of_capacity"], rel=1e-9)
    assert u["allocation"]["accelerators"] == pytest.approx(8 / accelerators, rel=1e-6)
    watts = sum(s.watts() for s in ai_nodes)
    assert ai["energy"]["energy_kwh"] == pytest.approx(watts * covered_hours / 1000, rel=1e-6)
    facility = sum(s.watts() * (s.pue or 1.0) for s in ai_nodes)
    assert ai["energy"]["facility_energy_kwh"] == pytest.approx(facility * covered_hours / 1000, rel=1e-6)

    assert third["window"]["snapshots"] == 3
    assert third["window"]["covered_seconds"] >= window["covered_seconds"]
    third_ai = tier_entry(third, "ai")["utilisation"]
    assert third_ai["capacity_hours"]["cpu_hours"] == pytest.approx(
        threads * third["window"]["covered_seconds"] / HOUR, rel=1e-6
    )
    assert third_ai["utilisation"]["cpu"] == pytest.approx(consumed_cpus / threads, rel=1e-9)

    points = history["points"]
    assert len(points) == 2
    last = points[-1]["by_tier_layers"]["ai"]
    assert (last["allocated_accelerators"], last["allocated_cpus"]) == (8, 16)
    assert last["capacity_accelerators"] == accelerators
    assert last["consumed_cpus"] == pytest.approx(consumed_cpus)
    assert last["allocated_headline_flops"] == pytest.approx(allocated["headline_flops"], rel=1e-9)
    assert last["measured_watts"] + last["declared_watts"] == pytest.approx(watts)
    assert points[-1]["layers"]["capacity_headline_flops"] == pytest.approx(points[-1]["headline_flops"], rel=1e-12)
    assert points[-1]["unpriced_accelerators"] == 1
    district = tianhe_history["points"][-1]["by_tier_layers"]["ai"]
    assert (district["allocated_accelerators"], district["allocated_cpus"]) == (4, 8)


# --- CSV, validation, roles ---------------------------------------------------------------------------------------


def test_csv_export_carries_the_utilisation_columns_of_each_region_and_tier(quiet: AppService) -> None:
    """The CSV's utilisation columns equal the JSON census: a region's ``all`` row its region figures, a tier row in
    a district holding all of that tier's nodes the tier's figures."""
    with quiet.client() as client:
        sent = fleet(client, "csv")
        doc = get_census(client)
        response = client.get("/v1/census/export.csv")
    assert response.status_code == 200
    rows = {(r["region_code"], r["tier"]): r for r in csv.DictReader(io.StringIO(response.content.decode("utf-8-sig")))}
    for code in ("CN", "440106", "440112"):
        row, region = rows[(code, "all")], region_entry(doc, code)
        assert int(row["unpriced_accelerators"]) == region["unpriced_accelerators"]
        assert float(row["consumed_headline_flops"]) == pytest.approx(
            region["utilisation"]["consumed"]["headline_flops"]
        )
        assert float(row["power_watts"]) == pytest.approx(region["energy"]["power"]["watts"])
        assert row["power_provenance"] == region["energy"]["power"]["provenance"]
    tiers = {s.tier for s in sent}
    for tier in tiers:
        row, entry = rows[("CN", tier)], tier_entry(doc, tier)
        assert float(row["consumed_headline_flops"]) == pytest.approx(
            entry["utilisation"]["consumed"]["headline_flops"]
        )
        assert float(row["power_watts"]) == pytest.approx(entry["energy"]["power"]["watts"])
        assert int(row["unpriced_accelerators"]) == entry["unpriced_accelerators"]
        assert row["utilisation_cpu"] == ""  # no snapshot in the window: no hours, so no ratio


@pytest.mark.parametrize("window", ["59", "0", "-3600", str(366 * 86_400 + 1), "24h", "1e3", ""])
def test_a_window_out_of_bounds_or_not_a_whole_number_of_seconds_is_a_422(quiet: AppService, window: str) -> None:
    """``window`` must be whole seconds from 60 to 366 days: anything else is a 422 naming the parameter, on the
    census and on its CSV export; 60 and 366 days are accepted."""
    with quiet.client() as client:
        for path in ("/v1/census", "/v1/census/export.csv"):
            response = client.get(path, params={"window": window})
            assert response.status_code == 422, (path, window, response.text)
            assert "window" in response.text
        for bound in (60, 366 * 86_400):
            assert client.get("/v1/census", params={"window": bound}).status_code == 200


def test_only_the_census_readers_may_read_utilisation(quiet: AppService) -> None:
    """The census with a window is read by the same roles as before: admin, operator, planner and user get 200;
    agent and enrol tokens 403; no token 401."""
    with quiet.client() as admin:
        tokens = {
            role: create_token(admin, role)["token"] for role in ("operator", "planner", "user", "agent", "enrol")
        }
    for role, token in tokens.items():
        with quiet.client(token) as client:
            status = client.get("/v1/census", params={"window": 3600}).status_code
        assert status == (200 if role in ("operator", "planner", "user") else 403), role
    with quiet.client("") as anonymous:
        assert anonymous.get("/v1/census", params={"window": 3600}).status_code == 401
    with quiet.client() as admin:
        assert admin.get("/v1/census", params={"window": 3600}).status_code == 200
