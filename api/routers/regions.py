"""``/v1/regions``: the administrative regions a node's region code must name."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.deps import CensusReader, State
from api.errors import AUTHENTICATED, problem_responses
from api.schemas.regions import RegionsPublic

router = APIRouter(prefix="/v1/regions", tags=["regions"], responses=problem_responses(*AUTHENTICATED))


@router.get("", summary="List regions", response_model=RegionsPublic)
def list_regions(_: CensusReader, state: State) -> list[dict[str, Any]]:
    """Every region with its parent, level, names and population (from ``seeds/regions.csv``)."""
    return [
        {
            "code": r.code,
            "parent_code": r.parent_code,
            "level": r.level,
            "name_zh": r.name_zh,
            "name_en": r.name_en,
            "population": r.population,
        }
        for r in state.regions.values()
    ]
