"""The lease state machine (`api.duties.lease`): a holder believes its lease only until the time it asked plus the
lease less the margin, stands down when refused or fenced, and the timing refuses settings that would lose a lease
to one late renewal."""

import pytest

from api.duties.lease import Lease, Timing

TIMING = Timing(lease_seconds=15.0, renew_seconds=5.0, margin_seconds=2.0)


def test_a_granted_lease_is_held_until_the_ask_time_plus_lease_less_margin_and_not_after() -> None:
    """Granted for a statement sent at t=100: held (with its term) until 113 by the local clock, not at 113."""
    lease = Lease("dispatcher").granted(7, asked_at=100.0, timing=TIMING)
    assert lease.held(100.0) == 7
    assert lease.held(112.999) == 7
    assert lease.held(113.0) is None
    assert lease.next_ask == 105.0  # renew every renew_seconds, counted from the ask


def test_a_process_that_never_held_or_was_refused_or_fenced_holds_nothing_and_asks_again() -> None:
    """A fresh lease is not held; a refusal drops a held lease at once; a fenced write (`lost`) too, and the next
    ask is due at once."""
    assert Lease("housekeeping").held(0.0) is None
    held = Lease("housekeeping").granted(3, asked_at=0.0, timing=TIMING)
    refused = held.refused(asked_at=1.0, timing=TIMING)
    assert refused.held(1.0) is None
    assert refused.term is None
    assert refused.next_ask == 6.0
    lost = held.lost(2.0)
    assert lost.held(2.0) is None
    assert lost.next_ask == 2.0


def test_a_failed_statement_keeps_a_held_lease_only_until_its_own_end_and_asks_again_soon() -> None:
    """The database unreachable: the lease is still believed until its end (no one else can take it before), the
    next ask comes within a second, and past the end nothing is held."""
    held = Lease("dispatcher").granted(4, asked_at=10.0, timing=TIMING)
    failed = held.failed(asked_at=15.0, timing=TIMING)
    assert failed.held(20.0) == 4
    assert failed.next_ask == 16.0
    assert failed.held(23.0) is None


def test_the_takeover_bound_is_the_lease_plus_the_renew_interval() -> None:
    """A dead holder's duty is held again within lease + renew seconds (20 s by default)."""
    assert TIMING.takeover_bound == 20.0
    assert Timing(3.0, 0.5, 1.0).takeover_bound == 3.5


@pytest.mark.parametrize(
    ("lease", "renew", "margin"),
    [(15.0, 7.0, 2.0), (15.0, 0.0, 2.0), (15.0, 5.0, 0.0), (15.0, 5.0, 15.0), (2.0, 1.0, 0.5)],
)
def test_timing_that_one_late_renewal_would_lose_or_without_margin_is_refused(
    lease: float, renew: float, margin: float
) -> None:
    """Renewing less often than twice per (lease - margin), no margin, or a margin as long as the lease: refused
    with the reason."""
    with pytest.raises(ValueError, match=r"margin|renew"):
        Timing(lease, renew, margin)
