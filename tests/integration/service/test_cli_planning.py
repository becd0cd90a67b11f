"""``suanli census`` and the planners' questions as a planner runs them: real processes against the real service
(uvicorn, SQLite and PostgreSQL): the headline's label and AI share, ``--plan FILE`` (an inventory file next to
the plan read on the planner's machine, an inline one) before and after, ``--projection`` with targets, and bad
plans failing cleanly."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from census_agent.models import Precision
from census_agent.units import human_flops
from tests.fleet import AI, generate_fleet, post_fleet, reports
from tests.integration.service.helpers import module_service
from tests.integration.service.test_cli import ok, refused, suanli_all
from tests.service import ServiceProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["sqlite"])
def planned(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service holding a 60-node generated fleet, on SQLite: these tests check the commands' reading of files,
    output and exit codes; the what-if and projection answers on each backend are test_planning.py's, which runs
    on both."""
    for service in module_service(request, tmp_path_factory):
        with service.client() as admin:
            post_fleet(admin, reports(generate_fleet(60, prefix="cli-plan")))
        yield service


def estimate_document() -> dict[str, Any]:
    """The fleet's AI server as a bare inventory (what `census-agent inspect --json` gives, without host)."""
    inventory: dict[str, Any] = json.loads(generate_fleet(6)[5].inventory().model_dump_json())
    del inventory["host"]
    return inventory


def test_census_plan_prints_before_and_after_and_reads_inventory_files_on_the_planners_machine(
    planned: ServiceProcess, tmp_path: Path
) -> None:
    """A plan file naming `dgx.json` beside it (10 in Tianhe) and an inline kind (5 in Nansha): `census --plan`
    prints the machines as priced (one AI server's fp16 peak), the headline before and after (after = before +
    15 servers), the AI share beside its target and the regions changed; `--json` is the API's document; the
    plain census prints the headline's label in both languages and the AI share. An unknown region exits 2 with
    the service's one-line reason, a missing plan file 1, a target that is not a FLOPS figure 2."""
    (tmp_path / "dgx.json").write_text(json.dumps(estimate_document()), encoding="utf-8")
    plan = {
        "machines": [
            {"count": 10, "region": "440106", "inventory_file": "dgx.json", "name": "dgx-tianhe"},
            {"count": 5, "region": "440115", "inventory": estimate_document()},
        ]
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan), encoding="utf-8")
    bad = {"machines": [{**plan["machines"][1], "region": "449999"}]}
    (tmp_path / "bad.json").write_text(json.dumps(bad), encoding="utf-8")
    server = ["--server", planned.url, "--token-file", str(planned.admin_token_file)]
    with planned.client() as admin:
        census = admin.get("/v1/census").json()
    results = suanli_all(
        {
            "plan": ["census", "--plan", "plan.json", *server],
            "json": ["census", "--plan", "plan.json", "--json", *server],
            "census": ["census", *server],
            "bad": ["census", "--plan", "bad.json", *server],
            "missing": ["census", "--plan", "nowhere.json", *server],
            "bad target": ["census", "--projection", "--target-total", "lots", *server],
        },
        cwd=tmp_path,
    )
    one = AI.peaks[Precision.FP16]  # derived by hand in tests/fleet.py from the catalogue row
    before = census["headline"]["flops"]
    human = ok(results["plan"])
    assert "What if: 15 machine(s) of 2 kind(s) added (+120 accelerators); nothing stored" in human
    assert f"{human_flops(one)} fp16" in human
    assert human_flops(before) in human
    assert human_flops(before + 15 * one) in human
    assert "AI share 智能算力占比" in human
    assert "target 35%" in human
    assert "440106" in human
    assert "南沙区 Nansha" in human
    document = json.loads(ok(results["json"]))
    assert document["stored"] is False
    assert document["after"]["headline"]["flops"] == pytest.approx(before + 15 * one, rel=1e-9)
    assert [m["name"] for m in document["machines"]] == ["dgx-tianhe", None]

    plain = ok(results["census"])
    assert f"  = {census['headline']['label_en']}" in plain
    assert census["headline"]["label_zh"] in plain
    assert f"AI share 智能算力占比: {census['headline']['ai_share']:.1%}" in plain

    assert results["bad"].returncode == 2
    refused(results["bad"], "449999")
    assert results["missing"].returncode == 1
    refused(results["missing"], "nowhere.json")
    assert results["bad target"].returncode == 2
    assert "not a FLOPS figure" in results["bad target"].stderr


def test_census_projection_prints_growth_per_tier_and_the_targets(planned: ServiceProcess, tmp_path: Path) -> None:
    """`census --projection --region 440100 --target-total 1E --target-per-capita 1T` prints the method, a row
    per series and a line per target (a fresh service has at most a snapshot or two, so the targets say why there
    is no date); `--json` is GET /v1/census/projection's document with the same targets."""
    server = ["--server", planned.url, "--token-file", str(planned.admin_token_file)]
    args = ["census", "--projection", "--region", "440100", "--target-total", "1E", "--target-per-capita", "1T"]
    results = suanli_all({"human": [*args, *server], "json": [*args, "--json", *server]}, cwd=tmp_path)
    human = ok(results["human"])
    assert "Projection for region 440100, exponential: ordinary least squares of ln(headline FLOPS)" in human
    for series in ("headline 算力总量", "general 通用", "ai 智算", "hpc 超算", "edge 边缘"):
        assert series in human
    assert "Target total 1.00 EFLOPS:" in human
    assert "Target per capita 人均 1.00 TFLOPS:" in human
    document = json.loads(ok(results["json"]))
    assert [t["kind"] for t in document["targets"]] == ["total_flops", "per_capita_flops"]
    assert document["targets"][1]["total_flops_equivalent"] == pytest.approx(1e12 * document["population"])
