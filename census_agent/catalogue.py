"""Accelerator peaks: the vendor catalogue (``seeds/accelerators.csv``) and the formula fallback.

Pure: parses catalogue text handed to it and computes figures; it never reads the machine.  A model found in
the catalogue gets the datasheet's dense figures (provenance ``catalogue``); a cell the datasheet leaves empty,
or a model not in the catalogue, is computed from compute capability, SM count and clock (``formula``), by the
per-SM rules of ``shared/reference/compute-methodology.md``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass

import seeds
from census_agent.models import Accelerator, ComponentPeaks, Figure, Precision, Provenance, fit_text

TERA = 1e12


@dataclass(frozen=True, slots=True)
class SmRule:
    """Per-SM, per-clock throughput of one NVIDIA compute capability.

    ``fp16`` is the dense rate on tensor cores where the architecture has them, else the plain half-precision
    rate; ``int8`` is in ops (tensor cores, or DP4A on Pascal 6.1 and Volta).
    """

    fp32_lanes: int
    fp64_lanes: int
    fp16: int
    int8: int
    fp64_tensor: int = 0


# compute capability -> rule (compute-methodology.md, "GPU peak from hardware counters"; Pascal from the
# P100 and P40 datasheets: P100 runs fp16 at twice fp32, GP10x at 1/64 with 4x-fp32 int8 DP4A).
SM_RULES: dict[tuple[int, int], SmRule] = {
    (6, 0): SmRule(fp32_lanes=64, fp64_lanes=32, fp16=256, int8=128),
    (6, 1): SmRule(fp32_lanes=128, fp64_lanes=4, fp16=4, int8=1024),
    (7, 0): SmRule(fp32_lanes=64, fp64_lanes=32, fp16=1024, int8=512),
    (7, 5): SmRule(fp32_lanes=64, fp64_lanes=2, fp16=1024, int8=2048),
    (8, 0): SmRule(fp32_lanes=64, fp64_lanes=32, fp16=2048, int8=4096, fp64_tensor=128),
    (8, 6): SmRule(fp32_lanes=128, fp64_lanes=2, fp16=1024, int8=2048),
    (8, 9): SmRule(fp32_lanes=128, fp64_lanes=2, fp16=1024, int8=2048),
    (9, 0): SmRule(fp32_lanes=128, fp64_lanes=64, fp16=4096, int8=8192, fp64_tensor=256),
}


def sm_rule_for(compute_capability: str) -> tuple[SmRule, str]:
    """The rule for a compute capability, and a note when a neighbouring capability's rule stands in."""
    major, minor = (int(p) for p in compute_capability.split("."))
    if (major, minor) in SM_RULES:
        return SM_RULES[(major, minor)], ""
    known = sorted(SM_RULES)
    below = [cc for cc in known if cc <= (major, minor)]
    chosen = below[-1] if below else known[0]
    note = f"no per-SM rule for compute capability {compute_capability}; used {chosen[0]}.{chosen[1]}'s"
    return SM_RULES[chosen], note


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    """One accelerator model's datasheet figures (dense), in FLOPS/OPS; None where the datasheet is silent."""

    vendor: str
    model: str
    pattern: re.Pattern[str]
    compute_capability: str | None
    units: int | None  # SMs (NVIDIA) or CUs (AMD)
    boost_clock_hz: float | None
    fp64_flops: float | None
    fp64_tensor_flops: float | None
    fp32_flops: float | None
    fp16_tensor_flops: float | None
    int8_tensor_ops: float | None
    source: str


class CatalogueError(ValueError):
    """The catalogue text is malformed."""


def _tera(cell: str | None) -> float | None:
    if cell is None:
        raise ValueError("the row has too few cells")
    cell = cell.strip()
    return float(cell) * TERA if cell else None


def parse_catalogue(text: str) -> tuple[CatalogueEntry, ...]:
    """Parse the catalogue CSV (header row first). Raises `CatalogueError` naming the bad line."""
    entries: list[CatalogueEntry] = []
    for line_no, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        try:
            entries.append(
                CatalogueEntry(
                    vendor=row["vendor"],
                    model=row["model"],
                    pattern=re.compile(row["match"], re.IGNORECASE),
                    compute_capability=row["compute_capability"] or None,
                    units=int(row["sm_or_cu"]) if row["sm_or_cu"] else None,
                    boost_clock_hz=float(row["boost_clock_ghz"]) * 1e9 if row["boost_clock_ghz"] else None,
                    fp64_flops=_tera(row["fp64_tflops"]),
                    fp64_tensor_flops=_tera(row["fp64_tensor_tflops"]),
                    fp32_flops=_tera(row["fp32_tflops"]),
                    fp16_tensor_flops=_tera(row["fp16_tensor_tflops"]),
                    int8_tensor_ops=_tera(row["int8_tensor_tops"]),
                    source=row["source"],
                )
            )
        except (KeyError, ValueError, TypeError, AttributeError, re.error) as exc:
            raise CatalogueError(f"accelerator catalogue line {line_no}: {exc}") from exc
    return tuple(entries)


