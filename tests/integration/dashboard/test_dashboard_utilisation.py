"""The dashboard's utilisation (利用率) and energy (能耗) sections in real headless Chromium against a real service
(uvicorn, SQLite) holding six nodes whose reports carry usage and power readings or declared power and PUE, one
running and one finished job in the job store, and an operator-added district whose names hold markup.

Every expected figure is computed here from what was submitted (the fleet's hand-derived peaks, the usage, the
watts, the jobs' resources and times), never read from the API's answer; the page must show it formatted as it
formats figures elsewhere (humanised FLOPS, one-decimal percentages, two-decimal amounts), in English and Chinese.

The job store and the region row are written with the service's own code (`api.jobs.store`, `api.db.seed`) into
the service's SQLite file before it starts; no scheduler is configured, so nothing moves the jobs. Snapshots
taken while the reports were still arriving are removed once every node is in, so every snapshot of the window
holds the same six nodes and the ratios over the window equal the ratios now.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Request, Route
from sqlalchemy import Engine, func, select

from api.db.engine import make_engine, migrate, write_transaction
from api.db.seed import seed_regions
from api.db.tables import allocation_snapshots, regions, snapshots
from api.jobs import store
from api.jobs.store import SqlJobStore
from census_agent.models import (
    Accelerator,
    AcceleratorUsage,
    Labels,
    PowerReading,
    Precision,
    Report,
    Tier,
    Usage,
)
from census_agent.report import ComputeModel, build_report
from scheduler.models import JobSpec, JobState
from tests.fleet import (
    AI,
    BASE_TIME,
    DEFAULT_CONVENTION,
    EDGE_X86,
    GENERAL,
    GIB,
    HPC,
    TERA,
    Archetype,
    FleetNode,
    post_fleet,
)
from tests.integration.dashboard.conftest import ARTIFACTS, Visit
from tests.servers import wait_for
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration

# An operator-added district (not in seeds/regions.csv) whose names are markup: they must show as text.
MARKUP_CODE = "440199"
MARKUP_EN = '<img src=x onerror="document.body.dataset.xss=1">New Area'
MARKUP_ZH = "<b>新区</b><script>document.body.dataset.xss=1</script>"

H100_FP16 = 989.5 * TERA  # the catalogue's dense fp16 tensor figure (tests/fleet.py, AI archetype)

# Two accelerators no catalogue row names and with no compute capability: counted, priced 0 (unpriced). The node
# is the 4-core i3 of EDGE_X86 (its CPU peaks: tests/fleet.py), labelled ai by its operator.
MYSTERY = Archetype(
    name="i3-2x-mystery",
    cpu=EDGE_X86.cpu,
    memory_bytes=8 * GIB,
    tier=Tier.AI,  # by the operator's tier label
    accelerators=tuple(
        Accelerator(index=i, vendor="Example", model="Mystery X1", memory_bytes=16 * GIB, source="declared")
        for i in range(2)
    ),
    peaks=dict(EDGE_X86.peaks),
)


# The archetype with the same CPU and no accelerator, for those with accelerators (tests/fleet.py: AI has GENERAL's
# two Zen 3 CPUs).
CPU_ONLY = {AI.name: GENERAL, MYSTERY.name: EDGE_X86}


@cache
def _model() -> ComputeModel:
    return ComputeModel()


@dataclass(frozen=True)
class Submitted:
    """One node as submitted: its archetype and labels, its usage (or none) and power labels."""

    node: FleetNode
    busy_cores: float | None  # None: the report carries no usage
    accelerator_utilisation: float = 0.0
    rapl_watts: float | None = None
    nvml_watts: float | None = None
    power_watts: float | None = None
    site_pue: float | None = None

    @property
    def cpu_headline(self) -> float:
        """The CPU part of the node's peak at its tier's headline precision: the figures of the archetype with the
        same CPU and no accelerator."""
        same_cpu = CPU_ONLY.get(self.node.archetype.name, self.node.archetype)
        return same_cpu.peaks[DEFAULT_CONVENTION[self.node.tier]]

    @property
    def headline(self) -> float:
        """The node's peak at its tier's headline precision."""
        return self.node.archetype.peaks[DEFAULT_CONVENTION[self.node.tier]]

    @property
    def accelerator_headline(self) -> float:
        """Its accelerators' part of the headline peak."""
        return self.headline - self.cpu_headline

    @property
    def consumed(self) -> float:
        """Consumed FLOPS by the rule of docs/census.md: the CPUs' part x busy share + each device x its use."""
        if self.busy_cores is None:
            return 0.0
        threads = self.node.archetype.cpu.threads
        return self.cpu_headline * min(self.busy_cores, threads) / threads + (
            self.accelerator_headline * self.accelerator_utilisation
        )

    @property
    def measured(self) -> float:
        """Watts the readings give (0 without)."""
        return (self.rapl_watts or 0.0) + (self.nvml_watts or 0.0)

    @property
    def watts(self) -> float:
        """The node's power: measured where readings exist (whole or partial), else declared, else 0."""
        return self.measured if self.measured else (self.power_watts or 0.0)

    @property
    def facility_watts(self) -> float:
        """Its power x its site's PUE (1 where none is declared)."""
        return self.watts * (self.site_pue or 1.0)

    def report(self) -> Report:
        """The node's report: the fleet inventory with the power labels, and the usage section."""
        inventory = self.node.inventory()
        labels: Labels = inventory.labels.model_copy(
            update={"power_watts": self.power_watts, "site_pue": self.site_pue}
        )
        inventory = inventory.model_copy(update={"labels": labels})
        report = build_report(
            inventory,
            _model(),
            report_id=uuid.uuid5(uuid.NAMESPACE_URL, f"suanli-test/{self.node.node_id}"),
            sequence=1,
            generated_at=BASE_TIME,
        )
        if self.busy_cores is None:
            return report
        readings = []
        if self.rapl_watts is not None:
            readings.append(PowerReading(watts=self.rapl_watts, coverage="cpu-package", source="rapl"))
        if self.nvml_watts is not None:
            readings.append(PowerReading(watts=self.nvml_watts, coverage="accelerators", source="nvml"))
        usage = Usage(
            interval_seconds=30,
            cpu_busy_cores=self.busy_cores,
            memory_used_bytes=4 * GIB,
            accelerators=[
                AcceleratorUsage(index=a.index, utilisation=self.accelerator_utilisation)
                for a in self.node.archetype.accelerators
            ],
            power=readings,
        )
        return report.model_copy(update={"usage": usage})


