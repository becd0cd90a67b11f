"""The accelerator catalogue: NVML names to entries, datasheet figures, and the per-SM formula fallback.

Expected formula figures are worked out by hand from ``shared/reference/compute-methodology.md`` ("GPU peak
from hardware counters"): peak = SMs x FLOPs per clock per SM x clock, with FP32/FP64 lanes x 2 (FMA).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import seeds
from census_agent.catalogue import (
    CatalogueEntry,
    CatalogueError,
    Confidence,
    Fp64Basis,
    accelerator_peaks,
    entries_for_pci,
    entry_for_pci,
    find_entry,
    load_default_catalogue,
    parse_catalogue,
    sm_rule_for,
)
from census_agent.models import Accelerator, Precision, Provenance

TERA = 1e12
GHZ = 1e9


@pytest.fixture(scope="module")
def catalogue() -> tuple[CatalogueEntry, ...]:
    """The catalogue shipped in seeds/accelerators.csv."""
    return load_default_catalogue()


def nvml_gpu(
    model: str,
    *,
    cc: str | None = None,
    sms: int | None = None,
    fp32_lanes: int = 0,
    clock_hz: float | None = None,
    index: int = 0,
) -> Accelerator:
    """A GPU as the NVML scan reports it: cuda_cores = SMs x FP32 lanes per SM."""
    return Accelerator(
        index=index,
        vendor="NVIDIA",
        model=model,
        compute_capability=cc,
        cuda_cores=sms * fp32_lanes if sms is not None else None,
        max_sm_clock_hz=clock_hz,
        source="nvml",
    )


def declared(model: str, vendor: str = "NVIDIA") -> Accelerator:
    """An accelerator the operator declared: a model name and nothing measured."""
    return Accelerator(index=0, vendor=vendor, model=model, source="declared")


# --- matching NVML product names -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nvml_name", "entry"),
    [
        ("NVIDIA H100 80GB HBM3", "H100-SXM5"),
        ("NVIDIA H100 PCIe", "H100-PCIE"),
        ("NVIDIA A100-SXM4-80GB", "A100-SXM4"),
        ("NVIDIA A100-SXM4-40GB", "A100-SXM4"),
        ("NVIDIA A100 80GB PCIe", "A100-PCIE"),
        ("NVIDIA A100-PCIE-40GB", "A100-PCIE"),
        ("Tesla V100-SXM2-32GB", "Tesla V100-SXM2"),
        ("Tesla V100-PCIE-16GB", "Tesla V100-PCIE"),
        ("Tesla T4", "Tesla T4"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
        ("NVIDIA H200", "H200-SXM"),
        ("NVIDIA H800", "H800-SXM5"),
        ("NVIDIA A800-SXM4-80GB", "A800"),
        ("NVIDIA H20", "H20"),
        ("NVIDIA H100 NVL", "H100-NVL"),
        ("NVIDIA A30", "A30"),
        ("NVIDIA A40", "A40"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("NVIDIA GeForce RTX 3090", "GeForce RTX 3090"),
        ("NVIDIA L20", "L20"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA GB200", "GB200 (per GPU)"),
        ("Tesla V100S-PCIE-32GB", "Tesla V100S-PCIE"),
    ],
)
def test_find_entry_matches_nvml_product_name_to_catalogue_model(
    catalogue: tuple[CatalogueEntry, ...], nvml_name: str, entry: str
) -> None:
    """Each product name as NVML reports it finds the right catalogue row."""
    found = find_entry(catalogue, nvml_name)
    assert found is not None
    assert found.model == entry


@pytest.mark.parametrize(
    ("tool_name", "entry"),
    [
        ("MXC500", "C500"),
        ("MetaX C500", "C500"),
        ("P800 OAM", "Kunlunxin P800"),
        ("R200", "Kunlunxin R200"),
        ("K100_AI", "DCU K100-AI"),
        ("Ascend 910B3", "Ascend 910B3"),
    ],
)
def test_find_entry_matches_vendor_tool_names(
    catalogue: tuple[CatalogueEntry, ...], tool_name: str, entry: str
) -> None:
    """Names as vendor tools print them (mx-smi 'MXC500', xpu_smi 'P800 OAM', pci.ids 'K100_AI') find their row."""
    found = find_entry(catalogue, tool_name)
    assert found is not None
    assert found.model == entry


@pytest.mark.parametrize("tool_name", ["R200-PF", "R200-VF-5G"])
def test_sr_iov_functions_of_an_r200_are_not_priced_as_whole_chips(
    catalogue: tuple[CatalogueEntry, ...], tool_name: str
) -> None:
    """xpu_smi's SR-IOV physical function (no compute once VFs exist) and virtual functions (a share of the chip)
    find no row, so three VFs and a PF are never counted as four R200s."""
    assert find_entry(catalogue, tool_name) is None


def test_find_entry_does_not_confuse_a10_and_a100(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """'NVIDIA A10' is the A10, not an A100; an A100 name never lands on the A10 row."""
    a10 = find_entry(catalogue, "NVIDIA A10")
    assert a10 is not None
    assert "A100" not in a10.model
    for name in ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "NVIDIA A100-PCIE-40GB"):
        a100 = find_entry(catalogue, name)
        assert a100 is not None
        assert a100.model != "A10"


def test_find_entry_does_not_confuse_l4_with_l40s_or_l40(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """'NVIDIA L4' is the L4; 'NVIDIA L40S' the L40S; the L40 (not catalogued) matches neither."""
    l4, l40s = find_entry(catalogue, "NVIDIA L4"), find_entry(catalogue, "NVIDIA L40S")
    assert l4 is not None
    assert l40s is not None
    assert (l4.model, l40s.model) == ("L4", "L40S")
    assert find_entry(catalogue, "NVIDIA L40") is None


@pytest.mark.parametrize(
    "name",
    [
        "NVIDIA A10G",
        "NVIDIA GeForce GT 1030",
        "NVIDIA T400",
        "NVIDIA GeForce RTX 4090 Laptop GPU",
        "NVIDIA H800 PCIe",
        "NVIDIA H200 NVL",
        "NVIDIA GeForce RTX 4090 D",
        "NVIDIA GeForce RTX 3090 Ti",
        "NVIDIA GRID K100",
        "Quadro P800",
    ],
)
def test_find_entry_returns_none_for_uncatalogued_names(catalogue: tuple[CatalogueEntry, ...], name: str) -> None:
    """Names that merely contain a catalogued model's letters (A10G, T400, an NVIDIA "K100" or "P800" beside
    the Hygon and Kunlunxin rows) or name a variant with other figures (4090 D, H200 NVL) find no row."""
    assert find_entry(catalogue, name) is None


# --- catalogue figures -------------------------------------------------------------------------------------


def test_peaks_of_catalogued_h100_sxm_are_datasheet_figures(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """H100 SXM: the datasheet's dense figures, provenance catalogue, named by the catalogue model."""
    peaks = accelerator_peaks(nvml_gpu("NVIDIA H100 80GB HBM3", cc="9.0", sms=132, fp32_lanes=128), catalogue)
    assert peaks.model == "H100-SXM5"
    assert peaks.component == "accelerator:0"
    # seeds/accelerators.csv: fp32 67, fp16 tensor 989.5, int8 1979 (dense).
    assert peaks.figures[Precision.FP32].flops == pytest.approx(67 * TERA)
    assert peaks.figures[Precision.FP16].flops == pytest.approx(989.5 * TERA)
    assert peaks.figures[Precision.INT8].flops == pytest.approx(1979 * TERA)
    assert all(f.provenance is Provenance.CATALOGUE for f in peaks.figures.values())
    assert peaks.note == ""


