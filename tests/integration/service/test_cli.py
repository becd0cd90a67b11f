"""The `suanli` command as an operator runs it: a real process against the real service (SQLite and
PostgreSQL), real output and exit codes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from census_agent.models import PowerReading, Usage
from census_agent.units import human_bytes, human_flops
from tests.integration.service.helpers import (
    clean_env,
    host_inventory,
    make_report,
    module_service,
    planned_inventory,
    stored,
)
from tests.servers import free_port
from tests.service import ServiceProcess

SUANLI = Path(sys.executable).with_name("suanli")
TIERS = ("general", "ai", "hpc", "edge")
TIER_NAMES = ("general 通用", "ai 智算", "hpc 超算", "edge 边缘")


@pytest.fixture(scope="module", params=["sqlite"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """One service for this module, on SQLite (`suanli up`'s database). What these tests check is the command:
    its arguments, its output and its exit codes for what the service answers, which do not depend on where the
    service stores. Each backend's storage of what the commands ask for is tested on both backends elsewhere:
    the census and node listings in test_census.py (fleet totals, the CSV export, node filters and pages), the
    utilisation window in test_utilisation.py, tokens' organisations, taken names and revocation in
    test_identity.py and test_auth.py."""
    yield from module_service(request, tmp_path_factory)


def suanli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `suanli` entry point with a clean SUANLI_ environment in `cwd` (so no
    ./suanli-data/admin.token of the checkout is picked up)."""
    return suanli_all({"": args}, cwd=cwd)[""]


def suanli_all(commands: Mapping[str, Sequence[str]], cwd: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Run several independent `suanli` commands at once (each start costs most of a second of imports)."""
    assert SUANLI.exists(), f"the suanli entry point is not installed next to {sys.executable}"
    running = {
        key: subprocess.Popen(
            [str(SUANLI), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=clean_env()
        )
        for key, args in commands.items()
    }
    results = {}
    for key, proc in running.items():
        out, err = proc.communicate(timeout=60)
        results[key] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return results


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The standard output of a command that must succeed quietly."""
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """The one-line message of a command that must fail cleanly: non-zero exit, no traceback."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def test_help_lists_the_commands_and_unusable_connections_fail_cleanly(tmp_path: Path) -> None:
    """`suanli --help` lists every command (serve, up, census, nodes, token) and how to connect;
    `suanli token --help` lists create, list and revoke; no command at all is a usage error (exit 2); a
    missing token file or an unreachable server give a non-zero exit and one clear line, no traceback."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    token_file = tmp_path / "some.token"
    token_file.write_text("sl_user_whatever\n")
    results = suanli_all(
        {
            "help": ["--help"],
            "token help": ["token", "--help"],
            "bare": [],
            "missing file": ["census", "--server", nowhere, "--token-file", str(tmp_path / "no-such.token")],
            "unreachable": ["census", "--server", nowhere, "--token-file", str(token_file)],
        },
        cwd=tmp_path,
    )
    out = ok(results["help"])
    for command in ("serve", "up", "census", "nodes", "token"):
        assert command in out
    assert "--token-file" in out
    assert "SUANLI_SERVER" in out
    token_help = ok(results["token help"])
    for action in ("create", "list", "revoke"):
        assert action in token_help
    assert results["bare"].returncode == 2
    assert "usage: suanli" in results["bare"].stderr
    refused(results["missing file"], "suanli census:", "no-such.token")
    refused(results["unreachable"], "suanli census:", "cannot reach", nowhere)


def test_census_and_nodes_commands_show_the_services_figures(shared: ServiceProcess, tmp_path: Path) -> None:
    """With three nodes reported (ai, hpc, general in two districts): `census` shows the headline with its
    unit, node and memory totals and the four tier names; `census --by region` names Guangzhou's regions;
    `census --json` has the same headline and totals as GET /v1/census; `census --csv` parses with one row per
    region and tier whose node counts match the census; `nodes` lists the nodes and `nodes --json --tier ai`
    equals GET /v1/nodes?tier=ai."""
    server = ["--server", shared.url, "--token-file", str(shared.admin_token_file)]
    with shared.client() as admin:
        for report in (
            make_report(planned_inventory("cli-dgx", region="440112")),
            make_report(host_inventory("xeon-platinum-8380-2s", "cli-xeon-ib", region="440112")),
            make_report(host_inventory("epyc-9654-zen4", "cli-epyc", region="440106")),
        ):
            stored(admin, report)
        api = admin.get("/v1/census").json()
        api_nodes = admin.get("/v1/nodes").json()
        api_ai_nodes = admin.get("/v1/nodes", params={"tier": "ai"}).json()
        regions = admin.get("/v1/regions").json()

    results = suanli_all(
        {
            "census": ["census", *server],
            "by region": ["census", "--by", "region", *server],
            "json": ["census", "--json", *server],
            "csv": ["census", "--csv", *server],
            "nodes": ["nodes", *server],
            "ai nodes": ["nodes", "--json", "--tier", "ai", *server],
        },
        cwd=tmp_path,
    )
    human = ok(results["census"])
    assert "Headline compute 算力总量" in human
    assert human_flops(api["headline"]["flops"]) in human
    assert "PFLOPS" in human
    assert f"Nodes {api['totals']['nodes']:,}" in human
    assert human_bytes(api["totals"]["memory_bytes"]) in human
    for name in TIER_NAMES:
        assert name in human

    by_region = ok(results["by region"])
    for text in ("440112", "黄埔区 Huangpu", "广州市 Guangzhou", "中国 China", "per capita"):
        assert text in by_region

    document = json.loads(ok(results["json"]))
    assert document["headline"] == api["headline"]
    assert document["totals"] == api["totals"]

    rows = list(csv.DictReader(io.StringIO(ok(results["csv"]))))
    cells = {(r["region_code"], r["tier"]): r for r in rows}
    assert len(cells) == len(rows), "one row per region and tier"
    by_code = {r["code"]: r for r in api["by_region"]}
    for region in regions:
        for tier in TIERS:
            row = cells[(region["code"], tier)]
            assert int(row["nodes"]) == by_code[region["code"]]["by_tier"][tier]["nodes"], (region["code"], tier)
    assert int(cells[("440112", "ai")]["nodes"]) == 1
    assert int(cells[("CN", "all")]["nodes"]) == api["totals"]["nodes"]
    assert float(cells[("CN", "all")]["headline_flops"]) == pytest.approx(api["headline"]["flops"], rel=1e-12)

    listing = ok(results["nodes"])
    for node in api_nodes["items"]:
        assert node["node_id"][:16] in listing
        assert node["hostname"] in listing
    assert {"cli-dgx", "cli-xeon-ib", "cli-epyc"} <= {n["node_id"] for n in api_nodes["items"]}
    only_ai = json.loads(ok(results["ai nodes"]))
    assert only_ai == api_ai_nodes
    assert {n["tier"] for n in only_ai["items"]} == {"ai"}
    assert "cli-dgx" in {n["node_id"] for n in only_ai["items"]}


def test_census_utilisation_shows_layers_utilisation_wait_and_power_per_tier(
    shared: ServiceProcess, tmp_path: Path
) -> None:
    """`census --utilisation --window 6h` prints the window, and per tier its capacity, allocated and consumed
    compute, utilisation, wait, power with its provenance and peak GFLOPS/W, as GET /v1/census?window=21600 gives
    them; `--window` written in seconds asks for the same window; a window that is not a duration fails cleanly
    before any request, and one the service refuses fails with its 422 message."""
    server = ["--server", shared.url, "--token-file", str(shared.admin_token_file)]
    inventory = host_inventory("xeon-platinum-8380-2s", "cli-util-xeon", region="440106")
    report = make_report(inventory)
    usage = Usage(
        interval_seconds=30,
        cpu_busy_cores=40.0,
        memory_used_bytes=2**30,
        power=[PowerReading(watts=400.0, coverage="cpu-package", source="rapl")],
    )
    with shared.client() as admin:
        answer = stored(admin, report.model_copy(update={"usage": usage}))
        api = admin.get("/v1/census", params={"window": 21600}).json()
    results = suanli_all(
        {
            "util": ["census", "--utilisation", "--window", "6h", *server],
            "json": ["census", "--json", "--window", "21600", *server],
            "bad": ["census", "--utilisation", "--window", "soon", *server],
            "refused": ["census", "--utilisation", "--window", "30", *server],
        },
        cwd=tmp_path,
    )
    text = ok(results["util"])
    assert "Utilisation 利用率 over 6.0 h" in text
    for name in TIER_NAMES:
        assert name in text
    for header in ("capacity", "allocated", "consumed", "util", "wait", "xfactor", "power", "peak GFLOPS/W"):
        assert header in text
    tier = next(t for t in api["by_tier"] if t["tier"] == answer["tier"])
    assert human_flops(tier["utilisation"]["capacity"]["headline_flops"]) in text
    assert human_flops(tier["utilisation"]["consumed"]["headline_flops"]) in text
    assert "measured" in text
    assert f"{tier['energy']['peak_gflops_per_watt']:,.1f} ({tier['energy']['headline_precision']})" in text
    document = json.loads(ok(results["json"]))
    assert document["window"]["seconds"] == 21600
    assert document["by_tier"][0]["utilisation"]["capacity"] == api["by_tier"][0]["utilisation"]["capacity"]
    assert results["bad"].returncode != 0
    assert "not a duration" in results["bad"].stderr
    refused(results["refused"], "window")


def test_token_commands_create_list_and_revoke_and_bad_tokens_fail_cleanly(
    shared: ServiceProcess, tmp_path: Path
) -> None:
    """`token create` prints a working secret once (JSON or human), `token list` shows it by prefix without the
    secret, `token revoke` makes it fail with 401; a revoked or garbage token and a role that may not list
    tokens each give a non-zero exit and one clear line on standard error, never a traceback."""
    admin = ["--server", shared.url, "--token-file", str(shared.admin_token_file)]
    created = suanli_all(
        {
            "planner": ["token", "create", "cli-planner", "--role", "planner", "--json", *admin],
            "user": ["token", "create", "cli-user", "--role", "user", "--org", "lab", "--expires-in", "2h", *admin],
        },
        cwd=tmp_path,
    )
    made = json.loads(ok(created["planner"]))
    assert made["role"] == "planner"
    assert made["token"].startswith("sl_planner_")
    human = ok(created["user"])
    user_secret = human.strip().splitlines()[-1]
    assert user_secret.startswith("sl_user_")
    assert "not shown again" in human
    with shared.client(user_secret) as client:
        assert client.get("/v1/census").status_code == 200
    planner_file = tmp_path / "planner.token"
    planner_file.write_text(made["token"] + "\n")
    planner = ["--server", shared.url, "--token-file", str(planner_file)]
    garbage = tmp_path / "garbage.token"
    garbage.write_text("sl_admin_not-a-real-token\n")

    first = suanli_all(
        {
            "planner census": ["census", "--json", *planner],
            "list": ["token", "list", *admin],
            "planner lists": ["token", "list", *planner],
            "garbage": ["census", "--server", shared.url, "--token-file", str(garbage)],
        },
        cwd=tmp_path,
    )
    ok(first["planner census"])
    listing = ok(first["list"])
    assert "cli-planner" in listing
    assert "cli-user" in listing
    assert made["token"][:12] + "..." in listing
    assert made["token"] not in listing
    assert user_secret not in listing
    refused(first["planner lists"], "suanli token:", "HTTP 403", "planner")
    refused(first["garbage"], "suanli census:", "HTTP 401", "unknown token")

    revoked = ok(suanli("token", "revoke", str(made["id"]), *admin, cwd=tmp_path))
    assert revoked.strip() == f"token {made['id']} revoked"
    refused(suanli("census", *planner, cwd=tmp_path), "suanli census:", "HTTP 401", "revoked")
    with shared.client(made["token"]) as client:
        assert client.get("/v1/census").status_code == 401


def test_token_create_takes_repeated_organisations_for_user_tokens_and_refuses_taken_names(
    shared: ServiceProcess, tmp_path: Path
) -> None:
    """`token create NAME --role user --organisation physics --org chem` stores both, in order (JSON and
    `token list`); a user token without --organisation, a planner with one and a second token of a taken name
    each fail with one clear line (HTTP 422, 422, 409) and store nothing."""
    admin = ["--server", shared.url, "--token-file", str(shared.admin_token_file)]
    made = json.loads(
        ok(
            suanli(
                "token",
                "create",
                "cli-orgs",
                "--role",
                "user",
                "--organisation",
                "physics",
                "--org",
                "chem",
                "--json",
                *admin,
                cwd=tmp_path,
            )
        )
    )
    assert (made["role"], made["organisations"]) == ("user", ["physics", "chem"])
    with shared.client() as client:
        before = client.get("/v1/tokens").json()
    results = suanli_all(
        {
            "no organisation": ["token", "create", "cli-no-org", "--role", "user", *admin],
            "planner with one": ["token", "create", "cli-plan-org", "--role", "planner", "--org", "physics", *admin],
            "taken": ["token", "create", "cli-orgs", "--role", "user", "--org", "physics", *admin],
            "list": ["token", "list", *admin],
        },
        cwd=tmp_path,
    )
    refused(results["no organisation"], "suanli token:", "HTTP 422", "organisation")
    refused(results["planner with one"], "suanli token:", "HTTP 422", "only user tokens")
    refused(results["taken"], "suanli token:", "HTTP 409", "'cli-orgs' already exists")
    row = next(line for line in ok(results["list"]).splitlines() if " cli-orgs " in f" {line} ")
    assert "physics, chem" in row
    with shared.client() as client:
        assert client.get("/v1/tokens").json() == before


def test_submit_runs_for_the_user_tokens_organisation_and_job_shows_environment_values_to_the_owner_only(
    tmp_path: Path,
) -> None:
    """Against a service with a scheduler (its Ray unreachable: jobs queue), on SQLite: a user token made with
    `token create --org lab-x --org lab-y`; `submit` without --org runs for lab-x, with `--org lab-y` for lab-y,
    with `--org other` fails with one line (HTTP 403) and queues nothing. `job ID` prints API_KEY's value to the
    owner and an admin, and ``API_KEY=***`` to an operator."""
    config = tmp_path / "scheduler.toml"
    config.write_text(f'[ray]\naddress = "http://127.0.0.1:{free_port()}"\n')
    service = ServiceProcess(f"sqlite:///{tmp_path / 'suanli.db'}", tmp_path, scheduler_config=str(config)).start()
    try:
        admin = ["--server", service.url, "--token-file", str(service.admin_token_file)]
        made = suanli_all(
            {
                "user": ["token", "create", "lab-user", "--role", "user", "--org", "lab-x", "--org", "lab-y", *admin],
                "operator": ["token", "create", "lab-ops", "--role", "operator", *admin],
            },
            cwd=tmp_path,
        )
        flags = {}
        for key, result in made.items():
            path = tmp_path / f"{key}.token"
            path.write_text(ok(result).strip().splitlines()[-1] + "\n")
            flags[key] = ["--server", service.url, "--token-file", str(path)]
        submit = ["submit", "--class", "general", "--env", "API_KEY=k3y-value", "--json"]
        results = suanli_all(
            {
                "default": [*submit, *flags["user"], "--", "true"],
                "lab-y": [*submit, "--org", "lab-y", *flags["user"], "--", "true"],
                "other": [*submit, "--org", "other", *flags["user"], "--", "true"],
            },
            cwd=tmp_path,
        )
        first = json.loads(ok(results["default"]))
        assert first["organisation"] == "lab-x"
        assert json.loads(ok(results["lab-y"]))["organisation"] == "lab-y"
        refused(results["other"], "suanli submit:", "HTTP 403", "'other'")
        with service.client() as client:
            assert len(client.get("/v1/jobs").json()["items"]) == 2
        shown = suanli_all(
            {key: ["job", first["job_id"], *flags[key]] for key in ("user", "operator")}
            | {"admin": ["job", first["job_id"], *admin]},
            cwd=tmp_path,
        )
        assert "env      API_KEY=k3y-value" in ok(shown["user"])
        assert "env      API_KEY=k3y-value" in ok(shown["admin"])
        operator_view = ok(shown["operator"])
        assert "API_KEY=***" in operator_view
        assert "k3y-value" not in operator_view
    finally:
        service.stop()
