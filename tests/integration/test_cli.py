"""`census-agent` as an operator runs it: a real process, real output, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from census_agent.models import Precision, Report
from census_agent.schema import PUBLISHED_SCHEMA

FIXTURES = Path(__file__).parent.parent / "fixtures"


def agent(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `census-agent ARGS` with a clean SUANLI_ environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")}
    return subprocess.run(
        [sys.executable, "-m", "census_agent.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
        env=env,
        check=False,
    )


def meminfo_total_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal")


def test_inspect_json_describes_this_machine_and_matches_the_published_schema() -> None:
    """`inspect --json` prints a report valid against the committed JSON Schema, with this machine's
    logical CPUs (nproc) and memory (/proc/meminfo)."""
    result = agent("inspect", "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    jsonschema.validate(document, json.loads(PUBLISHED_SCHEMA.read_text()))
    report = Report.model_validate(document)
    assert report.inventory.cpu.threads == os.cpu_count()
    assert report.inventory.memory.total_bytes == meminfo_total_bytes()
    assert report.peaks.figures[Precision.FP64].flops > 0


def test_inspect_human_output_shows_inventory_peaks_and_tier() -> None:
    """The readable screen names the CPU, the peak table with units, the tier and why there are no GPUs."""
    result = agent("inspect")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Peak compute" in out
    assert "GFLOPS" in out or "TFLOPS" in out
    assert "Tier " in out
    assert f"{os.cpu_count()} threads" in out
    assert "Accel." in out


def test_inspect_with_labels_from_flags_and_environment() -> None:
    """Labels given as flags land in the report, and a --tier flag overrides the rules."""
    result = agent("inspect", "--json", "--region", "440106", "--organisation", "gz-dc", "--tier", "hpc")
    assert result.returncode == 0, result.stderr
    report = Report.model_validate_json(result.stdout)
    assert report.inventory.labels.region == "440106"
    assert report.tier.tier.value == "hpc"
    assert report.tier.overridden


def test_estimate_prices_a_planned_machine_from_a_file() -> None:
    """A planner's inventory file for a DGX H100 (no host section) is priced: 8 x 989.5 TFLOPS fp16 from the
    catalogue plus the CPUs, tier ai."""
    result = agent("estimate", str(FIXTURES / "inventories" / "dgx-h100-planned.json"), "--json")
    assert result.returncode == 0, result.stderr
    report = Report.model_validate_json(result.stdout)
    gpu_fp16 = sum(
        c.figures[Precision.FP16].flops for c in report.peaks.components if c.component.startswith("accelerator")
    )
    assert gpu_fp16 == pytest.approx(8 * 989.5e12)
    assert report.tier.tier.value == "ai"
    assert report.inventory.host.node_id == "estimate"


def test_estimate_round_trips_an_inspect_document(tmp_path: Path) -> None:
    """`inspect --json` fed to `estimate` gives the same peaks: the two share one schema and one model."""
    inspected = Report.model_validate_json(agent("inspect", "--json").stdout)
    path = tmp_path / "node.json"
    path.write_text(inspected.model_dump_json())
    estimated = Report.model_validate_json(agent("estimate", str(path), "--json").stdout)
    assert estimated.peaks == inspected.peaks
    assert estimated.tier == inspected.tier


def test_estimate_reads_standard_input() -> None:
    """`estimate -` reads the document from standard input."""
    text = (FIXTURES / "inventories" / "dgx-h100-planned.json").read_text()
    result = agent("estimate", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    assert "PFLOPS" in result.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "not a valid inventory"),
        ('{"cpu": {"physical_cores": -4}}', "physical_cores"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_estimate_rejects_bad_files_with_a_clear_message(tmp_path: Path, content: str, expected: str) -> None:
    """Malformed or absurd inventories exit 1 with the problem named and no traceback."""
    path = tmp_path / "bad.json"
    path.write_text(content)
    result = agent("estimate", str(path))
    assert result.returncode == 1
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_estimate_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    """A file that does not exist is named in the error."""
    result = agent("estimate", str(tmp_path / "nope.json"))
    assert result.returncode == 1
    assert "cannot read" in result.stderr


def test_measure_reports_fp64_and_fp32_rates_within_its_budget() -> None:
    """`measure --seconds 2 --json` returns a positive fp64 and fp32 matmul rate, each multiply inside its half.

    Whether fp32 beats fp64 is the CPU's business, and on a shared machine a neighbour can turn it round, so
    only the rates' plausibility and the budget are checked.
    """
    result = agent("measure", "--seconds", "2", "--json")
    assert result.returncode == 0, result.stderr
    measured = {m["precision"]: m for m in json.loads(result.stdout)}
    assert set(measured) == {"fp64", "fp32"}
    for m in measured.values():
        assert m["flops"] > 1e8
        assert m["flops"] == pytest.approx(2.0 * m["matrix_size"] ** 3 / m["seconds"])
        assert 0 < m["seconds"] < 1.0  # the budget is split in two halves of one second


def test_measure_human_output_puts_rmax_beside_rpeak() -> None:
    """The readable measure output shows the measured rate, the peak and their ratio."""
    result = agent("measure", "--seconds", "1")
    assert result.returncode == 0, result.stderr
    assert "Rmax/Rpeak" in result.stdout
    assert "fp64" in result.stdout


def test_measure_rejects_an_unbounded_budget() -> None:
    """The benchmark is bounded: more than 600 s is refused."""
    result = agent("measure", "--seconds", "3600")
    assert result.returncode == 2
    assert "--seconds" in result.stderr


def test_schema_command_prints_the_committed_contract() -> None:
    """`census-agent schema` prints exactly the committed JSON Schema file."""
    result = agent("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == json.loads(PUBLISHED_SCHEMA.read_text())


def test_bad_configuration_exits_2_naming_the_setting() -> None:
    """A malformed region code is a usage error naming labels.region, before any work is done."""
    result = agent("inspect", "--region", "Guangzhou!")
    assert result.returncode == 2
    assert "labels.region" in result.stderr


def test_run_without_server_or_metrics_is_a_usage_error(tmp_path: Path) -> None:
    """`run` with nowhere to report and nothing to export says what to add."""
    result = agent("run", "--spool-dir", str(tmp_path))
    assert result.returncode == 2
    assert "--server" in result.stderr


def test_help_teaches_commands_configuration_and_examples() -> None:
    """Top-level --help lists every command, the configuration precedence and examples."""
    result = agent("--help")
    assert result.returncode == 0
    for word in ("inspect", "estimate", "measure", "run", "schema", "SUANLI_AGENT_", "examples:"):
        assert word in result.stdout


HOSTS = FIXTURES / "hosts"


def inspect_fixture(name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`census-agent inspect --root FIXTURE`, with this machine's NVML and vendor tools kept out of it."""
    return agent("inspect", "--root", str(HOSTS / name), "--no-nvml", "--no-vendor-tools", *extra)