@pytest.mark.parametrize(
    ("name", "vector_tflops", "tensor_tflops"),
    [("NVIDIA H100 80GB HBM3", 34, 67), ("NVIDIA A100-SXM4-80GB", 9.7, 19.5), ("NVIDIA H800", 1, 1)],
)
def test_fp64_with_matrix_basis_is_the_tensor_figure(
    catalogue: tuple[CatalogueEntry, ...], name: str, vector_tflops: float, tensor_tflops: float
) -> None:
    """fp64 of a row with basis matrix is the datasheet's FP64 tensor figure, as HPL runs on the tensor cores."""
    entry = find_entry(catalogue, name)
    assert entry is not None
    assert entry.fp64_basis is Fp64Basis.MATRIX
    assert entry.fp64_flops == pytest.approx(vector_tflops * TERA)
    peaks = accelerator_peaks(declared(name), catalogue)
    assert peaks.figures[Precision.FP64].flops == pytest.approx(tensor_tflops * TERA)
    assert peaks.figures[Precision.FP64].provenance is Provenance.CATALOGUE


def test_fp64_uses_vector_figure_when_no_tensor_figure(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """V100 has no FP64 tensor path (basis vector): fp64 is the vector 7.8 TFLOPS."""
    peaks = accelerator_peaks(declared("Tesla V100-SXM2-32GB"), catalogue)
    assert peaks.figures[Precision.FP64].flops == pytest.approx(7.8 * TERA)


def test_empty_datasheet_cell_is_filled_by_formula_from_device_counters(
    catalogue: tuple[CatalogueEntry, ...],
) -> None:
    """A10's fp64 cells are empty: fp64 = 72 SMs x 2 FP64 lanes x 2 x 1.695 GHz (cc 8.6), provenance formula."""
    peaks = accelerator_peaks(nvml_gpu("NVIDIA A10", cc="8.6", sms=72, fp32_lanes=128, clock_hz=1.695 * GHZ), catalogue)
    fp64 = peaks.figures[Precision.FP64]
    assert fp64.flops == pytest.approx(72 * 2 * 2 * 1.695 * GHZ)
    assert fp64.provenance is Provenance.FORMULA
    assert peaks.figures[Precision.FP32].flops == pytest.approx(31.2 * TERA)
    assert peaks.figures[Precision.FP32].provenance is Provenance.CATALOGUE


def test_empty_datasheet_cell_uses_catalogue_sm_count_and_clock_when_declared(
    catalogue: tuple[CatalogueEntry, ...],
) -> None:
    """A declared L4 (no counters): fp64 from the row's cc 8.9, 58 SMs and 2.04 GHz: 58 x 2 x 2 x 2.04 GHz."""
    peaks = accelerator_peaks(declared("NVIDIA L4"), catalogue)
    assert peaks.figures[Precision.FP64].flops == pytest.approx(58 * 2 * 2 * 2.04 * GHZ)
    assert peaks.figures[Precision.FP64].provenance is Provenance.FORMULA


# --- formula for models not in the catalogue ----------------------------------------------------------------


def test_formula_for_unlisted_cc_8_0_gpu_gives_a100_fp16_check(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Methodology check: 108 SMs x 2048 dense FP16 FLOPs/clock x 1.41 GHz = 312 TFLOPS FP16."""
    gpu = nvml_gpu("NVIDIA Unlisted Ampere Accelerator", cc="8.0", sms=108, fp32_lanes=64, clock_hz=1.41 * GHZ)
    assert find_entry(catalogue, gpu.model) is None
    peaks = accelerator_peaks(gpu, catalogue)
    fp16 = peaks.figures[Precision.FP16]
    assert fp16.flops == pytest.approx(108 * 2048 * 1.41 * GHZ)
    assert round(fp16.flops / TERA) == 312
    assert fp16.provenance is Provenance.FORMULA
    # FP64: the tensor path (128/clock/SM) beats 32 vector lanes x 2; FP32: 64 lanes x 2; INT8 = FP16 x 2.
    assert peaks.figures[Precision.FP64].flops == pytest.approx(108 * 128 * 1.41 * GHZ)
    assert peaks.figures[Precision.FP32].flops == pytest.approx(108 * 64 * 2 * 1.41 * GHZ)
    assert peaks.figures[Precision.INT8].flops == pytest.approx(2 * 108 * 2048 * 1.41 * GHZ)
    assert peaks.model == gpu.model


def test_formula_for_unlisted_cc_9_0_gpu_gives_h100_fp32_check(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Methodology check: 132 SMs x 128 FP32 lanes x 2 x 1.98 GHz = 66.9 TFLOPS FP32."""
    gpu = nvml_gpu("NVIDIA Unlisted Hopper Accelerator", cc="9.0", sms=132, fp32_lanes=128, clock_hz=1.98 * GHZ)
    assert find_entry(catalogue, gpu.model) is None
    peaks = accelerator_peaks(gpu, catalogue)
    fp32 = peaks.figures[Precision.FP32]
    assert fp32.flops == pytest.approx(132 * 128 * 2 * 1.98 * GHZ)
    assert round(fp32.flops / TERA, 1) == 66.9
    assert fp32.provenance is Provenance.FORMULA
    # FP64 tensor 256/clock/SM beats 64 vector lanes x 2 = 128.
    assert peaks.figures[Precision.FP64].flops == pytest.approx(132 * 256 * 1.98 * GHZ)


def test_formula_for_unlisted_cc_7_5_gpu_gives_t4_fp32_check(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Methodology check: 40 SMs x 64 FP32 lanes x 2 x 1.59 GHz = 8.1 TFLOPS FP32; INT8 = FP16 x 2 on 7.5."""
    gpu = nvml_gpu("NVIDIA Unlisted Turing Accelerator", cc="7.5", sms=40, fp32_lanes=64, clock_hz=1.59 * GHZ)
    assert find_entry(catalogue, gpu.model) is None
    peaks = accelerator_peaks(gpu, catalogue)
    assert peaks.figures[Precision.FP32].flops == pytest.approx(40 * 64 * 2 * 1.59 * GHZ)
    assert round(peaks.figures[Precision.FP32].flops / TERA, 1) == 8.1
    assert peaks.figures[Precision.FP16].flops == pytest.approx(40 * 1024 * 1.59 * GHZ)
    assert peaks.figures[Precision.INT8].flops == pytest.approx(2 * 40 * 1024 * 1.59 * GHZ)
    assert peaks.figures[Precision.FP64].flops == pytest.approx(40 * 2 * 2 * 1.59 * GHZ)


def test_formula_for_unknown_newer_cc_uses_nearest_lower_rule_with_note(
    catalogue: tuple[CatalogueEntry, ...],
) -> None:
    """cc 10.0 has no per-SM rule: Hopper's (9.0) stands in, and the note says so."""
    gpu = nvml_gpu("NVIDIA Unlisted Future Accelerator", cc="10.0", sms=148, fp32_lanes=128, clock_hz=1.965 * GHZ)
    peaks = accelerator_peaks(gpu, catalogue)
    assert peaks.figures[Precision.FP32].flops == pytest.approx(148 * 128 * 2 * 1.965 * GHZ)
    assert peaks.figures[Precision.FP16].flops == pytest.approx(148 * 4096 * 1.965 * GHZ)
    assert "10.0" in peaks.note
    assert "9.0" in peaks.note


def test_pascal_gp10x_has_no_tensor_cores_but_dp4a_int8(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """cc 6.1 (GT 1030, 3 SMs x 128 lanes): fp16 runs at 1/64 of fp32 and int8 DP4A at 4x fp32, no note."""
    gpu = nvml_gpu("NVIDIA GeForce GT 1030", cc="6.1", sms=3, fp32_lanes=128, clock_hz=1.468 * GHZ)
    peaks = accelerator_peaks(gpu, catalogue)
    fp32 = 3 * 128 * 2 * 1.468 * GHZ
    assert peaks.figures[Precision.FP32].flops == pytest.approx(fp32)
    assert peaks.figures[Precision.FP16].flops == pytest.approx(fp32 / 64)
    assert peaks.figures[Precision.INT8].flops == pytest.approx(fp32 * 4)
    assert peaks.note == ""


def test_formula_for_unknown_older_cc_uses_oldest_rule_with_note(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """cc 5.2 (Maxwell) is older than every rule: Pascal GP100's (6.0) stands in, and the note says so."""
    gpu = nvml_gpu("NVIDIA Tesla M40", cc="5.2", sms=24, fp32_lanes=128, clock_hz=1.114 * GHZ)
    peaks = accelerator_peaks(gpu, catalogue)
    assert "5.2" in peaks.note
    assert "6.0" in peaks.note
    # 6.0's 64 FP32 lanes per SM turn 3072 CUDA cores into 48 SMs: fp32 is still cores x 2 x clock.
    assert peaks.figures[Precision.FP32].flops == pytest.approx(3072 * 2 * 1.114 * GHZ)


def test_accelerator_without_cc_or_catalogue_entry_is_unpriced_with_the_reason(
    catalogue: tuple[CatalogueEntry, ...],
) -> None:
    """A declared NPU the catalogue does not know, with no compute capability: every figure 0 and marked
    unpriced (never a silent formula zero), and the note says why and what to do."""
    peaks = accelerator_peaks(declared("Cambricon MLU220", vendor="Cambricon"), catalogue)
    assert all(f.flops == 0 for f in peaks.figures.values())
    assert all(f.provenance is Provenance.UNPRICED for f in peaks.figures.values())
    assert "not in the catalogue" in peaks.note
    assert "declared" in peaks.note


def test_accelerator_with_cc_but_no_sm_count_or_clock_is_unpriced_with_note(
    catalogue: tuple[CatalogueEntry, ...],
) -> None:
    """An uncatalogued GPU whose NVML gave cc but neither CUDA cores nor clock: 0, unpriced, and the note says why."""
    peaks = accelerator_peaks(nvml_gpu("NVIDIA Unlisted Accelerator", cc="9.0"), catalogue)
    assert all(f.flops == 0 for f in peaks.figures.values())
    assert all(f.provenance is Provenance.UNPRICED for f in peaks.figures.values())
    assert "SM count or clock unknown" in peaks.note


# --- parsing --------------------------------------------------------------------------------------------------

HEADER = seeds.read_text("accelerators.csv").splitlines()[0]
# vendor,model,match,arch,cc,sm,clock,memory,fp64,fp64_tensor,basis,fp32,fp16,int8,pci vendor,pci devices,revision,
# confidence,source,note
GOOD_ROW = "NVIDIA,Test GPU,Test GPU,Hopper,9.0,132,1.98,80,34,67,matrix,67,989.5,1979,10de,2330,,high,test,"


def row(**cells: str) -> str:
    """GOOD_ROW with the named cells replaced."""
    values = dict(zip(HEADER.split(","), GOOD_ROW.split(","), strict=True))
    values.update(cells)
    return ",".join(values.values())


def test_parse_catalogue_reads_rows_in_flops_and_hz_with_empty_cells_as_none() -> None:
    """TFLOPS cells become FLOPS, the GHz clock becomes Hz, the match pattern ignores case, empty cells are None."""
    sparse_row = row(
        model="Sparse GPU",
        match="Sparse",
        compute_capability="8.9",
        sm_or_cu="",
        boost_clock_ghz="",
        fp64_tflops="",
        fp64_tensor_tflops="",
        fp64_basis="vector",
        fp32_tflops="30.3",
        fp16_tensor_tflops="",
        int8_tensor_tops="",
        pci_vendor_id="",
        pci_device_ids="",
    )
    full, sparse = parse_catalogue(f"{HEADER}\n{GOOD_ROW}\n{sparse_row}\n")
    assert full.fp32_flops == pytest.approx(67 * TERA)
    assert full.fp16_tensor_flops == pytest.approx(989.5 * TERA)
    assert full.boost_clock_hz == pytest.approx(1.98 * GHZ)
    assert full.units == 132
    assert full.pattern.search("nvidia test gpu") is not None
    assert (full.fp64_basis, full.confidence, full.pci_vendor_id, full.pci_device_ids) == (
        Fp64Basis.MATRIX,
        Confidence.HIGH,
        "10de",
        ("2330",),
    )
    assert (sparse.fp64_flops, sparse.units, sparse.boost_clock_hz, sparse.int8_tensor_ops) == (None, None, None, None)
    assert sparse.fp32_flops == pytest.approx(30.3 * TERA)
    assert sparse.pci_device_ids == ()


@pytest.mark.parametrize(
    "bad_cells",
    [
        {"sm_or_cu": "many"},
        {"fp64_tflops": "thirty"},
        {"match": "Bad("},
        {"fp32_tflops": "-1"},
        {"fp32_tflops": "nan"},
        {"source": ""},
        {"confidence": ""},
        {"confidence": "certain"},
        {"fp64_basis": "tensor"},
        {"fp64_basis": "none"},
        {"fp64_basis": "matrix", "fp64_tensor_tflops": ""},
        {"fp64_basis": "matrix", "fp64_tflops": "70"},
        {"fp64_basis": "vector"},
        {"fp64_basis": "vector", "fp64_tflops": "", "fp64_tensor_tflops": "", "compute_capability": ""},
        {"compute_capability": "nine"},
        {"pci_vendor_id": "10DEX"},
        {"pci_device_ids": "2330 zz"},
        {"pci_device_ids": "2330 ~zz"},
        {"pci_device_ids": "2330 ~2330"},
        {"pci_vendor_id": ""},
        {"pci_vendor_id": "", "pci_device_ids": "~2330"},
        {"vendor": ""},
    ],
    ids=[
        "non-integer-sm-count",
        "non-numeric-tflops",
        "invalid-regex",
        "negative-figure",
        "nan-figure",
        "no-source",
        "no-confidence",
        "unknown-confidence",
        "unknown-fp64-basis",
        "basis-none-with-fp64-figures",
        "basis-matrix-without-tensor-figure",
        "basis-matrix-vector-above-matrix",
        "basis-vector-with-tensor-figure",
        "basis-vector-nothing-to-compute-from",
        "bad-compute-capability",
        "bad-pci-vendor-id",
        "bad-pci-device-id",
        "bad-shared-pci-device-id",
        "device-id-both-owned-and-shared",
        "device-ids-without-vendor-id",
        "shared-device-ids-without-vendor-id",
        "no-vendor",
    ],
)
def test_parse_catalogue_names_the_line_of_a_malformed_row(bad_cells: dict[str, str]) -> None:
    """A malformed third line raises CatalogueError saying 'line 3'."""
    with pytest.raises(CatalogueError, match=r"line 3\b"):
        parse_catalogue(f"{HEADER}\n{GOOD_ROW}\n{row(**bad_cells)}\n")


def test_parse_catalogue_accepts_basis_none_with_empty_fp64_cells() -> None:
    """A row with FP64 basis none and empty FP64 cells parses; its FP64 figures are None."""
    (entry,) = parse_catalogue(f"{HEADER}\n{row(fp64_basis='none', fp64_tflops='', fp64_tensor_tflops='')}\n")
    assert entry.fp64_basis is Fp64Basis.NONE
    assert (entry.fp64_flops, entry.fp64_tensor_flops) == (None, None)


def test_parse_catalogue_rejects_header_without_required_column() -> None:
    """A header missing a column the parser needs makes the first data row (line 2) an error."""
    header = HEADER.replace("int8_tensor_tops", "int8_tops")
    with pytest.raises(CatalogueError, match=r"line 2\b"):
        parse_catalogue(f"{header}\n{GOOD_ROW}\n")


def test_parse_catalogue_names_the_line_of_a_truncated_row() -> None:
    """A row cut short after three cells is malformed: CatalogueError naming line 3."""
    with pytest.raises(CatalogueError, match=r"line 3\b"):
        parse_catalogue(f"{HEADER}\n{GOOD_ROW}\nNVIDIA,Short,Short\n")


def test_parse_catalogue_names_the_line_of_a_row_with_extra_cells() -> None:
    """A row with more cells than the header (a stray comma) is malformed: CatalogueError naming line 3."""
    with pytest.raises(CatalogueError, match=r"line 3\b"):
        parse_catalogue(f"{HEADER}\n{GOOD_ROW}\n{GOOD_ROW},extra\n")


def test_declared_accelerator_without_cc_gets_catalogue_figures_and_names_the_missing_ones(
    catalogue: tuple[CatalogueEntry, ...],
) -> None:
    """A declared Ascend 910 takes fp16 and int8 from the catalogue; its FP64 basis is none, so fp64 is 0 from the
    catalogue (never a formula guess) and said so; fp32 (empty cell, no compute capability) is 0 and the note
    names exactly that, not "not in the catalogue"."""
    peaks = accelerator_peaks(declared("Ascend 910", vendor="Huawei"), catalogue)
    assert peaks.figures[Precision.FP16].flops == pytest.approx(256 * TERA)
    assert peaks.figures[Precision.FP16].provenance is Provenance.CATALOGUE
    assert peaks.figures[Precision.INT8].flops == pytest.approx(512 * TERA)
    assert peaks.figures[Precision.FP64].flops == 0
    assert peaks.figures[Precision.FP64].provenance is Provenance.CATALOGUE
    assert "no FP64 counted" in peaks.note
    assert "no fp32 figure" in peaks.note
    assert "not in the catalogue" not in peaks.note


def test_fp64_basis_none_never_falls_back_to_the_formula(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Even with NVML-style counters, a basis-none row counts 0 FP64: the formula may not guess one."""
    acc = Accelerator(
        index=0,
        vendor="Biren",
        model="Biren BR100",
        compute_capability="9.0",
        cuda_cores=132 * 128,
        max_sm_clock_hz=1.98 * GHZ,
        source="declared",
    )
    peaks = accelerator_peaks(acc, catalogue)
    assert peaks.figures[Precision.FP64].flops == 0
    assert peaks.figures[Precision.FP64].provenance is Provenance.CATALOGUE
    assert peaks.figures[Precision.FP32].flops == pytest.approx(256 * TERA)


# --- the shipped catalogue: coverage, sources and arithmetic -------------------------------------------------

REQUIRED_MODELS = [
    # NVIDIA Volta to Blackwell
    "Tesla V100-SXM2",
    "Tesla V100-PCIE",
    "Tesla T4",
    "A10",
    "A30",
    "A40",
    "A100-SXM4",
    "A100-PCIE",
    "A800",
    "RTX A6000",
    "GeForce RTX 3090",
    "GeForce RTX 4090",
    "L4",
    "L20",
    "L40S",
    "H20",
    "H100-PCIE",
    "H100-SXM5",
    "H100-NVL",
    "H200-SXM",
    "H800-SXM5",
    "B200",
    "GB200 (per GPU)",
    # AMD
    "Instinct MI100",
    "Instinct MI210",
    "Instinct MI250X",
    "Instinct MI300X",
    "Instinct MI325X",
    # Huawei
    "Ascend 910",
    "Ascend 910B",
    "Ascend 910B1",
    "Ascend 910B2",
    "Ascend 910B3",
    "Ascend 910B4",
    "Ascend 910C",
    "Ascend 310P",
    # Hygon
    "DCU Z100",
    "DCU K100",
    "DCU K100-AI",
    "DCU BW1000",
    # Cambricon, Kunlunxin, Biren, Moore Threads, Iluvatar, MetaX, Enflame
    "MLU370-X8",
    "MLU590",
    "Kunlunxin R200",
    "Kunlunxin P800",
    "BR100",
    "BR104",
    "MTT S4000",
    "BI-V100",
    "BI-V150",
    "C500",
    "CloudBlazer T20",
    # TOP500 parts
    "Matrix-2000",
    "SW26010",
    "SW26010-Pro",
]


def test_default_catalogue_has_at_least_60_rows_with_unique_models() -> None:
    """The shipped catalogue parses, has 60 or more rows, and no model name twice."""
    entries = load_default_catalogue()
    assert len(entries) >= 60
    models = [e.model for e in entries]
    assert len(models) == len(set(models))


def test_default_catalogue_covers_every_required_model(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Every model the census must know (issue 15's list) has a row."""
    models = {e.model for e in catalogue}
    assert [m for m in REQUIRED_MODELS if m not in models] == []


def test_every_required_model_matches_its_own_name(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Each required row's pattern finds the row from its own model name (vendor prefix included)."""
    for model in REQUIRED_MODELS:
        entry = next(e for e in catalogue if e.model == model)
        found = find_entry(catalogue, f"{entry.vendor} {model}".replace(" (per GPU)", ""))
        assert found is not None, model
        assert found.model == model


def test_every_row_has_a_source_and_a_confidence(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """No row without a source (a URL or a named document) or a confidence from the documented set."""
    for entry in catalogue:
        assert len(entry.source.strip()) >= 10, entry.model
        assert entry.confidence in set(Confidence), entry.model


def test_high_confidence_rows_cite_a_vendor_document(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """The confidence rule: `high` means a vendor datasheet or whitepaper, so its source names one."""
    for entry in catalogue:
        if entry.confidence is Confidence.HIGH:
            assert any(word in entry.source.lower() for word in ("datasheet", "data sheet", "whitepaper")), entry.model


def test_a_row_without_any_figure_says_so_and_is_low_confidence(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """A row kept for identification only (no sourced figure) is low confidence with a note saying why."""
    for entry in catalogue:
        figures = (entry.fp64_flops, entry.fp64_tensor_flops, entry.fp32_flops, entry.fp16_tensor_flops,
                   entry.int8_tensor_ops)  # fmt: skip
        if all(f is None for f in figures):
            assert entry.confidence is Confidence.LOW, entry.model
            assert "no sourced figure" in entry.note or "no figure could be sourced" in entry.note, entry.model


def test_a_row_with_derived_figures_is_low_confidence(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Figures derived rather than published (a card figure divided by its chips) make a row `low`."""
    derived = [e for e in catalogue if "derived" in e.note]
    assert derived
    assert [e.model for e in derived if e.confidence is not Confidence.LOW] == []


def test_every_row_fp64_cells_agree_with_its_basis(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Matrix: a tensor figure not below the vector one; vector: no tensor figure, and a figure or a compute
    capability; none: no FP64 figure at all (a model with no FP64 contributes none, never a guess)."""
    for entry in catalogue:
        if entry.fp64_basis is Fp64Basis.MATRIX:
            assert entry.fp64_tensor_flops is not None, entry.model
            assert entry.fp64_tensor_flops >= (entry.fp64_flops or 0), entry.model
        elif entry.fp64_basis is Fp64Basis.VECTOR:
            assert entry.fp64_tensor_flops is None, entry.model
            assert entry.fp64_flops is not None or entry.compute_capability is not None, entry.model
        else:
            assert (entry.fp64_flops, entry.fp64_tensor_flops) == (None, None), entry.model


def test_every_row_precisions_are_ordered(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Dense half precision is at least FP32, INT8 at least FP16, vector FP64 at most FP32, where both are given."""
    for entry in catalogue:
        if entry.fp16_tensor_flops is not None and entry.fp32_flops is not None:
            assert entry.fp16_tensor_flops >= entry.fp32_flops, entry.model
        if entry.int8_tensor_ops is not None and entry.fp16_tensor_flops is not None:
            assert entry.int8_tensor_ops >= entry.fp16_tensor_flops, entry.model
        if entry.fp64_flops is not None and entry.fp32_flops is not None:
            assert entry.fp64_flops <= entry.fp32_flops, entry.model


def test_nvidia_datasheet_fp32_agrees_with_the_per_sm_formula(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Where an NVIDIA row gives compute capability, SMs and boost clock, SMs x FP32 lanes x 2 x clock is within
    1.5% of its datasheet FP32 (V100 PCIe, the loosest, is 14.13 computed against 14.0 stated)."""
    checked = 0
    for entry in catalogue:
        if entry.vendor != "NVIDIA" or not (entry.compute_capability and entry.units and entry.boost_clock_hz):
            continue
        assert entry.fp32_flops is not None, entry.model
        rule, _ = sm_rule_for(entry.compute_capability)
        computed = entry.units * rule.fp32_lanes * 2 * entry.boost_clock_hz
        assert computed == pytest.approx(entry.fp32_flops, rel=0.015), entry.model
        checked += 1
    assert checked >= 20


def test_amd_cdna_fp64_matches_compute_units_times_clock(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """AMD rows: vector FP64 = CUs x 128 FLOPs/clock (CDNA2/3) or x 64 (CDNA1) x clock, within 1%."""
    per_cu = {"CDNA": 64, "CDNA2": 128, "CDNA3": 128}
    amd = [e for e in catalogue if e.vendor == "AMD"]
    assert len(amd) >= 5
    for entry in amd:
        assert entry.units, entry.model
        assert entry.boost_clock_hz, entry.model
        assert entry.fp64_flops, entry.model
        computed = entry.units * per_cu[entry.arch] * entry.boost_clock_hz
        assert computed == pytest.approx(entry.fp64_flops, rel=0.01), entry.model


def test_no_row_stores_a_sparse_figure(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Dense figures only: a note that mentions a sparse datasheet figure also says it was halved."""
    for entry in catalogue:
        if "sparse" in entry.note.lower():
            assert "/ 2" in entry.note or "halved" in entry.note, entry.model


def test_owned_pci_ids_are_unique_across_rows(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """One (vendor, device) PCI id is owned by at most one row, so discovery from sysfs is unambiguous; the
    shipped catalogue names at least 45 ids."""
    seen: dict[tuple[str, str], str] = {}
    for entry in catalogue:
        for device in entry.pci_device_ids:
            key = (entry.pci_vendor_id, device)
            assert key not in seen, f"{key} in {seen.get(key)} and {entry.model}"
            seen[key] = entry.model
    assert len(seen) >= 45


def test_every_shared_pci_id_has_at_least_two_candidates(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """An id marked shared (~xxxx) is shared with something: the family row owning it or another sharer."""
    for entry in catalogue:
        for device in entry.pci_shared_device_ids:
            candidates = entries_for_pci(catalogue, entry.pci_vendor_id, device)
            assert entry in candidates, entry.model
            assert len(candidates) >= 2, (entry.model, device)


def test_one_pci_vendor_id_per_vendor(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """Every row of a vendor that gives a PCI vendor id gives the same one (NVIDIA 10de, Huawei 19e5, ...)."""
    ids: dict[str, set[str]] = {}
    for entry in catalogue:
        if entry.pci_vendor_id:
            ids.setdefault(entry.vendor, set()).add(entry.pci_vendor_id)
    assert {vendor: len(found) for vendor, found in ids.items() if len(found) > 1} == {}
    assert ids["Huawei"] == {"19e5"}
    assert ids["AMD"] == {"1002"}


def test_rows_outside_pci_ids_name_where_their_device_ids_come_from(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """NVIDIA and AMD ids are pci.ids entries (docs/census.md); every other row with a device id says in its note
    or source where the id comes from (pci.ids, or a vendor's driver or guide)."""
    for entry in catalogue:
        if entry.vendor in {"NVIDIA", "AMD"} or not (entry.pci_device_ids or entry.pci_shared_device_ids):
            continue
        text = f"{entry.source} {entry.note}"
        assert any(word in text for word in ("pci.ids", "driver", "guide")), entry.model


@pytest.mark.parametrize(
    ("vendor_id", "device_id", "model"),
    [
        ("19e5", "d801", "Ascend 910"),
        ("19e5", "d802", "Ascend 910B"),
        ("0x19e5", "0xD802", "Ascend 910B"),
        ("19e5", "d500", "Ascend 310P"),
        ("10de", "2330", "H100-SXM5"),
        ("1002", "7408", "Instinct MI250X"),
        ("cabc", "0370", "MLU370-S4"),
        ("9999", "0a01", "C500"),
    ],
)
def test_entry_for_pci_names_the_row_owning_the_id(
    catalogue: tuple[CatalogueEntry, ...], vendor_id: str, device_id: str, model: str
) -> None:
    """sysfs-style ids ("0x19e5", any case) find the row that owns them; a shared 910B id names the family row."""
    found = entry_for_pci(catalogue, vendor_id, device_id)
    assert found is not None
    assert found.model == model


def test_shared_family_id_names_the_family_and_lists_the_bins(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """19e5:d802: the 910B family row owns it, the four bins share it; candidates are the family row first, then
    the bins in catalogue order."""
    candidates = entries_for_pci(catalogue, "19e5", "d802")
    assert [e.model for e in candidates] == [
        "Ascend 910B",
        "Ascend 910B1",
        "Ascend 910B2",
        "Ascend 910B3",
        "Ascend 910B4",
    ]


@pytest.mark.parametrize(
    ("vendor_id", "device_id", "models"),
    [
        ("1002", "740c", ["Instinct MI250", "Instinct MI250X"]),
        ("1d22", "3684", ["Kunlun K200", "Kunlunxin R200"]),
    ],
)
def test_id_shared_without_a_family_row_names_no_row(
    catalogue: tuple[CatalogueEntry, ...], vendor_id: str, device_id: str, models: list[str]
) -> None:
    """An id only ever shared (MI250/MI250X on 740c, Kunlun K200/R200 on 3684) names no row, since the id alone
    cannot tell the models apart; the candidates are listed for a vendor tool or the operator to choose."""
    assert entry_for_pci(catalogue, vendor_id, device_id) is None
    assert [e.model for e in entries_for_pci(catalogue, vendor_id, device_id)] == models


def test_unknown_pci_id_names_nothing(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """An id no row lists (an Ascend 910_93 die, 19e5:d803; a NIC) has no row and no candidates."""
    for vendor_id, device_id in (("19e5", "d803"), ("19e5", "1822"), ("8086", "1572")):
        assert entry_for_pci(catalogue, vendor_id, device_id) is None
        assert entries_for_pci(catalogue, vendor_id, device_id) == ()


def test_parse_catalogue_refuses_one_plain_id_in_two_rows() -> None:
    """Two rows owning 10de:2330 would make PCI naming depend on row order: the second row's line is named."""
    other = row(model="Other GPU", match="Other GPU")
    with pytest.raises(CatalogueError, match=r"line 3\b.*10de:2330.*'Test GPU'"):
        parse_catalogue(f"{HEADER}\n{GOOD_ROW}\n{other}\n")


def test_parse_catalogue_reads_shared_ids_apart_from_owned_ones() -> None:
    """'2330 ~2331': 2330 owned, 2331 shared; a second row may share an id the first owns."""
    first = row(pci_device_ids="2330 ~2331")
    second = row(model="Bin GPU", match="Bin GPU", pci_device_ids="~2330")
    a, b = parse_catalogue(f"{HEADER}\n{first}\n{second}\n")
    assert (a.pci_device_ids, a.pci_shared_device_ids) == (("2330",), ("2331",))
    assert (b.pci_device_ids, b.pci_shared_device_ids) == ((), ("2330",))
    assert entry_for_pci((a, b), "10de", "2330") is a
    assert entries_for_pci((a, b), "10de", "2330") == (a, b)
    assert entry_for_pci((a, b), "10de", "2331") is None


def test_as_row_round_trips_the_figures_in_catalogue_units(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """`as_row` gives TFLOPS and GHz as the CSV has them (H100 SXM: 67 FP32, 1.98 GHz, basis matrix)."""
    entry = find_entry(catalogue, "NVIDIA H100 80GB HBM3")
    assert entry is not None
    cells = entry.as_row()
    assert cells["fp32_tflops"] == 67
    assert cells["boost_clock_ghz"] == 1.98
    assert cells["fp64_basis"] == "matrix"
    assert cells["pci_device_ids"] == ["2330"]
    assert cells["pci_shared_device_ids"] == []
    assert cells["source"] == entry.source


CENSUS_DOC = Path(__file__).resolve().parents[2] / "docs" / "census.md"


def _catalogue_section() -> str:
    """docs/census.md's "The accelerator catalogue" section, up to the next second-level heading."""
    text = CENSUS_DOC.read_text(encoding="utf-8")
    start = text.index("## The accelerator catalogue")
    return text[start : text.index("\n## ", start + 1)]


def test_docs_name_every_row_without_figures(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """The weak rows docs/census.md lists are the catalogue's rows with no figure: a row that gains or loses its
    figures without the page following fails here."""
    section = _catalogue_section()
    weak = section[section.index("**What remains weak.**") :]
    bare = [
        e.model
        for e in catalogue
        if all(
            f is None for f in (e.fp64_flops, e.fp64_tensor_flops, e.fp32_flops, e.fp16_tensor_flops, e.int8_tensor_ops)
        )
    ]
    listed = weak[: weak.index("The other `low` rows")]
    for model in bare:
        name = model.removeprefix("Ascend ").removeprefix("DCU ")
        assert name in listed, model


def test_docs_basis_and_confidence_counts_match_the_catalogue(catalogue: tuple[CatalogueEntry, ...]) -> None:
    """The row counts docs/census.md gives per FP64 basis and per confidence are the shipped catalogue's."""
    section = " ".join(_catalogue_section().split())
    basis = {b: sum(e.fp64_basis is b for e in catalogue) for b in Fp64Basis}
    assert (
        f"Of the {len(catalogue)} rows, {basis[Fp64Basis.MATRIX]} count matrix, {basis[Fp64Basis.VECTOR]} vector, "
        f"{basis[Fp64Basis.NONE]} none."
    ) in section
    for level in Confidence:
        count = sum(e.confidence is level for e in catalogue)
        match = re.search(rf"`{level.value}`: .*?\((\d+) rows\)", section)
        assert match is not None, level
        assert int(match.group(1)) == count, level
