"""Pricing workers: child processes that validate, price and (on SQLite) store reports beside the event loop.

Validating a report (pydantic over a 3 KB document), pricing it and serialising its JSON columns cost more CPU
than everything else the service does for it, and the event loop runs on one core.  `PricingPool` hands each
body to one of `size` worker processes (``python -m api.ingest.pool``, kept running by `api.ingest.supervisor`);
the loop keeps HTTP and authentication.  Two modes:

- *storing* (an SQLite file or PostgreSQL): the worker also stores what it priced, with the service's own writer
  (`api.ingest.writer.Ingestor.write`) on its own connection, in one transaction for every report it read at once
  (group commit), and answers each report's `IngestResult` after the commit.  The database's work and its Python
  around it were the largest cost left on the loop (on PostgreSQL, a commit thread in the service's process
  fought the loop for the interpreter lock on every row it bound: p99 1.2-7.7 s at 10,000 agents), and a second
  process has its own interpreter lock.  On SQLite every writer takes the write lock when it begins
  (`api.db.engine.write_transaction`), so the worker and the service's housekeeping never interleave, and storing
  workers take turns through a lock file first (`_WritersTurn`).  On PostgreSQL workers (of this and other
  replicas) write at once, kept apart by row locks taken in one order (`api.ingest.writer`).
- *pricing* (a database no second process can open: in-memory SQLite): the worker answers the `Prepared` rows
  and the service's writer stores them.

Size 0 prices and stores in the service's own process, and so does a pool whose workers have all exited (each is
started again by the supervisor).  No worker sees a token: only the caller's `Principal`.

A worker's configuration is ``(dialect, region codes, database URL or None)`` (sent on its pipe: a PostgreSQL
password never appears on a command line); a request ``(body, role, bound
node, token id, received at in naive UTC)``; an answer the `IngestResult`'s fields (storing), `Prepared.wire()`
(pricing) or a ServiceError: plain values, which pickle handles in C (an aware datetime takes 5 us more to
pickle).  This module must not supervise processes itself (that is `api.ingest.supervisor`'s), nor store
anything but through `Ingestor`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from api.auth import Principal, Role
from api.errors import PricingUnavailable, ServiceError
from api.heap import settle_heap
from api.ingest.pricing import IngestResult, Prepared, Pricer
from api.ingest.supervisor import (
    Child,
    ChildExited,
    NoAnswer,
    Supervisor,
    Unreadable,
    child_pipes,
    frame,
    read_frames,
    write_all,
)
from census_agent.report import ComputeModel

if TYPE_CHECKING:
    from api.ingest.writer import Ingestor

log = logging.getLogger(__name__)

WORKER_COMMAND = (sys.executable, "-m", "api.ingest.pool")
ANSWER_TIMEOUT_S = 30.0  # a worker that leaves a request this long unanswered is stuck: it is stopped and replaced
ANSWER_BATCH_S = 0.0005  # a worker pricing a burst sends what it has priced at least this often


CGROUP = Path("/sys/fs/cgroup")


def usable_cores(cgroup: Path = CGROUP) -> int:
    """The cores this process may use: those it may run on, and no more than its cgroup's (v2) CPU quota, as a
    container's CPU limit sets it (``cpu.max``: "QUOTA PERIOD", or "max PERIOD" for none)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max" or not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def auto_size(cgroup: Path = CGROUP) -> int:
    """Workers by default: one per usable core beyond the event loop's, at most 4; none on a single core."""
    return max(0, min(usable_cores(cgroup) - 1, 4))


