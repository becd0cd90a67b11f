"""Property: random valid job specs, submitted together through the real dispatcher to the real Ray cluster, each
reach the final state their spec implies, and one job's failure (a bad working directory, a non-zero exit, a time
limit) never holds up another.

The service's application runs in process (`tests.inprocess.AppService`) on a SQLite file, dispatching to the
session's shared cluster (tests/ray_cluster.py). Each example is a batch of jobs sent at once, so the dispatcher
has several in flight; the outcome of each is fixed by its spec: exit 0 succeeds, exit N fails with code N after
its retries, a missing node-side working directory fails with code 1 without running the command, a sleep past
its time limit fails saying so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from scheduler.local_cluster import LocalRayCluster
from tests.inprocess import AppService
from tests.integration.jobs.test_jobs import job_doc, scheduler_settings, submit, wait_state

pytestmark = pytest.mark.integration

FINAL = {"succeeded", "failed", "cancelled"}


@dataclass(frozen=True)
class Case:
    """One job of a batch and what its spec says must become of it."""

    doc: dict[str, Any]
    state: str
    exit_code: int | None
    reason_has: str


@st.composite
def cases(draw: st.DrawFn, workdir: Path) -> Case:
    """A valid job: any class its tier can hold, small resources, and one of four fates."""
    klass = draw(st.sampled_from(["general", "hpc", "edge", "ai", "in-memory"]))
    resources: dict[str, Any] = {"cpus": draw(st.sampled_from([0.1, 0.25, 0.5]))}
    extra: dict[str, Any] = {"max_retries": draw(st.integers(0, 1))}
    if klass == "ai":
        resources["gpus"] = 1
    if klass == "in-memory":
        resources["memory_bytes"] = 32 * 2**20
    if klass == "edge" and draw(st.booleans()):
        extra["region"] = "440106"
    runtime_env: dict[str, Any] = {}
    if draw(st.booleans()):
        runtime_env["env_vars"] = {"SUANLI_PROBE": draw(st.text("abcxyz019", min_size=1, max_size=8))}
    fate = draw(st.sampled_from(["ok", "exit", "workdir", "timeout"]))
    if fate == "workdir":
        runtime_env["working_dir"] = str(workdir / "absent")
    if runtime_env:
        extra["runtime_env"] = runtime_env
    if fate == "ok":
        return Case(job_doc(klass, "echo ok", resources=resources, **extra), "succeeded", 0, "")
    if fate == "exit":
        code = draw(st.integers(2, 9))
        return Case(job_doc(klass, f"exit {code}", resources=resources, **extra), "failed", code, f"exit code {code}")
    if fate == "workdir":
        return Case(job_doc(klass, "echo never", resources=resources, **extra), "failed", 1, "exit code 1")
    extra["max_retries"] = 0
    doc = job_doc(klass, "sleep 60", resources=resources, time_limit_seconds=2, **extra)
    return Case(doc, "failed", None, "time limit of 2 s")


@pytest.fixture(scope="module")
def service(ray_cluster: LocalRayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppService]:
    """The application in process, dispatching to the session's cluster."""
    workdir = tmp_path_factory.mktemp("dispatch-property")
    app = AppService(f"sqlite:///{workdir / 'suanli.db'}", workdir, **scheduler_settings(ray_cluster, workdir))
    yield app.start()
    app.stop()


@settings(
    max_examples=1,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def test_random_valid_jobs_each_reach_the_final_state_their_spec_implies(
    service: AppService, tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """A batch of 8 random jobs submitted at once (one batch a run, a new one each run; no shrinking, each try
    costs real jobs): every one ends, in the state, exit code and reason its spec implies (retries used up where
    it fails), and the dispatcher still runs a plain job afterwards."""
    workdir = tmp_path_factory.mktemp("specs")
    batch = data.draw(st.lists(cases(workdir), min_size=8, max_size=8), label="batch")
    with service.client() as client:
        ids = [submit(client, case.doc)["job_id"] for case in batch]
        for case, job_id in zip(batch, ids, strict=True):
            job = wait_state(client, job_id, FINAL, timeout=180)
            assert job["state"] == case.state, (case, job)
            if case.exit_code is not None:
                assert job["exit_code"] == case.exit_code, (case, job)
            assert case.reason_has in job["reason"], (case, job)
            if case.state == "failed" and case.exit_code is not None:
                assert job["attempt"] == case.doc.get("max_retries", 0), (case, job)
        after = submit(client, job_doc("general", "true"))["job_id"]
        assert wait_state(client, after, FINAL, timeout=90)["state"] == "succeeded"
