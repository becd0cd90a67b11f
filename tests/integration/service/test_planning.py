"""Planners' questions against the service's application (in process, SQLite and PostgreSQL): the headline's
labels and AI share in the census and its CSV; ``POST /v1/census/plan`` on a generated fleet (known answers by
construction: ten planned AI servers raise their district, city, province and country by exactly ten times one
server's fp16 peak, worked out here from the catalogue row), who may ask, every bad plan refused with nothing
stored; ``GET /v1/census/projection`` on snapshots of exactly exponential growth written into the database."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

import seeds
from api.db.engine import write_transaction
from api.db.tables import MEASURE_COLUMNS, metadata, snapshots
from census_agent.models import Precision, Tier
from tests.fleet import (
    AI,
    CITY,
    COUNTRY,
    DISTRICTS,
    PROVINCE,
    ZEN3_FP64,
    expected_census,
    generate_fleet,
    post_fleet,
    reports,
)
from tests.inprocess import AppService
from tests.integration.service.helpers import ROLES, create_token

pytestmark = pytest.mark.integration

SEED_REGIONS = {row["code"]: row for row in csv.DictReader(io.StringIO(seeds.read_text("regions.csv")))}
POPULATION = {code: int(row["population"]) for code, row in SEED_REGIONS.items()}
TIANHE = "440106"
CHAIN = (TIANHE, CITY, PROVINCE, COUNTRY)


def catalogue_row(model: str) -> dict[str, str]:
    """One row of seeds/accelerators.csv, read as a spreadsheet would."""
    rows = csv.DictReader(io.StringIO(seeds.read_text("accelerators.csv")))
    return next(r for r in rows if r["model"] == model)


def one_ai_server_fp16() -> float:
    """The fleet's AI server (2 x 32-core Zen 3 at 2.45 GHz, 8 x H100-SXM5) at fp16, worked out by hand: the
    catalogue's dense fp16 tensor figure per H100-SXM5 x 8, plus the CPUs at 32 fp16 FLOPs per cycle per core
    (AVX2 + FMA fp32 rate; no AVX-512 FP16/BF16, no AMX) x 64 cores x 2.45 GHz."""
    h100_fp16 = float(catalogue_row("H100-SXM5")["fp16_tensor_tflops"]) * 1e12
    return 8 * h100_fp16 + 64 * 2.45e9 * 32


def estimate_document() -> dict[str, Any]:
    """The AI server as a planner describes it for `census-agent estimate`: a bare inventory, no host section,
    no region label (the plan says where it goes)."""
    inventory: dict[str, Any] = json.loads(generate_fleet(6)[5].inventory().model_dump_json())
    assert len(inventory["accelerators"]) == 8
    del inventory["host"]
    inventory["labels"] = {"organisation": "planning-office"}
    return inventory


def plan_body(*machines: dict[str, Any]) -> dict[str, Any]:
    """A plan of the given machine kinds."""
    return {"machines": list(machines)}


def counts(service: AppService) -> dict[str, int]:
    """Rows in every table of the service's database."""
    engine = service.app.state.service.engine
    with engine.connect() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in metadata.sorted_tables}


LAYER_KEYS = ("window", "utilisation", "energy", "demand", "allocated_unattributed")


def peaks_only(doc: dict[str, Any]) -> dict[str, Any]:
    """A census document without `as_of` and the layers over time (utilisation, energy, demand: their hours grow
    with the clock): the part a plan's `before` and `after` answer."""
    out = {k: v for k, v in doc.items() if k not in ("as_of", *LAYER_KEYS)}
    for key in ("by_tier", "by_region"):
        out[key] = [{k: v for k, v in entry.items() if k not in LAYER_KEYS} for entry in doc[key]]
    return out


def unchanged_state(service: AppService, client: httpx.Client) -> dict[str, Any]:
    """What must not move when a plan is priced: row counts, the audit chain's head and verification, the census."""
    audit = client.get("/v1/audit", params={"limit": 5})
    verify = client.get("/v1/audit/verify")
    census = client.get("/v1/census")
    assert audit.status_code == verify.status_code == census.status_code == 200
    doc = peaks_only(census.json())
    return {"rows": counts(service), "audit": audit.json()["items"], "verify": verify.json(), "census": doc}


