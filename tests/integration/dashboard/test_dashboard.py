"""The planners' dashboard in real headless Chromium against the real service holding a generated fleet: sign-in
with a token, the headline number, the language toggle, the nodes table's filters and pages, roles, a wrong
token, and that the page asks nothing of any origin but the service's. Writes ``artifacts/dashboard.png``."""

from __future__ import annotations

import re

import httpx
import pytest

from census_agent.units import human_flops
from tests.fleet import expected_census
from tests.integration.dashboard.conftest import ARTIFACTS, Deployment, Visit

pytestmark = pytest.mark.integration

CHINESE_TIERS = ("通用算力", "智能算力", "超算算力", "边缘算力")


def api(deployment: Deployment, path: str, role: str = "admin", **params: str | int) -> httpx.Response:
    """GET `path` from the service with the token of `role`."""
    with deployment.service.client(deployment.tokens[role]) as client:
        return client.get(path, params=params)


def table_column(visit: Visit, table: str, attribute: str) -> list[str]:
    """The `data-<attribute>` of every body row of the table with id `table`."""
    values: list[str] = visit.page.eval_on_selector_all(
        f"#{table} tbody tr[data-{attribute}]", f"rows => rows.map(r => r.dataset.{attribute})"
    )
    return values


def test_after_token_sign_in_the_headline_is_the_census_headline_humanised(
    deployment: Deployment, visit: Visit
) -> None:
    """Signed in with the admin token, the page shows GET /v1/census's headline (its stated convention: general
    and edge at fp32, ai at fp16, hpc at fp64) humanised as the CLI does, which is also the fleet's headline by
    construction; the token is kept in sessionStorage only, and a reload stays signed in. A full-page screenshot
    is written to artifacts/dashboard.png."""
    visit.sign_in(deployment.tokens["admin"])
    visit.wait_loaded()
    census = api(deployment, "/v1/census").json()
    expected = expected_census(deployment.fleet).headline()
    assert census["headline"]["flops"] == pytest.approx(expected, rel=1e-9)
    shown = visit.page.text_content("#headline-total")
    assert shown == human_flops(census["headline"]["flops"]) == human_flops(expected)
    assert re.fullmatch(r"[\d,]+\.\d\d [PTEG]FLOPS", shown or ""), shown
    assert visit.page.text_content("#node-count") == str(len(deployment.fleet))
    guangzhou = next(r for r in census["by_region"] if r["code"] == "440100")
    assert visit.page.input_value("#scope") == "440100"  # the area that holds every node with a region
    assert visit.page.text_content("#per-capita") == f"{human_flops(guangzhou['per_capita_headline_flops'])} per person"
    assert visit.page.locator("#chart-tiers .main-svg").count() > 0, "the composition chart is drawn"
    assert visit.page.locator("#chart-history .main-svg").count() > 0, "the history chart is drawn"
    assert visit.page.locator("#chart-districts .main-svg").count() > 0, "the district chart is drawn"
    assert len(table_column(visit, "region-table", "code")) == 11  # Guangzhou's districts
    assert visit.page.locator("#queued-table tbody tr[data-state='queued']").count() == 4
    assert "waits for" in (visit.page.text_content("#queued-table tbody") or "")  # the why-pending reason
    storage = visit.page.evaluate("[sessionStorage.getItem('suanli.token'), JSON.stringify(localStorage)]")
    assert storage[0] == deployment.tokens["admin"]
    assert deployment.tokens["admin"] not in storage[1]
    ARTIFACTS.mkdir(exist_ok=True)
    visit.page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    visit.page.screenshot(path=str(ARTIFACTS / "dashboard-top.png"))  # what a planner sees first
    visit.page.reload()
    visit.wait_loaded()
    assert visit.page.text_content("#headline-total") == shown
    assert not visit.problems(), visit.problems()


def test_the_language_toggle_switches_labels_to_the_plans_chinese_terms_and_back(
    deployment: Deployment, visit: Visit
) -> None:
    """The toggle turns the labels into the plan's terms (总算力, 人均算力, 通用算力, 智能算力, 超算算力, 边缘算力),
    marks the document zh-CN, keeps the figures, and switches back to English."""
    visit.sign_in(deployment.tokens["admin"])
    visit.wait_loaded()
    headline = visit.page.text_content("#headline-total")
    total_label = visit.page.locator("#overview .card h3").first
    assert total_label.text_content() == "Total compute"
    visit.page.click("#lang")
    assert visit.page.get_attribute("html", "lang") == "zh-CN"
    assert total_label.text_content() == "总算力"
    assert "人均算力" in (visit.page.text_content("#overview .cards") or "")
    tier_table = visit.page.text_content("#tier-table") or ""
    assert all(term in tier_table for term in CHINESE_TIERS), tier_table
    assert all(term in (visit.page.text_content("#chart-tiers") or "") for term in CHINESE_TIERS)
    assert visit.page.text_content("#headline-total") == headline
    assert "天河区" in (visit.page.text_content("#region-table") or "")
    visit.page.click("#lang")
    assert total_label.text_content() == "Total compute"
    assert "General compute" in (visit.page.text_content("#tier-table") or "")
    assert not visit.problems(), visit.problems()


