"""Accelerator peaks: the vendor catalogue (``seeds/accelerators.csv``) and the formula fallback.

Pure: parses catalogue text handed to it and computes figures; it never reads the machine.  A model found in
the catalogue gets the datasheet's dense figures (provenance ``catalogue``); a cell the datasheet leaves empty,
or a model not in the catalogue, is computed from compute capability, SM count and clock (``formula``), by the
per-SM rules of ``shared/reference/compute-methodology.md``.  Each row also states its FP64 basis, its
confidence, its source and (where known) its PCI ids; ``docs/census.md`` documents the columns.  It must not
guess: a cell the sources do not give stays empty, and a row with FP64 basis ``none`` counts no FP64.

PCI ids: a plain device id names the one row it belongs to (``entry_for_pci``); an id written ``~d802`` is one the
row *shares* with others (Ascend 910B bins on the 910B's ``19e5:d802``, MI250 and MI250X on ``1002:740c``).  A
shared id names a row only where one row lists it plainly (the family row); otherwise the id alone cannot say
which model it is, and ``entries_for_pci`` gives the candidates for a vendor tool or the operator to decide.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from enum import StrEnum

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


class Fp64Basis(StrEnum):
    """Which FP64 figure of a row counts (docs/census.md, "The accelerator catalogue").

    ``matrix``: the FP64 tensor/matrix rate (TOP500 uses it where HPL runs on the matrix units); ``vector``:
    the plain FP64 rate (an empty cell is computed by the NVIDIA formula from the compute capability);
    ``none``: no FP64 is counted, because the model has none or no FP64 figure could be sourced; never a guess.
    """

    MATRIX = "matrix"
    VECTOR = "vector"
    NONE = "none"


class Confidence(StrEnum):
    """How far a row's figures can be trusted: ``high`` a vendor datasheet; ``medium`` a vendor announcement,
    whitepaper or talk, or a reputable third party quoting one; ``low`` derived, estimated or single-source
    third-party figures."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


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
    fp64_basis: Fp64Basis = Fp64Basis.VECTOR
    confidence: Confidence = Confidence.HIGH
    arch: str = ""
    memory_gb: str = ""
    revision: str = ""
    pci_vendor_id: str = ""
    pci_device_ids: tuple[str, ...] = ()
    pci_shared_device_ids: tuple[str, ...] = ()
    note: str = ""

    def as_row(self) -> dict[str, object]:
        """The entry as the catalogue's columns (TFLOPS/TOPS, GHz), for `census-agent catalogue --json`."""

        def tera(value: float | None) -> float | None:
            return None if value is None else round(value / TERA, 6)

        return {
            "vendor": self.vendor,
            "model": self.model,
            "match": self.pattern.pattern,
            "arch": self.arch,
            "compute_capability": self.compute_capability,
            "sm_or_cu": self.units,
            "boost_clock_ghz": None if self.boost_clock_hz is None else round(self.boost_clock_hz / 1e9, 6),
            "memory_gb": self.memory_gb,
            "fp64_tflops": tera(self.fp64_flops),
            "fp64_tensor_tflops": tera(self.fp64_tensor_flops),
            "fp64_basis": self.fp64_basis.value,
            "fp32_tflops": tera(self.fp32_flops),
            "fp16_tensor_tflops": tera(self.fp16_tensor_flops),
            "int8_tensor_tops": tera(self.int8_tensor_ops),
            "pci_vendor_id": self.pci_vendor_id or None,
            "pci_device_ids": list(self.pci_device_ids),
            "pci_shared_device_ids": list(self.pci_shared_device_ids),
            "revision": self.revision,
            "confidence": self.confidence.value,
            "source": self.source,
            "note": self.note,
        }


class CatalogueError(ValueError):
    """The catalogue text is malformed."""


_PCI_ID = re.compile(r"^[0-9a-f]{4}$")


def _tera(cell: str | None) -> float | None:
    if cell is None:
        raise ValueError("the row has too few cells")
    cell = cell.strip()
    if not cell:
        return None
    value = float(cell)
    if not value >= 0:  # also refuses nan
        raise ValueError(f"figure {cell!r} is not a non-negative number")
    return value * TERA


def _required(row: dict[str, str | None], column: str) -> str:
    value = row[column]
    if value is None:
        raise ValueError("the row has too few cells")
    value = value.strip()
    if not value:
        raise ValueError(f"{column} is empty")
    return value


