"""`census-agent catalogue`: the shipped accelerator catalogue as an operator reads it, through the CLI's own
`main` (table, JSON rows, vendor filter, help), and a bad vendor is a usage error that prints nothing on stdout."""

from __future__ import annotations

import json

import pytest

from census_agent.catalogue import load_default_catalogue
from census_agent.cli import EXIT_OK, EXIT_USAGE, main


def test_catalogue_json_prints_every_row_with_its_source_and_figures(capsys: pytest.CaptureFixture[str]) -> None:
    """--json prints one object per catalogue row, in order, with the CSV's columns in catalogue units."""
    assert main(["catalogue", "--json"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    entries = load_default_catalogue()
    assert [r["model"] for r in rows] == [e.model for e in entries]
    assert all(r["source"] and r["confidence"] in {"high", "medium", "low"} for r in rows)
    h100 = next(r for r in rows if r["model"] == "H100-SXM5")
    assert (h100["fp64_tflops"], h100["fp64_tensor_tflops"], h100["fp64_basis"]) == (34, 67, "matrix")
    assert h100["fp16_tensor_tflops"] == 989.5
    assert h100["pci_vendor_id"] == "10de"
    bin3 = next(r for r in rows if r["model"] == "Ascend 910B3")
    assert (bin3["pci_vendor_id"], bin3["pci_device_ids"], bin3["pci_shared_device_ids"]) == ("19e5", [], ["d802"])
    ascend = next(r for r in rows if r["model"] == "Ascend 910")
    assert (ascend["fp64_basis"], ascend["fp64_tflops"], ascend["fp64_tensor_tflops"]) == ("none", None, None)


def test_catalogue_table_shows_the_counted_fp64_with_its_basis(capsys: pytest.CaptureFixture[str]) -> None:
    """The table gives the FP64 figure counted and its basis (matrix, vector, formula, none) and a row count."""
    assert main(["catalogue"]) == EXIT_OK
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["vendor", "model", "fp64", "fp32"]
    h100 = next(line for line in lines if "H100-SXM5" in line)
    assert "67 matrix" in h100
    v100 = next(line for line in lines if "V100-SXM2" in line)
    assert "7.8 vector" in v100
    a10 = next(line for line in lines if line.split()[:2] == ["NVIDIA", "A10"])
    assert "formula" in a10
    br100 = next(line for line in lines if "BR100" in line)
    assert " none " in br100
    assert f"{len(load_default_catalogue())} row(s)" in out


def test_catalogue_vendor_filter_is_case_insensitive(capsys: pytest.CaptureFixture[str]) -> None:
    """--vendor 'moore threads' keeps only that vendor's rows."""
    assert main(["catalogue", "--json", "--vendor", "moore threads"]) == EXIT_OK
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == ["MTT S4000"]


def test_catalogue_unknown_vendor_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A vendor with no rows exits 2 with a message on stderr and nothing on stdout."""
    assert main(["catalogue", "--vendor", "nosuchvendor"]) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no rows for vendor 'nosuchvendor'" in captured.err


def test_catalogue_help_explains_the_columns(capsys: pytest.CaptureFixture[str]) -> None:
    """--help teaches the FP64 basis, the confidence rule and that figures are dense."""
    with pytest.raises(SystemExit) as exited:
        main(["catalogue", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for phrase in ("matrix", "vector", "none", "high: vendor datasheet", "low: derived", "halved", "--json"):
        assert phrase in out
