"""Report ingest against the real service on SQLite and PostgreSQL: real agents, idempotency, ordering,
refusals that store nothing, the body limit, server-side peaks and agent token binding."""

from __future__ import annotations

import copy
import itertools
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from census_agent.models import NodeInventory, Precision
from tests.integration.service.helpers import (
    COUNTS,
    HOSTS,
    MODEL,
    NODE_FIELD,
    all_nodes,
    census,
    clean_env,
    create_token,
    document,
    holdings,
    host_inventory,
    make_report,
    module_service,
    node,
    planned_inventory,
    post_report,
    stored,
    token_row,
)
from tests.servers import wait_for
from tests.service import ServiceProcess

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service per backend for this module's tests that use their own node ids and relative checks."""
    yield from module_service(request, tmp_path_factory)


# --- real agents ---------------------------------------------------------------------------------------------

# node id, fixture host tree, district (Tianhe, Huangpu, Yuexiu: all in Guangzhou 440100)
AGENTS = [
    ("agent-epyc", "epyc-9654-zen4", "440106"),
    ("agent-xeon-ib", "xeon-platinum-8380-2s", "440112"),
    ("agent-altra", "ampere-altra-q80-30", "440104"),
]
CITY_AND_ABOVE = ("440100", "440000", "CN")


class AgentRun:
    """`census-agent run` as a child process reporting a fixture host tree to the service every second."""

    def __init__(self, workdir: Path, server: str, *, token: str, node_id: str, host: str, region: str) -> None:
        self.node_id = node_id
        self.token_file = workdir / f"{node_id}.token"
        self.token_file.write_text(token + "\n")
        self.log = workdir / f"{node_id}.log"
        options = {
            "--server": server,
            "--token-file": str(self.token_file),
            "--interval": "1",
            "--node-id": node_id,
            "--region": region,
            "--root": str(HOSTS / host),
            "--spool-dir": str(workdir / f"{node_id}-spool"),
            "--organisation": "census-test",
        }
        self.argv = [
            sys.executable,
            "-m",
            "census_agent.cli",
            "run",
            "--no-nvml",
            *itertools.chain.from_iterable(options.items()),
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentRun:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=log, env=clean_env())
        return self

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def summed(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """What the census must show for exactly these nodes (GET /v1/nodes/{id} figures added up)."""
    return {
        "nodes": len(nodes),
        **{name: sum(n[name] for n in nodes) for name in COUNTS},
        "peak_flops": {p: sum(n[field] for n in nodes) for p, field in NODE_FIELD.items()},
    }


def assert_totals(actual: dict[str, Any], expected: dict[str, Any], where: str) -> None:
    """Counts exactly, FLOPS to rounding (the rollups add in another order)."""
    for name in ("nodes", *COUNTS):
        assert actual[name] == expected[name], f"{where}: {name} {actual[name]} != {expected[name]}"
    for p, value in expected["peak_flops"].items():
        assert actual["peak_flops"][p] == pytest.approx(value, rel=1e-12), f"{where}: {p}"


def chain(code: str | None, parents: dict[str, str | None]) -> list[str]:
    """`code` and every region above it (empty for a node without a region)."""
    codes: list[str] = []
    while code is not None:
        codes.append(code)
        code = parents[code]
    return codes


def test_real_agents_are_counted_in_census_totals_tiers_and_region_rollups(
    shared: ServiceProcess, tmp_path: Path
) -> None:
    """Three real `census-agent run` processes (each with its own agent token, district and fixture host tree)
    report to the service; once each has reported twice and stopped cleanly: each node's figures are what the
    compute model gives for its host tree and its token is bound to it; GET /v1/census totals, tiers and the
    headline equal the sum of what the node records show (GET /v1/nodes, GET /v1/nodes/{id}); every region
    equals the sum of the nodes at or below it, per capita included, so each agent's district, Guangzhou
    (440100), Guangdong (440000) and China (CN) hold the agents."""
    agents: list[AgentRun] = []
    with shared.client() as admin:
        tokens = {}
        try:
            for node_id, host, region in AGENTS:
                made = create_token(admin, "agent", name=f"{node_id} token")
                tokens[node_id] = made["id"]
                run = AgentRun(tmp_path, shared.url, token=made["token"], node_id=node_id, host=host, region=region)
                agents.append(run.start())

            def all_reported_twice() -> bool:
                details = [node(admin, a.node_id) for a in agents]
                return all(d is not None and len(d["recent_reports"]) >= 2 for d in details)

            try:
                wait_for(all_reported_twice, 60, "every agent's second report")
            except AssertionError as exc:
                logs = "\n".join(f"--- {a.node_id}\n{a.log.read_text()[-1500:]}" for a in agents)
                raise AssertionError(f"{exc}\n{logs}") from None
            for agent in agents:
                assert agent.stop() == 0, agent.log.read_text()[-2000:]
        finally:
            for agent in agents:
                agent.kill()

        details = {node_id: node(admin, node_id) for node_id, _, _ in AGENTS}
        doc = census(admin)
        everyone = [n for n in all_nodes(admin) if n["status"] == "active"]
        table = admin.get("/v1/regions").json()
        bound = {node_id: token_row(admin, token_id)["node_id"] for node_id, token_id in tokens.items()}

    for node_id, host, region in AGENTS:
        detail = details[node_id]
        assert detail is not None
        assert (detail["status"], detail["region_code"], detail["organisation"]) == ("active", region, "census-test")
        assert all(r["applied"] for r in detail["recent_reports"]), "an agent's reports come in order"
        peaks, tier = MODEL.assess(host_inventory(host, node_id, region=region))
        assert detail["tier"] == tier.tier.value
        for p in Precision:
            assert detail[NODE_FIELD[p.value]] == peaks.figures[p].flops, (node_id, p)
        server_side, _ = MODEL.assess(NodeInventory.model_validate(detail["inventory"]))
        assert detail["peaks"] == server_side.model_dump(mode="json")
        assert {k: detail[k] for k in NODE_FIELD.values()} == next(
            {k: n[k] for k in NODE_FIELD.values()} for n in everyone if n["node_id"] == node_id
        )
    assert {d["tier"] for d in details.values() if d} >= {"general", "hpc"}, "the agents span tiers"
    assert bound == {node_id: node_id for node_id, _, _ in AGENTS}

    assert_totals(doc["totals"], summed(everyone), "census totals")
    for entry in doc["by_tier"]:
        assert_totals(entry, summed([n for n in everyone if n["tier"] == entry["tier"]]), f"tier {entry['tier']}")
    convention = doc["headline"]["convention"]
    headline = sum(n[NODE_FIELD[convention[n["tier"]]]] for n in everyone)
    assert doc["headline"]["flops"] == pytest.approx(headline, rel=1e-12)
    assert_totals(doc["unassigned_region"], summed([n for n in everyone if n["region_code"] is None]), "unassigned")

    parents = {r["code"]: r["parent_code"] for r in table}
    population = {r["code"]: r["population"] for r in table}
    regions = {r["code"]: r for r in doc["by_region"]}
    assert set(regions) == set(parents)
    for code, region in regions.items():
        inside = [n for n in everyone if code in chain(n["region_code"], parents)]
        assert_totals(region, summed(inside), f"region {code}")
        for tier, totals in region["by_tier"].items():
            assert_totals(totals, summed([n for n in inside if n["tier"] == tier]), f"region {code} tier {tier}")
        region_headline = sum(n[NODE_FIELD[convention[n["tier"]]]] for n in inside)
        assert region["headline_flops"] == pytest.approx(region_headline, rel=1e-12)
        assert region["per_capita_headline_flops"] == pytest.approx(region_headline / population[code], rel=1e-12)
    for node_id, _, district in AGENTS:
        assert chain(district, parents) == [district, *CITY_AND_ABOVE]
        for code in chain(district, parents):
            assert regions[code]["nodes"] >= 1, (node_id, code)
    assert regions["440100"]["nodes"] >= len(AGENTS)


# --- idempotency and order -----------------------------------------------------------------------------------


def test_replayed_report_is_answered_duplicate_and_stored_once(shared: ServiceProcess) -> None:
    """The same report POSTed again (as an agent replays its spool) answers `duplicate`: one history row, the
    census and the node unchanged, even when the replay's body differs under the same report id."""
    with shared.client() as admin:
        agent_token = create_token(admin, "agent")["token"]
        report = make_report(planned_inventory("replay-node"))
        with shared.client(agent_token) as agent:
            first = stored(agent, report)
            assert first["outcome"] == "stored"
            assert (first["report_id"], first["node_id"]) == (str(report.report_id), "replay-node")
            before = holdings(admin)
            assert stored(agent, report)["outcome"] == "duplicate"
            altered = document(report)
            altered["sequence"] = 99
            altered["inventory"]["memory"]["total_bytes"] //= 2
            assert stored(agent, altered)["outcome"] == "duplicate"
        assert holdings(admin) == before
        detail = node(admin, "replay-node")
    assert detail is not None
    assert [r["report_id"] for r in detail["recent_reports"]] == [str(report.report_id)]
    assert detail["memory_bytes"] == report.inventory.memory.total_bytes


def test_older_report_is_kept_as_history_and_leaves_node_state_alone(shared: ServiceProcess) -> None:
    """After a newer report, one generated earlier with a lower sequence (and one at the same time with a
    lower sequence) answers `stored-as-history`: it joins the node's history unapplied, while the node, its
    tier and the census keep the newer report's figures; a report newer still is applied again."""
    now = datetime.now(tz=UTC)
    inventory = planned_inventory("ordered-node")
    shrunk = inventory.model_copy(
        update={
            "accelerators": [],
            "memory": inventory.memory.model_copy(update={"total_bytes": 2**36}),
            "labels": inventory.labels.model_copy(update={"organisation": "stale-org"}),
        }
    )
    newer = make_report(inventory, sequence=5, generated_at=now)
    earlier = make_report(shrunk, sequence=3, generated_at=now - timedelta(minutes=1))
    lower_sequence = make_report(shrunk, sequence=4, generated_at=now)
    with shared.client() as admin:
        assert stored(admin, newer)["outcome"] == "stored"
        before = holdings(admin)
        state = node(admin, "ordered-node")
        assert state is not None
        for older in (earlier, lower_sequence):
            answer = stored(admin, older)
            assert answer["outcome"] == "stored-as-history", answer
        assert holdings(admin) == before
        after = node(admin, "ordered-node")
        assert after is not None
        assert {k: v for k, v in after.items() if k != "recent_reports"} == {
            k: v for k, v in state.items() if k != "recent_reports"
        }
        history = {r["report_id"]: r["applied"] for r in after["recent_reports"]}
        assert history == {
            str(newer.report_id): True,
            str(earlier.report_id): False,
            str(lower_sequence.report_id): False,
        }

        newest = make_report(shrunk, sequence=7, generated_at=now + timedelta(seconds=1))
        assert stored(admin, newest)["outcome"] == "stored"
        latest = node(admin, "ordered-node")
    assert latest is not None
    assert (latest["organisation"], latest["accelerators"], latest["memory_bytes"]) == ("stale-org", 0, 2**36)
    assert latest["tier"] != "ai"


# --- refusals ------------------------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target = doc
        for key in parents:
            target = target[key]
        target[last] = value

    return change


def _delete(key: str) -> Mutation:
    def change(doc: dict[str, Any]) -> None:
        del doc[key]

    return change


# name, change to a valid report, the detail's start (the field at fault)
INVALID_FIELDS: list[tuple[str, Mutation, str]] = [
    ("unknown schema version", _set("schema_version", 2), "schema_version: "),
    ("negative cores", _set("inventory.cpu.physical_cores", -4), "inventory.cpu.physical_cores: "),
    ("10^30 FLOPS from the agent", _set("peaks.figures.fp64.flops", 1e30), "peaks.figures.fp64.flops: "),
    (
        "10^30 FLOPS declared",
        _set("inventory.labels.declared_peaks.fp16", 1e30),
        "inventory.labels.declared_peaks.fp16: ",
    ),
    ("memory over 1 EiB", _set("inventory.memory.total_bytes", 2**61), "inventory.memory.total_bytes: "),
    ("clock of 10 THz", _set("inventory.cpu.base_clock_hz", 1e13), "inventory.cpu.base_clock_hz: "),
    ("negative sequence", _set("sequence", -1), "sequence: "),
    ("report id not a UUID", _set("report_id", "not-a-uuid"), "report_id: "),
    ("missing report id", _delete("report_id"), "report_id: "),
    ("region code of the wrong form", _set("inventory.labels.region", "44-0106"), "inventory.labels.region: "),
    ("extra unknown field", _set("surprise", True), "surprise: Extra inputs are not permitted"),
    ("extra nested field", _set("inventory.cpu.turbo", True), "inventory.cpu.turbo: Extra inputs are not permitted"),
]


def test_malformed_or_absurd_reports_get_a_precise_4xx_and_store_nothing(shared: ServiceProcess) -> None:
    """Each refused report (not JSON, not an object, unknown schema version, negative cores, 10^30 FLOPS, an
    unknown region code, an extra field...) gets a 422 problem naming what is wrong; afterwards the census, the
    node list and the agent token are as before (the token is still unbound) and no refused node exists."""
    with shared.client() as admin:
        made = create_token(admin, "agent")
        base = document(make_report(planned_inventory("refusal-base")))
        before = holdings(admin)
        failures: list[str] = []
        refused_nodes: list[str] = []
        with shared.client(made["token"]) as agent:

            def expect(name: str, body: bytes, status: int, detail_start: str) -> dict[str, Any]:
                response = post_report(agent, body)
                problem = response.json() if response.headers.get("content-type", "").startswith(PROBLEM) else {}
                detail = str(problem.get("detail", response.text))
                if response.status_code != status or not detail.startswith(detail_start):
                    failures.append(f"{name}: {response.status_code} {detail!r} (wanted {status} {detail_start!r}...)")
                return problem

            expect("not JSON", b'{"schema_version": 1, "report_id": ', 422, "body: Invalid JSON")
            expect("a JSON array", b"[]", 422, "body: Input should be an object")
            expect("empty body", b"", 422, "body: ")
            for i, (name, change, detail_start) in enumerate(INVALID_FIELDS):
                doc = copy.deepcopy(base)
                node_id = f"refused-{i}"
                doc["inventory"]["host"]["node_id"] = node_id
                doc["report_id"] = str(uuid.uuid4())
                change(doc)
                refused_nodes.append(node_id)
                expect(name, json.dumps(doc).encode(), 422, detail_start)

            doc = copy.deepcopy(base)
            doc["inventory"]["host"]["node_id"] = "refused-region"
            doc["inventory"]["labels"]["region"] = "999999"
            refused_nodes.append("refused-region")
            problem = expect("unknown region code", json.dumps(doc).encode(), 422, "unknown region code '999999'")
            assert problem.get("field") == "inventory.labels.region", problem

        assert not failures, "\n".join(failures)
        assert holdings(admin) == before, "a refused report changed the census or the nodes"
        assert [n for n in refused_nodes if node(admin, n) is not None] == []
        assert token_row(admin, made["id"])["node_id"] is None, "a refused report bound the agent token"

        with shared.client(made["token"]) as agent:  # the token itself was fine all along
            assert stored(agent, base)["outcome"] == "stored"
        assert token_row(admin, made["id"])["node_id"] == "refusal-base"


def test_body_over_the_size_limit_gets_413_and_stores_nothing(database_url: str, tmp_path: Path) -> None:
    """With SUANLI_MAX_BODY_BYTES=2048 a valid report padded to 2049 bytes gets 413 (by Content-Length and
    when sent chunked without one), as does a full DGX report, and nothing is stored; the same report padded
    to exactly 2048 bytes is accepted."""
    limited = ServiceProcess(database_url, tmp_path, max_body_bytes="2048").start()
    try:
        with limited.client() as admin:
            small = make_report(planned_inventory("small-node").model_copy(update={"accelerators": []}))
            body = small.model_dump_json(exclude_none=True).encode()  # the optional fields left out
            assert len(body) < 2048, len(body)
            before = holdings(admin)
            over = body + b" " * (2049 - len(body))
            headers = {"Content-Type": "application/json"}
            answers = {
                "Content-Length 2049": post_report(admin, over),
                "chunked 2049": admin.post("/v1/reports", content=iter([over[:1000], over[1000:]]), headers=headers),
                "full DGX report": post_report(admin, make_report(planned_inventory("big-node"))),
            }
            for how, response in answers.items():
                assert response.status_code == 413, (how, response.status_code, response.text)
                assert response.headers["content-type"].startswith(PROBLEM), how
                assert "2048 bytes" in response.json()["detail"], how
            assert holdings(admin) == before
            assert node(admin, "small-node") is None
            assert node(admin, "big-node") is None

            at_limit = body + b" " * (2048 - len(body))
            assert len(at_limit) == 2048
            for outcome in ("stored", "duplicate"):
                response = post_report(admin, at_limit)
                assert response.status_code == 200, response.text
                assert response.json()["outcome"] == outcome
            assert node(admin, "small-node") is not None
    finally:
        limited.stop()


# --- what the server trusts ----------------------------------------------------------------------------------


def test_server_recomputes_peaks_and_tier_and_keeps_doctored_agent_figures_beside(shared: ServiceProcess) -> None:
    """A report whose agent-side peaks are inflated x1000 and whose tier is claimed as hpc is stored with the
    server's own figures (ComputeModel().assess on the same inventory) in the answer, the node, its history and
    the census; the agent's doctored figures are kept as `agent_peaks`."""
    inventory = planned_inventory("doctored-node", region="440113")
    honest_peaks, honest_tier = MODEL.assess(inventory)
    doc = document(make_report(inventory))
    for p in Precision:
        for key in ("flops", "computed_flops"):
            doc["peaks"]["figures"][p.value][key] *= 1000
    for component in doc["peaks"]["components"]:
        component["figures"]["fp64"]["flops"] *= 1000
    doc["tier"] = {"tier": "hpc", "reason": "trust me", "overridden": True}
    server = {p.value: honest_peaks.figures[p].flops for p in Precision}
    assert honest_tier.tier.value == "ai"

    with shared.client() as admin:
        before = census(admin)
        answer = stored(admin, doc)
        detail = node(admin, "doctored-node")
        after = census(admin)
    assert answer["peak_flops"] == server
    assert answer["tier"] == "ai"
    assert detail is not None
    assert {p: detail[NODE_FIELD[p]] for p in server} == server
    assert detail["tier"] == "ai"
    assert detail["peaks"] == honest_peaks.model_dump(mode="json")
    assert detail["agent_peaks"] == doc["peaks"]
    assert detail["recent_reports"][0]["fp64_flops"] == server["fp64"]
    for precision, value in server.items():
        tier_before = next(t for t in before["by_tier"] if t["tier"] == "ai")["peak_flops"][precision]
        tier_after = next(t for t in after["by_tier"] if t["tier"] == "ai")["peak_flops"][precision]
        added = after["totals"]["peak_flops"][precision] - before["totals"]["peak_flops"][precision]
        assert added == pytest.approx(value, rel=1e-9)
        assert tier_after - tier_before == pytest.approx(value, rel=1e-9)
    hpc_before, hpc_after = (next(t for t in d["by_tier"] if t["tier"] == "hpc") for d in (before, after))
    assert (hpc_after["nodes"], hpc_after["peak_flops"]) == (hpc_before["nodes"], hpc_before["peak_flops"])


def test_agent_token_binds_to_its_first_node_and_gets_403_for_another(shared: ServiceProcess) -> None:
    """A fresh agent token is unbound (GET /v1/tokens shows no node); its first report binds it to that node;
    a report for another node then gets 403 naming both and stores nothing, while reports for its own node
    still go through; another fresh token binds on first use to the node the first one was refused."""
    with shared.client() as admin:
        first = create_token(admin, "agent")
        second = create_token(admin, "agent")
        assert token_row(admin, first["id"])["node_id"] is None
        node_a = make_report(planned_inventory("bound-a"))
        node_b = make_report(planned_inventory("bound-b"))
        with shared.client(first["token"]) as agent:
            assert stored(agent, node_a)["outcome"] == "stored"
            assert token_row(admin, first["id"])["node_id"] == "bound-a"
            before = holdings(admin)
            refused = post_report(agent, node_b)
            assert refused.status_code == 403, refused.text
            assert refused.headers["content-type"].startswith(PROBLEM)
            assert "'bound-a'" in refused.json()["detail"]
            assert "'bound-b'" in refused.json()["detail"]
            assert holdings(admin) == before
            assert node(admin, "bound-b") is None
            again = make_report(planned_inventory("bound-a"), sequence=2)
            assert stored(agent, again)["outcome"] == "stored"
        assert token_row(admin, first["id"])["node_id"] == "bound-a"

        with shared.client(second["token"]) as other:
            assert stored(other, node_b)["outcome"] == "stored", "the refused report left a trace"
            assert post_report(other, make_report(planned_inventory("bound-a"), sequence=3)).status_code == 403
        assert token_row(admin, second["id"])["node_id"] == "bound-b"
        detail = node(admin, "bound-b")
    assert detail is not None
    assert [r["report_id"] for r in detail["recent_reports"]] == [str(node_b.report_id)]


# --- known defects (kept last: they make the shared service answer 500) --------------------------------------


def test_values_the_database_cannot_hold_get_a_4xx_not_a_500(shared: ServiceProcess) -> None:
    """A sequence number past a 64-bit integer, or a NUL character in the hostname, is refused with a 4xx that
    stores nothing, on both backends alike (not a 500, and not stored on one backend but not the other)."""
    base = document(make_report(planned_inventory("overflow-seq")))
    big = copy.deepcopy(base) | {"sequence": 2**63}
    nul = copy.deepcopy(base)
    nul["report_id"] = str(uuid.uuid4())
    nul["inventory"]["host"]["node_id"] = "nul-host"
    nul["inventory"]["host"]["hostname"] = "rack7\u0000node3"
    outcomes: dict[str, int | str] = {}
    for name, doc in (("sequence 2**63", big), ("NUL in hostname", nul)):
        with shared.client() as admin:  # a fresh connection each: the service drops one after a 500
            try:
                outcomes[name] = post_report(admin, doc).status_code
            except httpx.HTTPError as exc:
                outcomes[name] = repr(exc)
    with shared.client() as admin:
        nodes = {n: node(admin, n) for n in ("overflow-seq", "nul-host")}
    assert all(isinstance(s, int) and 400 <= s < 500 for s in outcomes.values()), outcomes
    assert nodes == {"overflow-seq": None, "nul-host": None}


def test_report_dated_in_the_future_is_refused_and_stores_nothing(shared: ServiceProcess) -> None:
    """A report dated an hour ahead of the server (a node with a wrong clock) gets 422 naming generated_at and
    stores nothing, so it cannot freeze the node's state until that time; one a minute ahead (skew) is fine."""
    future = datetime.now(tz=UTC) + timedelta(hours=1)
    doc = document(make_report(planned_inventory("clock-ahead"), generated_at=future))
    with shared.client() as admin:
        refused = post_report(admin, doc)
        assert refused.status_code == 422, refused.text
        assert "generated_at" in refused.json()["detail"]
        assert node(admin, "clock-ahead") is None
        skewed = document(
            make_report(planned_inventory("clock-ahead"), generated_at=datetime.now(tz=UTC) + timedelta(minutes=1))
        )
        assert post_report(admin, skewed).status_code == 200


def test_report_dated_with_a_utc_offset_is_kept_at_the_same_instant_in_history(shared: ServiceProcess) -> None:
    """An agent whose clock writes +08:00 (Beijing time) is stored at the same instant: the node's history and
    its state both give the report's time in UTC, not the local wall time read as UTC."""
    beijing = timezone(timedelta(hours=8))
    generated = datetime.now(tz=beijing).replace(microsecond=0) - timedelta(minutes=5)
    report = make_report(planned_inventory("beijing-clock"), generated_at=generated)
    with shared.client() as admin:
        assert stored(admin, report)["outcome"] == "stored"
        detail = node(admin, "beijing-clock")
    assert detail is not None
    [history] = detail["recent_reports"]
    assert datetime.fromisoformat(history["generated_at"]) == generated
