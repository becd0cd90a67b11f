"""The job specification contract: what `POST /v1/jobs`, the SDK and `suanli submit` accept and refuse."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from scheduler.models import JobSpec, JobState, WorkloadClass


def doc(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "train", "class": "ai", "entrypoint": "python train.py"}
    return base | overrides


def test_minimal_job_gets_documented_defaults_and_serialises_its_class_as_class() -> None:
    """Only name, class and entrypoint are required; one CPU, one node, an hour, no retries by default, and
    the JSON names the workload class `class` both ways."""
    job = JobSpec.model_validate(doc())
    assert job.workload_class is WorkloadClass.AI
    assert (job.resources.cpus, job.resources.gpus, job.resources.nodes) == (1.0, 0, 1)
    assert (job.time_limit_seconds, job.max_retries, job.priority, job.organisation) == (3600, 0, 0, "default")
    dumped = job.model_dump(mode="json")
    assert dumped["class"] == "ai"
    assert "workload_class" not in dumped
    assert JobSpec.model_validate(dumped) == job


def test_entrypoint_with_shell_metacharacters_is_kept_verbatim() -> None:
    """Pipes, substitutions, quotes and newlines are the user's command: stored exactly, never interpreted."""
    command = "echo $(whoami) && cat /etc/passwd | grep 'root' ; rm -rf \"$HOME\"/x `id`\nexit 0"
    assert JobSpec.model_validate(doc(entrypoint=command)).entrypoint == command


@pytest.mark.parametrize(
    ("overrides", "where"),
    [
        ({"class": "quantum"}, "class"),
        ({"entrypoint": ""}, "entrypoint"),
        ({"entrypoint": "echo \x00"}, "entrypoint"),
        ({"entrypoint": "x" * 9000}, "entrypoint"),
        ({"resources": {"cpus": -1}}, "resources.cpus"),
        ({"resources": {"cpus": 0}}, "resources.cpus"),
        ({"resources": {"gpus": 10**6}}, "resources.gpus"),
        ({"resources": {"memory_bytes": 10**30}}, "resources.memory_bytes"),
        ({"resources": {"nodes": 0}}, "resources.nodes"),
        ({"resources": {"cores": 4}}, "resources.cores"),
        ({"priority": 10**9}, "priority"),
        ({"time_limit_seconds": 0}, "time_limit_seconds"),
        ({"time_limit_seconds": 10**9}, "time_limit_seconds"),
        ({"max_retries": -1}, "max_retries"),
        ({"region": "guangzhou"}, "region"),
        ({"runtime_env": {"env_vars": {"1BAD": "x"}}}, "runtime_env.env_vars"),
        ({"name": "a\nb"}, "name"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_impossible_or_malformed_job_is_refused_naming_the_field(overrides: dict[str, Any], where: str) -> None:
    """Each bad field is refused with its location, so the API can answer a precise 422."""
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(doc(**overrides))
    locations = {".".join(str(p) for p in e["loc"]) for e in caught.value.errors()}
    assert any(loc.startswith(where) for loc in locations), locations


def test_only_succeeded_failed_and_cancelled_are_terminal() -> None:
    """The dispatcher stops following a job exactly when its state is terminal."""
    assert {s for s in JobState if s.terminal} == {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}
