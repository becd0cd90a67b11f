"""Census figures from a generated fleet whose totals are known by construction (`tests.fleet`), posted over
HTTP to the service's application (in process, its lifespan running: `tests.inprocess`) on SQLite and on
PostgreSQL, a fresh database for each test: totals, composition by tier,
regions rolled up with per-capita figures, the headline convention, rollups kept equal to the nodes after
relabelling, liveness, history, the CSV export, node listing and pagination, and region validation."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

import seeds
from api.db.engine import make_engine
from census_agent.models import Precision, Tier
from tests.fleet import (
    CITY,
    DEFAULT_CONVENTION,
    DISTRICTS,
    ORGANISATIONS,
    REGION_CODES,
    Expected,
    Figures,
    FleetNode,
    expected_census,
    generate_fleet,
    post_fleet,
    relabel,
    reports,
)
from tests.inprocess import AppService
from tests.integration.service.helpers import assert_rollups_are_node_sums
from tests.servers import wait_for

pytestmark = pytest.mark.integration

FLEET_SIZE = 1000
POST_BUDGET_S = 60.0  # 1,000 reports over HTTP must take well under a minute on either backend

SEED_REGIONS = {row["code"]: row for row in csv.DictReader(io.StringIO(seeds.read_text("regions.csv")))}
POPULATION = {code: int(row["population"]) for code, row in SEED_REGIONS.items()}

CSV_COLUMNS = [
    "region_code",
    "region_name_en",
    "region_name_zh",
    "level",
    "tier",
    "nodes",
    "physical_cores",
    "accelerators",
    "memory_bytes",
    "fp64_flops",
    "fp32_flops",
    "fp16_flops",
    "int8_ops",
    "headline_precision",
    "headline_flops",
    "population",
    "per_capita_headline_flops",
    "headline_convention",
    # utilisation and energy (tests/integration/service/test_utilisation.py checks their values)
    "unpriced_accelerators",
    "allocated_headline_flops",
    "consumed_headline_flops",
    "utilisation_cpu",
    "utilisation_accelerators",
    "utilisation_compute",
    "power_watts",
    "power_provenance",
    "energy_kwh",
    "peak_gflops_per_watt",
]


# --- helpers ---------------------------------------------------------------------------------------------


def close(expected: float, scale: float) -> Any:
    """Equal within 1e-9 relative; a figure expected to be 0 may carry rounding noise of 1e-12 of the fleet's
    figure (rollups are running sums of doubles)."""
    return pytest.approx(expected, rel=1e-9, abs=1e-12 * scale)


def get_json(client: httpx.Client, path: str, **params: str | int) -> Any:
    """GET `path` and return its JSON body, failing on any status but 200."""
    response = client.get(path, params=params)
    assert response.status_code == 200, f"GET {path} {params}: {response.status_code} {response.text}"
    return response.json()


def list_nodes(client: httpx.Client, limit: int = 100, **filters: str) -> list[dict[str, Any]]:
    """Every node matching `filters`, page by page (``after`` = the previous page's ``next_after``)."""
    items: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(10_000):
        params: dict[str, str | int] = {**filters, "limit": limit}
        if after is not None:
            params["after"] = after
        page = get_json(client, "/v1/nodes", **params)
        assert len(page["items"]) <= limit
        items += page["items"]
        after = page["next_after"]
        if after is None:
            return items
        assert after == page["items"][-1]["node_id"]
    raise AssertionError("pagination did not end")


def node_ids(items: Iterable[Mapping[str, Any]]) -> list[str]:
    """The node ids of a listing, in order."""
    return [item["node_id"] for item in items]


def assert_figures(actual: Mapping[str, Any], expected: Figures, scale: Figures, where: str) -> None:
    """Counts exactly, peaks in every precision within rounding."""
    for name, value in expected.counts().items():
        assert actual[name] == value, f"{where}: {name}"
    for p in Precision:
        assert actual["peak_flops"][p.value] == close(expected.peaks[p], scale.peaks[p]), f"{where}: {p.value}"


def assert_census(
    doc: Mapping[str, Any], expected: Expected, statuses: list[str], scale: Expected | None = None
) -> None:
    """The `GET /v1/census` document equals the census known by construction, field by field."""
    s = (scale or expected).total
    headline = expected.headline()
    head_scale = max(headline, (scale or expected).headline())
    assert doc["statuses"] == statuses
    assert doc["headline"]["convention"] == {t.value: p.value for t, p in DEFAULT_CONVENTION.items()}
    assert doc["headline"]["flops"] == close(headline, head_scale)
    assert_figures(doc["totals"], expected.total, s, "totals")
    assert_figures(doc["unassigned_region"], expected.unassigned, s, "unassigned")

    assert [t["tier"] for t in doc["by_tier"]] == [t.value for t in Tier]
    for entry in doc["by_tier"]:
        tier = Tier(entry["tier"])
        figures = expected.by_tier[tier]
        precision = DEFAULT_CONVENTION[tier]
        assert_figures(entry, figures, s, f"tier {tier}")
        assert entry["headline_precision"] == precision.value
        assert entry["headline_flops"] == close(figures.peaks[precision], head_scale)
        share = entry["share_of_headline"]
        assert share == (close(figures.peaks[precision] / headline, 1.0) if headline else None)
        for p in Precision:
            whole = expected.total.peaks[p]
            assert entry["share_by_precision"][p.value] == (close(figures.peaks[p] / whole, 1.0) if whole else None)
    if headline:
        assert sum(t["share_of_headline"] for t in doc["by_tier"]) == pytest.approx(1.0)

    regions = {r["code"]: r for r in doc["by_region"]}
    assert set(regions) == set(REGION_CODES)
    for code in REGION_CODES:
        region = regions[code]
        where = f"region {code}"
        population = POPULATION[code]
        region_headline = expected.region_headline(code)
        assert region["population"] == population
        assert region["name_zh"] == SEED_REGIONS[code]["name_zh"]
        assert region["parent_code"] == (SEED_REGIONS[code]["parent"] or None)
        assert_figures(region, expected.by_region[code], s, where)
        assert region["headline_flops"] == close(region_headline, head_scale), where
        assert region["per_capita_headline_flops"] == close(region_headline / population, head_scale / population)
        for p in Precision:
            per_capita = expected.by_region[code].peaks[p] / population
            assert region["per_capita_flops"][p.value] == close(per_capita, s.peaks[p] / population), where
        for tier in Tier:
            assert_figures(region["by_tier"][tier.value], expected.by_region_tier[code][tier], s, f"{where} {tier}")


def assert_answers_match_archetypes(answers: list[dict[str, Any]], fleet: list[FleetNode]) -> None:
    """Each report's answer: stored, with the tier and the per-precision peaks derived by hand."""
    assert len(answers) == len(fleet)
    for answer, node in zip(answers, fleet, strict=True):
        assert answer["node_id"] == node.node_id
        assert answer["outcome"] == "stored"
        assert answer["tier"] == node.tier.value, node.node_id
        for p in Precision:
            assert answer["peak_flops"][p.value] == pytest.approx(node.archetype.peaks[p], rel=1e-12), node.node_id


def timed_post(client: httpx.Client, fleet: list[FleetNode], sequence: int = 1) -> tuple[list[dict[str, Any]], float]:
    """Post one report per node; the answers and the seconds it took."""
    documents = reports(fleet, sequence)
    started = time.perf_counter()
    answers = post_fleet(client, documents)
    return answers, time.perf_counter() - started


def wait_for_pricing(client: httpx.Client) -> None:
    """Return once the service's pricing worker answers: a report without fields is refused (422, storing
    nothing) only by the worker, which is still starting for a few seconds after the service is ready. Tests on
    a 2 s liveness clock post their fleet after this, so that the posting fits in the clock."""
    response = client.post("/v1/reports", content=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text


@contextmanager
def started(database_url: str, workdir: Path, **settings: str) -> Iterator[AppService]:
    """The service with extra settings (fast liveness or snapshots) on the test's fresh database."""
    process = AppService(database_url, workdir, **settings).start()
    try:
        yield process
    finally:
        process.stop()


# --- the fleet's census ----------------------------------------------------------------------------------


def test_census_of_a_generated_fleet_equals_its_totals_by_construction(service: AppService) -> None:
    """1,000 reports through POST /v1/reports: each answer has the hand-derived tier and peaks, and GET
    /v1/census (totals, every tier with every precision and its share of the headline, the default-convention
    headline, every district, Guangzhou, Guangdong and China with per-capita figures against the seeded
    population, and the unassigned nodes) equals the fleet's totals by construction.  Posting takes well
    under a minute; ``?region=440100`` lists only the city and its districts."""
    fleet = generate_fleet(FLEET_SIZE)
    expected = expected_census(fleet)
    assert expected.unassigned.nodes > 0
    assert all(expected.by_region_tier[d][t].nodes > 0 for d in DISTRICTS for t in Tier)
    with service.client() as client:
        answers, seconds = timed_post(client, fleet)
        assert seconds < POST_BUDGET_S, f"posting {FLEET_SIZE} reports took {seconds:.1f} s"
        assert_answers_match_archetypes(answers, fleet)
        doc = get_json(client, "/v1/census")
        assert_census(doc, expected, ["active"])
        assert get_json(client, "/v1/census", include="all")["totals"]["nodes"] == FLEET_SIZE

        city = get_json(client, "/v1/census", region=CITY)
    assert {r["code"] for r in city["by_region"]} == {CITY, *DISTRICTS}
    city_region = next(r for r in city["by_region"] if r["code"] == CITY)
    assert city_region["headline_flops"] == close(expected.region_headline(CITY), expected.headline())


def test_rollups_follow_region_and_tier_changes(service: AppService) -> None:
    """After the fleet, a newer report for 50 nodes moves them to another district, to no region, or to another
    tier by the operator's label: the census (kept as rollup deltas on ingest) equals the expected totals
    recomputed for the modified fleet, and equals a direct scan of every node through GET /v1/nodes; every rollup
    cell equals the sums over the nodes table of every stored measure (the utilisation and power ones too).
    Replaying the superseded reports changes nothing."""
    fleet = generate_fleet(FLEET_SIZE)
    codes = list(DISTRICTS)
    changed: dict[int, FleetNode] = {}
    for j in range(50):
        i = j * 19 + 5  # every slot of the 20-node archetype mix, spread over the fleet
        node = fleet[i]
        moved_to = codes[(codes.index(node.region) + 3) % len(codes)] if node.region else codes[j % len(codes)]
        other_tier = Tier.HPC if node.tier is not Tier.HPC else Tier.GENERAL
        changed[i] = [
            relabel(node, region=moved_to),
            relabel(node, region=moved_to),
            relabel(node, tier_label=other_tier),
            relabel(node, region=moved_to, tier_label=Tier.EDGE if node.tier is not Tier.EDGE else Tier.AI),
            relabel(node, region=None if node.region else codes[0]),
        ][j % 5]
    modified = [changed.get(i, node) for i, node in enumerate(fleet)]
    before, after = expected_census(fleet), expected_census(modified)
    assert before.by_region["440106"].nodes != after.by_region["440106"].nodes or before.by_tier != after.by_tier

    with service.client() as client:
        post_fleet(client, reports(fleet))
        assert_census(get_json(client, "/v1/census"), before, ["active"])
        answers = post_fleet(client, [node.report(sequence=2) for node in changed.values()])
        assert_answers_match_archetypes(answers, list(changed.values()))
        assert_census(get_json(client, "/v1/census"), after, ["active"], scale=before)

        replayed = post_fleet(client, [fleet[i].report(sequence=1) for i in changed])
        assert {a["outcome"] for a in replayed} == {"duplicate"}
        doc = get_json(client, "/v1/census", include="all")
        assert_census(doc, after, ["active", "stale", "offline"], scale=before)

        scan = list_nodes(client, limit=1000)
    assert len(scan) == FLEET_SIZE
    by_id = {n.node_id: n for n in modified}
    for item in scan:
        node = by_id[item["node_id"]]
        assert (item["region_code"], item["tier"]) == (node.region, node.tier.value)
    for name in ("physical_cores", "threads", "accelerators", "memory_bytes"):
        assert sum(item[name] for item in scan) == doc["totals"][name]
    for p, column in (("fp64", "fp64_flops"), ("fp32", "fp32_flops"), ("fp16", "fp16_flops"), ("int8", "int8_ops")):
        assert doc["totals"]["peak_flops"][p] == pytest.approx(sum(item[column] for item in scan), rel=1e-9)
    for tier in Tier:
        tier_doc = next(t for t in doc["by_tier"] if t["tier"] == tier.value)
        assert tier_doc["nodes"] == sum(1 for item in scan if item["tier"] == tier.value)
    engine = make_engine(service.database_url)
    try:
        assert_rollups_are_node_sums(engine)
    finally:
        engine.dispose()


# --- liveness --------------------------------------------------------------------------------------------


class Heartbeat:
    """Keeps a set of nodes reporting (a newer report every `period` seconds) from a background thread."""

    def __init__(self, service: AppService, fleet: list[FleetNode], period: float = 0.4) -> None:
        self.service, self.fleet, self.period = service, fleet, period
        self.sequence = 1
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def _run(self) -> None:
        with self.service.client() as client:
            while not self._stop.wait(self.period):
                self.sequence += 1
                try:
                    post_fleet(client, reports(self.fleet, self.sequence), workers=1)
                except (AssertionError, httpx.HTTPError) as exc:
                    self.errors.append(str(exc))

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def test_silent_nodes_become_stale_then_offline_and_leave_the_active_census(database_url: str, tmp_path: Path) -> None:
    """With a 2 s stale and 4 s offline TTL, nodes that stop reporting are listed as stale, then offline (their
    records kept), while nodes that keep reporting stay active; GET /v1/census (default include=active) counts
    only the reporting nodes, include=all still counts every node; a new report makes a silent node active and
    counted again."""
    fleet = generate_fleet(60)
    live, silent = fleet[:20], fleet[20:]
    silent_ids = {n.node_id for n in silent}
    settings = {"stale_after_seconds": "2", "offline_after_seconds": "4", "sweep_interval_seconds": "0.5"}
    with started(database_url, tmp_path, **settings) as service, service.client() as client:
        wait_for_pricing(client)
        post_fleet(client, reports(fleet))
        assert {n["status"] for n in list_nodes(client)} == {"active"}
        with Heartbeat(service, live) as heartbeat:
            wait_for(lambda: set(node_ids(list_nodes(client, status="stale"))) == silent_ids, 15, "silent -> stale")
            assert set(node_ids(list_nodes(client, status="active"))) == {n.node_id for n in live}
            assert_census(get_json(client, "/v1/census"), expected_census(live), ["active"], expected_census(fleet))
            assert_census(
                get_json(client, "/v1/census", include="all"), expected_census(fleet), ["active", "stale", "offline"]
            )

            wait_for(lambda: set(node_ids(list_nodes(client, status="offline"))) == silent_ids, 15, "stale -> offline")
            assert list_nodes(client, status="stale") == []
            assert set(node_ids(list_nodes(client, status="active"))) == {n.node_id for n in live}
            assert get_json(client, f"/v1/nodes/{silent[0].node_id}")["status"] == "offline"
            assert_census(get_json(client, "/v1/census"), expected_census(live), ["active"], expected_census(fleet))
            assert_census(
                get_json(client, "/v1/census", include="all"), expected_census(fleet), ["active", "stale", "offline"]
            )

            revived = silent[:3]
            answers = post_fleet(client, [n.report(sequence=2) for n in revived])
            assert {a["outcome"] for a in answers} == {"stored"}
            for node in revived:
                assert get_json(client, f"/v1/nodes/{node.node_id}")["status"] == "active"
            assert_census(
                get_json(client, "/v1/census"), expected_census([*live, *revived]), ["active"], expected_census(fleet)
            )
            assert get_json(client, "/v1/census", include="all")["totals"]["nodes"] == len(fleet)
        assert heartbeat.errors == []


# --- history ---------------------------------------------------------------------------------------------


def test_history_records_the_census_over_time_and_its_growth(database_url: str, tmp_path: Path) -> None:
    """Snapshots every second: after part of the fleet, a snapshot shows exactly that part's headline; after the
    rest, GET /v1/census/history has at least two points, the last equal to the current census headline (and
    to the whole fleet's by construction, per tier too), growth.headline_ratio > 1 (last over first) and
    nodes_added the difference; ``region`` and ``from`` narrow the series."""
    fleet = generate_fleet(400)
    first_part, rest = fleet[:150], fleet[150:]
    part_expected, all_expected = expected_census(first_part), expected_census(fleet)
    settings = {"snapshot_interval_seconds": "1", "sweep_interval_seconds": "0.5"}
    with started(database_url, tmp_path, **settings) as service, service.client() as client:

        def points(**params: str) -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = get_json(client, "/v1/census/history", **params)["points"]
            return found

        post_fleet(client, reports(first_part))
        wait_for(lambda: any(p["nodes"] == len(first_part) for p in points()), 15, "a snapshot of the first part")
        post_fleet(client, reports(rest))
        wait_for(lambda: points()[-1]["nodes"] == len(fleet), 15, "a snapshot of the whole fleet")

        history = get_json(client, "/v1/census/history")
        census = get_json(client, "/v1/census")
        tianhe = points(region="440106")
        since = points(**{"from": history["points"][-1]["taken_at"]})

    series = history["points"]
    scale = all_expected.headline()
    assert len(series) >= 2
    times = [p["taken_at"] for p in series]
    assert times == sorted(times)
    assert len(set(times)) == len(times)
    first_part_point = next(p for p in series if p["nodes"] == len(first_part))
    assert first_part_point["headline_flops"] == close(part_expected.headline(), scale)
    last = series[-1]
    assert last["headline_flops"] == close(census["headline"]["flops"], scale)
    assert last["headline_flops"] == close(all_expected.headline(), scale)
    for tier in Tier:
        tier_headline = all_expected.by_tier[tier].peaks[DEFAULT_CONVENTION[tier]]
        assert last["by_tier_headline_flops"][tier.value] == close(tier_headline, scale)
    assert_figures(last, all_expected.total, all_expected.total, "last snapshot")

    growth = history["growth"]
    assert growth is not None
    assert growth["headline_ratio"] > 1
    assert growth["headline_ratio"] == pytest.approx(last["headline_flops"] / series[0]["headline_flops"])
    assert growth["nodes_added"] == len(fleet) - series[0]["nodes"]
    assert (growth["from"], growth["to"]) == (series[0]["taken_at"], last["taken_at"])

    assert tianhe[-1]["headline_flops"] == close(all_expected.region_headline("440106"), scale)
    assert tianhe[-1]["nodes"] == all_expected.by_region["440106"].nodes
    assert [p["taken_at"] for p in since] == [last["taken_at"]]


def test_history_window_bounds_are_instants_whatever_their_utc_offset(database_url: str, tmp_path: Path) -> None:
    """GET /v1/census/history?from=T and ?to=T select the same snapshots whether T is written in UTC, in China
    Standard Time (+08:00) or at -05:00: the bounds are instants, not wall-clock text."""
    cst, est = timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))
    settings = {"snapshot_interval_seconds": "1", "sweep_interval_seconds": "0.5"}
    with started(database_url, tmp_path, **settings) as service, service.client() as client:
        post_fleet(client, reports(generate_fleet(10)))
        wait_for(lambda: len(get_json(client, "/v1/census/history")["points"]) >= 3, 15, "three snapshots")
        series = [p["taken_at"] for p in get_json(client, "/v1/census/history")["points"]]
        middle = datetime.fromisoformat(series[1])
        for bound, expected in (("from", series[1:]), ("to", series[:2])):
            for tz in (UTC, cst, est):
                value = middle.astimezone(tz).isoformat()
                found = [p["taken_at"] for p in get_json(client, "/v1/census/history", **{bound: value})["points"]]
                assert found[: len(expected)] == expected, f"{bound}={value}"
                if bound == "to":
                    assert found == expected, f"{bound}={value}"


