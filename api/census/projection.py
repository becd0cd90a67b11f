"""When: growth fitted on the census snapshots, and the date a target total or per-capita figure is reached.

Pure: works on the history points `api.census.query.history_document` builds (one per snapshot: its time, the
headline total and each tier's headline). The method:

- ``exponential`` (the default): ordinary least squares of ln(FLOPS) on time, i.e. FLOPS = exp(a + b t), constant
  relative growth (compute has grown by a roughly constant fraction a year, nationally and per site, as machines
  are replaced by faster ones); snapshots with 0 FLOPS cannot be logged and are left out.
- ``linear``: least squares of FLOPS on time, FLOPS = a + b t (a fixed amount added a year: a build-out that adds
  the same racks every quarter).

r² is the fit's coefficient of determination in its own space (of ln FLOPS for the exponential). A fit needs at
least `MIN_POINTS` snapshots (two points always fit exactly, so their r² says nothing); a target is refused with
a reason when there is no fit, when the fit does not grow, or when the date would fall past the year 9999.
Nothing here reads the database or the clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from census_agent.models import Tier

Method = Literal["exponential", "linear"]
MIN_POINTS = 3
YEAR_SECONDS = 365.25 * 86_400
MAX_EXPONENT = 700.0  # exp(700) ~ 1e304: a yearly growth factor beyond it is not a float (shown as null)
LAST_DATE = datetime(9999, 12, 31, tzinfo=UTC).timestamp()
DESCRIPTIONS: dict[str, str] = {
    "exponential": "ordinary least squares of ln(headline FLOPS) on time over the snapshots (constant relative "
    "growth, FLOPS = exp(a + b t)); snapshots with 0 FLOPS are left out; r² of ln(FLOPS)",
    "linear": "ordinary least squares of headline FLOPS on time over the snapshots (a fixed amount a year, "
    "FLOPS = a + b t); r² of FLOPS",
}


@dataclass(frozen=True, slots=True)
class Fitted:
    """A least-squares line through (seconds since `origin`, y): y = a + b x, where y is FLOPS or ln FLOPS."""

    method: Method
    origin: float  # epoch seconds of the first point used
    a: float
    b: float  # per second
    r_squared: float | None
    points: int
    last: float  # epoch seconds of the last point used

    def value(self, at: float) -> float:
        """The fit's FLOPS at epoch second `at`."""
        y = self.a + self.b * (at - self.origin)
        return math.exp(y) if self.method == "exponential" else y

    def crossing(self, target: float) -> float | None:
        """Epoch second at which the fit reaches `target`; None when it never rises (or the target is not
        positive)."""
        if self.b <= 0 or target <= 0:
            return None
        y = math.log(target) if self.method == "exponential" else target
        return self.origin + (y - self.a) / self.b

    def document(self) -> dict[str, Any]:
        """The `Fit` the API shows."""
        last = self.value(self.last)
        if self.method == "exponential":
            exponent = self.b * YEAR_SECONDS
            # A history of seconds that grew (a fleet posted at start-up) gives a yearly factor past any float.
            growth: float | None = math.expm1(exponent) if exponent < MAX_EXPONENT else None
            per_year = self.b * YEAR_SECONDS * last
            doubling = math.log(2) / self.b / 86_400 if self.b > 0 else None
        else:
            per_year = self.b * YEAR_SECONDS
            growth = per_year / last if last > 0 else None
            doubling = None
        return {
            "points": self.points,
            "r_squared": self.r_squared,
            "growth_per_year": growth,
            "flops_per_year": per_year,
            "doubling_days": doubling,
            "fitted_last_flops": last,
        }


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float | None]:
    """Intercept, slope and r² of the ordinary least-squares line through the points (r² None when every y is
    the same); needs two distinct xs."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    b = sxy / sxx
    a = mean_y - b * mean_x
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    return a, b, (1 - ss_res / ss_tot) if ss_tot > 0 else None


def fit(times: Sequence[float], values: Sequence[float], method: Method) -> tuple[Fitted | None, str | None]:
    """The fit of `values` (FLOPS) at `times` (epoch seconds, increasing), or None and the reason."""
    points = [(t, v) for t, v in zip(times, values, strict=True) if v > 0 or method == "linear"]
    if len(points) < MIN_POINTS:
        what = "snapshots with compute" if method == "exponential" else "snapshots"
        return None, f"too few {what} to fit: {len(points)}; a fit needs at least {MIN_POINTS}"
    origin = points[0][0]
    xs = [t - origin for t, _ in points]
    ys = [math.log(v) if method == "exponential" else v for _, v in points]
    a, b, r_squared = least_squares(xs, ys)
    return Fitted(method, origin, a, b, r_squared, len(points), points[-1][0]), None


def series_document(
    times: Sequence[float], values: Sequence[float], method: Method
) -> tuple[dict[str, Any], Fitted | None]:
    """One series' `Series` document, and its fit for the targets."""
    fitted, reason = fit(times, values, method)
    document = {
        "last_flops": values[-1] if values else None,
        "fit": fitted.document() if fitted else None,
        "reason": reason,
    }
    return document, fitted


