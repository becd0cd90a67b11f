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
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from api.census.arithmetic import UNASSIGNED, CensusResult, Region, RollupRow, aggregate
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
from api.db.tables import MEASURE_COLUMNS, allocation_snapshots, jobs, nodes, snapshots
from census_agent.models import Precision, Tier
from scheduler.models import JobState

HOLDING = (JobState.DISPATCHING.value, JobState.RUNNING.value)
LOOKUP_CHUNK = 500  # node ids per IN (...) query
VALUE_COLUMNS = ("nodes", *MEASURE_COLUMNS)


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
            out.append((tier, region, Held(1.0 / count, cpus, gpus, memory)))
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
    """The snapshots from `since` to `now` reduced to a `Window`; with their number and the seconds they cover."""
    query = (
        select(snapshots)
        .where(snapshots.c.taken_at >= since, snapshots.c.taken_at <= now, snapshots.c.status.in_(statuses))
        .order_by(snapshots.c.taken_at)
    )
    by_time: dict[datetime, list[Mapping[Any, Any]]] = {}
    for r in conn.execute(query).mappings():
        by_time.setdefault(aware(r["taken_at"]), []).append(r)
    times = list(by_time)
    seconds = weights(times, now, max_gap)
    held = allocation_series(conn, since, now)
    weighted: list[RollupRow] = []
    held_points: list[HeldPoint] = []
    for at, span in zip(times, seconds, strict=True):
        hours = span / HOUR
        rows = [
            RollupRow(r["tier"], r["region_code"], r["status"], {c: float(r[c] or 0) for c in VALUE_COLUMNS})
            for r in by_time[at]
        ]
        weighted += [
            RollupRow(r.tier, r.region_code, r.status, {c: v * hours for c, v in r.values.items()}) for r in rows
        ]
        if held.get(at) and hours > 0:
            census = aggregate(rows, regions, set(statuses))
            held_points.append(HeldPoint(hours, aggregate_held(held[at], regions), tier_means_of(census, convention)))
    return Window(aggregate(weighted, regions, set(statuses)), held_points), len(times), sum(seconds)


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
    recent = conn.execute(
        select(jobs.c.tier, jobs.c.submitted_at, jobs.c.dispatched_at, jobs.c.finished_at).where(
            jobs.c.dispatched_at.is_not(None),
            (jobs.c.dispatched_at >= since) | (jobs.c.finished_at >= since),
        )
    ).all()
    for tier, submitted_at, dispatched_at, finished_at in recent:
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
