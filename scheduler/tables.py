"""Reading the scheduler's TOML tables with pydantic: key types that say what they expect, and one readable error.

`scheduler.config` and `scheduler.policy` describe their tables as pydantic models (``extra="forbid"``, so a
misspelt key is refused rather than ignored). `refusal` turns pydantic's `ValidationError` into the `ValueError`
their callers catch, naming each offending key by its dotted path (``ray.address: ...``, ``quotas.lab.ai: unknown
keys cores``), so an operator sees which line of the file to fix.

Pure: no I/O (the callers read the file), no Ray.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ValidationError

from census_agent.models import Tier
from scheduler.models import WorkloadClass


def _member(kind: str, allowed: tuple[str, ...]) -> BeforeValidator:
    def check(value: object) -> object:
        if isinstance(value, str) and value not in allowed:
            raise ValueError(f"not a {kind} ({', '.join(allowed)})")
        return value

    return BeforeValidator(check)


# A tier or workload class named in a file (a table's key or a list item): refused with the names it could be.
TierName = Annotated[Tier, _member("tier", tuple(t.value for t in Tier))]
ClassName = Annotated[WorkloadClass, _member("workload class", tuple(c.value for c in WorkloadClass))]


def refusal(error: ValidationError, model: type[BaseModel], *, unknown: str = "unknown keys") -> ValueError:
    """One `ValueError` naming every problem of `error` by its key path. Unknown keys are grouped per table; those
    of the top table read ``<unknown>: a, b (expected <model's keys>)``."""
    lines: list[str] = []
    unknown_keys: dict[tuple[str, ...], list[str]] = {}  # table -> its unknown keys
    unknown_line: dict[tuple[str, ...], int] = {}  # table -> where its line goes (where pydantic first saw one)
    for item in error.errors():
        path = tuple(str(part) for part in item["loc"] if part != "[key]")  # a dict key's error names the key
        if item["type"] == "extra_forbidden":
            table = path[:-1]
            if table not in unknown_keys:
                unknown_keys[table], unknown_line[table] = [], len(lines)
                lines.append("")
            unknown_keys[table].append(path[-1])
            continue
        if item["type"] in ("model_type", "dict_type"):
            message = "a table"  # TOML's word, rather than pydantic's "a valid dictionary or instance of ..."
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{'.'.join(path)}: {message}" if path else message)
    for table, keys in unknown_keys.items():
        names = ", ".join(sorted(keys))
        if table:
            lines[unknown_line[table]] = f"{'.'.join(table)}: unknown keys {names}"
        else:
            lines[unknown_line[table]] = f"{unknown}: {names} (expected {', '.join(model.model_fields)})"
    return ValueError("; ".join(lines))
