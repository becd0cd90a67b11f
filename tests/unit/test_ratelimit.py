"""The failed-authentication limiter (`api.ratelimit`): token buckets per client address, on an injected clock."""

from __future__ import annotations

import pytest

from api.ratelimit import FailureLimiter, address_key


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_address_is_refused_after_its_burst_and_lets_in_again_as_its_bucket_refills() -> None:
    """Three failures allowed at once (burst 3 over 60 s: one token back every 20 s): the third failure empties the
    bucket, so the address must wait 20 s (Retry-After rounds up); 19.5 s later it still waits 1 s, at 20 s it may
    try once more, and one more failure shuts it again."""
    clock = Clock()
    limiter = FailureLimiter(3, 60.0, clock=clock)
    for _ in range(2):
        limiter.fail("192.0.2.1")
        assert limiter.retry_after("192.0.2.1") is None
    limiter.fail("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 20
    clock.now += 19.5
    assert limiter.retry_after("192.0.2.1") == 1
    clock.now += 0.5
    assert limiter.retry_after("192.0.2.1") is None
    limiter.fail("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 20


def test_other_addresses_are_not_affected_by_one_that_failed() -> None:
    """One address's empty bucket leaves every other address free to try."""
    limiter = FailureLimiter(1, 60.0, clock=Clock())
    limiter.fail("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") == 60
    assert limiter.retry_after("192.0.2.2") is None
    assert limiter.retry_after("2001:db8::1") is None


def test_a_whole_window_without_failures_forgets_the_address() -> None:
    """After `window` seconds without failure an address is whole again and its bucket is dropped (memory)."""
    clock = Clock()
    limiter = FailureLimiter(2, 30.0, clock=clock)
    limiter.fail("192.0.2.1")
    limiter.fail("192.0.2.1")
    assert len(limiter) == 1
    clock.now += 30.0
    assert limiter.retry_after("192.0.2.1") is None
    assert len(limiter) == 0
    limiter.fail("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") is None  # a full burst again


def test_memory_is_bounded_by_maxsize_dropping_the_least_recent_address() -> None:
    """With room for two addresses, a third one's failure drops the least recently used bucket."""
    limiter = FailureLimiter(1, 60.0, maxsize=2, clock=Clock())
    for host in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        limiter.fail(host)
    assert len(limiter) == 2
    assert limiter.retry_after("192.0.2.1") is None
    assert limiter.retry_after("192.0.2.3") == 60


def test_ipv6_addresses_share_the_bucket_of_their_slash_64() -> None:
    """Addresses of one /64 are one client (one host usually holds the whole /64); another /64 is not, and an
    IPv4-mapped IPv6 address is its IPv4 address."""
    limiter = FailureLimiter(1, 60.0, clock=Clock())
    limiter.fail("2001:db8:1:2::1")
    assert limiter.retry_after("2001:db8:1:2:ffff::9") == 60
    assert limiter.retry_after("2001:db8:1:3::1") is None
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key(None) == "unknown"


def test_a_burst_of_zero_turns_the_limit_off() -> None:
    """``burst == 0``: failures are not even counted."""
    limiter = FailureLimiter(0, 60.0, clock=Clock())
    for _ in range(100):
        limiter.fail("192.0.2.1")
    assert limiter.retry_after("192.0.2.1") is None
    assert len(limiter) == 0
    assert not limiter.enabled


@pytest.mark.parametrize(("burst", "window", "maxsize"), [(-1, 60.0, 10), (1, 0.0, 10), (1, 60.0, 0)])
def test_impossible_limits_are_refused(burst: int, window: float, maxsize: int) -> None:
    """A negative burst, a window that is not positive or no room at all is a ValueError, not a silent no-limit."""
    with pytest.raises(ValueError, match="burst must be"):
        FailureLimiter(burst, window, maxsize=maxsize)