def test_a_newer_report_dated_with_a_utc_offset_moves_the_node_in_the_census(service: AppService) -> None:
    """A node's reports dated in China Standard Time (+08:00): the second (sequence 2, 30 s later, moved from
    Liwan to Zengcheng) is newer and becomes the node's state, so the census moves the node."""
    cst = timezone(timedelta(hours=8))
    node = relabel(generate_fleet(1)[0], region="440103")
    moved = relabel(node, region="440118")
    first_at = datetime(2026, 3, 1, 14, 0, tzinfo=cst)
    with service.client() as client:
        answers = post_fleet(
            client,
            [node.report(1, generated_at=first_at), moved.report(2, generated_at=first_at + timedelta(seconds=30))],
            workers=1,
        )
        node_doc = get_json(client, f"/v1/nodes/{node.node_id}")
        doc = get_json(client, "/v1/census")
    assert [a["outcome"] for a in answers] == ["stored", "stored"]
    assert node_doc["region_code"] == "440118"
    regions = {r["code"]: r for r in doc["by_region"]}
    assert (regions["440103"]["nodes"], regions["440118"]["nodes"]) == (0, 1)


# --- CSV export ------------------------------------------------------------------------------------------


def parse_export(response: httpx.Response) -> list[dict[str, str]]:
    """The CSV export's rows, checked to be UTF-8 with a BOM and the documented header."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")
    text = response.content.decode("utf-8-sig")
    reader = csv.DictReader(io.StringIO(text))
    assert reader.fieldnames == CSV_COLUMNS
    return list(reader)


def test_csv_export_has_one_row_per_region_and_tier_matching_the_census(service: AppService) -> None:
    """GET /v1/census/export.csv (UTF-8 with BOM) has a row per region x (4 tiers + all) whose counts, peaks,
    headline and per-capita figures equal the JSON census and the fleet's totals, with the Chinese names
    intact; ``region=440100`` limits it to the city and its districts."""
    fleet = generate_fleet(300)
    expected = expected_census(fleet)
    with service.client() as client:
        post_fleet(client, reports(fleet))
        doc = get_json(client, "/v1/census")
        rows = parse_export(client.get("/v1/census/export.csv"))
        city_rows = parse_export(client.get("/v1/census/export.csv", params={"region": CITY}))

    tiers = [*(t.value for t in Tier), "all"]
    assert len(rows) == len(REGION_CODES) * 5
    assert sorted((r["region_code"], r["tier"]) for r in rows) == sorted((c, t) for c in REGION_CODES for t in tiers)
    assert {r["region_code"] for r in city_rows} == {CITY, *DISTRICTS}
    assert len(city_rows) == 12 * 5
    regions = {r["code"]: r for r in doc["by_region"]}
    scale = expected.total
    for row in rows:
        code, tier = row["region_code"], row["tier"]
        seed = SEED_REGIONS[code]
        assert (row["region_name_zh"], row["region_name_en"], row["level"]) == (
            seed["name_zh"],
            seed["name_en"],
            seed["level"],
        )
        region = regions[code]
        json_totals = region if tier == "all" else region["by_tier"][tier]
        figures = expected.by_region[code] if tier == "all" else expected.by_region_tier[code][Tier(tier)]
        for name in ("nodes", "physical_cores", "accelerators", "memory_bytes"):
            assert int(row[name]) == json_totals[name] == getattr(figures, name), f"{code} {tier} {name}"
        for p in Precision:
            value = float(row["int8_ops" if p is Precision.INT8 else f"{p.value}_flops"])
            assert value == pytest.approx(json_totals["peak_flops"][p.value], rel=1e-12)
            assert value == close(figures.peaks[p], scale.peaks[p])
        if tier == "all":
            assert row["headline_precision"] == "convention"
            headline = expected.region_headline(code)
            assert float(row["headline_flops"]) == pytest.approx(region["headline_flops"], rel=1e-12)
        else:
            precision = DEFAULT_CONVENTION[Tier(tier)]
            assert row["headline_precision"] == precision.value
            headline = figures.peaks[precision]
        assert float(row["headline_flops"]) == close(headline, expected.headline())
        assert int(row["population"]) == POPULATION[code]
        assert float(row["per_capita_headline_flops"]) == pytest.approx(headline / POPULATION[code], rel=1e-9)
        if tier == "all":
            assert float(row["per_capita_headline_flops"]) == pytest.approx(region["per_capita_headline_flops"])
    tianhe = next(r for r in rows if r["region_code"] == "440106")
    assert tianhe["region_name_zh"] == "天河区"
    assert next(r for r in rows if r["region_code"] == "CN")["region_name_zh"] == "中国"


def test_csv_export_writes_zero_per_capita_for_a_populated_region_without_compute(service: AppService) -> None:
    """A district with a known population and no nodes (Conghua here) has per_capita_headline_flops 0 in the
    CSV, as in the JSON census, not an empty cell (which would read as "population unknown")."""
    fleet = generate_fleet(100, districts=[d for d in DISTRICTS if d != "440117"])
    with service.client() as client:
        post_fleet(client, reports(fleet))
        doc = get_json(client, "/v1/census")
        rows = parse_export(client.get("/v1/census/export.csv"))
    conghua = next(r for r in doc["by_region"] if r["code"] == "440117")
    assert conghua["nodes"] == 0
    assert conghua["per_capita_headline_flops"] == 0.0
    for row in (r for r in rows if r["region_code"] == "440117"):
        assert row["population"] == str(POPULATION["440117"])
        assert row["per_capita_headline_flops"] != "", f"tier {row['tier']}: empty per-capita cell"
        assert float(row["per_capita_headline_flops"]) == 0.0


# --- node listing ----------------------------------------------------------------------------------------


def test_node_filters_and_keyset_pagination_visit_every_node_once(service: AppService) -> None:
    """GET /v1/nodes pages (limit + after) visit every node exactly once in id order, with or without filters
    (tier, region, status, organisation, and combined), each listing equal to the fleet's nodes that match and
    each node's summary carrying its labels and hand-derived figures."""
    fleet = generate_fleet(FLEET_SIZE)
    by_id = {n.node_id: n for n in fleet}
    with service.client() as client:
        post_fleet(client, reports(fleet))

        def listed(limit: int = 100, **filters: str) -> list[str]:
            ids = node_ids(list_nodes(client, limit=limit, **filters))
            assert ids == sorted(ids), f"{filters}: not in id order"
            assert len(ids) == len(set(ids)), f"{filters}: a node listed twice"
            return ids

        everything = list_nodes(client, limit=97)
        assert node_ids(everything) == sorted(by_id)
        assert listed(limit=1000) == sorted(by_id)
        assert listed(limit=1, tier="ai") == sorted(n.node_id for n in fleet if n.tier is Tier.AI)  # a node a page
        for item in everything:
            node = by_id[item["node_id"]]
            a = node.archetype
            assert (item["tier"], item["region_code"], item["organisation"], item["site"], item["status"]) == (
                node.tier.value,
                node.region,
                node.organisation,
                node.site,
                "active",
            )
            assert (item["physical_cores"], item["threads"], item["accelerators"], item["memory_bytes"]) == (
                a.cpu.physical_cores,
                a.cpu.threads,
                len(a.accelerators),
                a.memory_bytes,
            )
            for p, column in ((Precision.FP64, "fp64_flops"), (Precision.FP16, "fp16_flops")):
                assert item[column] == pytest.approx(a.peaks[p], rel=1e-12)

        def matching(**labels: object) -> list[str]:
            return sorted(n.node_id for n in fleet if all(getattr(n, k) == v for k, v in labels.items()))

        for tier in Tier:
            assert listed(limit=37, tier=tier.value) == matching(tier=tier)
        for code in DISTRICTS:
            assert listed(region=code) == matching(region=code)
        for organisation in ORGANISATIONS:
            assert listed(limit=250, organisation=organisation) == matching(organisation=organisation)
        assert listed(status="active") == sorted(by_id)
        assert listed(status="stale") == listed(status="offline") == []
        combined = listed(limit=3, tier="ai", region="440106", organisation=ORGANISATIONS[1])
        assert combined == matching(tier=Tier.AI, region="440106", organisation=ORGANISATIONS[1])
        assert combined

        last_id = sorted(by_id)[-1]
        assert get_json(client, "/v1/nodes", after=last_id) == {"items": [], "next_after": None}
        assert client.get("/v1/nodes", params={"limit": 1001}).status_code == 422
        assert client.get("/v1/nodes", params={"limit": 0}).status_code == 422
        assert client.get("/v1/nodes", params={"tier": "quantum"}).status_code == 422
        assert client.get("/v1/nodes", params={"status": "asleep"}).status_code == 422


# --- region validation -----------------------------------------------------------------------------------


def test_an_unknown_region_parameter_is_a_422_on_census_routes(service: AppService) -> None:
    """``region`` must name a seeded region on /v1/census, its history and its CSV export: an unknown code is
    answered 422 (problem+json naming the code), a known one 200."""
    with service.client() as client:
        for path in ("/v1/census", "/v1/census/history", "/v1/census/export.csv"):
            unknown = client.get(path, params={"region": "449999"})
            assert unknown.status_code == 422, f"{path}: {unknown.status_code} {unknown.text}"
            assert unknown.headers["content-type"].startswith("application/problem+json")
            assert "449999" in unknown.json()["detail"]
            known = client.get(path, params={"region": "440106"})
            assert known.status_code == 200, f"{path}: {known.text}"


def test_an_unknown_region_parameter_is_a_422_on_the_node_list(service: AppService) -> None:
    """GET /v1/nodes?region=<unknown code> is refused (422) like the census routes, not answered with an empty
    list that reads as "no nodes in that region"."""
    with service.client() as client:
        post_fleet(client, reports(generate_fleet(5)))
        response = client.get("/v1/nodes", params={"region": "449999"})
    assert response.status_code == 422, response.text
