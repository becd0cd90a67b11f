"""Types shared by the schemas: timestamps as the API writes them, numbers kept as they are, the figures' maps.

Must not: import anything but pydantic, the standard library and pure models (see `api.schemas`).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from census_agent.models import Precision

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
"""An ISO 8601 time with its UTC offset, as ``datetime.isoformat()`` writes it (``+00:00``, not ``Z``). A string,
not a `datetime`: pydantic would write UTC as ``Z`` and change the answers' bytes."""

Number = int | float
"""A figure summed from values that may all be integers (0 when there is nothing to add): kept an integer when
it is one (a `float` field would turn ``0`` into ``0.0``)."""

PeakFlops = dict[Precision, float]
"""Peak throughput per precision (``int8`` in operations per second)."""


class Public(BaseModel):
    """Base of the answers: unknown keys are an error (a route that adds a key must add it to its model)."""

    model_config = ConfigDict(extra="forbid")


class Totals(Public):
    """Counts and peaks of a set of nodes."""

    nodes: int
    physical_cores: int
    threads: int
    accelerators: int
    memory_bytes: int
    peak_flops: PeakFlops
    unpriced_accelerators: int = Field(
        description="accelerators found but not priceable (counted in accelerators, 0 FLOPS)"
    )
