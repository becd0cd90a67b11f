"""How the suite is shared out between pytest-xdist workers (`scripts/test` runs two: `-n 2 --dist loadgroup`).

Each test module is one unit of work, so a module-scoped server starts once. Every test that touches a real Ray
cluster (the session's shared one, or one of its own) is in the single group ``ray``: those tests run one after
the other on one worker, never two Ray clusters starting side by side on two cores, and the session's cluster
starts once. The ``ray`` group is put first, so the longest unit starts at once, then the unit tests, so that
the other worker runs one light process while the Ray cluster starts (a raylet that has not registered within
30 s under load fails its `ray start`), then the rest. Without xdist the hook only reorders, which changes
nothing a test may rely on.
"""

from __future__ import annotations

import pytest

RAY_GROUP = "ray"


def _uses_ray(item: pytest.Item) -> bool:
    return item.get_closest_marker("ray") is not None or "ray_cluster" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ray: list[pytest.Item] = []
    unit: list[pytest.Item] = []
    rest: list[pytest.Item] = []
    for item in items:
        if _uses_ray(item):
            item.add_marker(pytest.mark.xdist_group(RAY_GROUP))
            ray.append(item)
        else:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
            (unit if item.nodeid.startswith("tests/unit/") else rest).append(item)
    items[:] = ray + unit + rest
