"""The queue: which waiting jobs start now, on which nodes, and why every other job waits.

One scheduling pass (`plan`) walks the waiting jobs in order — priority first, then fair share between
organisations (the organisation holding the smallest dominant share of the cluster goes next), then
submission time — and routes each through the policy (`scheduler.policy`) against the capacity still free.
Quotas per organisation and tier are respected. When a job cannot start, the first such job of its home
tier gets a reservation: the time by which, at the latest, running jobs free enough nodes for it (every job
ends by its time limit) and the nodes it will take then. A later job may start ahead of it only if it cannot
delay it: it avoids those nodes, or its own time limit ends before that time (EASY backfilling). With
backfill off a blocked tier starts nothing behind its head (strict order).

Pure: no I/O, no clock (the caller passes `now`), no Ray. Deterministic for the same inputs.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from census_agent.models import Tier
from scheduler.models import NodeView, QueuedJob, Resources, RunningJob
from scheduler.policy import Placement, Policy, Pool, describe


@dataclass(frozen=True, slots=True)
class Start:
    """Start this job now on these nodes."""

    job_id: str
    tier: Tier
    node_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Wait:
    """This job waits: where (its home tier), its place in that tier's queue (1 = next), and why."""

    job_id: str
    tier: Tier
    position: int
    reason: str


@dataclass(frozen=True, slots=True)
class Reservation:
    """The next job of a blocked tier: the latest time it can start (inf: not while the tier's nodes are down)
    and the nodes it will take; jobs started behind it avoid those nodes or end before that time."""

    job_id: str
    at: float
    node_ids: frozenset[str]


@dataclass(frozen=True)
class Plan:
    """The outcome of one pass: jobs to start, for every other job why it waits, and each blocked tier's
    reservation."""

    starts: list[Start]
    waits: list[Wait]
    reservations: dict[Tier, Reservation]


@dataclass(frozen=True, slots=True)
class _Reservation:
    job_id: str
    at: float
    nodes: frozenset[int]


def _when(t: float) -> str:
    if math.isinf(t):
        return "when nodes of the tier come back or work outside Suanli frees them"
    return "by " + datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _until(t: float, *, outside: bool) -> str:
    """A reservation's start in a reason: at the latest by Suanli's running jobs' limits, unless work outside
    Suanli, whose end nobody knows, holds nodes too."""
    if math.isinf(t):
        return _when(t)
    if outside:
        return f"{_when(t)} if the work outside Suanli has ended by then"
    return f"{_when(t)} at the latest (running jobs' time limits)"


