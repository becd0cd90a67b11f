"""The projection's fits on synthetic histories with known answers: exact exponential and linear growth recover
their rate and the date a target is crossed; too few points, no growth and a per-capita target without a
population are refused with a reason."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.census.projection import MIN_POINTS, YEAR_SECONDS, projection_document
from census_agent.models import Tier

START = datetime(2026, 1, 1, tzinfo=UTC)
DAY = 86_400.0


def history(values: dict[str, list[float]], step: timedelta = timedelta(days=1)) -> list[dict[str, Any]]:
    """History points (as `history_document` makes them) with the given per-tier headline values."""
    n = len(next(iter(values.values())))
    points = []
    for k in range(n):
        by_tier = {t.value: values.get(t.value, [0.0] * n)[k] for t in Tier}
        points.append(
            {
                "taken_at": (START + k * step).isoformat(),
                "headline_flops": sum(by_tier.values()),
                "by_tier_headline_flops": by_tier,
            }
        )
    return points


def project(points: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """`projection_document` with the defaults a route passes."""
    options: dict[str, Any] = {
        "method": "exponential",
        "region": None,
        "population": None,
        "statuses": ["active"],
        "target_total": None,
        "target_per_capita": None,
    }
    return projection_document(points, **(options | kwargs))


def test_exact_exponential_growth_gives_back_its_rate_doubling_time_and_crossing_date() -> None:
    """AI compute doubling every 90 days from 1 PFLOPS, sampled daily for 30 days: the fit's doubling time is 90
    days, its yearly growth 2^(365.25/90) - 1, r² 1, and 1 EFLOPS (2^k PFLOPS with k = log2(1000)) is reached
    at day 90 x log2(1000) within a second."""
    rate = math.log(2) / (90 * DAY)
    ai = [1e15 * math.exp(rate * k * DAY) for k in range(30)]
    doc = project(history({"ai": ai}), target_total=1e18)
    fit = doc["by_tier"]["ai"]["fit"]
    assert fit["points"] == 30
    assert fit["doubling_days"] == pytest.approx(90, rel=1e-9)
    assert fit["growth_per_year"] == pytest.approx(2 ** (YEAR_SECONDS / (90 * DAY)) - 1, rel=1e-9)
    assert fit["r_squared"] == pytest.approx(1.0, abs=1e-12)
    assert doc["total"]["fit"]["doubling_days"] == pytest.approx(90, rel=1e-9)
    assert doc["by_tier"]["general"]["fit"] is None
    assert "at least 3" in doc["by_tier"]["general"]["reason"]
    (target,) = doc["targets"]
    expected = START + timedelta(days=90 * math.log2(1000))
    assert target["already_reached"] is False
    assert abs(datetime.fromisoformat(target["reached_at"]) - expected) < timedelta(seconds=1)


def test_a_per_capita_target_is_the_total_times_the_population_and_needs_one() -> None:
    """With a population of 1e6, 1 GFLOPS per person is 1 PFLOPS in all: reached when the total reaches it; with
    no population the per-capita target has no date and says it needs a region."""
    rate = math.log(10) / (365.25 * DAY)  # ten times a year
    general = [1e13 * math.exp(rate * k * 7 * DAY) for k in range(10)]
    points = history({"general": general}, step=timedelta(days=7))
    doc = project(points, population=1_000_000, target_per_capita=1e9)
    (target,) = doc["targets"]
    assert target["total_flops_equivalent"] == 1e15
    expected = START + timedelta(days=365.25 * math.log10(1e15 / 1e13))
    assert abs(datetime.fromisoformat(target["reached_at"]) - expected) < timedelta(seconds=1)
    assert doc["total"]["fit"]["growth_per_year"] == pytest.approx(9.0, rel=1e-9)
    unknown = project(points, target_per_capita=1e9)["targets"][0]
    assert (unknown["reached_at"], unknown["total_flops_equivalent"]) == (None, None)
    assert "population" in unknown["reason"]


def test_linear_growth_gives_back_its_slope_and_crossing_date() -> None:
    """HPC adding 2 PFLOPS a day from 10 PFLOPS: the linear fit adds 2 PFLOPS x 365.25 a year, r² 1, and reaches
    100 PFLOPS on day 45."""
    hpc = [10e15 + 2e15 * k for k in range(20)]
    doc = project(history({"hpc": hpc}), method="linear", target_total=100e15)
    fit = doc["by_tier"]["hpc"]["fit"]
    assert fit["flops_per_year"] == pytest.approx(2e15 * 365.25, rel=1e-9)
    assert fit["doubling_days"] is None
    assert fit["r_squared"] == pytest.approx(1.0, abs=1e-12)
    assert fit["growth_per_year"] == pytest.approx(2e15 * 365.25 / hpc[-1], rel=1e-9)
    reached = datetime.fromisoformat(doc["targets"][0]["reached_at"])
    assert abs(reached - (START + timedelta(days=45))) < timedelta(seconds=1)


def test_too_few_points_no_growth_and_a_target_already_reached_are_said_not_dated() -> None:
    """Two snapshots: no fit (a fit needs MIN_POINTS = 3), the target's reason says so; a flat history: growth 0
    and 'no growth'; a target at or below the last snapshot: already reached; an empty history: no fit."""
    assert MIN_POINTS == 3
    two = project(history({"ai": [1e15, 2e15]}), target_total=1e18)
    assert two["total"]["fit"] is None
    assert two["total"]["reason"] == "too few snapshots with compute to fit: 2; a fit needs at least 3"
    assert two["targets"][0]["reached_at"] is None
    assert two["targets"][0]["reason"] == two["total"]["reason"]

    flat = project(history({"ai": [5e15] * 5}), target_total=1e18)
    assert flat["total"]["fit"]["growth_per_year"] == pytest.approx(0.0, abs=1e-12)
    assert flat["total"]["fit"]["r_squared"] is None
    assert flat["targets"][0]["reached_at"] is None
    assert flat["targets"][0]["reason"].startswith("no growth")

    falling = project(history({"ai": [5e15, 4e15, 3e15, 2e15]}), target_total=1e18)
    assert falling["total"]["fit"]["growth_per_year"] < 0
    assert falling["targets"][0]["reason"].startswith("no growth")

    reached = project(history({"ai": [1e15, 2e15, 4e15]}), target_total=3e15)["targets"][0]
    assert (reached["already_reached"], reached["reached_at"]) == (True, None)

    empty = project([], target_total=1e18)
    assert (empty["from"], empty["total"]["last_flops"], empty["total"]["fit"]) == (None, None, None)


def test_snapshots_with_no_compute_are_left_out_of_an_exponential_fit() -> None:
    """ln 0 has no value: a tier that was empty in its first snapshots is fitted on the rest only (points
    counts them), and still recovers its rate."""
    rate = math.log(2) / (30 * DAY)
    edge = [0.0, 0.0, *(1e12 * math.exp(rate * k * DAY) for k in range(2, 12))]
    fit = project(history({"edge": edge}))["by_tier"]["edge"]["fit"]
    assert fit["points"] == 10
    assert fit["doubling_days"] == pytest.approx(30, rel=1e-9)


def test_growth_too_fast_for_a_float_is_null_not_an_error() -> None:
    """A history of seconds that doubled (a fleet posted at start-up): its yearly factor overflows a float, so
    growth_per_year is null; the doubling time, the per-year slope and a target date are still given."""
    points = history({"ai": [1e15, 2e15, 4e15, 8e15]}, step=timedelta(seconds=1))
    doc = project(points, target_total=1.6e16)
    fit = doc["total"]["fit"]
    assert fit["growth_per_year"] is None
    assert fit["doubling_days"] == pytest.approx(1 / DAY, rel=1e-9)
    reached = datetime.fromisoformat(doc["targets"][0]["reached_at"])
    assert abs(reached - (START + timedelta(seconds=4))) < timedelta(seconds=1)