def _node(index: int, archetype: Archetype, region: str, tier_label: Tier | None = None) -> FleetNode:
    return FleetNode(
        index=index,
        node_id=f"util-{index:02d}",
        archetype=archetype,
        region=region,
        organisation="gz-supercomputing-centre",
        site=f"site-{index}",
        tier_label=tier_label,
    )


SUBMITTED = (
    # measured: RAPL covers a node without accelerators; its site declares a PUE
    Submitted(_node(1, GENERAL, "440106"), busy_cores=64, rapl_watts=320, site_pue=1.25),
    # declared: no readings, the operator's power_watts
    Submitted(_node(2, GENERAL, "440105"), busy_cores=32, power_watts=450),
    # measured: RAPL and NVML cover it; half busy accelerators
    Submitted(
        _node(3, AI, "440106"),
        busy_cores=32,
        accelerator_utilisation=0.5,
        rapl_watts=380,
        nvml_watts=4800,
        site_pue=1.25,
    ),
    # declared with a PUE, in the operator-added district
    Submitted(_node(4, HPC, MARKUP_CODE), busy_cores=120, power_watts=900, site_pue=1.5),
    # no usage and no power at all
    Submitted(_node(5, EDGE_X86, "440105"), busy_cores=None),
    # unpriced accelerators, fully busy (they add nothing priced); RAPL only: measured in part
    Submitted(
        _node(6, MYSTERY, MARKUP_CODE, tier_label=Tier.AI), busy_cores=2, accelerator_utilisation=1.0, rapl_watts=60
    ),
)
AI_NODE = SUBMITTED[2].node.node_id

# What the jobs in the store hold and how long they waited (seconds before the fixture's start).
RUNNING_JOB = {"cpus": 16.0, "gpus": 4, "memory_bytes": 64 * GIB}
RUNNING_TIMES = {"submitted": 1800, "dispatched": 1200, "started": 1190}
FINISHED_TIMES = {"submitted": 3600, "dispatched": 3300, "started": 3290, "finished": 1500}


