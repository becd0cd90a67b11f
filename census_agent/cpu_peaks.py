"""CPU peaks: FLOPs per cycle per core by instruction set and microarchitecture (the TOP500 Rpeak rule).

Pure.  Rpeak = physical cores x base clock x FLOPs per cycle.  FP64 FLOPs per cycle = FMA pipes x (vector bits
/ 64) x 2, decided from the ISA flags, the CPU family/model and, for AVX-512 Xeons (where flags cannot tell
one FMA pipe from two), the model name.  See ``shared/reference/compute-methodology.md``; every rule here
returns a human-readable reason, shown by ``census-agent inspect``.

Lower precisions, by rules documented in docs/census.md:
- fp32 = 2 x fp64 (twice the lanes);
- fp16 = 1024 FLOPs/cycle with AMX-BF16, 2 x fp32 with AVX-512 FP16/BF16 or Arm half-precision arithmetic,
  otherwise fp32 (computed after conversion);
- int8 = 2048 ops/cycle with AMX-INT8, 4 x fp32 with VNNI / Arm dot product, otherwise 2 x fp32.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from census_agent.models import CpuInfo, Precision

# Flags that matter for throughput; the collectors keep only these.
THROUGHPUT_FLAGS = frozenset(
    {
        "sse2",
        "avx",
        "avx2",
        "fma",
        "avx512f",
        "avx512_fp16",
        "avx512_bf16",
        "avx512_vnni",
        "avx_vnni",
        "amx_tile",
        "amx_bf16",
        "amx_int8",
        "asimd",
        "asimdhp",
        "asimddp",
        "fphp",
        "sve",
        "sve2",
        "svebf16",
        "bf16",
        "i8mm",
        "sme",
    }
)

# Arm (implementer, part) -> (name, FP64 FLOPs/cycle/core).
ARM_CORES: dict[tuple[int, int], tuple[str, int]] = {
    (0x41, 0xD0C): ("Arm Neoverse N1", 8),
    (0x41, 0xD49): ("Arm Neoverse N2", 8),
    (0x41, 0xD40): ("Arm Neoverse V1", 16),
    (0x41, 0xD4F): ("Arm Neoverse V2", 16),
    (0x46, 0x001): ("Fujitsu A64FX", 32),
    (0x48, 0xD01): ("HiSilicon Kunpeng 920", 8),
    (0x70, 0x662): ("Phytium FTC662", 8),
    (0x70, 0x663): ("Phytium FTC663", 8),
}

ARM_IMPLEMENTERS = {
    0x41: "ARM",
    0x46: "Fujitsu",
    0x48: "HiSilicon",
    0x4E: "NVIDIA",
    0x61: "Apple",
    0x70: "Phytium",
}

# Intel family-6 models whose every AVX-512 part has two FMA pipes (Sapphire, Emerald, Granite Rapids).
INTEL_TWO_PIPE_MODELS = frozenset({0x8F, 0xCF, 0xAD, 0xAE})
_XEON_SP = re.compile(r"Xeon\(R\)\s+(Platinum|Gold|Silver|Bronze)\s+(\d)(\d)(\d\d)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CpuRate:
    """FLOPs (or int8 ops) per cycle per core in each precision, and the rule that gave them."""

    per_cycle: dict[Precision, float]
    rule: str


def _avx512_intel_pipes(cpu: CpuInfo) -> tuple[int, str]:
    name = cpu.model_name
    if "xeon phi" in name.lower():
        return 2, "Xeon Phi: two AVX-512 FMA pipes"
    match = _XEON_SP.search(name)
    if match:
        tier, klass, generation = match.group(1).lower(), int(match.group(2)), int(match.group(3))
        number = f"{klass}{generation}{match.group(4)}"
        if tier == "platinum" or klass >= 6:
            return 2, f"Xeon {tier.title()} {number}: two AVX-512 FMA pipes"
        if number in {"5122", "5222"}:
            return 2, f"Xeon Gold {number}: two AVX-512 FMA pipes (the exception in the 5xxx line)"
        if (klass == 5 and generation >= 3) or generation >= 4:
            return 2, f"Xeon {tier.title()} {number}: third-generation or later, two AVX-512 FMA pipes"
        return 1, f"Xeon {tier.title()} {number}: one AVX-512 FMA pipe"
    if cpu.family == 6 and cpu.model in INTEL_TWO_PIPE_MODELS:
        return 2, f"Intel family 6 model {cpu.model:#x} (Sapphire Rapids or later): two AVX-512 FMA pipes"
    return 1, "AVX-512 with an unrecognised model name: one FMA pipe assumed (declare it to override)"


def fp64_flops_per_cycle(cpu: CpuInfo) -> tuple[float, str]:
    """FP64 FLOPs per cycle per core, and why."""
    flags = set(cpu.flags)
    if cpu.architecture in {"aarch64", "arm64"}:
        return _arm_fp64(cpu, flags)
    vendor = cpu.vendor
    family = cpu.family or 0
    model = cpu.model or 0
    if vendor in {"AuthenticAMD", "HygonGenuine"}:
        if family == 0x18 or (family == 0x17 and model < 0x30):
            return 8, "AMD Zen 1 / Hygon Dhyana: AVX2 on 128-bit pipes, 8 FP64 FLOPs/cycle"
        if family == 0x1A and "avx512f" in flags:
            return 32, "AMD Zen 5: full 512-bit AVX-512, 32 FP64 FLOPs/cycle"
        if family == 0x19 and "avx512f" in flags:
            return 16, "AMD Zen 4: AVX-512 on 256-bit pipes, 16 FP64 FLOPs/cycle"
        if family >= 0x17 and "avx2" in flags and "fma" in flags:
            return 16, "AMD Zen 2/3: two 256-bit FMA pipes, 16 FP64 FLOPs/cycle"
    if "avx512f" in flags and vendor == "GenuineIntel":
        pipes, why = _avx512_intel_pipes(cpu)
        return pipes * 8 * 2, f"{why}, {pipes * 16} FP64 FLOPs/cycle"
    if "avx512f" in flags:
        return 16, "AVX-512 (one FMA pipe assumed), 16 FP64 FLOPs/cycle"
    if "avx2" in flags and "fma" in flags:
        return 16, "AVX2 + FMA, two 256-bit FMA pipes: 16 FP64 FLOPs/cycle"
    if "avx" in flags:
        return 8, "AVX without FMA (Sandy/Ivy Bridge): 8 FP64 FLOPs/cycle"
    if "sse2" in flags:
        return 4, "SSE2: 4 FP64 FLOPs/cycle"
    return 2, "no vector ISA recognised: 2 FP64 FLOPs/cycle (scalar add + multiply)"


def _arm_fp64(cpu: CpuInfo, flags: set[str]) -> tuple[float, str]:
    implementer = _arm_implementer_code(cpu.vendor)
    if implementer is not None and cpu.arm_part is not None and (implementer, cpu.arm_part) in ARM_CORES:
        name, rate = ARM_CORES[(implementer, cpu.arm_part)]
        return rate, f"{name}: {rate} FP64 FLOPs/cycle"
    if "sve" in flags or "sve2" in flags:
        return 16, "unrecognised Arm core with SVE: 16 FP64 FLOPs/cycle assumed (2 x 256-bit)"
    if "asimd" in flags:
        return 8, "unrecognised Arm core with Advanced SIMD: 8 FP64 FLOPs/cycle assumed (2 x 128-bit)"
    return 2, "unrecognised Arm core without SIMD: 2 FP64 FLOPs/cycle"


def _arm_implementer_code(vendor: str) -> int | None:
    for code, name in ARM_IMPLEMENTERS.items():
        if name == vendor:
            return code
    return None


def arm_core_name(implementer: int, part: int) -> str | None:
    """A readable name for an Arm core (cpuinfo has no model name on Arm)."""
    known = ARM_CORES.get((implementer, part))
    return known[0] if known else None


def cpu_rate(cpu: CpuInfo, declared_fp64_per_cycle: float | None = None) -> CpuRate:
    """FLOPs per cycle per core in every precision, from the rules (or the operator's declared fp64 rate)."""
    if declared_fp64_per_cycle is not None:
        fp64, rule = (
            declared_fp64_per_cycle,
            f"declared by the operator: {declared_fp64_per_cycle:g} FP64/cycle",
        )
    else:
        fp64, rule = fp64_flops_per_cycle(cpu)
    flags = set(cpu.flags)
    fp32 = 2 * fp64
    if "amx_bf16" in flags:
        fp16 = 1024.0
    elif flags & {"avx512_fp16", "avx512_bf16", "asimdhp", "svebf16", "bf16"}:
        fp16 = 2 * fp32
    else:
        fp16 = fp32
    if "amx_int8" in flags:
        int8 = 2048.0
    elif flags & {"avx512_vnni", "avx_vnni", "asimddp", "i8mm"}:
        int8 = 4 * fp32
    else:
        int8 = 2 * fp32
    return CpuRate(
        per_cycle={Precision.FP64: fp64, Precision.FP32: fp32, Precision.FP16: fp16, Precision.INT8: int8},
        rule=rule,
    )
