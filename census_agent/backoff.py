"""Timing of the agent's loop: jittered report intervals and exponential backoff. Pure (the caller's RNG)."""

from __future__ import annotations

import random


def jittered(interval: float, jitter: float, rng: random.Random) -> float:
    """`interval` spread by +/- `jitter` (a fraction), so a fleet started together does not report in step."""
    return interval * (1.0 + rng.uniform(-jitter, jitter))


def backoff_delay(failures: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Delay before retry number `failures` (1, 2, ...): base x 2^(failures-1), capped, with equal jitter.

    Half the delay is fixed and half random, so retries spread out yet never come sooner than half the step.
    """
    if failures <= 0:
        return 0.0
    step = min(cap, base * 2.0 ** min(failures - 1, 32))
    return step / 2 + rng.uniform(0, step / 2)
