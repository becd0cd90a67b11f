"""The load benchmarks' command lines: --help explains every option, and the defaults are the issue's sizes.

Benchmarks are not tests: nothing here starts a server or measures anything.
"""

from __future__ import annotations

import pytest

from benchmarks import load_agents, load_jobs


@pytest.mark.parametrize(
    ("module", "options"),
    [
        (load_agents, ["--agents", "--interval", "--duration", "--drain", "--backend", "--baseline-duration"]),
        (load_jobs, ["--jobs", "--users", "--orgs", "--baseline-jobs", "--timeout", "--dispatch-interval"]),
    ],
)
def test_help_names_every_option(module: object, options: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])  # type: ignore[attr-defined]
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in [*options, "--progress", "--seed", "--json"]:
        assert option in text
    assert "lost" in text.lower()


def test_defaults_are_the_issues_sizes() -> None:
    agents = load_agents.parser().parse_args([])
    assert (agents.agents, agents.interval, agents.duration, agents.backend) == (10_000, 30.0, 600.0, "both")
    jobs = load_jobs.parser().parse_args([])
    assert (jobs.jobs, jobs.users, jobs.baseline_jobs) == (10_000, 100, 500)


def test_nonsense_sizes_are_refused() -> None:
    with pytest.raises(SystemExit):
        load_agents.main(["--agents", "0"])
    with pytest.raises(SystemExit):
        load_jobs.main(["--users", "0"])
    with pytest.raises(SystemExit):
        load_agents.main(["--backend", "mysql"])


def test_job_mix_has_every_class_gangs_and_regions() -> None:
    docs = load_jobs.job_mix(400, seed=1)
    assert {d["class"] for d in docs} == {"general", "in-memory", "hpc", "ai", "edge"}
    assert any(d["resources"].get("nodes") == 2 for d in docs)
    assert all(d["resources"]["gpus"] == 1 for d in docs if d["class"] == "ai")
    assert all(d.get("region") for d in docs if d["class"] == "edge")
    assert load_jobs.job_mix(400, seed=1) == docs
