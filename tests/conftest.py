"""How the suite is shared out between pytest-xdist workers (`scripts/test` runs two: `-n 2 --dist loadfile`).

Each test file is one unit of work, so a module's server or database starts once. The files that use the session's
shared Ray clusters (`ray_cluster`, and `second_ray_cluster`, a small one with a token of its own) are in
`RAY_PATHS`, and all of them together are the one unit ``ray``: those tests run one after the other on one worker,
so each session cluster starts once and no two of them load it at the same time. A test elsewhere that asks for
either fixture stops the run at collection, naming the file to move or add. A file whose tests start a Ray
cluster of their own (`suanli up`'s, marked ``ray``) may run on the other worker: it comes late in that worker's
order, once the session's cluster has started.

The dashboard files (`DASHBOARD_PATHS`) are one unit ``dashboard`` too: they share the package's Chromium and its
census deployment (package-scoped fixtures in tests/integration/dashboard/conftest.py), which start once only if
the package's files run one after the other on one worker; as separate units they could be split between the
workers, or have another file run between them, and each split starts the service (about 20 s under load) and
the browser again.

The ``ray`` unit is put first, so the longest unit starts at once, then the unit tests, so that the other worker
runs one light process while the Ray cluster starts (a raylet that has not registered within 30 s under load
fails its `ray start`), then the rest. Without xdist the hook only reorders, which changes nothing a test may
rely on.

(xdist's own ``--dist loadgroup`` cannot do this with pytest 9.2: it renames items through ``Item._nodeid``,
which pytest no longer reads, so every test becomes a unit of its own. The grouping is therefore done here, in
the scheduler, by path.)
"""

from __future__ import annotations

from typing import Any

import pytest
from xdist.scheduler import LoadScopeScheduling

RAY_GROUP = "ray"
RAY_PATHS = ("tests/integration/jobs/", "tests/integration/ray/")
DASHBOARD_GROUP = "dashboard"
DASHBOARD_PATHS = ("tests/integration/dashboard/",)


def unit_of(nodeid: str) -> str:
    """The unit of work a test belongs to: ``ray`` for the files in `RAY_PATHS`, ``dashboard`` for those in
    `DASHBOARD_PATHS`, else its file."""
    path = nodeid.split("::", 1)[0]
    if path.startswith(RAY_PATHS):
        return RAY_GROUP
    return DASHBOARD_GROUP if path.startswith(DASHBOARD_PATHS) else path


class RayAwareScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no type information
    """xdist's scope scheduling with `unit_of` as the scope: a file, all the session-cluster files together, or
    all the dashboard files together."""

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> RayAwareScheduling | None:
    """With ``--dist loadfile``, schedule by `unit_of` (files; the session-cluster files, and the dashboard files,
    as one unit each)."""
    if config.getvalue("dist") != "loadfile":
        return None
    return RayAwareScheduling(config, log)


RAY_FIXTURES = ("ray_cluster", "second_ray_cluster")  # the session's Ray clusters (tests/integration/conftest.py)


def _uses_ray(item: pytest.Item) -> bool:
    names = getattr(item, "fixturenames", ())
    return any(name in names for name in RAY_FIXTURES)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order: the Ray unit, then the unit tests, then the rest; refuse a Ray test outside `RAY_PATHS`."""
    ray: list[pytest.Item] = []
    unit: list[pytest.Item] = []
    rest: list[pytest.Item] = []
    for item in items:
        if unit_of(item.nodeid) == RAY_GROUP:
            ray.append(item)
            continue
        if _uses_ray(item):
            raise pytest.UsageError(
                f"{item.nodeid} uses a session Ray cluster but its file is not in tests/conftest.py's RAY_PATHS, "
                "so it could run beside the other Ray tests on a second worker, with a session cluster of its own: "
                "move it there or add its path"
            )
        (unit if item.nodeid.startswith("tests/unit/") else rest).append(item)
    items[:] = ray + unit + rest
