"""Pricing workers: child processes that validate, price and (on SQLite) store reports beside the event loop.

Validating a report (pydantic over a 3 KB document), pricing it and serialising its JSON columns cost more CPU
than everything else the service does for it, and the event loop runs on one core.  `PricingPool` hands each
body to one of `size` worker processes (``python -m api.ingest.pool``) over pipes; the loop keeps HTTP and
authentication.  Two modes:

- *storing* (an SQLite file): the worker also stores what it priced, with the service's own writer
  (`api.ingest.writer.Ingestor.write`), in one transaction for every report it read at once (group commit), and answers each
  report's `IngestResult` after the commit.  SQLite's work and its Python around it were the largest cost left on
  the loop, and a second process has its own interpreter lock.  Every writer of the database takes SQLite's write
  lock when it begins (`api.db.engine.write_transaction`), so the worker and the service's housekeeping never
  interleave.
- *pricing* (PostgreSQL, or a database no second process can open): the worker answers the `Prepared` rows and
  the service's writer stores them (PostgreSQL's transactions are coordinated by the service's write lock).

Size 0 prices and stores in the service's own process, and so does a pool whose workers have all exited (each is
started again, with a growing delay).  No worker sees a token: only the caller's `Principal`.

Frames on both pipes are a 4-byte big-endian length and a pickle: to a worker, first its configuration
``(dialect, region codes, database URL or None)``, then ``(request id, body, role, bound node, token id, received
at in naive UTC)``; from it, ``(request id, ok, answer)``, the answer being the `IngestResult`'s fields
(storing), `Prepared.wire()` (pricing) or a ServiceError: plain values, which pickle handles in C (an aware
datetime takes 5 us more to pickle).  Pickle is safe here: both ends
are this service's own processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import logging
import math
import os
import pickle
import struct
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
from census_agent.report import ComputeModel

if TYPE_CHECKING:
    from api.ingest.writer import Ingestor

log = logging.getLogger(__name__)

FRAME = struct.Struct("!I")
RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # after a worker's 1st, 2nd... unexpected exit in a row
STEADY_S = 60.0  # a worker that ran this long before it exited starts the delays again from the first
STOP_TIMEOUT_S = 5.0
WORKER_COMMAND = (sys.executable, "-m", "api.ingest.pool")
ANSWER_TIMEOUT_S = 30.0  # a worker that leaves a request this long unanswered is stuck: it is stopped and replaced
WATCH_INTERVAL_S = 1.0
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


def frame(message: object) -> bytes:
    """A message as it goes on a pipe."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(data)) + data


def unframe(buffer: bytearray) -> list[Any]:
    """The whole messages at the front of `buffer`, removed from it (a partial one stays)."""
    messages = []
    start = 0
    while len(buffer) - start >= FRAME.size:
        (length,) = FRAME.unpack_from(buffer, start)
        end = start + FRAME.size + length
        if len(buffer) < end:
            break
        messages.append(pickle.loads(buffer[start + FRAME.size : end]))  # noqa: S301 - our own child process
        start = end
    del buffer[:start]
    return messages


class _Worker(asyncio.SubprocessProtocol):
    """One worker process: its pipes, and the requests it has not answered yet."""

    def __init__(self, pool: PricingPool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.pending: dict[int, tuple[asyncio.Future[tuple[Any, ...]], float]] = {}  # id -> (answer, sent at)
        self.transport: asyncio.SubprocessTransport | None = None
        self.alive = False
        self.started = asyncio.get_running_loop().time()
        self._buffer = bytearray()
        self._outbox: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.SubprocessTransport, transport)  # uvloop's is not a subclass of asyncio's
        self.alive = True

    def send(self, message: object) -> None:
        """Queue a frame; frames queued in one turn of the loop go out in one write."""
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        self._outbox.append(frame(message))

    def _flush(self) -> None:
        data, self._outbox = b"".join(self._outbox), []
        stdin = self.transport.get_pipe_transport(0) if self.transport is not None else None
        if self.alive and stdin is not None and not stdin.is_closing():
            stdin.write(data)  # type: ignore[attr-defined]

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if fd != 1 or not self.alive:
            return
        self._buffer += data if isinstance(data, bytes) else data.encode()
        try:
            answers = unframe(self._buffer)
            for request_id, ok, value in answers:
                future, _ = self.pending.pop(request_id)
                if future.done():  # the client went away
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except Exception:  # the stream is corrupt: nothing more it says can be trusted
            log.exception("pricing worker %d answered something unreadable; stopping it", self.index)
            self.abandon(ServiceError("the pricing worker's answer could not be read"))

    def abandon(self, error: ServiceError) -> None:
        """Answer every waiting request with `error` and kill the process (`process_exited` starts another)."""
        self.alive = False
        self._fail(error)
        if self.transport is not None and self.transport.get_returncode() is None:
            self.transport.kill()

    def _fail(self, error: ServiceError) -> None:
        for future, _ in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

    def oldest(self) -> float | None:
        """When the longest-waiting request was sent (None: nothing waits)."""
        return next(iter(self.pending.values()))[1] if self.pending else None

    def process_exited(self) -> None:
        self.alive = False
        code = self.transport.get_returncode() if self.transport is not None else None
        self._fail(PricingUnavailable("the worker pricing this report exited; retry"))
        if self.transport is not None:
            self.transport.close()
        self.pool.exited(self, code)