class PricingPool:
    """Prices (and with `database_url`, stores) reports in worker processes, or in process when `size` is 0 or no
    worker is running.  `ingestor` stores what the workers do not (`ingest`); `price` alone needs none."""

    def __init__(
        self,
        size: int,
        pricer: Pricer,
        dialect: str,
        *,
        ingestor: Ingestor | None = None,
        database_url: str | None = None,
        command: Sequence[str] = WORKER_COMMAND,
        answer_timeout_s: float = ANSWER_TIMEOUT_S,
    ) -> None:
        if database_url is not None and ingestor is None:
            raise ValueError("storing workers need the service's ingestor, for reports priced in process")
        self.size = size
        self.ingestor = ingestor
        self.database_url = database_url  # workers store too (an SQLite file, PostgreSQL)
        self.pricer = pricer  # the in-process pricer: size 0, and while no worker runs
        hello = (dialect, sorted(pricer.region_codes), database_url)
        self.supervisor = Supervisor("pricing worker", size, command, hello, answer_timeout_s=answer_timeout_s)

    @property
    def workers(self) -> list[Child]:
        """The worker processes started and not yet seen to exit."""
        return self.supervisor.children

    @property
    def storing(self) -> bool:
        """Whether workers store the reports they price."""
        return self.database_url is not None

    async def start(self) -> None:
        """Start the workers (they load the compute model while the service finishes starting); one that cannot
        be started is tried again later, and reports are priced in process meanwhile."""
        await self.supervisor.start()
        if self.size:
            log.info("pricing reports in %d worker process(es)", self.size)

    async def ingest(self, body: bytes, principal: Principal, now: datetime) -> IngestResult:
        """Validate, price and store a report: all in the least busy worker when workers store, else priced there
        and stored by the service's writer; all in process when no worker runs."""
        if self.ingestor is None:
            raise RuntimeError("this pool prices only: it was given no ingestor")
        worker = self.supervisor.least_busy() if self.storing else None
        if worker is not None:
            return IngestResult(*await self._ask(worker, body, principal, now))
        return await self.ingestor.store(await self.price(body, principal, now))

    async def price(self, body: bytes, principal: Principal, now: datetime) -> Prepared:
        """`Pricer.price` of `body`, in the least busy worker (pricing workers only: storing ones would store it)."""
        worker = None if self.storing else self.supervisor.least_busy()
        if worker is None:
            return self.pricer.price(body, principal, now)
        return Prepared.from_wire(await self._ask(worker, body, principal, now), principal)

    async def _ask(self, worker: Child, body: bytes, principal: Principal, now: datetime) -> tuple[Any, ...]:
        # Plain values only, both ways: pickle handles them in C, dataclasses through Python code.
        utc = now.astimezone(UTC).replace(tzinfo=None)
        try:
            answer: tuple[Any, ...] = await self.supervisor.ask(
                worker, (body, principal.role.value, principal.node_id, principal.token_id, utc)
            )
        except ChildExited as exc:  # it may have stored the report: the agent's retry is answered "duplicate"
            raise PricingUnavailable("the worker pricing this report exited; retry") from exc
        except NoAnswer as exc:
            raise PricingUnavailable(f"{exc}; retry") from exc
        except Unreadable as exc:
            raise ServiceError(str(exc)) from exc
        return answer

    async def close(self) -> None:
        """Stop the workers, each after answering what it has read."""
        await self.supervisor.close()


# --- the worker's side ---------------------------------------------------------------------------------------


Request = tuple[int, tuple[bytes, str, str | None, int, datetime]]


def serve(read_fd: int, write_fd: int) -> None:
    """Answer requests from `read_fd` on `write_fd` until the input ends.

    Pricing only, answers go out at least every `ANSWER_BATCH_S` while a burst is being priced, so that the
    service stores the first reports of a burst while this prices the rest, without a wake-up of its event loop
    for every single answer.  Storing, every report read at once (up to `api.ingest.writer.MAX_BATCH`) is stored
    in one transaction, and answered when it has committed; reports that arrive meanwhile wait in the pipe and form
    the next batch."""
    pricer: Pricer | None = None
    writer: Writer | None = None
    for messages in read_frames(read_fd):
        answers: list[bytes] = []
        priced: list[tuple[int, Prepared]] = []
        first = 0.0
        for message in messages:
            if pricer is None:
                pricer, writer = _configure(*message)
                continue
            if not answers:
                first = time.perf_counter()
            answer = _answer(pricer, message)
            if writer is not None and answer[1]:
                priced.append((answer[0], cast(Prepared, answer[2])))
                continue
            answers.append(frame((answer[0], answer[1], answer[2].wire() if answer[1] else answer[2])))
            if writer is None and time.perf_counter() - first >= ANSWER_BATCH_S:
                write_all(write_fd, b"".join(answers))
                answers = []
        if writer is not None:
            answers.extend(_store(writer, priced))
        if answers:
            write_all(write_fd, b"".join(answers))