@dataclass
class Expected:
    """One tier's (or the whole census's) figures, computed from `SUBMITTED` and the jobs."""

    capacity: float = 0.0
    consumed: float = 0.0
    allocated: float = 0.0
    threads: int = 0
    busy_cores: float = 0.0
    accelerators: int = 0
    busy_accelerators: float = 0.0
    unpriced: int = 0
    watts: float = 0.0
    facility_watts: float = 0.0
    powered_headline: float = 0.0
    provenances: frozenset[str] = frozenset()

    @property
    def provenance(self) -> str:
        """measured, declared, mixed (both among the nodes) or none."""
        if len(self.provenances) > 1:
            return "mixed"
        return next(iter(self.provenances), "none")


def expected() -> dict[str, Expected]:
    """Per tier and "all": the figures the page must show."""
    out = {t.value: Expected() for t in Tier} | {"all": Expected()}
    for s in SUBMITTED:
        for key in (s.node.tier.value, "all"):
            e = out[key]
            e.capacity += s.headline
            e.consumed += s.consumed
            e.threads += s.node.archetype.cpu.threads
            e.accelerators += len(s.node.archetype.accelerators)
            e.unpriced += 2 if s.node.archetype is MYSTERY else 0
            if s.busy_cores is not None:
                e.busy_cores += s.busy_cores
                e.busy_accelerators += s.accelerator_utilisation * len(s.node.archetype.accelerators)
            e.watts += s.watts
            e.facility_watts += s.facility_watts
            if s.watts:
                e.powered_headline += s.headline
                e.provenances |= {"measured" if s.measured else "declared"}
    # Allocated: the running ai job's GPUs at the ai tier's mean per accelerator, its CPUs at the mean per thread.
    ai_nodes = [s for s in SUBMITTED if s.node.tier is Tier.AI]
    accelerator_part = sum(s.accelerator_headline for s in ai_nodes)
    per_accelerator = accelerator_part / out["ai"].accelerators
    per_thread = (out["ai"].capacity - accelerator_part) / out["ai"].threads
    held = RUNNING_JOB["gpus"] * per_accelerator + RUNNING_JOB["cpus"] * per_thread
    out["ai"].allocated = out["all"].allocated = held
    return out


# --- the page's number formats, as app.js writes them ---------------------------------------------------------
# Intl.NumberFormat rounds the shortest decimal form of a number half away from zero (8735 / 1000 = 8.735 shows
# as 8.74), where Python's format rounds its binary value (8.73): `two_decimals` does what the page does.


def two_decimals(x: float) -> str:
    """app.js numberFormat: two decimals with thousands separators."""
    return f"{Decimal(repr(x)).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP):,}"


def percent(x: float | None) -> str:
    """app.js percent(): one decimal (Number.toFixed rounds the binary value, as Python does)."""
    return "–" if x is None else f"{100 * x:.1f}%"


def decimal(x: float | None) -> str:
    """app.js decimal()."""
    return "–" if x is None else two_decimals(x)


def amount(x: float) -> str:
    """app.js amount(): a whole number as an integer, else two decimals."""
    return f"{x:,.0f}" if float(x).is_integer() else two_decimals(x)


def scaled(x: float, units: tuple[tuple[float, str], ...], smallest: str) -> str:
    """app.js humanFlops() and humanWatts(): the largest unit the value reaches, two decimals."""
    for scale, unit in units:
        if abs(x) >= scale:
            return f"{two_decimals(x / scale)} {unit}"
    return f"{two_decimals(x)} {smallest}"


def flops(x: float) -> str:
    """app.js humanFlops() (below 1 MFLOPS: a whole number, "0 FLOPS")."""
    if abs(x) < 1e6:
        return f"{x:,.0f} FLOPS"
    return scaled(x, ((1e18, "EFLOPS"), (1e15, "PFLOPS"), (1e12, "TFLOPS"), (1e9, "GFLOPS"), (1e6, "MFLOPS")), "")


def watts(x: float) -> str:
    """app.js humanWatts()."""
    return scaled(x, ((1e9, "GW"), (1e6, "MW"), (1e3, "kW")), "W")


def minutes(seconds: float, unit: str) -> str:
    """app.js humanDuration() between 2 minutes and 2 hours."""
    assert 120 <= seconds < 7200
    return f"{two_decimals(seconds / 60)} {unit}"


# --- the deployment -------------------------------------------------------------------------------------------


