"""Garbage-collector settings for a long-running process that has finished starting (the service, a pricing
worker).  Imports nothing but `gc`, so that a worker can use it without loading the web stack."""

from __future__ import annotations

import gc

GC_YOUNG_THRESHOLD = 10_000  # allocations between collections of the youngest generation (Python's default: 700)


def settle_heap() -> None:
    """Move everything built at start into the collector's permanent generation, and collect young objects less
    often.

    Each report's validation allocates some hundreds of objects, so with the default thresholds the cyclic
    collector ran every couple of reports and, every hundred or so, walked the whole start-up heap (SQLAlchemy,
    FastAPI, pydantic schemas): that tripled the cost of validating a report in the server (42 -> 121 us,
    measured with cProfile under `benchmarks.ingest`).  Request garbage is freed by reference counting anyway.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
