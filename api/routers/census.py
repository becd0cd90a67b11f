"""``/v1/census``: totals, composition and per-capita compute, now and over time, as JSON or CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from api.census.allocation import utilisation_inputs
from api.census.arithmetic import per_capita
from api.census.liveness import ACTIVE, STATUSES
from api.census.query import census_document, current_census, history_document
from api.census.utilisation import Inputs, add_utilisation, region_tier_sections
from api.db import aware
from api.deps import CensusReader, Conn, State
from api.errors import AUTHENTICATED, InvalidRequest, problem_responses
from api.schemas.census import CensusPublic, HistoryPublic
from census_agent.models import Precision, Tier

router = APIRouter(prefix="/v1/census", tags=["census"], responses=problem_responses(*AUTHENTICATED, 422))

Include = Annotated[
    Literal["active", "all"], Query(description="count active nodes only (default) or every known node")
]
RegionQuery = Annotated[str | None, Query(description="limit regions to this one and those below it")]
MIN_WINDOW_S, DEFAULT_WINDOW_S, MAX_WINDOW_S = 60, 86_400, 366 * 86_400
Window = Annotated[
    int,
    Query(
        ge=MIN_WINDOW_S,
        le=MAX_WINDOW_S,
        description="seconds, ending now, over which hours, utilisation, demand and energy are computed "
        "(60 s to 366 days; default 24 h)",
    ),
]


def statuses_for(include: str) -> list[str]:
    return [ACTIVE] if include == "active" else list(STATUSES)


def check_region(state: State, region: str | None) -> None:
    if region is not None and region not in state.regions:
        raise InvalidRequest(f"unknown region code {region!r}: see GET /v1/regions")


@router.get("", summary="Census totals by tier and region", response_model=CensusPublic)
def census(
    _: CensusReader,
    state: State,
    conn: Conn,
    include: Include = "active",
    region: RegionQuery = None,
    window: Window = DEFAULT_WINDOW_S,
) -> dict[str, Any]:
    """Headline total (stated convention), every precision, composition by tier, regions with per capita; per
    tier and region the three layers (capacity, allocated, consumed), utilisation over the window, the
    scheduler's demand and energy."""
    check_region(state, region)
    return _census_with_utilisation(state, conn, statuses_for(include), region, window)


def _census_with_utilisation(
    state: State, conn: Conn, statuses: list[str], region: str | None, window: int
) -> dict[str, Any]:
    return _census_and_inputs(state, conn, statuses, region, window)[0]


def _census_and_inputs(
    state: State, conn: Conn, statuses: list[str], region: str | None, window: int
) -> tuple[dict[str, Any], Inputs]:
    """The census document with its utilisation sections, and what they were computed from."""
    now = datetime.now(tz=UTC)
    result = current_census(conn, statuses, state.regions)
    document = census_document(
        result,
        region_table=state.regions,
        convention=state.settings.headline,
        statuses=statuses,
        as_of=now,
        focus=region,
        ai_share_target=state.settings.ai_share_target,
    )
    settings = state.settings
    inputs = utilisation_inputs(
        conn,
        census=result,
        regions=state.regions,
        statuses=statuses,
        now=now,
        window_seconds=window,
        max_gap=settings.snapshot_interval_seconds + settings.sweep_interval_seconds,
        convention=settings.headline,
    )
    return add_utilisation(document, inputs, regions=state.regions, convention=settings.headline), inputs


@router.get("/history", summary="Census figures over time", response_model=HistoryPublic)
def history(
    _: CensusReader,
    *,
    state: State,
    conn: Conn,
    include: Include = "active",
    region: RegionQuery = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
) -> dict[str, Any]:
    """One point per snapshot (taken every ``snapshot_interval_seconds``) and the growth from first to last."""
    check_region(state, region)
    since = aware(since).astimezone(UTC) if since is not None else None  # snapshots are stored in UTC
    until = aware(until).astimezone(UTC) if until is not None else None
    return history_document(
        conn,
        region_table=state.regions,
        convention=state.settings.headline,
        statuses=statuses_for(include),
        since=since,
        until=until,
        region=region,
    )


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
    "headline_convention",  # what the headline is: each tier in its own precision, added up (every row)
]
# Utilisation and energy (issue 15), after the census columns: the layers now, utilisation over ?window=, power.
UTILISATION_CSV_COLUMNS = [
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


def _utilisation_cells(totals: dict[str, Any], utilisation: dict[str, Any], energy: dict[str, Any]) -> list[Any]:
    ratios = utilisation["utilisation"]
    return [
        totals["unpriced_accelerators"],
        utilisation["allocated"]["headline_flops"],
        utilisation["consumed"]["headline_flops"],
        _blank_if_none(ratios["cpu"]),
        _blank_if_none(ratios["accelerators"]),
        _blank_if_none(ratios["compute"]),
        energy["power"]["watts"],
        energy["power"]["provenance"],
        energy["energy_kwh"],
        _blank_if_none(energy["peak_gflops_per_watt"]),
    ]


def _blank_if_none(value: float | None) -> float | str:
    return "" if value is None else value


@router.get(
    "/export.csv",
    summary="Census by region and tier as CSV",
    response_class=Response,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
def export_csv(
    _: CensusReader,
    state: State,
    conn: Conn,
    include: Include = "active",
    region: RegionQuery = None,
    window: Window = DEFAULT_WINDOW_S,
) -> Response:
    """One row per region and tier (and an ``all`` row per region) for planners' spreadsheets, with the layers,
    utilisation over the window and power of each."""
    check_region(state, region)
    statuses = statuses_for(include)
    document, inputs = _census_and_inputs(state, conn, statuses, region, window)
    convention = f"sum of tiers each in its own precision: {document['headline']['convention_text']}"
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*CSV_COLUMNS, *UTILISATION_CSV_COLUMNS])
    for r in document["by_region"]:
        for tier in [*(t.value for t in Tier), "all"]:
            totals = r if tier == "all" else r["by_tier"][tier]
            precision = state.settings.headline[Tier(tier)].value if tier != "all" else "convention"
            headline = r["headline_flops"] if tier == "all" else totals["peak_flops"][precision]
            if tier == "all":
                utilisation, energy = r["utilisation"], r["energy"]
            else:
                utilisation, energy = region_tier_sections(inputs, r["code"], Tier(tier), state.settings.headline)
            writer.writerow(
                [
                    r["code"],
                    r["name_en"],
                    r["name_zh"],
                    r["level"],
                    tier,
                    totals["nodes"],
                    totals["physical_cores"],
                    totals["accelerators"],
                    totals["memory_bytes"],
                    *[totals["peak_flops"][p.value] for p in Precision],
                    precision,
                    headline,
                    r["population"] or "",
                    _blank_if_none(per_capita(headline, r["population"])),
                    convention,
                    *_utilisation_cells(totals, utilisation, energy),
                ]
            )
    return Response(
        out.getvalue().encode("utf-8-sig"),  # BOM: spreadsheets then read the Chinese names right
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="suanli-census.csv"'},
    )