def load_default_catalogue() -> tuple[CatalogueEntry, ...]:
    """The catalogue shipped in ``seeds/``."""
    return parse_catalogue(seeds.read_text("accelerators.csv"))


def find_entry(catalogue: tuple[CatalogueEntry, ...], model: str) -> CatalogueEntry | None:
    """The first catalogue entry whose pattern matches the model name (as NVML or the operator gives it)."""
    for entry in catalogue:
        if entry.pattern.search(model):
            return entry
    return None


def _formula_figures(rule: SmRule, sms: float, clock_hz: float) -> dict[Precision, float]:
    per_clock = {
        Precision.FP64: sms * max(rule.fp64_lanes * 2, rule.fp64_tensor),
        Precision.FP32: sms * rule.fp32_lanes * 2,
        Precision.FP16: sms * rule.fp16,
        Precision.INT8: sms * rule.int8,
    }
    return {precision: value * clock_hz for precision, value in per_clock.items()}


def _catalogue_value(entry: CatalogueEntry, precision: Precision) -> float | None:
    """The datasheet figure for `precision` (fp64: the larger of vector and tensor), None where it is silent."""
    if precision is Precision.FP64:
        parts = [v for v in (entry.fp64_flops, entry.fp64_tensor_flops) if v is not None]
        return max(parts) if parts else None
    return {
        Precision.FP32: entry.fp32_flops,
        Precision.FP16: entry.fp16_tensor_flops,
        Precision.INT8: entry.int8_tensor_ops,
    }[precision]


def accelerator_peaks(acc: Accelerator, catalogue: tuple[CatalogueEntry, ...]) -> ComponentPeaks:
    """Peak figures of one accelerator: catalogue first, formula for what the catalogue lacks.

    fp64 is the higher of the vector and tensor (matrix) rates, as HPL would use; fp16 and int8 are dense
    tensor rates.  A precision that can be neither looked up nor computed is 0 with a note saying so.
    """
    entry = find_entry(catalogue, acc.model)
    figures: dict[Precision, Figure] = {}
    notes: list[str] = []
    model = acc.model
    if entry is not None:
        model = entry.model
        for precision in Precision:
            value = _catalogue_value(entry, precision)
            if value is not None:
                figures[precision] = Figure(flops=value, provenance=Provenance.CATALOGUE)

    missing = [p for p in Precision if p not in figures]
    if missing:
        computed, why_not = _formula_for(acc, entry)
        for precision in missing:
            if computed is not None:
                figures[precision] = Figure(flops=computed[precision], provenance=Provenance.FORMULA)
            else:
                figures[precision] = Figure(flops=0.0, provenance=Provenance.FORMULA)
        if why_not:
            notes.append(why_not)
    return ComponentPeaks(
        component=f"accelerator:{acc.index}",
        model=model,
        figures={p: figures[p] for p in Precision},
        note=fit_text("; ".join(notes)),
    )


def _formula_for(acc: Accelerator, entry: CatalogueEntry | None) -> tuple[dict[Precision, float] | None, str]:
    """Formula figures from the device's counters, else from the catalogue's SM count and clock."""
    cc = acc.compute_capability or (entry.compute_capability if entry else None)
    if cc is None:
        if entry is None:
            return None, f"{acc.model}: not in the catalogue and no compute capability; declare its peaks"
        missing = ", ".join(p.value for p in Precision if _catalogue_value(entry, p) is None)
        return None, f"{acc.model}: the catalogue has no {missing} figure and no formula applies; declare it"
    rule, note = sm_rule_for(cc)
    clock = acc.max_sm_clock_hz or (entry.boost_clock_hz if entry else None)
    if acc.cuda_cores:
        sms: float | None = acc.cuda_cores / rule.fp32_lanes
    else:
        sms = float(entry.units) if entry and entry.units else None
    if sms is None or not clock:
        return None, f"{acc.model}: SM count or clock unknown; declare its peaks"
    return _formula_figures(rule, sms, clock), note
