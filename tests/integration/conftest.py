"""Fixtures shared by the integration test packages: the session's real local Ray cluster (tests/ray_cluster.py),
a second small one with a token of its own, and the session's throwaway PostgreSQL cluster (a fresh database per
test; tests that stop the server have their own).

The Ray clusters are stopped as soon as the last test of the ``ray`` unit (tests/conftest.py) has run, not at the
end of the session: an idle cluster still burns 11-15% of a core, which the files the same worker runs afterwards
would otherwise pay for. A failure of that early stop (a process left behind) is raised at the fixture's own
teardown, so it is reported against the fixture as before.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator

import pytest

from scheduler.local_cluster import LocalRayCluster
from tests.conftest import RAY_GROUP, unit_of
from tests.ray_cluster import start_cluster, start_second_cluster, stop_and_check
from tests.service import PostgresCluster


class _Teardown:
    """A cluster's teardown, run once: early (after the Ray unit) or at the fixture's end, whichever is first."""

    def __init__(self, action: Callable[[], None]) -> None:
        self._action: Callable[[], None] | None = action
        self._error: BaseException | None = None

    def run(self) -> None:
        """Run the teardown if it has not run; keep its error for `finish`."""
        action, self._action = self._action, None
        if action is None:
            return
        try:
            action()
        except Exception as exc:  # kept, and raised at the fixture's teardown
            self._error = exc

    def finish(self) -> None:
        """Run the teardown if it has not run, and raise what it raised, whenever it ran."""
        self.run()
        if self._error is not None:
            raise self._error


_RAY_TEARDOWNS: list[_Teardown] = []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """After the last test of the ``ray`` unit on this worker, stop the session's Ray clusters."""
    result = yield
    if unit_of(item.nodeid) == RAY_GROUP and (nextitem is None or unit_of(nextitem.nodeid) != RAY_GROUP):
        while _RAY_TEARDOWNS:
            _RAY_TEARDOWNS.pop().run()
    return result


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    """One local Ray cluster for the whole session (a 0-CPU head and a raylet per tier slice; see
    tests/ray_cluster.py); stopped at the end and checked to have left no process of its own."""
    cluster = start_cluster(tmp_path_factory.mktemp("ray"))
    teardown = _Teardown(lambda: stop_and_check(cluster))
    _RAY_TEARDOWNS.append(teardown)
    yield cluster
    teardown.finish()


@pytest.fixture(scope="session")
def second_ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayCluster]:
    """A second Ray cluster with a token of its own, as a tier served by a cluster of its own has: a 0-CPU head and
    one 1-CPU edge raylet (`tests.ray_cluster.start_second_cluster`). Started on first use and shared by the tests
    that need another cluster (test_tier_cluster_lost serves its edge tier with it; test_ray_auth checks that the
    session cluster's token is refused there): a cluster start costs 40-50 s on 2 cores. Like `ray_cluster`, it
    may only be asked for by the files in tests/conftest.py's RAY_PATHS."""
    cluster = start_second_cluster(tmp_path_factory.mktemp("second-ray"))
    teardown = _Teardown(cluster.stop)
    _RAY_TEARDOWNS.append(teardown)
    try:
        yield cluster
    finally:
        teardown.finish()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the whole session, shared by the service and fault tests (each
    creates fresh databases in it and none stops its server)."""
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()