def test_inspect_ascend_fixture_shows_eight_priced_ascend_910b() -> None:
    """The Ascend server's screen lists eight Ascend 910B found on the PCI bus, none unpriced, tier ai."""
    result = inspect_fixture("ascend-910b-kunpeng920")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Accel.    8 device(s)" in out
    assert out.count("Huawei Ascend 910B:") == 8
    assert "8 x Ascend 910B" in out
    assert "UNPRICED" not in out
    assert "Tier      ai: 8 accelerator(s) (Ascend 910B)" in out


def test_inspect_hygon_fixture_shows_its_dcus_priced() -> None:
    """The Hygon server: eight DCU K100-AI, priced from the catalogue (fp64 from the catalogue, not 0)."""
    result = inspect_fixture("hygon-dcu-k100ai", "--json")
    assert result.returncode == 0, result.stderr
    report = Report.model_validate_json(result.stdout)
    assert [a.model for a in report.inventory.accelerators] == ["DCU K100-AI"] * 8
    dcus = [c for c in report.peaks.components if c.component != "cpu"]
    assert all(c.figures[Precision.FP64].provenance.value == "catalogue" for c in dcus)
    assert all(c.figures[Precision.FP64].flops > 0 for c in dcus)


def test_inspect_unknown_accelerator_fixture_shows_them_counted_and_unpriced() -> None:
    """Eight uncatalogued processing accelerators: counted, each marked UNPRICED, "unpriced" in the peak table,
    the reason given, and still an AI node; the JSON report marks every figure unpriced."""
    result = inspect_fixture("xeon-e5-2692v2-unknown-npu")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Accel.    8 device(s)" in out
    assert out.count("UNPRICED") == 8
    assert "Unpriced  8 accelerator(s) counted at 0 FLOPS" in out
    assert "not in the catalogue" in out
    assert "Tier      ai: 8 unpriced accelerator(s)" in out
    report = Report.model_validate_json(inspect_fixture("xeon-e5-2692v2-unknown-npu", "--json").stdout)
    figures = [f for c in report.peaks.components if c.component != "cpu" for f in c.figures.values()]
    assert len(figures) == 8 * 4
    assert {f.provenance.value for f in figures} == {"unpriced"}


def test_vendor_tools_can_be_switched_off_by_environment() -> None:
    """SUANLI_AGENT_VENDOR_TOOLS=false is a setting like the others (a bad value is a usage error naming it)."""
    env_ok = agent("inspect", "--root", str(HOSTS / "epyc-9654-zen4"), "--no-nvml", "--json")
    assert env_ok.returncode == 0, env_ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "census_agent.cli", "inspect", "--root", str(HOSTS / "epyc-9654-zen4")],
        capture_output=True,
        text=True,
        timeout=120,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("SUANLI_")},
            "SUANLI_AGENT_VENDOR_TOOLS": "perhaps",
        },
        check=False,
    )
    assert bad.returncode == 2
    assert "vendor_tools" in bad.stderr