def _prepare_store(engine: Engine, now: float) -> None:
    """Before the service starts: the schema, the seeded regions plus the operator's markup district, and the
    jobs (written with the job store's own functions at chosen times)."""
    migrate(engine)
    with write_transaction(engine) as conn:
        seed_regions(conn)
        conn.execute(
            regions.insert().values(
                code=MARKUP_CODE,
                parent_code="440100",
                level="district",
                name_zh=MARKUP_ZH,
                name_en=MARKUP_EN,
                population=100_000,
                population_source=None,
                area_km2=None,
            )
        )

    def at(seconds_before: int) -> datetime:
        return datetime.fromtimestamp(now - seconds_before, tz=UTC)

    jobs = SqlJobStore(engine)
    for name, times, resources in (
        ("llm-running", RUNNING_TIMES, RUNNING_JOB),
        ("llm-finished", FINISHED_TIMES, {"gpus": 8}),
    ):
        spec = JobSpec.model_validate(
            {"name": name, "class": "ai", "entrypoint": "python train.py", "resources": resources}
        )
        with write_transaction(engine) as conn:
            job_id = store.create(conn, spec, "test", at(times["submitted"]), "queued", owner_id=None)
        assert jobs.dispatch(
            job_id,
            attempt=0,
            tier=Tier.AI,
            node_ids=[AI_NODE],
            submission_id=f"sub-{name}",
            reason="dispatched",
            now=now - times["dispatched"],
        )
        assert jobs.started(job_id, AI_NODE, now - times["started"])
        if "finished" in times:
            assert jobs.finish(job_id, JobState.SUCCEEDED, "succeeded", 0, now - times["finished"])


def _full_snapshots(engine: Engine) -> list[datetime]:
    """When each snapshot holding every submitted node as active was taken, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(snapshots.c.taken_at, func.sum(snapshots.c.nodes))
            .where(snapshots.c.status == "active")
            .group_by(snapshots.c.taken_at)
            .order_by(snapshots.c.taken_at)
        ).all()
    return [taken_at for taken_at, nodes in rows if nodes == len(SUBMITTED)]


def _full_snapshot_since(engine: Engine) -> datetime | None:
    """When the first snapshot holding every submitted node as active was taken."""
    return next(iter(_full_snapshots(engine)), None)


@dataclass
class Deployment:
    """The running service and its admin token."""

    service: ServiceProcess
    token: str


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The service on a SQLite file prepared with the jobs and the markup district, the six reports posted, and
    the snapshots from before the last report arrived removed (see the module's docstring)."""
    workdir: Path = tmp_path_factory.mktemp("dashboard-utilisation")
    url = f"sqlite:///{workdir / 'suanli.db'}"
    engine = make_engine(url)
    _prepare_store(engine, time.time())
    service = ServiceProcess(
        url,
        workdir,
        snapshot_interval_seconds="1",
        sweep_interval_seconds="0.3",
        stale_after_seconds="3600",  # the nodes report once: they must stay active while the tests run
    ).start()
    try:
        with service.client() as admin:
            post_fleet(admin, [s.report() for s in SUBMITTED], workers=1)
        wait_for(lambda: _full_snapshot_since(engine) is not None, 30, "a snapshot of every node")
        first_full = _full_snapshot_since(engine)
        with write_transaction(engine) as conn:
            conn.execute(snapshots.delete().where(snapshots.c.taken_at < first_full))
            conn.execute(allocation_snapshots.delete().where(allocation_snapshots.c.taken_at < first_full))
        # A second full snapshot (1 s later, the service's interval): the window covers some time.
        wait_for(lambda: len(_full_snapshots(engine)) >= 2, 30, "a second snapshot of every node")
        yield Deployment(service, service.admin_token)
    finally:
        service.stop()
        engine.dispose()


@pytest.fixture
def visit(browser: Browser, deployment: Deployment) -> Iterator[Visit]:
    """A fresh English browser context on this module's service; requests off its origin are aborted and
    recorded (as the package's `visit` fixture does for the shared deployment)."""
    origin = deployment.service.url
    context: BrowserContext = browser.new_context(viewport={"width": 1440, "height": 900}, locale="en-GB")
    page = context.new_page()
    seen = Visit(page, origin)

    def gate(route: Route, request: Request) -> None:
        seen.requests.append(request.url)
        if request.url == origin or request.url.startswith(origin + "/"):
            route.continue_()
        else:
            seen.blocked.append(request.url)
            route.abort()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.console_errors.append(message.text)

    context.route("**/*", gate)
    page.on("pageerror", lambda error: seen.page_errors.append(str(error)))
    page.on("console", console)
    yield seen
    context.close()


