"""``census-agent measure``: a short dense matrix-multiply benchmark, the node's Rmax beside its Rpeak.

Opt-in and bounded in time: each precision gets a time budget, matrices grow until one multiply takes a
measurable time, and the best rate is kept.  Needs numpy (``pip install 'suanli[measure]'``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from census_agent.models import Measurement, Precision


class MeasureUnavailable(RuntimeError):
    """numpy is not installed."""


def _numpy() -> Any:  # noqa: ANN401 - numpy is optional, so it is not typed here
    try:
        import numpy  # noqa: PLC0415
    except ImportError as exc:
        raise MeasureUnavailable("census-agent measure needs numpy: pip install 'suanli[measure]'") from exc
    return numpy


def measure_matmul(precision: Precision, *, budget_seconds: float, max_size: int = 8192) -> Measurement:
    """Best dense ``n x n`` matmul rate (2 n^3 FLOPs per multiply) found within `budget_seconds`."""
    np = _numpy()
    dtype = {Precision.FP64: np.float64, Precision.FP32: np.float32}[precision]
    rng = np.random.default_rng(0)
    deadline = time.perf_counter() + budget_seconds
    size, best_rate, best_size, best_seconds = 256, 0.0, 256, 0.0
    while True:
        a = rng.standard_normal((size, size)).astype(dtype)
        b = rng.standard_normal((size, size)).astype(dtype)
        a @ b  # warm-up: page in the buffers and start the BLAS threads
        start = time.perf_counter()
        a @ b
        seconds = time.perf_counter() - start
        rate = 2.0 * size**3 / seconds if seconds > 0 else 0.0
        if rate > best_rate:
            best_rate, best_size, best_seconds = rate, size, seconds
        remaining = deadline - time.perf_counter()
        # The next size costs about 8x this one (twice for the warm-up); stop when it would not fit.
        if size * 2 > max_size or remaining < seconds * 8 * 2 + 0.05:
            break
        size *= 2
    return Measurement(
        precision=precision,
        flops=best_rate,
        matrix_size=best_size,
        seconds=best_seconds,
        threads=os.cpu_count() or 1,
    )


def measure(budget_seconds: float) -> list[Measurement]:
    """fp64 and fp32 measurements, splitting the budget between them."""
    half = budget_seconds / 2
    return [measure_matmul(p, budget_seconds=half) for p in (Precision.FP64, Precision.FP32)]
