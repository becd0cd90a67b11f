"""Failed authentication, limited per client address: a token bucket per address, in this process's memory.

Every failure (a request refused 401, an enrolment refused) takes one token from its address's bucket. A bucket
holds `burst` tokens and refills at ``burst / window_seconds`` tokens a second, so an address may fail `burst`
times at once and then about once every ``window_seconds / burst`` seconds; one that stops failing is whole
again `window_seconds` later. While its bucket is empty the address is refused (429 with Retry-After, the
seconds until the next token) before any token it sends is looked up. A refused request takes no token: the
refusal lifts on schedule whatever a client does meanwhile.

IPv4 addresses are keyed whole, IPv6 ones by their /64 (one host usually holds a whole /64, and would otherwise
have 2^64 fresh buckets). At most `maxsize` addresses are kept, the least recently used dropped first, so memory
is bounded whatever the number of addresses (an attacker with more addresses than that can have its oldest
forgotten: the limit is a brake, not a wall). The state is per process: replicas and workers count apart.

Must not: import a web framework or the database, read the clock except through the injected `clock`, or know
anything of tokens (the caller decides what a failure is).
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache

IPV6_PREFIX = 64


def address_key(host: str | None) -> str:
    """The bucket key of a client address: IPv4 whole, IPv6 as its /64 network, anything else (a Unix socket,
    no address at all) as given."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # clock reading when `tokens` was computed


class FailureLimiter:
    """Token buckets of failures per address; ``burst == 0`` turns the limit off. Thread-safe."""

    def __init__(
        self,
        burst: int,
        window_seconds: float,
        *,
        maxsize: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 0 or window_seconds <= 0 or maxsize < 1:
            raise ValueError("burst must be >= 0, window_seconds > 0 and maxsize >= 1")
        self.burst = burst
        self.window_seconds = window_seconds
        self.clock = clock
        self._rate = burst / window_seconds  # tokens a second
        # A bucket untouched for a whole window is full again, the same as no bucket: it may be forgotten.
        self._buckets: TTLCache[str, _Bucket] = TTLCache(maxsize=maxsize, ttl=window_seconds, timer=clock)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """Whether failures are limited at all."""
        return self.burst > 0

    def _refilled(self, key: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.at) * self._rate)
            bucket.at = now
        return bucket

    def retry_after(self, host: str | None) -> int | None:
        """Whole seconds until `host` may try again (at least 1), or None when it may now."""
        if not self.enabled:
            return None
        key = address_key(host)
        with self._lock:
            now = self.clock()
            bucket = self._refilled(key, now)
            if bucket is None or bucket.tokens >= 1:
                return None
            return max(1, math.ceil((1 - bucket.tokens) / self._rate))

    def fail(self, host: str | None) -> None:
        """Count one failure of `host`."""
        if not self.enabled:
            return
        key = address_key(host)
        with self._lock:
            now = self.clock()
            bucket = self._refilled(key, now) or _Bucket(tokens=float(self.burst), at=now)
            bucket.tokens = max(0.0, bucket.tokens - 1)
            self._buckets[key] = bucket  # (re)sets its time to live: forgotten a window after its last failure

    def __len__(self) -> int:
        with self._lock:
            return len(self._buckets)