def when(fitted: Fitted | None, why_not: str | None, last: float | None, target: float) -> dict[str, Any]:
    """Whether and when the total reaches `target` FLOPS: ``already_reached``, ``reached_at`` and ``reason``."""
    if last is not None and last >= target:
        return {"already_reached": True, "reached_at": None, "reason": "the last snapshot already reaches it"}
    if fitted is None:
        return {"already_reached": False, "reached_at": None, "reason": why_not}
    if fitted.b <= 0:
        rate = fitted.document()["growth_per_year"]
        shown = f" ({rate:+.1%} a year)" if rate is not None else ""
        return {"already_reached": False, "reached_at": None, "reason": f"no growth: the fit does not rise{shown}"}
    at = fitted.crossing(target)
    if at is None or at > LAST_DATE:
        return {"already_reached": False, "reached_at": None, "reason": "not before the year 9999 at the fitted rate"}
    return {"already_reached": False, "reached_at": datetime.fromtimestamp(at, UTC).isoformat(), "reason": None}


def projection_document(
    points: Sequence[Mapping[str, Any]],
    *,
    method: Method,
    region: str | None,
    population: int | None,
    statuses: list[str],
    target_total: float | None,
    target_per_capita: float | None,
) -> dict[str, Any]:
    """``GET /v1/census/projection`` from the history's points (oldest first)."""
    times = [datetime.fromisoformat(p["taken_at"]).timestamp() for p in points]
    total_doc, total_fit = series_document(times, [p["headline_flops"] for p in points], method)
    by_tier = {
        t.value: series_document(times, [p["by_tier_headline_flops"][t.value] for p in points], method)[0] for t in Tier
    }
    last = total_doc["last_flops"]
    targets = []
    if target_total is not None:
        targets.append(
            {
                "kind": "total_flops",
                "target": target_total,
                "total_flops_equivalent": target_total,
                **when(total_fit, total_doc["reason"], last, target_total),
            }
        )
    if target_per_capita is not None:
        if not population:
            reached: dict[str, Any] = {
                "already_reached": False,
                "reached_at": None,
                "reason": "a per-capita target needs a region with a known population: pass region=",
            }
            equivalent = None
        else:
            equivalent = target_per_capita * population
            reached = when(total_fit, total_doc["reason"], last, equivalent)
        targets.append(
            {"kind": "per_capita_flops", "target": target_per_capita, "total_flops_equivalent": equivalent, **reached}
        )
    return {
        "region": region,
        "statuses": statuses,
        "population": population,
        "method": method,
        "description": DESCRIPTIONS[method],
        "min_points": MIN_POINTS,
        "from": points[0]["taken_at"] if points else None,
        "to": points[-1]["taken_at"] if points else None,
        "total": total_doc,
        "by_tier": by_tier,
        "targets": targets,
    }