def cells(visit: Visit, table: str, row: str, attribute: str = "tier") -> dict[str, str]:
    """The text of each cell (by its data-key) of the row of `table` whose data-`attribute` is `row`."""
    found: dict[str, str] = visit.page.eval_on_selector(
        f"#{table} tbody tr[data-{attribute}='{row}']",
        "tr => Object.fromEntries([...tr.children].map(c => [c.dataset.key, c.textContent]))",
    )
    return found


def shown_kwh(visit: Visit, row: str) -> tuple[float, float]:
    """The energy and facility energy the energy table shows for `row`, as numbers."""
    row_cells = cells(visit, "energy-table", row)
    return float(row_cells["energy"].replace(",", "")), float(row_cells["facility-energy"].replace(",", ""))


# --- the tests ------------------------------------------------------------------------------------------------


def test_utilisation_now_shows_capacity_allocated_and_consumed_per_tier_from_the_submitted_usage(
    deployment: Deployment, visit: Visit
) -> None:
    """Per tier and overall the page shows capacity, allocated (the running job's 4 GPUs and 16 CPUs at the ai
    tier's mean peaks) and consumed (the reported busy cores and accelerator use applied to the peaks) as
    humanised FLOPS with their shares of capacity, the logical CPUs and accelerators of each layer, the unpriced
    accelerators (with the hint naming the ai tier), and the nodes that reported usage. Screenshots of both
    sections go to artifacts/dashboard-utilisation.png and artifacts/dashboard-energy.png."""
    visit.sign_in(deployment.token)
    visit.wait_loaded()
    want = expected()
    for tier in (*(t.value for t in Tier), "all"):
        e = want[tier]
        row = cells(visit, "util-now-table", tier)
        assert row["capacity"] == flops(e.capacity), (tier, row)
        assert row["allocated"] == flops(e.allocated), (tier, row)
        assert row["consumed"] == flops(e.consumed), (tier, row)
        assert row["allocated-share"] == percent(e.allocated / e.capacity), (tier, row)
        assert row["consumed-share"] == percent(e.consumed / e.capacity), (tier, row)
        assert row["cpus-capacity"] == amount(e.threads)
        assert row["cpus-consumed"] == amount(e.busy_cores)
        assert row["acc-capacity"] == amount(e.accelerators)
        assert row["acc-consumed"] == amount(e.busy_accelerators)
        assert row["unpriced"] == str(e.unpriced)
    ai = cells(visit, "util-now-table", "ai")
    assert (ai["cpus-allocated"], ai["acc-allocated"]) == (amount(RUNNING_JOB["cpus"]), amount(RUNNING_JOB["gpus"]))
    assert cells(visit, "util-now-table", "all")["usage-nodes"] == str(sum(s.busy_cores is not None for s in SUBMITTED))
    hint = visit.page.text_content("#util-unpriced") or ""
    assert "AI compute 2" in hint, hint
    assert "not in the catalogue" in hint, hint
    share = visit.page.get_attribute("#util-now-table tr[data-tier='ai'] [data-key='consumed-share']", "aria-label")
    assert share == f"AI compute: consumed {percent(want['ai'].consumed / want['ai'].capacity)} of capacity"
    assert visit.page.locator("#util-now-table th[scope='col']").count() == 14
    ARTIFACTS.mkdir(exist_ok=True)
    for section in ("utilisation", "energy"):
        visit.page.locator(f"#{section}").screenshot(path=str(ARTIFACTS / f"dashboard-{section}.png"))
    assert not visit.problems(), visit.problems()


