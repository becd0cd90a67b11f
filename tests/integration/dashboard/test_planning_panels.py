"""The dashboard's planning parts in real headless Chromium against the real service holding the generated fleet:
the headline's label and the AI share beside the 35 % target, the what-if panel (an uploaded plan of ten AI servers
in Tianhe shows before and after equal to the API's answer and to the fleet's figures by construction, in English
and in Chinese), the projection panel, and a user token refused the what-if panel (a pasted plan)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from playwright.sync_api import FilePayload

import seeds
from census_agent.models import Precision, Tier
from census_agent.units import human_flops
from tests.fleet import AI, expected_census, generate_fleet
from tests.integration.dashboard.conftest import ARTIFACTS, Deployment, Visit

pytestmark = pytest.mark.integration

TIANHE, CITY = "440106", "440100"


def one_ai_server_fp16() -> float:
    """8 x the catalogue's dense fp16 of an H100-SXM5 plus 64 Zen 3 cores x 2.45 GHz x 32 fp16 FLOPs per cycle."""
    import csv
    import io

    row = next(r for r in csv.DictReader(io.StringIO(seeds.read_text("accelerators.csv"))) if r["model"] == "H100-SXM5")
    return 8 * float(row["fp16_tensor_tflops"]) * 1e12 + 64 * 2.45e9 * 32


def plan_text() -> str:
    """Ten of the fleet's AI servers (a bare estimate document) in Tianhe, as a planner pastes it."""
    inventory = json.loads(generate_fleet(6)[5].inventory().model_dump_json())
    del inventory["host"]
    inventory["labels"] = {}
    return json.dumps({"machines": [{"count": 10, "region": TIANHE, "inventory": inventory, "name": "dgx"}]})


