"""Planners' questions on the census: ``POST /v1/census/plan`` (what if these machines were added) and
``GET /v1/census/projection`` (when the census reaches a target, fitted on the history).

Who may: a plan is priced for planners, operators and admins (the people who decide what to build and where);
a user token (job submitters, who may read the census) may not: pricing up to SUANLI_PLAN_MAX_KINDS inventories
is work the service does on request, and what-if figures are a planning tool, not the census. The projection
reads only the history, so whoever may read the census may read it.

What they touch: the current rollups and the snapshots, read-only. A plan is never stored (no row, no audit
entry); its inventories are JSON data validated by the report contract and priced by the same compute model as
reports; nothing in a request names a file the service would open. Bad input is a 422 that names what is wrong
(an unknown region, a count below 1, too many kinds or machines, an inventory that breaks the contract or is a
string), a body over SUANLI_MAX_BODY_BYTES a 413.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from api.census.arithmetic import aggregate
from api.census.planning import (
    PlannedMachine,
    added_document,
    changed_regions,
    machines_document,
    planned_rows,
    price,
)
from api.census.projection import projection_document
from api.census.query import census_document, history_document, load_rollups
from api.db import aware
from api.deps import CensusReader, Conn, Planner, State
from api.errors import AUTHENTICATED, InvalidRequest, invalid_body, problem_responses
from api.openapi import json_body
from api.routers.census import Include, RegionQuery, check_region, statuses_for
from api.schemas.planning import PlanPublic, PlanRequest, ProjectionPublic
from api.state import ServiceState
from census_agent.report import inventory_from_object

router = APIRouter(prefix="/v1/census", tags=["census"], responses=problem_responses(*AUTHENTICATED, 422))

FlopsTarget = Annotated[float | None, Query(gt=0, le=1e30, description="FLOPS; must be positive")]


def _inventory_error(index: int, exc: ValidationError) -> InvalidRequest:
    errors = [
        {"loc": ["machines", str(index), "inventory", *(str(p) for p in e["loc"])], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors()[:50]
    ]
    first = errors[0]
    return InvalidRequest(f"{'.'.join(first['loc'])}: {first['msg']}", errors=errors)


def _machines(state: ServiceState, spec: PlanRequest) -> list[PlannedMachine]:
    """The plan's machines, every bound and region checked and every inventory validated (422 naming the first
    fault)."""
    settings = state.settings
    if len(spec.machines) > settings.plan_max_kinds:
        raise InvalidRequest(
            f"the plan has {len(spec.machines)} machine kinds; at most {settings.plan_max_kinds} "
            "(SUANLI_PLAN_MAX_KINDS)",
            field="machines",
        )
    total = sum(m.count for m in spec.machines)
    if total > settings.plan_max_machines:
        raise InvalidRequest(
            f"the plan adds {total} machines; at most {settings.plan_max_machines} (SUANLI_PLAN_MAX_MACHINES)",
            field="machines",
        )
    machines = []
    for index, entry in enumerate(spec.machines):
        if entry.region not in state.regions:
            raise InvalidRequest(
                f"machines.{index}.region: unknown region code {entry.region!r}: see GET /v1/regions",
                field=f"machines.{index}.region",
            )
        try:
            inventory = inventory_from_object(entry.inventory)
        except ValidationError as exc:
            raise _inventory_error(index, exc) from None
        except ValueError as exc:
            raise InvalidRequest(f"machines.{index}.inventory: {exc}", field=f"machines.{index}.inventory") from None
        machines.append(PlannedMachine(inventory, entry.count, entry.region, entry.name))
    return machines


@router.post(
    "/plan",
    response_model=PlanPublic,
    summary="What if: the census with planned machines added (nothing stored)",
    responses=problem_responses(413),
    openapi_extra=json_body(PlanRequest.model_json_schema()),
)
async def plan(
    request: Request, _: Planner, state: State, include: Include = "active", region: RegionQuery = None
) -> dict[str, Any]:
    """Price each planned machine kind (the ``census-agent estimate`` document, a count and a region) with the
    service's compute model and answer the census before and after, the regions it changes (headline, per
    capita, AI share) and what each kind adds. Planner, operator and admin tokens."""
    check_region(state, region)
    try:
        spec = PlanRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise invalid_body(exc) from None
    machines = _machines(state, spec)
    statuses = statuses_for(include)

    def answer() -> dict[str, Any]:
        priced = price(machines, state.ingestor.pricer.model)
        with state.engine.connect() as conn:
            current = load_rollups(conn)
        convention = state.settings.headline
        before = aggregate(current, state.regions, set(statuses))
        after = aggregate([*current, *planned_rows(priced)], state.regions, set(statuses))
        now = datetime.now(tz=UTC)

        def document(result: Any) -> dict[str, Any]:  # noqa: ANN401 - a CensusResult
            return census_document(
                result,
                region_table=state.regions,
                convention=convention,
                statuses=statuses,
                as_of=now,
                focus=region,
                ai_share_target=state.settings.ai_share_target,
            )

        return {
            "stored": False,
            "machines": machines_document(priced, convention),
            "added": added_document(priced, convention),
            "changes": changed_regions(before, after, state.regions, convention, region),
            "before": document(before),
            "after": document(after),
        }

    return await run_in_threadpool(answer)


@router.get(
    "/projection", summary="When: growth per tier and the date a target is reached", response_model=ProjectionPublic
)
def projection(
    _: CensusReader,
    *,
    state: State,
    conn: Conn,
    include: Include = "active",
    region: RegionQuery = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    method: Annotated[
        Literal["exponential", "linear"], Query(description="exponential (least squares on ln FLOPS) or linear")
    ] = "exponential",
    target_total_flops: FlopsTarget = None,
    target_per_capita_flops: FlopsTarget = None,
) -> dict[str, Any]:
    """Fit the headline total and each tier's headline on the snapshots in the window (``from``, ``to``), for the
    whole census or one region (with everything below it), and say when the total reaches ``target_total_flops``
    and the region's per-capita figure ``target_per_capita_flops`` (which needs a region with a population). A fit
    needs at least 3 snapshots; without one, or without growth, a target's date is null with the reason."""
    check_region(state, region)
    since = aware(since).astimezone(UTC) if since is not None else None
    until = aware(until).astimezone(UTC) if until is not None else None
    statuses = statuses_for(include)
    history = history_document(
        conn,
        region_table=state.regions,
        convention=state.settings.headline,
        statuses=statuses,
        since=since,
        until=until,
        region=region,
    )
    return projection_document(
        history["points"],
        method=method,
        region=region,
        population=state.regions[region].population if region else None,
        statuses=statuses,
        target_total=target_total_flops,
        target_per_capita=target_per_capita_flops,
    )