class PricingPool:
    """Prices (and with `database_url`, stores) reports in worker processes, or in process when `size` is 0 or no
    worker is running.  `ingestor` stores what the workers do not (`ingest`); `price` alone needs none."""

    def __init__(self, size: int, pricer: Pricer, dialect: str, *, ingestor: Ingestor | None = None,
                 database_url: str | None = None, command: Sequence[str] = WORKER_COMMAND,
                 answer_timeout_s: float = ANSWER_TIMEOUT_S) -> None:  # fmt: skip
        if database_url is not None and ingestor is None:
            raise ValueError("storing workers need the service's ingestor, for reports priced in process")
        self.size = size
        self.ingestor = ingestor
        self.database_url = database_url  # workers store too (SQLite)
        self.answer_timeout_s = answer_timeout_s
        self.pricer = pricer  # the in-process pricer: size 0, and while no worker runs
        self.dialect = dialect
        self.command = command
        self.workers: list[_Worker] = []
        self._ids = itertools.count()
        self._restarts = [0] * size
        self._closing = False

    async def start(self) -> None:
        """Start the workers (they load the compute model while the service finishes starting); one that cannot
        be started is tried again later, and reports are priced in process meanwhile."""
        for index in range(self.size):
            await self._respawn(index)
        if self.size:
            log.info("pricing reports in %d worker process(es)", self.size)
            asyncio.get_running_loop().call_later(WATCH_INTERVAL_S, self._watch)

    def _watch(self) -> None:
        """Stop a worker that has left a request unanswered for `answer_timeout_s` (it is stuck): its requests get
        a retryable 503 and a new worker is started."""
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        for worker in self.workers:
            sent = worker.oldest()
            if worker.alive and sent is not None and loop.time() - sent > self.answer_timeout_s:
                waited = self.answer_timeout_s
                log.error("pricing worker %d has not answered for %g s; stopping it", worker.index, waited)
                worker.abandon(PricingUnavailable(f"the pricing worker did not answer within {waited:g} s; retry"))
        loop.call_later(WATCH_INTERVAL_S, self._watch)

    async def _spawn(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        _, worker = await loop.subprocess_exec(
            lambda: _Worker(self, index), *self.command,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=None,
        )  # fmt: skip
        worker.send((self.dialect, sorted(self.pricer.region_codes), self.database_url))
        self.workers.append(worker)

    @property
    def storing(self) -> bool:
        """Whether workers store the reports they price."""
        return self.database_url is not None

    async def ingest(self, body: bytes, principal: Principal, now: datetime) -> IngestResult:
        """Validate, price and store a report: all in the least busy worker when workers store, else priced there
        and stored by the service's writer; all in process when no worker runs."""
        if self.ingestor is None:
            raise RuntimeError("this pool prices only: it was given no ingestor")
        worker = self._least_busy() if self.storing else None
        if worker is not None:
            return IngestResult(*await self._ask(worker, body, principal, now))
        return await self.ingestor.store(await self.price(body, principal, now))

    async def price(self, body: bytes, principal: Principal, now: datetime) -> Prepared:
        """`Pricer.price` of `body`, in the least busy worker (pricing workers only: storing ones would store it)."""
        worker = None if self.storing else self._least_busy()
        if worker is None:
            return self.pricer.price(body, principal, now)
        return Prepared.from_wire(await self._ask(worker, body, principal, now), principal)

    def _least_busy(self) -> _Worker | None:
        live = [w for w in self.workers if w.alive]
        return min(live, key=lambda w: len(w.pending)) if live else None

    async def _ask(self, worker: _Worker, body: bytes, principal: Principal, now: datetime) -> tuple[Any, ...]:
        request_id = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[Any, ...]] = loop.create_future()
        worker.pending[request_id] = (future, loop.time())
        # Plain values only, both ways: pickle handles them in C, dataclasses through Python code.
        utc = now.astimezone(UTC).replace(tzinfo=None)
        worker.send((request_id, body, principal.role.value, principal.node_id, principal.token_id, utc))
        return await future

    def exited(self, worker: _Worker, code: int | None) -> None:
        """A worker's process ended: start another unless the pool is closing."""
        if worker in self.workers:
            self.workers.remove(worker)
        if self._closing:
            return
        if asyncio.get_running_loop().time() - worker.started > STEADY_S:  # a fresh failure, not a crash loop
            self._restarts[worker.index] = 0
        delay = self._respawn_later(worker.index)
        log.error("pricing worker %d exited (code %s); pricing in process, starting it again in %.1f s",
                  worker.index, code, delay)  # fmt: skip

    def _respawn_later(self, index: int) -> float:
        """Start worker `index` again after the next delay of its series; returns the delay."""
        delay = RESTART_DELAYS_S[min(self._restarts[index], len(RESTART_DELAYS_S) - 1)]
        self._restarts[index] += 1
        loop = asyncio.get_running_loop()
        loop.call_later(delay, lambda: loop.create_task(self._respawn(index)))
        return delay

    async def _respawn(self, index: int) -> None:
        if self._closing:
            return
        try:
            await self._spawn(index)
        except OSError:
            delay = self._respawn_later(index)
            log.exception("could not start pricing worker %d; trying again in %.1f s", index, delay)

    async def close(self) -> None:
        """Stop the workers: one with nothing to answer at once (it may still be starting: waiting for it cost
        every stop of the service two seconds), the others after answering what they have read, when they see
        their input end (killed after `STOP_TIMEOUT_S`)."""
        self._closing = True
        for worker in list(self.workers):
            if worker.transport is None:
                continue
            if not worker.pending and worker.alive:
                worker.transport.terminate()
                continue
            stdin = worker.transport.get_pipe_transport(0)
            if stdin is not None:
                stdin.close()
        await self._exits(STOP_TIMEOUT_S)
        for worker in self.workers:
            if worker.alive and worker.transport is not None:
                worker.transport.kill()
        await self._exits(STOP_TIMEOUT_S)
        for worker in self.workers:
            if worker.transport is not None:
                worker.transport.close()

    async def _exits(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(w.alive for w in self.workers) and loop.time() < deadline:
            await asyncio.sleep(0.02)


# --- the worker's side ---------------------------------------------------------------------------------------


def _read_some(fd: int, buffer: bytearray) -> bool:
    data = os.read(fd, 1 << 20)
    buffer += data
    return bool(data)


Request = tuple[int, bytes, str, str | None, int, datetime]


def serve(read_fd: int, write_fd: int) -> None:
    """Answer requests from `read_fd` on `write_fd` until the input ends.

    Pricing only, answers go out at least every `ANSWER_BATCH_S` while a burst is being priced, so that the
    service stores the first reports of a burst while this prices the rest, without a wake-up of its event loop
    for every single answer.  Storing, every report read at once (up to `api.ingest.writer.MAX_BATCH`) is stored in one
    transaction, and answered when it has committed; reports that arrive meanwhile wait in the pipe and form the
    next batch."""
    buffer = bytearray()
    pricer: Pricer | None = None
    writer: Writer | None = None
    while _read_some(read_fd, buffer):
        answers: list[bytes] = []
        priced: list[tuple[int, Prepared]] = []
        first = 0.0
        for message in unframe(buffer):
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
                _write_all(write_fd, b"".join(answers))
                answers = []
        if writer is not None:
            answers.extend(_store(writer, priced))
        if answers:
            _write_all(write_fd, b"".join(answers))


class _WritersTurn:
    """The storing workers' turn at writing: an exclusive ``flock`` on a file beside the database, which wakes the
    next worker as soon as it is released.  SQLite's own lock alone would do for correctness, but its busy handler
    sleeps in steps of up to 100 ms, and two workers taking turns through it had a p99 of 195-340 ms against
    20-38 ms for one (`benchmarks.ingest --ingest-workers 2`); with this file, 22-37 ms."""

    def __init__(self, database: str) -> None:
        try:
            self.fd: int | None = os.open(f"{database}-ingest.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.warning("storing workers will take turns through SQLite's lock alone: %s", exc)
            self.fd = None

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

        engine = make_engine(database_url)
        assert engine.url.database is not None  # storing workers run on SQLite files only (`sqlite_file_url`)
        writer = (Ingestor(engine, model, set(codes)), _WritersTurn(engine.url.database))
    pricer = writer[0].pricer if writer is not None else Pricer(model, set(codes), dialect)
    settle_heap()
    return pricer, writer


def _answer(pricer: Pricer, message: Request) -> tuple[int, bool, Any]:
    request_id, body, role, node_id, token_id, utc = message
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


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def main() -> None:
    """The worker process: answers go to a private copy of standard output, and anything printed goes to the
    service's log (standard error) instead of corrupting them."""
    answers = os.dup(1)
    os.dup2(2, 1)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        serve(0, answers)


if __name__ == "__main__":
    main()