def plan_answer(deployment: Deployment, text: str) -> dict[str, Any]:
    """POST /v1/census/plan as the page sends it (focused on Guangzhou, the page's area)."""
    with deployment.service.client(deployment.tokens["planner"]) as client:
        response = client.post(
            "/v1/census/plan", params={"region": CITY}, content=text, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def summary_row(visit: Visit, key: str) -> dict[str, str]:
    """One row of the what-if summary: its data-before, data-after and the texts of its cells."""
    row = visit.page.locator(f"#plan-summary tbody tr[data-row='{key}']")
    cells = row.locator("td").all_text_contents()
    return {
        "before": row.get_attribute("data-before") or "",
        "after": row.get_attribute("data-after") or "",
        "before_text": cells[1],
        "after_text": cells[2],
    }


def test_the_what_if_panel_shows_the_plans_before_and_after_in_both_languages(
    deployment: Deployment, visit: Visit
) -> None:
    """Signed in as a planner: the total's card carries the headline's label and the AI share card the census's
    share beside the 35 % target. An uploaded plan file of 10 AI servers in Tianhe shows a summary whose headline
    before is the fleet's headline by construction and after is that plus 10 x one server's fp16 peak (from the
    catalogue row), each shown humanised as the CLI does; the AI share and every tier follow the API's answer; the
    regions changed within Guangzhou are Tianhe and the city. In Chinese the labels change (算力总规模, 规划前,
    智能算力占比) and the figures stay. The projection panel fits the history and dates a target."""
    fleet_headline = expected_census(deployment.fleet).headline()
    added = 10 * one_ai_server_fp16()
    assert one_ai_server_fp16() == pytest.approx(AI.peaks[Precision.FP16], rel=1e-12)
    text = plan_text()
    answer = plan_answer(deployment, text)
    assert answer["before"]["headline"]["flops"] == pytest.approx(fleet_headline, rel=1e-9)
    assert answer["after"]["headline"]["flops"] == pytest.approx(fleet_headline + added, rel=1e-9)

    visit.sign_in(deployment.tokens["planner"])
    visit.wait_loaded()
    head = answer["before"]["headline"]
    assert visit.page.text_content("#headline-label") == head["label_en"]
    assert visit.page.text_content("#ai-share") == f"{100 * head['ai_share']:.1f}%"
    assert "national target 35.0%" in (visit.page.text_content("#ai-share-target") or "")

    upload: FilePayload = {"name": "plan.json", "mimeType": "application/json", "buffer": text.encode()}
    visit.page.set_input_files("#plan-file", files=[upload])
    visit.page.wait_for_function("expected => document.getElementById('plan-input').value === expected", arg=text)
    visit.page.click("#plan-run")
    visit.page.wait_for_selector("#plan-result[data-loaded='true']", timeout=20_000)
    headline = summary_row(visit, "headline")
    assert float(headline["before"]) == pytest.approx(fleet_headline, rel=1e-9)
    assert float(headline["after"]) == pytest.approx(fleet_headline + added, rel=1e-9)
    assert headline["before_text"] == human_flops(answer["before"]["headline"]["flops"])
    assert headline["after_text"] == human_flops(answer["after"]["headline"]["flops"])
    share = summary_row(visit, "ai_share")
    assert float(share["after"]) == pytest.approx(answer["after"]["headline"]["ai_share"], rel=1e-12)
    assert float(share["after"]) > float(share["before"])
    ai_after = next(t for t in answer["after"]["by_tier"] if t["tier"] == Tier.AI.value)["headline_flops"]
    assert float(summary_row(visit, "ai")["after"]) == pytest.approx(ai_after, rel=1e-12)
    codes = visit.page.eval_on_selector_all("#plan-regions tbody tr", "rows => rows.map(r => r.dataset.code)")
    assert sorted(codes) == sorted([TIANHE, CITY])
    tianhe = visit.page.locator(f"#plan-regions tbody tr[data-code='{TIANHE}']")
    change = next(r for r in answer["changes"] if r["code"] == TIANHE)
    assert float(tianhe.get_attribute("data-after") or "0") == pytest.approx(change["after"]["headline_flops"])
    assert "10 machine(s) of 1 kind(s) added; nothing stored." in (visit.page.text_content("#plan-status") or "")

    visit.page.fill("#projection-total", "1 EFLOPS")
    visit.page.click("#projection-run")
    visit.page.wait_for_selector("#projection-table[data-loaded='true']", state="attached", timeout=20_000)
    assert visit.page.is_hidden("#projection-status"), visit.page.text_content("#projection-status")
    series = visit.page.eval_on_selector_all("#projection-table tbody tr", "rows => rows.map(r => r.dataset.series)")
    assert series == ["total", "general", "ai", "hpc", "edge"]
    assert visit.page.locator("#projection-targets li[data-kind='total_flops']").count() == 1

    visit.page.click("#lang")
    assert visit.page.get_attribute("html", "lang") == "zh-CN"
    summary = visit.page.text_content("#plan-summary") or ""
    assert "算力总规模" in summary
    assert "规划前" in summary
    assert "智能算力占比" in summary
    assert visit.page.text_content("#ai-share-card h3") == "智能算力占比"
    assert visit.page.text_content("#headline-label") == head["label_zh"]
    assert summary_row(visit, "headline")["after_text"] == headline["after_text"]
    assert "新增 1 类共 10 台设备" in (visit.page.text_content("#plan-status") or "")
    assert "总算力" in (visit.page.text_content("#projection-targets") or "")
    ARTIFACTS.mkdir(exist_ok=True)
    visit.page.locator("#planning").screenshot(path=str(ARTIFACTS / "dashboard-planning.png"))
    visit.page.click("#lang")
    assert "Total compute" in (visit.page.text_content("#plan-summary") or "")
    assert not visit.problems(), visit.problems()


def test_a_user_token_is_told_the_what_if_panel_is_not_permitted(deployment: Deployment, visit: Visit) -> None:
    """A user token reads the census but may not price plans: the panel says so (403 from the API, stated in the
    page), shows no result, and a malformed plan is caught in the page before any request."""
    visit.sign_in(deployment.tokens["user"])
    visit.wait_loaded()
    visit.page.fill("#plan-input", "{not json")
    visit.page.click("#plan-run")
    assert "not valid JSON" in (visit.page.text_content("#plan-status") or "")
    visit.page.fill("#plan-input", plan_text())
    visit.page.click("#plan-run")
    visit.page.wait_for_selector("#plan-result[data-loaded='true']", state="attached", timeout=20_000)
    status = visit.page.text_content("#plan-status") or ""
    assert "Not permitted for this role." in status
    assert visit.page.is_hidden("#plan-result")
    user = {"Authorization": f"Bearer {deployment.tokens['user']}"}
    with httpx.Client(base_url=deployment.origin, headers=user) as client:
        assert client.post("/v1/census/plan", json={"machines": []}).status_code == 403
    assert not visit.problems(), visit.problems()