def by_code(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A census document's regions by code."""
    return {r["code"]: r for r in doc["by_region"]}


# --- the headline says what it is ------------------------------------------------------------------------------


def test_the_census_headline_is_labelled_and_carries_the_ai_share_beside_the_national_target(
    service: AppService,
) -> None:
    """GET /v1/census's headline says in English and Chinese that it adds each tier in its own precision (naming
    the precisions), gives the convention on one line, the AI share (ai tier headline / total, by construction)
    and the 35 % target with its source; every CSV row names the convention."""
    fleet = generate_fleet(100)
    expected = expected_census(fleet)
    with service.client() as client:
        post_fleet(client, reports(fleet))
        head = client.get("/v1/census").json()["headline"]
        rows = list(csv.DictReader(io.StringIO(client.get("/v1/census/export.csv").content.decode("utf-8-sig"))))
    assert head["label_en"].startswith("Total compute: each tier's peak in its own precision, added up")
    assert "general FP32 + AI FP16 + HPC FP64 + edge FP32" in head["label_en"]
    assert head["label_zh"].startswith("算力总规模")
    assert "智能算力 FP16" in head["label_zh"]
    assert "超算算力 FP64" in head["label_zh"]
    assert head["convention_text"] == "general fp32 + ai fp16 + hpc fp64 + edge fp32"
    ai = expected.by_tier[Tier.AI].peaks[Precision.FP16]
    assert 0 < ai < expected.headline()
    assert head["ai_share"] == pytest.approx(ai / expected.headline(), rel=1e-9)
    assert head["ai_share_target"] == 0.35
    assert "算力基础设施高质量发展行动计划" in head["ai_share_target_source"]
    assert rows
    assert {r["headline_convention"] for r in rows} == {
        "sum of tiers each in its own precision: general fp32 + ai fp16 + hpc fp64 + edge fp32"
    }


# --- what if ---------------------------------------------------------------------------------------------------


def test_ten_planned_ai_servers_raise_their_district_city_province_and_country_by_ten_servers(
    service: AppService,
) -> None:
    """On a 200-node fleet, a plan of 10 AI servers (8 x H100-SXM5 each, a bare estimate document) in Tianhe:
    the answer prices one server at the fp16 peak worked out from the catalogue row (and equal to the fleet's
    hand-derived figure), says it is ai, and its `after` census raises Tianhe, Guangzhou, Guangdong and China's
    headline by exactly 10 x that peak (every other district unchanged), with per capita = headline / population
    and the AI share (ai / total) following; `before` is the census as GET /v1/census answers it; only those four
    regions are listed as changed. Nothing is stored: row counts of every table, the audit chain and the census
    are the same afterwards."""
    per_server = one_ai_server_fp16()
    assert per_server == pytest.approx(AI.peaks[Precision.FP16], rel=1e-12)
    assert per_server == pytest.approx(8 * 989.5e12 + 2 * ZEN3_FP64, rel=1e-12)
    fleet = generate_fleet(200)
    expected = expected_census(fleet)
    added = 10 * per_server
    with service.client() as client:
        post_fleet(client, reports(fleet))
        census_now = client.get("/v1/census").json()
        untouched = unchanged_state(service, client)
        response = client.post(
            "/v1/census/plan", json=plan_body({"count": 10, "region": TIANHE, "inventory": estimate_document()})
        )
        assert response.status_code == 200, response.text
        doc = response.json()
        assert unchanged_state(service, client) == untouched

    assert doc["stored"] is False
    (machine,) = doc["machines"]
    assert (machine["tier"], machine["headline_precision"], machine["count"]) == ("ai", "fp16", 10)
    assert machine["per_machine_headline_flops"] == pytest.approx(per_server, rel=1e-12)
    assert machine["added_headline_flops"] == pytest.approx(added, rel=1e-12)
    assert doc["added"] == {
        "machines": 10,
        "kinds": 1,
        "physical_cores": 640,
        "accelerators": 80,
        "headline_flops": pytest.approx(added, rel=1e-12),
    }

    before, after = doc["before"], doc["after"]
    assert peaks_only(before) == peaks_only(census_now)
    assert before["headline"]["flops"] == pytest.approx(expected.headline(), rel=1e-9)
    assert after["headline"]["flops"] == pytest.approx(expected.headline() + added, rel=1e-9)
    ai_before = expected.by_tier[Tier.AI].peaks[Precision.FP16]
    assert after["headline"]["ai_share"] == pytest.approx((ai_before + added) / (expected.headline() + added))
    assert after["totals"]["nodes"] == len(fleet) + 10
    old, new = by_code(before), by_code(after)
    for code in (*DISTRICTS, CITY, PROVINCE, COUNTRY):
        raised = added if code in CHAIN else 0.0
        assert new[code]["headline_flops"] - old[code]["headline_flops"] == pytest.approx(raised, abs=1e3), code
        assert new[code]["headline_flops"] == pytest.approx(expected.region_headline(code) + raised, rel=1e-9)
        assert new[code]["per_capita_headline_flops"] == pytest.approx(
            (expected.region_headline(code) + raised) / POPULATION[code], rel=1e-9
        )
        assert new[code]["nodes"] == expected.by_region[code].nodes + (10 if code in CHAIN else 0)
    changes = {r["code"]: r for r in doc["changes"]}
    assert set(changes) == set(CHAIN)
    tianhe = changes[TIANHE]
    region_ai = expected.by_region_tier[TIANHE][Tier.AI].peaks[Precision.FP16]
    region_total = expected.region_headline(TIANHE)
    assert tianhe["before"]["ai_share"] == pytest.approx(region_ai / region_total, rel=1e-9)
    assert tianhe["after"]["ai_share"] == pytest.approx((region_ai + added) / (region_total + added), rel=1e-9)
    assert tianhe["after"]["per_capita_headline_flops"] == pytest.approx(
        (region_total + added) / POPULATION[TIANHE], rel=1e-9
    )
    assert tianhe["after"]["by_tier_headline_flops"]["ai"] == pytest.approx(region_ai + added, rel=1e-9)


def test_a_plan_may_be_priced_by_planners_operators_and_admins_only(service: AppService) -> None:
    """POST /v1/census/plan: planner, operator and admin tokens get the answer; user (job submitters), agent and
    enrol tokens get 403, and no token 401."""
    body = plan_body({"count": 1, "region": TIANHE, "inventory": estimate_document()})
    with service.client() as admin:
        tokens = {role: create_token(admin, role)["token"] for role in ROLES if role != "admin"}
    tokens["admin"] = service.admin_token
    for role, token in tokens.items():
        with service.client(token) as client:
            status = client.post("/v1/census/plan", json=body).status_code
        assert status == (200 if role in ("admin", "operator", "planner") else 403), role
    with service.client("") as anonymous:
        assert anonymous.post("/v1/census/plan", json=body).status_code == 401


def test_bad_plans_are_refused_naming_the_fault_and_store_nothing(service: AppService) -> None:
    """Each bad plan is a 422 (problem+json naming the fault) or, over the body limit, a 413; none changes a row,
    the audit chain or the census: an unknown region, counts of 0 and -1, more kinds than SUANLI_PLAN_MAX_KINDS
    (100), more machines than SUANLI_PLAN_MAX_MACHINES (1,000,000), an inventory given as a path (inventories are
    data), an `inventory_file` key (read by the CLI, never by the service), an inventory without its CPU, no
    machines, a body that is not JSON, an unknown ?region=; a body of 1 MiB and more is 413."""
    machine = {"count": 1, "region": TIANHE, "inventory": estimate_document()}
    broken = estimate_document()
    del broken["cpu"]
    cases: dict[str, tuple[Any, str]] = {
        "unknown region": (plan_body({**machine, "region": "449999"}), "449999"),
        "count 0": (plan_body({**machine, "count": 0}), "machines.0.count"),
        "negative count": (plan_body({**machine, "count": -1}), "machines.0.count"),
        "too many kinds": (plan_body(*[machine] * 101), "at most 100"),
        "too many machines": (plan_body({**machine, "count": 600_000}, {**machine, "count": 400_001}), "1000000"),
        "a path": (plan_body({**machine, "inventory": "/etc/passwd"}), "inventories are data"),
        "inventory_file": (plan_body({**machine, "inventory_file": "/etc/passwd"}), "inventory_file"),
        "no cpu": (plan_body({**machine, "inventory": broken}), "machines.0.inventory.cpu"),
        "no machines": (plan_body(), "machines"),
        "not json": (b"{machines: [", "json"),
    }
    with service.client() as client:
        post_fleet(client, reports(generate_fleet(40)))
        untouched = unchanged_state(service, client)
        for case, (body, fragment) in cases.items():
            if isinstance(body, bytes):
                response = client.post("/v1/census/plan", content=body, headers={"Content-Type": "application/json"})
            else:
                response = client.post("/v1/census/plan", json=body)
            assert response.status_code == 422, f"{case}: {response.status_code} {response.text[:200]}"
            assert response.headers["content-type"].startswith("application/problem+json"), case
            assert fragment.lower() in response.json()["detail"].lower(), f"{case}: {response.json()['detail']}"
        unknown_focus = client.post("/v1/census/plan", params={"region": "449999"}, json=plan_body(machine))
        assert unknown_focus.status_code == 422
        big = json.dumps(plan_body({**machine, "name": "x" * 100}, *[machine] * 99)).encode()
        padded = big[:-1] + b" " * (2**20 - len(big) + 1) + b"}"
        too_large = client.post("/v1/census/plan", content=padded, headers={"Content-Type": "application/json"})
        assert too_large.status_code == 413, too_large.text[:200]
        assert unchanged_state(service, client) == untouched


# --- projection ------------------------------------------------------------------------------------------------


def write_snapshots(service: AppService, start: datetime, rows: list[tuple[float, str, str, float]]) -> None:
    """Snapshot rows (days after `start`, tier, region, FLOPS in every precision) straight into the database,
    as the housekeeper writes them: a synthetic history with known growth."""
    engine = service.app.state.service.engine
    with write_transaction(engine) as conn:
        conn.execute(
            snapshots.insert(),
            [
                {
                    "taken_at": start + timedelta(days=day),
                    "tier": tier,
                    "region_code": region,
                    "status": "active",
                    "nodes": 1,
                    **dict.fromkeys(MEASURE_COLUMNS, 0.0),
                    "fp64_flops": flops,
                    "fp32_flops": flops,
                    "fp16_flops": flops,
                    "int8_ops": flops,
                }
                for day, tier, region, flops in rows
            ],
        )


def test_the_projection_recovers_exact_exponential_growth_and_dates_the_targets(service: AppService) -> None:
    """Twelve weekly snapshots: AI compute in Tianhe doubling every 60 days from 1 PFLOPS, general compute in
    Liwan growing 50 % a year from 2 PFLOPS. GET /v1/census/projection gives each tier's rate back (doubling 60
    days; +50 %/year) with r² 1 and 12 points; for Tianhe alone (AI only, so its total is exactly exponential)
    100 PFLOPS in all is reached 60 x log2(100) days after the first snapshot, and 10 GFLOPS per resident at
    60 x log2(population x 1e10 / 1e15) days, each within a second. With two snapshots only, no date: the reason
    says at least 3 are needed; targets that are not positive numbers, an unknown method or region are 422."""
    start = datetime(2025, 1, 6, tzinfo=UTC)
    ai_rate = math.log(2) / 60
    general_rate = math.log(1.5) / 365.25
    rows = []
    for week in range(12):
        day = 7.0 * week
        rows.append((day, "ai", TIANHE, 1e15 * math.exp(ai_rate * day)))
        rows.append((day, "general", "440103", 2e15 * math.exp(general_rate * day)))
    write_snapshots(service, start, rows)
    with service.client() as client:
        whole = client.get("/v1/census/projection")
        assert whole.status_code == 200, whole.text
        params = {"region": TIANHE, "target_total_flops": "1e17", "target_per_capita_flops": "1e10"}
        tianhe = client.get("/v1/census/projection", params=params).json()
        early = client.get(
            "/v1/census/projection",
            params={"to": (start + timedelta(days=8)).isoformat(), "target_total_flops": "1e17"},
        ).json()
        refused = {
            name: client.get("/v1/census/projection", params=bad).status_code
            for name, bad in {
                "zero target": {"target_total_flops": "0"},
                "negative": {"target_per_capita_flops": "-5"},
                "nan": {"target_total_flops": "nan"},
                "infinite": {"target_total_flops": "inf"},
                "method": {"method": "cubic"},
                "region": {"region": "449999"},
            }.items()
        }
    by_tier = whole.json()["by_tier"]
    assert by_tier["ai"]["fit"]["doubling_days"] == pytest.approx(60, rel=1e-9)
    assert by_tier["general"]["fit"]["growth_per_year"] == pytest.approx(0.5, rel=1e-9)
    for tier in ("ai", "general"):
        assert by_tier[tier]["fit"]["points"] == 12
        assert by_tier[tier]["fit"]["r_squared"] == pytest.approx(1.0, abs=1e-9)
    assert by_tier["hpc"]["fit"] is None
    assert whole.json()["from"] == start.isoformat()

    total, per_capita = tianhe["targets"]
    assert total["reached_at"] is not None, total
    reached = datetime.fromisoformat(total["reached_at"])
    assert abs(reached - (start + timedelta(days=60 * math.log2(100)))) < timedelta(seconds=1)
    assert per_capita["total_flops_equivalent"] == pytest.approx(1e10 * POPULATION[TIANHE])
    days = 60 * math.log2(POPULATION[TIANHE] * 1e10 / 1e15)
    assert abs(datetime.fromisoformat(per_capita["reached_at"]) - (start + timedelta(days=days))) < timedelta(seconds=1)
    assert tianhe["population"] == POPULATION[TIANHE]

    assert early["total"]["fit"] is None
    assert "at least 3" in early["total"]["reason"]
    assert early["targets"][0]["reached_at"] is None
    assert all(status == 422 for status in refused.values()), refused