def test_utilisation_over_the_window_demand_and_the_stated_window(deployment: Deployment, visit: Visit) -> None:
    """Over the window (stated: the last 24 hours, with its snapshots) the core-hour, GPU-hour and FLOPS-weighted
    utilisation and the FLOPS-weighted allocation equal the submitted shares (every snapshot holds the same
    nodes); the ai tier's demand shows the two jobs' mean wait (7.50 min), mean run and expansion factor
    ((wait + run) / run of the finished job); choosing the last hour reloads the census over that window."""
    visit.sign_in(deployment.token)
    visit.wait_loaded()
    want = expected()
    for tier in ("general", "ai", "hpc"):
        e = want[tier]
        row = cells(visit, "util-ratio-table", tier)
        assert row["core-hours"] == percent(e.busy_cores / e.threads), (tier, row)
        assert row["flops-weighted"] == percent(e.consumed / e.capacity), (tier, row)
        assert row["allocation"] == percent(e.allocated / e.capacity), (tier, row)
    assert cells(visit, "util-ratio-table", "ai")["gpu-hours"] == percent(
        want["ai"].busy_accelerators / want["ai"].accelerators
    )
    assert cells(visit, "util-ratio-table", "general")["gpu-hours"] == "–"  # no accelerator hours: no ratio
    terms = visit.page.text_content("#util-ratio-terms") or ""
    assert "busy logical-CPU hours / available logical-CPU hours" in terms
    assert "headline precision" in terms

    waits = [RUNNING_TIMES["submitted"] - RUNNING_TIMES["dispatched"]]
    waits.append(FINISHED_TIMES["submitted"] - FINISHED_TIMES["dispatched"])
    run = FINISHED_TIMES["dispatched"] - FINISHED_TIMES["finished"]
    demand = cells(visit, "util-demand-table", "ai")
    assert demand["dispatched"] == "2"
    assert demand["mean-wait"] == minutes(sum(waits) / 2, "min") == "7.50 min"
    assert demand["ended"] == "1"
    assert demand["mean-run"] == minutes(run, "min")
    assert demand["expansion"] == decimal((waits[1] + run) / run)
    assert cells(visit, "util-demand-table", "hpc")["dispatched"] == "0"

    window = visit.page.locator("#util-window")
    assert (window.text_content() or "").startswith("Over the last 24 hours (from ")
    assert window.get_attribute("data-seconds") == "86400"
    assert float(window.get_attribute("data-covered-seconds") or 0) > 0
    with visit.page.expect_response(lambda r: "/v1/census?" in r.url and "window=3600" in r.url):
        visit.page.select_option("#util-window-select", "3600")
    visit.page.wait_for_selector("#util-window[data-seconds='3600']")
    assert (window.text_content() or "").startswith("Over the last hour (from ")
    assert cells(visit, "util-ratio-table", "general")["core-hours"] == percent(
        want["general"].busy_cores / want["general"].threads
    )
    assert not visit.problems(), visit.problems()


def test_energy_shows_power_with_provenance_facility_power_pue_efficiency_and_kwh(
    deployment: Deployment, visit: Visit
) -> None:
    """Per tier the page shows the nodes' power (RAPL + NVML readings where they cover the node, else the declared
    power_watts) with its provenance (general: mixed, ai: measured, hpc: declared, edge: none), facility power
    (x each site's PUE) and the PUE it implies, peak GFLOPS per watt at the tier's precision, and the energy over
    the window: power x the hours the window's snapshots cover; the ai tier's node measured in part is said."""
    visit.sign_in(deployment.token)
    visit.wait_loaded()
    want = expected()
    covered_hours = float(visit.page.get_attribute("#util-window", "data-covered-seconds") or 0) / 3600
    assert covered_hours > 0
    for tier in (*(t.value for t in Tier), "all"):
        e = want[tier]
        row = cells(visit, "energy-table", tier)
        assert visit.page.get_attribute(f"#energy-table tr[data-tier='{tier}']", "data-provenance") == e.provenance
        assert row["provenance"] == e.provenance
        if not e.watts:
            assert (row["power"], row["pue"], row["gflops-per-watt"]) == ("0.00 W", "–", "–")
            continue
        assert row["power"] == watts(e.watts), (tier, row)
        assert row["facility"] == watts(e.facility_watts), (tier, row)
        assert row["pue"] == decimal(e.facility_watts / e.watts), (tier, row)
        precision = DEFAULT_CONVENTION[Tier(tier)].value if tier != "all" else "mixed"
        assert row["gflops-per-watt"] == f"{decimal(e.powered_headline / 1e9 / e.watts)} {precision}", (tier, row)
        energy, facility_energy = shown_kwh(visit, tier)
        assert energy == pytest.approx(e.watts * covered_hours / 1000, abs=0.0051), tier
        assert facility_energy == pytest.approx(e.facility_watts * covered_hours / 1000, abs=0.0051), tier
    general = cells(visit, "energy-table", "general")
    assert want["general"].provenance == "mixed"  # the submitted mix this test is about
    assert (want["ai"].provenance, want["hpc"].provenance, want["edge"].provenance) == ("measured", "declared", "none")
    assert general["power-nodes"] == "1 measured · 1 declared · 0 without"
    hpc_fp64 = HPC.peaks[Precision.FP64] / 1e9 / 900
    assert cells(visit, "energy-table", "hpc")["fp64-gflops-per-watt"] == decimal(hpc_fp64)
    assert (visit.page.text_content("#energy-partial") or "").startswith("1 node(s) are measured only in part")
    assert "CPU package only" in (visit.page.text_content("#energy-terms") or "")
    assert not visit.problems(), visit.problems()


