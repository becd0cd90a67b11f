"""The elector: one thread per process that acquires and renews the leases of the duties this process may hold.

Each duty's lease follows `api.duties.lease.Lease`; this thread only times the asks and runs the statements
(`api.duties.store`). The threads that do the duties ask `held` before acting and pass the term to the writes they
fence (`fence`); a write refused for its term calls `lost`, and the duty stands down until the lease is granted
again. At shutdown `release_all` ends the leases held, so another replica takes over at once.

Must not: do any duty's work, or hold the database's write lock for longer than one statement.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from api.duties import store
from api.duties.lease import Lease, LeaseLost, Timing

log = logging.getLogger(__name__)


def new_holder_id() -> str:
    """This process's name in the lease rows: host, pid and a random suffix (a restarted pid is a new holder)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


class Fence:
    """What a duty's writes carry: the duty, this process's holder id, and the term held now."""

    def __init__(self, elector: Elector, duty: str) -> None:
        self.elector = elector
        self.duty = duty
        self.holder = elector.holder

    def term(self) -> int:
        """The term held now; `LeaseLost` if the lease is not held (by the local clock, with its margin)."""
        term = self.elector.held(self.duty)
        if term is None:
            raise LeaseLost(self.duty, None)
        return term

    def lost(self, term: int | None) -> None:
        """A write under `term` was refused: stand down."""
        self.elector.lost(self.duty, term)


class Elector(threading.Thread):
    """Acquires and renews the leases of `duties` until `stop` is set."""

    def __init__(
        self,
        engine: Engine,
        duties: Sequence[str],
        timing: Timing,
        stop: threading.Event,
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(name="suanli-elector", daemon=True)
        self.engine = engine
        self.timing = timing
        self.holder = holder or new_holder_id()
        self.stop = stop
        self.clock = clock
        self._leases = {duty: Lease(duty) for duty in duties}
        self._lock = threading.Lock()
        self._wake = threading.Event()

    @property
    def duties(self) -> list[str]:
        """The duties this process may hold."""
        return list(self._leases)

    def held(self, duty: str) -> int | None:
        """The term of `duty` this process holds now, or None."""
        with self._lock:
            lease = self._leases.get(duty)
            return None if lease is None else lease.held(self.clock())

    def held_all(self) -> dict[str, int]:
        """Every duty held now, with its term."""
        now = self.clock()
        with self._lock:
            return {d: t for d, lease in self._leases.items() if (t := lease.held(now)) is not None}

    def fence(self, duty: str) -> Fence:
        """The fence for `duty`'s writes."""
        return Fence(self, duty)

    def lost(self, duty: str, term: int | None) -> None:
        """A write under `term` was refused: stand down from `duty` now (a newer term's grant is kept). None: the
        write was not even sent (the lease had lapsed by the local clock), and the elector already knows."""
        if term is None:
            return
        with self._lock:
            lease = self._leases[duty]
            if lease.term != term:
                return
            self._leases[duty] = lease.lost(self.clock())
        log.warning("%s: a write under term %s was refused; stood down", duty, term)
        self._wake.set()

    def ask_once(self) -> float:
        """Acquire or renew every duty that is due; returns the local time of the next ask."""
        for duty in self.duties:
            with self._lock:
                lease = self._leases[duty]
            asked_at = self.clock()
            if asked_at < lease.next_ask:
                continue
            was = lease.held(asked_at)
            try:
                if lease.term is not None:
                    ok = store.renew(self.engine, duty, self.holder, lease.term, self.timing.lease_seconds)
                    term: int | None = lease.term if ok else None
                else:
                    term = store.acquire(self.engine, duty, self.holder, self.timing.lease_seconds)
            except Exception as exc:  # the database unreachable: a held lease lapses by its own clock
                log.warning("%s: could not ask for the lease (%s); trying again", duty, type(exc).__name__)
                update = lease.failed(asked_at, self.timing)
            else:
                update = (
                    lease.refused(asked_at, self.timing) if term is None else lease.granted(term, asked_at, self.timing)
                )
            with self._lock:
                current = self._leases[duty]
                if current.term != lease.term:  # stood down meanwhile (`lost`): that wins; ask again now
                    continue
                self._leases[duty] = update
            if update.term is not None and was is None:
                log.info("%s: lease held, term %d (holder %s)", duty, update.term, self.holder)
            elif update.term is None and lease.term is not None:
                log.warning("%s: lease term %d not renewed; stood down", duty, lease.term)
        with self._lock:
            return min((lease.next_ask for lease in self._leases.values()), default=self.clock() + 60.0)

    def run(self) -> None:
        while not self.stop.is_set():
            next_ask = self.ask_once()
            self._wake.wait(max(0.0, next_ask - self.clock()))
            self._wake.clear()

    def close(self, timeout: float = 10) -> None:
        """Stop asking (`stop` must be set already) and release every lease held (`release_all`)."""
        self._wake.set()
        if self.is_alive():
            self.join(timeout)
        self.release_all()

    def release_all(self) -> None:
        """End every lease held (at shutdown): another process may take them at once."""
        with self._lock:
            held = {d: lease.term for d, lease in self._leases.items() if lease.term is not None}
            self._leases = {d: Lease(d) for d in self._leases}
        for duty, term in held.items():
            try:
                if term is not None and store.release(self.engine, duty, self.holder, term):
                    log.info("%s: lease term %d released", duty, term)
            except Exception as exc:  # it expires by itself
                log.warning("%s: could not release the lease (%s); it expires by itself", duty, type(exc).__name__)
