"""The lease state machine: whether this process holds a duty now, and when it next asks the database.

A process asks the database for a lease (acquire, or renew the one it holds) at local monotonic time
``asked_at``, *before* the statement is sent. The database grants it until its own clock reads (at the moment
the statement runs, which is after ``asked_at``) plus ``lease_seconds``. So the grant is certainly valid until
``asked_at + lease_seconds`` by a clock running at the same rate; the holder believes it only until
``asked_at + lease_seconds - margin_seconds`` (the margin covers clock rate differences and a stepping clock).
Another process can take the lease only once the database's clock has passed the expiry, which is after the
holder stopped believing it: fencing by time. A holder whose write is refused for an older term (`LeaseLost`)
stands down at once: fencing by term.

Takeover bound: a holder that dies renewed at most ``renew_seconds`` before; its lease expires at most
``lease_seconds`` after that renewal, and a follower asks every ``renew_seconds``: another process holds the
duty at most ``lease_seconds + renew_seconds`` after the holder's death (plus one statement's time).

Pure: no I/O, no clock (callers pass monotonic times), no database.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DUTIES = ("dispatcher", "housekeeping", "kubernetes-sync")


class LeaseLost(RuntimeError):
    """A write under a lease term that is no longer held: the writer must stand down."""

    def __init__(self, duty: str, term: int | None) -> None:
        super().__init__(f"the {duty} lease (term {term}) is no longer held by this process")
        self.duty = duty
        self.term = term


@dataclass(frozen=True, slots=True)
class Timing:
    """Lease length, renewal interval and the safety margin, in seconds."""

    lease_seconds: float
    renew_seconds: float
    margin_seconds: float

    def __post_init__(self) -> None:
        if not 0 < self.margin_seconds < self.lease_seconds:
            raise ValueError(f"the lease margin ({self.margin_seconds} s) must be above 0 and below the lease")
        if not 0 < self.renew_seconds <= (self.lease_seconds - self.margin_seconds) / 2:
            raise ValueError(
                f"renew every {self.renew_seconds} s is too slow for a {self.lease_seconds} s lease with a "
                f"{self.margin_seconds} s margin: renew at most every (lease - margin) / 2 seconds, so that one "
                "failed renewal does not lose the lease"
            )

    @property
    def takeover_bound(self) -> float:
        """The longest a duty stays unheld after its holder dies (one statement's time aside)."""
        return self.lease_seconds + self.renew_seconds


@dataclass(frozen=True, slots=True)
class Lease:
    """What this process knows of its lease on one duty. `term` is None when it does not hold it."""

    duty: str
    term: int | None = None
    valid_until: float = float("-inf")  # local monotonic time until which it may act
    next_ask: float = float("-inf")  # local monotonic time of its next acquire or renew

    def held(self, now: float) -> int | None:
        """The term held at local monotonic time `now`, or None (never held, lost, or past its margin)."""
        return self.term if self.term is not None and now < self.valid_until else None

    def granted(self, term: int, asked_at: float, timing: Timing) -> Lease:
        """The database granted (or renewed) `term` for a statement sent at `asked_at`."""
        return replace(
            self,
            term=term,
            valid_until=asked_at + timing.lease_seconds - timing.margin_seconds,
            next_ask=asked_at + timing.renew_seconds,
        )

    def refused(self, asked_at: float, timing: Timing) -> Lease:
        """The database refused (another holds it, or this process's term expired there): not held."""
        return replace(self, term=None, valid_until=float("-inf"), next_ask=asked_at + timing.renew_seconds)

    def failed(self, asked_at: float, timing: Timing) -> Lease:
        """The statement failed (the database unreachable): keep believing a held lease until its own end, and ask
        again soon."""
        return replace(self, next_ask=asked_at + min(timing.renew_seconds, 1.0))

    def lost(self, now: float) -> Lease:
        """A write was refused for this term (`LeaseLost`): stand down now, ask again at once."""
        return replace(self, term=None, valid_until=float("-inf"), next_ask=now)