def test_filtering_the_nodes_table_by_tier_shows_that_tier_only_and_pages_like_the_api(
    deployment: Deployment, visit: Visit
) -> None:
    """Choosing a tier shows only that tier's nodes, exactly the ones GET /v1/nodes?tier= lists; with no filter the
    table pages by the API's cursor (50 a page: Next shows the API's second page)."""
    visit.sign_in(deployment.tokens["operator"])
    visit.wait_loaded()
    first_page = api(deployment, "/v1/nodes", limit=50).json()
    assert len(table_column(visit, "node-table", "tier")) == 50
    for tier in ("ai", "hpc"):
        visit.page.select_option("#filter-tier", tier)
        visit.page.wait_for_selector(f"#nodes-count[data-count][data-tier='{tier}']")
        listed = api(deployment, "/v1/nodes", tier=tier, limit=50).json()["items"]
        assert listed
        assert len(listed) == sum(1 for n in deployment.fleet if n.tier.value == tier)
        shown = visit.page.eval_on_selector_all(
            "#node-table tbody tr", "rows => rows.map(r => [r.dataset.tier, r.querySelector('code').textContent])"
        )
        assert {t for t, _ in shown} == {tier}
        assert [n for _, n in shown] == [n["node_id"] for n in listed]
        assert visit.page.get_attribute("#nodes-count", "data-count") == str(len(listed))
    visit.page.select_option("#filter-tier", "")
    visit.page.wait_for_selector("#nodes-count[data-count='50'][data-tier='']")
    visit.page.click("#nodes-next")
    visit.page.wait_for_selector("#nodes-count[data-count='50']")
    second_page = api(deployment, "/v1/nodes", limit=50, after=first_page["next_after"]).json()["items"]
    shown_ids = visit.page.eval_on_selector_all("#node-table tbody code", "cells => cells.map(c => c.textContent)")
    assert shown_ids == [n["node_id"] for n in second_page]
    assert not visit.problems(), visit.problems()


def test_a_planner_sees_the_census_but_the_job_list_says_not_permitted(deployment: Deployment, visit: Visit) -> None:
    """A planner token reads the census, nodes and tiers (as the API admits) but not GET /v1/jobs: the job list
    shows a clear "not permitted for this role" message instead of tables, and nothing else breaks."""
    assert api(deployment, "/v1/jobs", role="planner").status_code == 403
    visit.sign_in(deployment.tokens["planner"])
    visit.wait_loaded()
    assert visit.page.text_content("#headline-total") == human_flops(
        api(deployment, "/v1/census", role="planner").json()["headline"]["flops"]
    )
    message = visit.page.locator("#jobs-status")
    assert message.is_visible()
    assert "Not permitted for this role." in (message.text_content() or "")
    assert "planner" in (message.text_content() or "")  # the API's own explanation follows
    assert visit.page.locator("#job-tables").is_hidden()
    assert visit.page.locator("#tiers-status").is_hidden()
    assert len(table_column(visit, "tiers-table", "tier")) == 4
    assert visit.page.locator("#nodes-status").is_hidden()
    assert not visit.problems(), visit.problems()


def test_a_user_token_sees_the_census_and_jobs_but_not_the_nodes(deployment: Deployment, visit: Visit) -> None:
    """A user token (census and its own jobs, no node list) gets the nodes section's not-permitted message."""
    visit.sign_in(deployment.tokens["user"])
    visit.wait_loaded()
    assert visit.page.text_content("#headline-total") not in ("", "–")
    assert "Not permitted for this role." in (visit.page.text_content("#nodes-status") or "")
    assert visit.page.locator("#jobs-status").is_hidden()
    assert not visit.problems(), visit.problems()


def test_a_wrong_token_shows_a_clear_error_and_stays_signed_out(deployment: Deployment, visit: Visit) -> None:
    """A token the service does not know: the sign-in form stays, with the error and the API's reason, and the
    token is not kept."""
    visit.sign_in("sl_admin_" + "x" * 43)
    error = visit.page.locator("#login-error")
    error.wait_for(state="visible")
    assert (error.text_content() or "").startswith("This token was not accepted: 401")
    assert visit.page.locator("#dashboard").is_hidden()
    assert visit.page.evaluate("sessionStorage.getItem('suanli.token')") is None
    assert not visit.problems(), visit.problems()


def test_the_page_makes_no_request_off_the_service_origin_and_sends_a_strict_csp(
    deployment: Deployment, visit: Visit
) -> None:
    """Every request the signed-in page makes (page, script, style, plotly.js, API calls) is to the service on
    127.0.0.1, plotly.js among them; the page carries a Content-Security-Policy without inline script, and no
    policy violation or uncaught error occurs while it draws everything."""
    visit.sign_in(deployment.tokens["admin"])
    visit.wait_loaded()
    visit.page.click("#lang")
    visit.page.wait_for_timeout(300)
    assert deployment.origin.startswith("http://127.0.0.1:")
    assert visit.requests
    assert all(url.startswith(deployment.origin + "/") for url in visit.requests), visit.requests
    assert any("/dashboard/vendor/plotly.min.js" in url for url in visit.requests)
    assert any("/v1/census" in url for url in visit.requests)
    page = httpx.get(deployment.origin + "/")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    directives = {d.split()[0]: d.split()[1:] for d in policy.split("; ")}
    assert directives["script-src"] == ["'self'"]  # no inline or eval'd script
    assert directives["default-src"] == directives["connect-src"] == ["'self'"]
    assert "<script>" not in page.text  # every script is a file
    assert not visit.problems(), visit.problems()