def test_the_layers_chart_draws_the_history_of_the_window_per_tier(deployment: Deployment, visit: Visit) -> None:
    """The SVG chart draws one line per layer from the history's points in the window; its last points are the
    submitted capacity, allocation and consumption (overall, then of the ai tier chosen in the menu), and its
    accessible name says them humanised."""
    visit.sign_in(deployment.token)
    visit.wait_loaded()
    want = expected()

    def last(layer: str) -> float:
        value = visit.page.get_attribute(f"#util-chart g[data-layer='{layer}']", "data-last")
        return float(value or "nan")

    for tier in ("all", "ai"):
        if tier != "all":
            visit.page.select_option("#util-chart-tier", tier)
        assert visit.page.locator("#util-chart svg polyline").count() == 3
        assert last("capacity") == pytest.approx(want[tier].capacity, rel=1e-9)
        assert last("allocated") == pytest.approx(want[tier].allocated, rel=1e-9)
        assert last("consumed") == pytest.approx(want[tier].consumed, rel=1e-9)
        title = visit.page.text_content("#util-chart svg > title") or ""
        assert f"capacity {flops(want[tier].capacity)}" in title, title
        assert visit.page.get_attribute("#util-chart svg", "role") == "img"
    assert not visit.problems(), visit.problems()


def test_both_sections_in_chinese_keep_the_figures_and_an_operators_markup_stays_text(
    deployment: Deployment, visit: Visit
) -> None:
    """After the language toggle both sections use Chinese terms (利用率, 能耗, 实测与申报, 分钟) with the same
    figures; the operator-added district's names, which are markup, show as text in both languages: no element
    is made from them and their script never runs."""
    visit.sign_in(deployment.token)
    visit.wait_loaded()
    want = expected()
    district = cells(visit, "util-region-table", MARKUP_CODE, attribute="code")
    assert district["name"] == MARKUP_EN
    in_district = [s for s in SUBMITTED if s.node.region == MARKUP_CODE]
    assert district["capacity"] == flops(sum(s.headline for s in in_district))
    assert district["power"] == watts(sum(s.watts for s in in_district))
    assert district["provenance"] == "mixed"  # measured in part (node 6) and declared (node 4)
    english = cells(visit, "util-now-table", "ai")

    visit.page.click("#lang")
    assert visit.page.text_content("#utilisation-title") == "利用率"
    assert visit.page.text_content("#energy-title") == "能耗"
    chinese = cells(visit, "util-now-table", "ai")
    assert chinese.pop("tier") == "智能算力"
    assert english.pop("tier") == "AI compute"
    assert chinese == english  # the same figures
    assert cells(visit, "energy-table", "general")["provenance"] == "实测与申报"
    assert cells(visit, "energy-table", "edge")["provenance"] == "无数据"
    assert cells(visit, "util-demand-table", "ai")["mean-wait"] == "7.50 分钟"
    assert (visit.page.text_content("#util-window") or "").startswith("统计时段：最近 24 小时")
    assert "智能算力 2" in (visit.page.text_content("#util-unpriced") or "")
    assert "核时" in (visit.page.text_content("#util-ratio-table thead") or "")
    assert cells(visit, "util-now-table", "all")["capacity"] == flops(want["all"].capacity)
    assert cells(visit, "util-region-table", MARKUP_CODE, attribute="code")["name"] == MARKUP_ZH

    ARTIFACTS.mkdir(exist_ok=True)
    visit.page.locator("#utilisation").screenshot(path=str(ARTIFACTS / "dashboard-utilisation-zh.png"))
    for table in ("util-region-table", "region-table"):
        assert visit.page.locator(f"#{table} img, #{table} script, #{table} b").count() == 0
    assert visit.page.evaluate("document.body.dataset.xss") is None
    assert not visit.problems(), visit.problems()
