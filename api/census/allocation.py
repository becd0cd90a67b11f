"""The allocated layer and the scheduler's demand, read from the jobs table; and the snapshots a window needs.

Allocated: the CPUs, GPUs and memory that Suanli's dispatched jobs (states dispatching and running: the scheduler
reserves a job's resources when it dispatches it) hold, per tier and per region, each of a job's nodes attributed
to the region of the census node of that id, or to ``unattributed`` when no census node has it.  Demand: waits and
expansion factors of the jobs dispatched or ended in a window, and the queue now.  Reads the ``jobs`` table directly
(not `api.jobs`, which this domain must not import) and parses specs leniently (a stored spec's resources, with the
scheduler's defaults).

Must not: change any job, or decide anything about one.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select, case, func, select

from api.census.arithmetic import UNASSIGNED, CensusResult, Region, RollupRow, Totals, aggregate
from api.census.rollups import CellKey
from api.census.utilisation import (
    HOUR,
    UNATTRIBUTED,
    WINDOW_METHOD,
    Held,
    HeldPoint,
    HeldResult,
    Inputs,
    Window,
    aggregate_held,
    tier_means_of,
    weights,
)
from api.db import aware
from api.db.tables import MEASURE_COLUMNS, PRECISION_COLUMNS, allocation_snapshots, jobs, nodes, snapshots
from census_agent.models import Precision, Tier
from scheduler.models import JobState

HOLDING = (JobState.DISPATCHING.value, JobState.RUNNING.value)
LOOKUP_CHUNK = 500  # node ids per IN (...) query
VALUE_COLUMNS = ("nodes", *MEASURE_COLUMNS)
# What a tier's means per accelerator and per logical CPU are computed from (`api.census.utilisation.tier_means`).
MEANS_COLUMNS = ("threads", "accelerators", *PRECISION_COLUMNS, *(f"accelerator_{c}" for c in PRECISION_COLUMNS))


def _resources(spec: str) -> tuple[float, float, float, int]:
    """(cpus, gpus, memory bytes) per node and the number of nodes of a stored spec (the scheduler's defaults)."""
    try:
        resources = json.loads(spec).get("resources") or {}
        return (
            float(resources.get("cpus", 1.0)),
            float(resources.get("gpus", 0)),
            float(resources.get("memory_bytes", 0)),
            max(1, int(resources.get("nodes", 1))),
        )
    except (ValueError, TypeError, AttributeError):
        return 1.0, 0.0, 0.0, 1


def _regions_of(conn: Connection, node_ids: set[str]) -> dict[str, str]:
    """The census region code ("" for none) of each of `node_ids` the census knows."""
    found: dict[str, str] = {}
    ordered = sorted(node_ids)
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        chunk = ordered[start : start + LOOKUP_CHUNK]
        rows = conn.execute(select(nodes.c.node_id, nodes.c.region_code).where(nodes.c.node_id.in_(chunk)))
        found |= {node_id: region or UNASSIGNED for node_id, region in rows}
    return found


def held_rows(conn: Connection) -> list[tuple[str, str, Held]]:
    """(tier, region code or ``unattributed``, holding) for each node of each dispatched job."""
    rows = conn.execute(select(jobs.c.tier, jobs.c.spec, jobs.c.node_ids).where(jobs.c.state.in_(HOLDING))).all()
    parsed = []
    wanted: set[str] = set()
    for tier, spec, node_ids in rows:
        try:
            ids = [str(n) for n in json.loads(node_ids or "[]")]
        except ValueError:
            ids = []
        parsed.append((tier, _resources(spec), ids))
        wanted.update(ids)
    regions = _regions_of(conn, wanted) if wanted else {}
    out: list[tuple[str, str, Held]] = []
    for tier, (cpus, gpus, memory, count), ids in parsed:
        if tier is None:
            continue
        for i in range(count):
            node = ids[i] if i < len(ids) else None
            region = regions.get(node, UNATTRIBUTED) if node is not None else UNATTRIBUTED
            out.append(
                (tier, region, Held(1.0 if i == 0 else 0.0, cpus, gpus, memory))
            )  # a job counts at its first node
    return out


def allocated_now(conn: Connection, regions: Mapping[str, Region]) -> HeldResult:
    """What dispatched jobs hold now, per tier, region and unattributed."""
    return aggregate_held(held_rows(conn), regions)


def snapshot_allocation(conn: Connection, now: datetime) -> int:
    """Store what dispatched jobs hold, per (tier, region), at snapshot time `now` (in the snapshot's transaction);
    returns the number of rows."""
    cells: dict[tuple[str, str], Held] = {}
    for tier, region, held in held_rows(conn):
        cells.setdefault((tier, region), Held()).add(held)
    if cells:
        conn.execute(
            allocation_snapshots.insert(),
            [
                {
                    "taken_at": now,
                    "tier": tier,
                    "region_code": region,
                    "jobs": round(h.jobs),
                    "cpus": h.cpus,
                    "gpus": h.gpus,
                    "memory_bytes": h.memory_bytes,
                }
                for (tier, region), h in cells.items()
            ],
        )
    return len(cells)


def allocation_series(
    conn: Connection, since: datetime | None, until: datetime | None
) -> dict[datetime, list[tuple[str, str, Held]]]:
    """The allocation snapshots between `since` and `until`, by time (times as stored, UTC)."""
    query = select(allocation_snapshots)
    if since is not None:
        query = query.where(allocation_snapshots.c.taken_at >= since)
    if until is not None:
        query = query.where(allocation_snapshots.c.taken_at <= until)
    series: dict[datetime, list[tuple[str, str, Held]]] = {}
    for r in conn.execute(query).mappings():
        held = Held(float(r["jobs"]), r["cpus"], r["gpus"], r["memory_bytes"])
        series.setdefault(aware(r["taken_at"]), []).append((r["tier"], r["region_code"], held))
    return series


@dataclass
class _Reduced:
    """A window's snapshots reduced once (snapshots are never changed, so this holds until a snapshot is added or
    leaves the window): every cell's figures summed over all but the last snapshot, each x the hours it stands for
    (fixed by the next snapshot's time), the last snapshot's own figures (its hours run until now), and the per-tier
    means at snapshots where jobs held something."""

    prefix: dict[CellKey, list[float]]
    last: dict[CellKey, list[float]]
    means: dict[datetime, dict[str, tuple[float, float]]] = field(default_factory=dict)


_REDUCED: OrderedDict[tuple[Any, ...], _Reduced] = OrderedDict()
_REDUCED_LOCK = threading.Lock()
REDUCED_CACHE_SIZE = 64


def _cells(conn: Connection, query: Select[Any]) -> dict[CellKey, list[float]]:
    return {(r[0], r[1], r[2]): [float(v or 0) for v in r[3:]] for r in conn.execute(query)}


def _reduce(conn: Connection, stored: list[datetime], seconds: list[float], counted: ColumnElement[bool]) -> _Reduced:
    cell = (snapshots.c.tier, snapshots.c.region_code, snapshots.c.status)
    prefix: dict[CellKey, list[float]] = {}
    hours = {t: span / HOUR for t, span in zip(stored[:-1], seconds[:-1], strict=True) if span > 0}
    if hours:
        weight = case(hours, value=snapshots.c.taken_at, else_=0.0)
        prefix = _cells(
            conn,
            select(*cell, *[func.sum(snapshots.c[c] * weight) for c in VALUE_COLUMNS])
            .where(snapshots.c.taken_at.in_(list(hours)), counted)
            .group_by(*cell),
        )
    last = _cells(
        conn, select(*cell, *[snapshots.c[c] for c in VALUE_COLUMNS]).where(snapshots.c.taken_at == stored[-1], counted)
    )
    return _Reduced(prefix, last)


def _means(
    conn: Connection, stored: list[datetime], counted: ColumnElement[bool], convention: Mapping[Tier, Precision]
) -> dict[datetime, dict[str, tuple[float, float]]]:
    query = (
        select(snapshots.c.taken_at, snapshots.c.tier, *[func.sum(snapshots.c[c]) for c in MEANS_COLUMNS])
        .where(snapshots.c.taken_at.in_(stored), counted)
        .group_by(snapshots.c.taken_at, snapshots.c.tier)
    )
    tiers_at: dict[datetime, dict[str, Totals]] = {aware(t): {} for t in stored}
    for r in conn.execute(query):
        totals = Totals()
        totals.add({c: float(v or 0) for c, v in zip(MEANS_COLUMNS, r[2:], strict=True)})
        tiers_at[aware(r[0])][r[1]] = totals
    return {at: tier_means_of(tiers, convention) for at, tiers in tiers_at.items()}


def window_of(
    conn: Connection,
    *,
    regions: Mapping[str, Region],
    statuses: list[str],
    since: datetime,
    now: datetime,
    max_gap: float,
    convention: Mapping[Tier, Precision],
) -> tuple[Window, int, float]:
    """The snapshots from `since` to `now` reduced to a `Window`; with their number and the seconds they cover.

    The database sums each cell's figures over the window's snapshots, each weighted by the hours it stands for (one
    row per cell, not one per cell and snapshot); that reduction is kept (`_Reduced`, per database, statuses and set
    of snapshot times) so a request between two snapshots costs one small query and a sum per cell."""
    in_window = (snapshots.c.taken_at >= since) & (snapshots.c.taken_at <= now)
    stored = sorted(conn.execute(select(snapshots.c.taken_at).where(in_window).distinct()).scalars().all(), key=aware)
    times = [aware(t) for t in stored]
    seconds = weights(times, now, max_gap)
    if not stored:
        return Window(aggregate([], regions, set(statuses)), []), 0, 0.0
    counted = snapshots.c.status.in_(statuses)
    key = (conn.engine.url.render_as_string(), tuple(statuses), tuple(times), max_gap, tuple(convention.items()))
    with _REDUCED_LOCK:
        reduced = _REDUCED.get(key)
        if reduced is not None:
            _REDUCED.move_to_end(key)
    if reduced is None:
        reduced = _reduce(conn, stored, seconds, counted)
        with _REDUCED_LOCK:
            _REDUCED[key] = reduced
            while len(_REDUCED) > REDUCED_CACHE_SIZE:
                _REDUCED.popitem(last=False)
    last_hours = seconds[-1] / HOUR
    weighted: dict[CellKey, list[float]] = {k: list(v) for k, v in reduced.prefix.items()}
    for cell, values in reduced.last.items():
        sums = weighted.setdefault(cell, [0.0] * len(VALUE_COLUMNS))
        for i, value in enumerate(values):
            sums[i] += value * last_hours
    rows = [RollupRow(*cell, dict(zip(VALUE_COLUMNS, v, strict=True))) for cell, v in weighted.items()]

    held = allocation_series(conn, since, now)
    hours = {at: span / HOUR for at, span in zip(times, seconds, strict=True) if span > 0 and held.get(at)}
    missing = [t for t in stored if aware(t) in hours and aware(t) not in reduced.means]
    if missing:
        reduced.means.update(_means(conn, missing, counted, convention))
    held_points = [
        HeldPoint(h, aggregate_held(held[at], regions), reduced.means.get(at, {})) for at, h in hours.items()
    ]
    return Window(aggregate(rows, regions, set(statuses)), held_points), len(times), sum(seconds)


# --- demand --------------------------------------------------------------------------------------------------


def _mean(values: Iterable[float]) -> float | None:
    items = list(values)
    return sum(items) / len(items) if items else None


def demand(conn: Connection, since: datetime, now: datetime) -> dict[str, dict[str, Any]]:
    """Per tier: jobs dispatched in the window and their mean wait (dispatched_at - submitted_at; a retried job's
    wait runs from its submission to its latest dispatch), jobs that ended in the window after running and their
    mean run and expansion factor ((wait + run) / run, averaged over jobs), and the queue now."""
    waits: dict[str, list[float]] = {}
    runs: dict[str, list[float]] = {}
    factors: dict[str, list[float]] = {}
    columns = (jobs.c.job_id, jobs.c.tier, jobs.c.submitted_at, jobs.c.dispatched_at, jobs.c.finished_at)
    recent = {  # two indexed range reads (ix_jobs_dispatched_at, ix_jobs_finished_at), one row per job
        row[0]: row[1:]
        for where in (jobs.c.dispatched_at >= since, jobs.c.finished_at >= since)
        for row in conn.execute(select(*columns).where(where, jobs.c.dispatched_at.is_not(None)))
    }
    for tier, submitted_at, dispatched_at, finished_at in recent.values():
        if tier is None:
            continue
        submitted, dispatched = aware(submitted_at), aware(dispatched_at)
        wait = max(0.0, (dispatched - submitted).total_seconds())
        if dispatched >= since:
            waits.setdefault(tier, []).append(wait)
        if finished_at is not None and aware(finished_at) >= since:
            run = (aware(finished_at) - dispatched).total_seconds()
            if run > 0:
                runs.setdefault(tier, []).append(run)
                factors.setdefault(tier, []).append((wait + run) / run)
    queued: dict[str, list[float]] = {}
    for tier, submitted_at in conn.execute(
        select(jobs.c.tier, jobs.c.submitted_at).where(jobs.c.state == JobState.QUEUED.value)
    ):
        if tier is not None:
            queued.setdefault(tier, []).append(max(0.0, (now - aware(submitted_at)).total_seconds()))
    result = {}
    for tier in {*waits, *runs, *queued}:
        result[tier] = {
            "jobs_dispatched": len(waits.get(tier, [])),
            "mean_wait_seconds": _mean(waits.get(tier, [])),
            "jobs_finished": len(runs.get(tier, [])),
            "mean_run_seconds": _mean(runs.get(tier, [])),
            "expansion_factor": _mean(factors.get(tier, [])),
            "queued_now": len(queued.get(tier, [])),
            "mean_queued_wait_seconds": _mean(queued.get(tier, [])),
        }
    return result


def window_bounds(now: datetime, seconds: int) -> tuple[datetime, datetime]:
    """The window ending `now`."""
    return now - timedelta(seconds=seconds), now


def utilisation_inputs(
    conn: Connection,
    *,
    census: CensusResult,
    regions: Mapping[str, Region],
    statuses: list[str],
    now: datetime,
    window_seconds: int,
    max_gap: float,
    convention: Mapping[Tier, Precision],
) -> Inputs:
    """Everything `api.census.utilisation.add_utilisation` needs for a census of `statuses` over the window of
    `window_seconds` ending `now`; `max_gap`: the longest a snapshot stands for (see `weights`)."""
    since, until = window_bounds(now, window_seconds)
    window, count, covered = window_of(
        conn, regions=regions, statuses=statuses, since=since, now=now, max_gap=max_gap, convention=convention
    )
    description = {
        "seconds": window_seconds,
        "from": since.isoformat(),
        "to": until.isoformat(),
        "snapshots": count,
        "covered_seconds": covered,
        "method": WINDOW_METHOD,
    }
    return Inputs(census, allocated_now(conn, regions), window, demand(conn, since, now), description)
