"""``/v1/regions``: the administrative regions a node's region code must name.

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from api.schemas.common import Public


class RegionPublic(Public):
    """A region with its parent, level, names and population."""

    code: str
    parent_code: str | None
    level: str
    name_zh: str
    name_en: str
    population: int | None


RegionsPublic = list[RegionPublic]
"""``GET /v1/regions``: every region (a JSON array)."""