class _Pass:
    """The mutable state of one scheduling pass."""

    def __init__(self, nodes: Sequence[NodeView], running: Sequence[RunningJob], policy: Policy, now: float) -> None:
        self.policy = policy
        self.now = now
        self.pool = Pool(nodes)
        self.total = (
            sum(n.cpus for n in nodes) or 1.0,
            sum(n.gpus for n in nodes) or 1.0,
            sum(n.memory_bytes for n in nodes) or 1.0,
        )
        self.usage: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        self.tier_usage: dict[tuple[str, Tier], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
        self.releases: dict[Tier, list[tuple[float, tuple[int, ...], Resources]]] = defaultdict(list)
        for job in running:
            known = tuple(self.pool.index[n] for n in job.node_ids if n in self.pool.index)
            self._account(job.organisation, job.tier, job.resources, known, job.ends_by)
        self.reservations: dict[Tier, _Reservation] = {}
        self.blocked: set[Tier] = set()  # tiers whose head waits while backfill is off
        self.positions: dict[Tier, int] = defaultdict(int)
        self._unreserved: dict[Tier, list[int]] = {}
        self._regions: dict[tuple[Tier, str], list[int]] = {}

    def _account(self, org: str, tier: Tier, r: Resources, nodes: tuple[int, ...], ends_by: float) -> None:
        use = self.usage[org]
        use[0] += r.cpus * r.nodes
        use[1] += r.gpus * r.nodes
        use[2] += r.memory_bytes * r.nodes
        quota_use = self.tier_usage[(org, tier)]
        quota_use[0] += r.cpus * r.nodes
        quota_use[1] += r.gpus * r.nodes
        quota_use[2] += 1
        self.releases[tier].append((ends_by, nodes, r))

    def share(self, org: str) -> float:
        """The organisation's dominant share: its largest fraction of the cluster's CPUs, GPUs or memory."""
        use = self.usage.get(org)
        if use is None:
            return 0.0
        return max(use[0] / self.total[0], use[1] / self.total[1], use[2] / self.total[2])

    def quota_refusal(self, org: str, tier: Tier, r: Resources) -> str | None:
        quota = self.policy.quota(org, tier)
        if quota is None:
            return None
        used = self.tier_usage.get((org, tier), [0.0, 0.0, 0.0])
        if quota.cpus is not None and used[0] + r.cpus * r.nodes > quota.cpus:
            return f"{org}'s {tier} quota of {quota.cpus:g} CPUs has {used[0]:g} in use"
        if quota.gpus is not None and used[1] + r.gpus * r.nodes > quota.gpus:
            return f"{org}'s {tier} quota of {quota.gpus:g} GPUs has {used[1]:g} in use"
        if quota.jobs is not None and used[2] + 1 > quota.jobs:
            return f"{org}'s {tier} quota of {quota.jobs} running job(s) is reached"
        return None

    def decide(self, job: QueuedJob, idle: set[Tier]) -> Start | Wait:
        spec = job.spec
        r = spec.resources
        route = self.policy.classes[spec.workload_class]
        home = route.tiers[0]
        quota_notes = []
        tried = []
        for tier in route.tiers:
            if tier != home and tier not in idle:
                continue  # spill only onto idle capacity: another tier's own jobs are waiting there
            refusal = self.quota_refusal(spec.organisation, tier, r)
            if refusal:
                quota_notes.append(refusal)
                continue
            if tier in self.blocked:
                continue
            tried.append(tier)
            chosen = self._place(tier, route.placement, r, spec.region, spec.time_limit_seconds)
            if chosen is not None:
                return self._start(job, tier, chosen, home)
        self.positions[home] += 1
        position = self.positions[home]
        if quota_notes and not tried:
            return Wait(job.job_id, home, position, "waits for quota: " + "; ".join(quota_notes))
        reason = f"waits for {home}: no room now for {describe(r)}"
        outside = [note for tier in tried if (note := self.pool.outside_note(tier, r)) is not None]
        if outside:
            reason += "; " + "; ".join(outside)
        reservation = self.reservations.get(home)
        if reservation is None and home not in self.blocked and not quota_notes:
            if self.policy.backfill:
                reservation = self._reserve(job.job_id, home, r)
                self.reservations[home] = reservation
                until = _until(reservation.at, outside=bool(outside))
                return Wait(job.job_id, home, position, f"{reason}; next in line, nodes reserved to start {until}")
            self.blocked.add(home)
            return Wait(job.job_id, home, position, f"{reason}; next in line (strict order: nothing starts behind it)")
        if reservation is not None:
            reason += f"; behind {reservation.job_id}, reserved to start {_when(reservation.at)}"
        if quota_notes:
            reason += "; " + "; ".join(quota_notes)
        return Wait(job.job_id, home, position, reason)

    def _place(
        self, tier: Tier, placement: Placement, r: Resources, region: str | None, limit: int
    ) -> list[int] | None:
        pool = self.pool
        reservation = self.reservations.get(tier)
        # A job that ends before the reserved start may use any node; one that does not must avoid the reserved.
        avoid = reservation is not None and self.now + limit > reservation.at
        if placement is Placement.BEST_MEMORY_FIT:
            chosen = pool.best_memory_fit(tier, r)
            if chosen is not None and avoid and reservation is not None and reservation.nodes & set(chosen):
                order = self._unreserved_order(tier, reservation)
                return pool.first_fit(tier, r, order)
            return chosen
        if avoid and reservation is not None:
            return pool.first_fit(tier, r, self._unreserved_order(tier, reservation))
        if placement is Placement.REGION_FIRST and region is not None:
            return pool.first_fit(tier, r, self._region_order(tier, region))
        return pool.first_fit(tier, r)

    def _region_order(self, tier: Tier, region: str) -> list[int]:
        key = (tier, region)
        cached = self._regions.get(key)
        if cached is None:
            cached = self._regions[key] = self.pool.region_order(tier, region)
        return cached

    def _unreserved_order(self, tier: Tier, reservation: _Reservation) -> list[int]:
        cached = self._unreserved.get(tier)
        if cached is None:
            cached = self._unreserved[tier] = [i for i in self.pool.by_tier[tier] if i not in reservation.nodes]
        return cached

    def _start(self, job: QueuedJob, tier: Tier, chosen: list[int], home: Tier) -> Start:
        spec = job.spec
        r = spec.resources
        self.pool.take(chosen, r)
        self._account(spec.organisation, tier, r, tuple(chosen), self.now + spec.time_limit_seconds)
        names = tuple(self.pool.nodes[i].node_id for i in chosen)
        where = f"{len(names)} {tier} nodes" if len(names) > 1 else f"{tier} node {names[0]}"
        if tier == home:
            why = f"{spec.workload_class} jobs run on {home}"
        else:
            why = f"spilled from {home} (no room) onto idle {tier} capacity"
        reservation = self.reservations.get(tier)
        if reservation is not None:
            why += f"; backfilled: cannot delay {reservation.job_id}"
        return Start(job.job_id, tier, names, f"starts on {where} ({describe(r)}): {why}")

    def _reserve(self, job_id: str, tier: Tier, r: Resources) -> _Reservation:
        """When, at the latest, `r` fits in `tier` as running jobs end by their limits, and on which nodes."""
        pool = self.pool
        free = {i: [pool.free_cpus[i], pool.free_gpus[i], pool.free_memory[i]] for i in pool.by_tier[tier]}
        for ends_by, nodes, used in sorted(self.releases[tier], key=lambda x: x[0]):
            for i in nodes:
                if i in free:
                    f = free[i]
                    f[0] += used.cpus
                    f[1] += used.gpus
                    f[2] += used.memory_bytes
            room = [i for i, f in free.items() if f[0] >= r.cpus and f[1] >= r.gpus and f[2] >= r.memory_bytes]
            if len(room) >= r.nodes:
                return _Reservation(job_id, max(ends_by, self.now), frozenset(room[: r.nodes]))
        return _Reservation(job_id, math.inf, frozenset(pool.by_tier[tier]))


def plan(
    queued: Sequence[QueuedJob], running: Sequence[RunningJob], nodes: Sequence[NodeView], policy: Policy, now: float
) -> Plan:
    """One scheduling pass: the jobs of `queued` to start now, and why each of the others waits."""
    state = _Pass(nodes, running, policy, now)
    # A tier is idle for spilling when no waiting job calls it home.
    homes = {policy.classes[q.spec.workload_class].tiers[0] for q in queued}
    idle = set(Tier) - homes
    levels: dict[int, dict[str, deque[QueuedJob]]] = defaultdict(lambda: defaultdict(deque))
    for job in sorted(queued, key=lambda q: (q.submitted_at, q.job_id)):
        levels[job.spec.priority][job.spec.organisation].append(job)
    starts: list[Start] = []
    waits: list[Wait] = []
    for priority in sorted(levels, reverse=True):
        orgs = levels[priority]
        heap = [(state.share(org), jobs[0].submitted_at, org) for org, jobs in orgs.items()]
        heapq.heapify(heap)
        while heap:
            _, _, org = heapq.heappop(heap)
            jobs = orgs[org]
            outcome = state.decide(jobs.popleft(), idle)
            if isinstance(outcome, Start):
                starts.append(outcome)
            else:
                waits.append(outcome)
            if jobs:
                heapq.heappush(heap, (state.share(org), jobs[0].submitted_at, org))
    reservations = {
        tier: Reservation(r.job_id, r.at, frozenset(state.pool.nodes[i].node_id for i in r.nodes))
        for tier, r in state.reservations.items()
    }
    return Plan(starts, waits, reservations)


def net_of_running(nodes: Sequence[NodeView], running: Sequence[RunningJob]) -> list[NodeView]:
    """`nodes` (their free figures: what Ray says is available) with what Suanli may still place on each, and what
    Ray says work outside Suanli holds there.

    Per node and resource, with T its total, A what Ray says is available, S everything Suanli's dispatched jobs
    hold there and P the part of S that Ray may not have accounted for yet (jobs not yet seen running by Ray
    before this pass's snapshot: `RunningJob.ray_holds` False)::

        free    = max(0, min(T - S, A - P))
        outside = max(0, T - A - S)

    ``A - P`` counts each of Suanli's jobs once: the ones Ray holds are in A already, the others are taken off
    here, so a job in the window between its dispatch and Ray's reservation is never counted as free. Erring
    is one-sided: a job Ray has in fact reserved but not yet been seen running is counted twice (a node looks
    fuller than it is for a step or two), never zero times. ``T - S`` keeps the old bound (a job Ray has
    released but Suanli has not yet seen end still holds its share). ``outside`` is a lower bound (Suanli's jobs
    not yet in A are not blamed on others), for the reasons only. Nodes whose free figures are their totals (a
    backend that does not report availability) get ``T - S`` and no outside work."""
    held: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    pending: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for job in running:
        r = job.resources
        for node_id in job.node_ids:
            for tally in (held[node_id],) if job.ray_holds else (held[node_id], pending[node_id]):
                tally[0] += r.cpus
                tally[1] += r.gpus
                tally[2] += r.memory_bytes
    views = []
    for n in nodes:
        s = held.get(n.node_id, (0.0, 0.0, 0.0))
        p = pending.get(n.node_id, (0.0, 0.0, 0.0))
        totals = (n.cpus, n.gpus, n.memory_bytes)
        ray_free = (n.free_cpus, n.free_gpus, n.free_memory_bytes)
        free = [max(0.0, min(t - si, a - pi)) for t, a, si, pi in zip(totals, ray_free, s, p, strict=True)]
        outside = [max(0.0, t - a - si) for t, a, si in zip(totals, ray_free, s, strict=True)]
        views.append(
            replace(
                n,
                free_cpus=free[0],
                free_gpus=free[1],
                free_memory_bytes=free[2],
                outside_cpus=outside[0],
                outside_gpus=outside[1],
                outside_memory_bytes=outside[2],
            )
        )
    return views


def overdue(running: Sequence[RunningJob], now: float) -> list[str]:
    """Running jobs past their time limit (to be stopped and marked so)."""
    return [job.job_id for job in running if now >= job.ends_by]