def _optional(row: dict[str, str | None], column: str) -> str:
    value = row[column]
    if value is None:
        raise ValueError("the row has too few cells")
    return value.strip()


def _pci(row: dict[str, str | None]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The row's PCI vendor id, the device ids it owns, and the ones it shares (written ``~xxxx``)."""
    vendor = _optional(row, "pci_vendor_id").lower()
    tokens = [t.lower() for t in _optional(row, "pci_device_ids").split()]
    owned = tuple(t for t in tokens if not t.startswith("~"))
    shared = tuple(t[1:] for t in tokens if t.startswith("~"))
    for pci_id in (vendor, *owned, *shared) if vendor else (*owned, *shared):
        if not _PCI_ID.match(pci_id):
            raise ValueError(f"PCI id {pci_id!r} is not four hexadecimal digits")
    if tokens and not vendor:
        raise ValueError("pci_device_ids given without pci_vendor_id")
    if len(set(owned) | set(shared)) != len(tokens):
        raise ValueError("a PCI device id is listed twice in the row")
    return vendor, owned, shared


def _check_fp64(entry: CatalogueEntry) -> None:
    """The FP64 cells agree with the row's basis (a parse error otherwise)."""
    basis, vector, matrix = entry.fp64_basis, entry.fp64_flops, entry.fp64_tensor_flops
    if basis is Fp64Basis.NONE and (vector is not None or matrix is not None):
        raise ValueError("fp64_basis none with an FP64 figure; give the basis the figure has")
    if basis is Fp64Basis.MATRIX:
        if matrix is None:
            raise ValueError("fp64_basis matrix without fp64_tensor_tflops")
        if vector is not None and vector > matrix:
            raise ValueError("fp64_basis matrix but the vector FP64 figure exceeds the matrix one")
    if basis is Fp64Basis.VECTOR:
        if matrix is not None:
            raise ValueError("fp64_basis vector with an fp64_tensor_tflops figure; use matrix")
        if vector is None and entry.compute_capability is None:
            raise ValueError("fp64_basis vector without an FP64 figure or a compute capability for the formula")


def _entry(row: dict[str, str | None]) -> CatalogueEntry:
    vendor_id, device_ids, shared_ids = _pci(row)
    units, clock = _optional(row, "sm_or_cu"), _optional(row, "boost_clock_ghz")
    entry = CatalogueEntry(
        vendor=_required(row, "vendor"),
        model=_required(row, "model"),
        pattern=re.compile(_required(row, "match"), re.IGNORECASE),
        compute_capability=_optional(row, "compute_capability") or None,
        units=int(units) if units else None,
        boost_clock_hz=float(clock) * 1e9 if clock else None,
        fp64_flops=_tera(row["fp64_tflops"]),
        fp64_tensor_flops=_tera(row["fp64_tensor_tflops"]),
        fp32_flops=_tera(row["fp32_tflops"]),
        fp16_tensor_flops=_tera(row["fp16_tensor_tflops"]),
        int8_tensor_ops=_tera(row["int8_tensor_tops"]),
        source=_required(row, "source"),
        fp64_basis=Fp64Basis(_required(row, "fp64_basis")),
        confidence=Confidence(_required(row, "confidence")),
        arch=_optional(row, "arch"),
        memory_gb=_optional(row, "memory_gb"),
        revision=_optional(row, "revision"),
        pci_vendor_id=vendor_id,
        pci_device_ids=device_ids,
        pci_shared_device_ids=shared_ids,
        note=_optional(row, "note"),
    )
    if entry.compute_capability is not None:
        sm_rule_for(entry.compute_capability)  # "9.0": two integers, else ValueError
    _check_fp64(entry)
    return entry


def parse_catalogue(text: str) -> tuple[CatalogueEntry, ...]:
    """Parse the catalogue CSV (header row first). Raises `CatalogueError` naming the bad line.

    Strict: every column must be present, vendor/model/match/source/fp64_basis/confidence non-empty, figures
    non-negative numbers, PCI ids four hexadecimal digits, the FP64 cells consistent with the basis, and a plain
    (unshared) PCI device id owned by one row only, so that an id names at most one model.
    """
    entries: list[CatalogueEntry] = []
    owners: dict[tuple[str, str], str] = {}
    reader = csv.DictReader(io.StringIO(text))
    for line_no, row in enumerate(reader, start=2):
        try:
            if None in row:
                raise ValueError("the row has more cells than the header")
            entry = _entry(row)
            for device in entry.pci_device_ids:
                key = (entry.pci_vendor_id, device)
                if key in owners:
                    raise ValueError(
                        f"PCI id {key[0]}:{key[1]} already names {owners[key]!r}; mark it shared (~{key[1]}) "
                        "in the rows that are not the family row"
                    )
                owners[key] = entry.model
            entries.append(entry)
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


def _pci_key(pci_id: str) -> str:
    """A PCI id as sysfs or a vendor tool gives it ("0x19E5", "19e5") in the catalogue's form ("19e5")."""
    return pci_id.strip().lower().removeprefix("0x")


def entry_for_pci(catalogue: tuple[CatalogueEntry, ...], vendor_id: str, device_id: str) -> CatalogueEntry | None:
    """The row a PCI (vendor, device) id names: the one row that lists the device id plainly, else None.

    Deterministic: at most one row owns an id (``parse_catalogue`` refuses two).  An id only ever *shared*
    (written ``~xxxx``) names no row, because the id alone cannot tell those models apart; see `entries_for_pci`.
    """
    vendor, device = _pci_key(vendor_id), _pci_key(device_id)
    for entry in catalogue:
        if entry.pci_vendor_id == vendor and device in entry.pci_device_ids:
            return entry
    return None


def entries_for_pci(
    catalogue: tuple[CatalogueEntry, ...], vendor_id: str, device_id: str
) -> tuple[CatalogueEntry, ...]:
    """Every row a PCI id may be: the owning (family) row first, then the rows sharing the id, in catalogue order."""
    vendor, device = _pci_key(vendor_id), _pci_key(device_id)
    owner = entry_for_pci(catalogue, vendor, device)
    sharers = tuple(
        e for e in catalogue if e.pci_vendor_id == vendor and device in e.pci_shared_device_ids and e is not owner
    )
    return (owner, *sharers) if owner is not None else sharers


# Rows whose figures cover several devices the host enumerates: an MI250 or MI250X OAM module is two GCDs, each
# its own PCI function and its own GPU to ROCm, amd-smi and a scheduler, while the catalogue (like AMD's
# datasheet) gives figures per module.  The census counts what the node enumerates (one accelerator per GCD)
# and prices each at the module's figures divided by this number, so a node's total equals modules x row.
DEVICES_PER_ROW: dict[str, int] = {"Instinct MI250": 2, "Instinct MI250X": 2}


def _lookup(acc: Accelerator, catalogue: tuple[CatalogueEntry, ...]) -> tuple[CatalogueEntry | None, str]:
    """The row pricing `acc`, and a note saying why when its PCI id decided or could not decide.

    A name given by NVML, a vendor tool or the operator is matched against the rows' patterns first; a device
    only the PCI bus has seen is looked up by its id alone: the row owning the id, else none (an id only shared
    by several rows, as MI250 and MI250X share 1002:740c, cannot say which; the note names the candidates).  Where
    a name and the PCI id disagree (npu-smi prints "910B" on some first-generation 910 boards, 19e5:d801: the
    910B row lists d802, not d801), the row owning the id decides; a named row listing no id is not contradicted.
    A named row with no figure at all (an Ascend 910B bin) gives way to the row owning its PCI id (the family).
    """
    named = find_entry(catalogue, acc.model) if acc.source != "pci" else None
    if acc.pci_vendor_id is None or acc.pci_device_id is None:
        return named if acc.source != "pci" else find_entry(catalogue, acc.model), ""
    owner = entry_for_pci(catalogue, acc.pci_vendor_id, acc.pci_device_id)
    if named is not None:
        device = acc.pci_device_id.lower()
        ids = (*named.pci_device_ids, *named.pci_shared_device_ids)
        # A contradiction only where the named row lists ids and this one is not among them.
        if owner is not None and named is not owner and ids and device not in ids:
            return owner, (
                f"named {acc.model!r} ({named.model}), but its PCI id {acc.pci_vendor_id}:{acc.pci_device_id} is "
                f"{owner.model}'s: the id decides"
            )
        if _has_figures(named) or owner is None or not _has_figures(owner):
            return named, ""
        return owner, (
            f"{named.model}: the catalogue has no figure for it; priced as {owner.model}, the row of its "
            f"PCI id {acc.pci_vendor_id}:{acc.pci_device_id}"
        )
    if owner is not None:
        return owner, ""
    candidates = entries_for_pci(catalogue, acc.pci_vendor_id, acc.pci_device_id)
    if candidates:
        names = " or ".join(e.model for e in candidates)
        return None, (
            f"PCI id {acc.pci_vendor_id}:{acc.pci_device_id} may be {names}: the id cannot tell them apart, so "
            "it stays unpriced until a vendor tool or a declaration names the model"
        )
    return None, ""


def _formula_figures(rule: SmRule, sms: float, clock_hz: float) -> dict[Precision, float]:
    per_clock = {
        Precision.FP64: sms * max(rule.fp64_lanes * 2, rule.fp64_tensor),
        Precision.FP32: sms * rule.fp32_lanes * 2,
        Precision.FP16: sms * rule.fp16,
        Precision.INT8: sms * rule.int8,
    }
    return {precision: value * clock_hz for precision, value in per_clock.items()}


def _has_figures(entry: CatalogueEntry) -> bool:
    """Whether the row prices anything (some figure above zero, or a compute capability for the formula)."""
    return entry.compute_capability is not None or any(_catalogue_value(entry, p) for p in Precision)


def _catalogue_value(entry: CatalogueEntry, precision: Precision) -> float | None:
    """The datasheet figure for `precision` (fp64: the one its basis names; 0 for basis none), None where the
    datasheet is silent."""
    if precision is Precision.FP64:
        return {
            Fp64Basis.MATRIX: entry.fp64_tensor_flops,
            Fp64Basis.VECTOR: entry.fp64_flops,
            Fp64Basis.NONE: 0.0,
        }[entry.fp64_basis]
    return {
        Precision.FP32: entry.fp32_flops,
        Precision.FP16: entry.fp16_tensor_flops,
        Precision.INT8: entry.int8_tensor_ops,
    }[precision]


def accelerator_peaks(acc: Accelerator, catalogue: tuple[CatalogueEntry, ...]) -> ComponentPeaks:
    """Peak figures of one accelerator: catalogue first, formula for what the catalogue lacks.

    fp64 is the rate the row's FP64 basis names (matrix where HPL runs on the matrix units, else vector); a
    row with basis none counts 0 FP64, never a formula guess.  fp16 and int8 are dense tensor rates.  A
    precision that can be neither looked up nor computed is 0 marked ``unpriced``, with a note giving the reason:
    the accelerator is still counted, never silently zero.  A device not in the catalogue with no compute
    capability is unpriced in every precision.
    """
    entry, ambiguity = _lookup(acc, catalogue)
    figures: dict[Precision, Figure] = {}
    notes: list[str] = [ambiguity] if ambiguity else []
    model = acc.model
    if entry is not None:
        model = entry.model
        share = DEVICES_PER_ROW.get(entry.model, 1)
        for precision in Precision:
            value = _catalogue_value(entry, precision)
            if value is not None:
                figures[precision] = Figure(flops=value / share, provenance=Provenance.CATALOGUE)
        if share > 1:
            notes.append(f"{entry.model}: one of {share} devices per catalogue row, priced at 1/{share} of its figures")
        if entry.fp64_basis is Fp64Basis.NONE:
            notes.append(f"{entry.model}: no FP64 counted (the catalogue has none for it)")

    missing = [p for p in Precision if p not in figures]
    if missing:
        computed, why_not = _formula_for(acc, entry)
        for precision in missing:
            if computed is not None:
                figures[precision] = Figure(flops=computed[precision], provenance=Provenance.FORMULA)
            else:
                figures[precision] = Figure(flops=0.0, provenance=Provenance.UNPRICED)
        if why_not and not (entry is None and ambiguity):
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
            pci = f"{acc.pci_vendor_id}:{acc.pci_device_id}"
            ids = f" (PCI {pci})" if acc.pci_vendor_id and acc.pci_device_id and pci not in acc.model else ""
            return None, (
                f"{acc.model}{ids}: unpriced, not in the catalogue and no compute capability; counted as an "
                "accelerator at 0 until its peaks are declared"
            )
        missing = ", ".join(p.value for p in Precision if _catalogue_value(entry, p) is None)
        return None, f"{acc.model}: the catalogue has no {missing} figure and no formula applies: unpriced; declare it"
    rule, note = sm_rule_for(cc)
    clock = acc.max_sm_clock_hz or (entry.boost_clock_hz if entry else None)
    if acc.cuda_cores:
        sms: float | None = acc.cuda_cores / rule.fp32_lanes
    else:
        sms = float(entry.units) if entry and entry.units else None
    if sms is None or not clock:
        return None, f"{acc.model}: unpriced, SM count or clock unknown; declare its peaks"
    return _formula_figures(rule, sms, clock), note