class _WritersTurn:
    """The storing workers' turn at writing on SQLite: an exclusive ``flock`` on a file beside the database, which
    wakes the next worker as soon as it is released.  SQLite's own lock alone would do for correctness, but its
    busy handler sleeps in steps of up to 100 ms, and two workers taking turns through it had a p99 of 195-340 ms
    against 20-38 ms for one (`benchmarks.ingest --ingest-workers 2`); with this file, 22-37 ms.  With no
    `database` (PostgreSQL, where writers run at once under row locks) there is no turn to wait for."""

    def __init__(self, database: str | None) -> None:
        self.fd: int | None = None
        if database is None:
            return
        try:
            self.fd = os.open(f"{database}-ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("storing workers will take turns through SQLite's lock alone: %s", exc)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Wait for the turn and hold it."""
        if self.fd is None:
            yield
            return
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)


Writer = tuple["Ingestor", _WritersTurn]


def _configure(dialect: str, codes: list[str], database_url: str | None) -> tuple[Pricer, Writer | None]:
    """The worker's pricer, and when it stores (`database_url`), its writer and turn."""
    model = ComputeModel()
    writer = None
    if database_url is not None:
        from api.db.engine import make_engine  # noqa: PLC0415 - SQLAlchemy: storing workers only
        from api.ingest.writer import Ingestor  # noqa: PLC0415

        engine = make_engine(database_url, prepared=False)
        database = engine.url.database if engine.dialect.name == "sqlite" else None  # a file (`shared_url`)
        writer = (Ingestor(engine, model, set(codes)), _WritersTurn(database))
    pricer = writer[0].pricer if writer is not None else Pricer(model, set(codes), dialect)
    settle_heap()
    return pricer, writer


def _answer(pricer: Pricer, message: Request) -> tuple[int, bool, Any]:
    request_id, (body, role, node_id, token_id, utc) = message
    try:
        principal = Principal(token_id=token_id, name="", role=Role(role), node_id=node_id)
        return request_id, True, pricer.price(body, principal, utc.replace(tzinfo=UTC))
    except ServiceError as exc:
        return request_id, False, exc
    except Exception as exc:  # a bug: say so in the service's log, answer 500
        log.exception("pricing a report failed")
        return request_id, False, ServiceError(f"could not price the report ({exc!r})")


def _store(writer: Writer, priced: list[tuple[int, Prepared]]) -> list[bytes]:
    """Store priced reports in batches of at most `MAX_BATCH`, each in the storing workers' turn; their answers'
    frames."""
    from api.ingest.writer import MAX_BATCH  # noqa: PLC0415

    answers = []
    for start in range(0, len(priced), MAX_BATCH):
        chunk = priced[start : start + MAX_BATCH]
        ingestor, turn = writer
        with turn.held():
            results = ingestor.write([prepared for _, prepared in chunk])
        for (request_id, _), result in zip(chunk, results, strict=True):
            if isinstance(result, ServiceError):
                answers.append(frame((request_id, False, result)))
            elif isinstance(result, Exception):  # a bug, logged by the writer: answer 500
                answers.append(frame((request_id, False, ServiceError(f"could not store the report ({result!r})"))))
            else:
                fields = (result.report_id, result.node_id, result.outcome, result.tier, result.peaks)
                answers.append(frame((request_id, True, fields)))
    return answers


def main() -> None:
    """The worker process: anything it prints goes to the service's log (standard error)."""
    read_fd, write_fd = child_pipes()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        serve(read_fd, write_fd)


if __name__ == "__main__":
    main()
