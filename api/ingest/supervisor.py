"""Supervised child processes that answer requests over pipes: start, restart with growing delays, answer
timeouts, shutdown.

A `Supervisor` keeps `size` copies of one command running as children of the service's event loop.  Frames on
both pipes are a 4-byte big-endian length and a pickle.  A child reads, on its standard input, first its
configuration (the supervisor's `hello`), then requests ``(request id, message)``; it writes, on a private copy of
its standard output (`child_pipes`), answers ``(request id, ok, value)``: the value, or (ok False) the exception
its caller gets.  Pickle is safe here: both ends are this service's own processes.

A child that exits is started again after `RESTART_DELAYS_S` (the series starts over for one that ran
`STEADY_S`); one that leaves a request unanswered for `answer_timeout_s`, or writes something that is no frame,
is killed and replaced.  The requests it had not answered fail with `ChildExited`, `NoAnswer` or `Unreadable`.
`close` lets each child answer what it has read, then stops it.

What it must not do: know what the children compute (messages are opaque to it), retry a request (a request may
have taken effect before its child died: whether to ask again is the caller's decision), block the event loop
(everything here but the child's side, `child_pipes` and `read_frames`, runs on the loop), or wait for a child
that cannot be started (the caller goes on without one: `least_busy` is then None).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pickle
import struct
from collections.abc import Iterator, Sequence
from typing import Any, cast

log = logging.getLogger(__name__)

FRAME = struct.Struct("!I")
RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # after a child's 1st, 2nd... unexpected exit in a row
STEADY_S = 60.0  # a child that ran this long before it exited starts the delays again from the first
STOP_TIMEOUT_S = 5.0
WATCH_INTERVAL_S = 1.0


class ChildFailed(Exception):
    """A request's child failed before it answered."""


class ChildExited(ChildFailed):
    """The child exited (or was killed) before it answered."""


class NoAnswer(ChildFailed):
    """The child left a request unanswered for the answer timeout: it was killed."""


class Unreadable(ChildFailed):
    """The child wrote something that is no frame: it was killed."""


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


class Child(asyncio.SubprocessProtocol):
    """One child process: its pipes, and the requests it has not answered yet."""

    def __init__(self, supervisor: Supervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.pending: dict[int, tuple[asyncio.Future[Any], float]] = {}  # request id -> (answer, sent at)
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
                if future.done():  # the caller went away
                    continue
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        except Exception:  # the stream is corrupt: nothing more it says can be trusted
            log.exception("%s %d answered something unreadable; stopping it", self.supervisor.name, self.index)
            self.abandon(Unreadable(f"the {self.supervisor.name}'s answer could not be read"))

    def abandon(self, error: ChildFailed) -> None:
        """Fail every waiting request with `error` and kill the process (`process_exited` starts another)."""
        self.alive = False
        self._fail(error)
        if self.transport is not None and self.transport.get_returncode() is None:
            self.transport.kill()

    def _fail(self, error: ChildFailed) -> None:
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
        self._fail(ChildExited(f"the {self.supervisor.name} exited"))
        if self.transport is not None:
            self.transport.close()
        self.supervisor.exited(self, code)


class Supervisor:
    """Keeps `size` children running `command`, each sent `hello` first, and asks them requests."""

    def __init__(self, name: str, size: int, command: Sequence[str], hello: object, *, answer_timeout_s: float) -> None:
        self.name = name  # in log lines and errors: "pricing worker"
        self.size = size
        self.command = command
        self.hello = hello
        self.answer_timeout_s = answer_timeout_s
        self.children: list[Child] = []  # started, and not yet seen to exit
        self._ids = itertools.count()
        self._restarts = [0] * size
        self._closing = False

    async def start(self) -> None:
        """Start the children (without waiting for them to be ready); one that cannot be started is tried again
        later."""
        for index in range(self.size):
            await self._respawn(index)
        if self.size:
            asyncio.get_running_loop().call_later(WATCH_INTERVAL_S, self._watch)

    def least_busy(self) -> Child | None:
        """The live child with the fewest requests waiting; None when none is running."""
        live = [c for c in self.children if c.alive]
        return min(live, key=lambda c: len(c.pending)) if live else None

    async def ask(self, child: Child, message: object) -> Any:  # noqa: ANN401 - the child's answer, as it sent it
        """Send `message` to `child` and wait for its answer (or the exception it answered, or `ChildFailed`)."""
        request_id = next(self._ids)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        child.pending[request_id] = (future, loop.time())
        child.send((request_id, message))
        return await future

    def _watch(self) -> None:
        """Kill a child that has left a request unanswered for `answer_timeout_s` (it is stuck)."""
        if self._closing:
            return
        loop = asyncio.get_running_loop()
        for child in self.children:
            sent = child.oldest()
            if child.alive and sent is not None and loop.time() - sent > self.answer_timeout_s:
                waited = self.answer_timeout_s
                log.error("%s %d has not answered for %g s; stopping it", self.name, child.index, waited)
                child.abandon(NoAnswer(f"the {self.name} did not answer within {waited:g} s"))
        loop.call_later(WATCH_INTERVAL_S, self._watch)

    async def _spawn(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        _, child = await loop.subprocess_exec(
            lambda: Child(self, index),
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,
        )
        child.send(self.hello)
        self.children.append(child)

    def exited(self, child: Child, code: int | None) -> None:
        """A child's process ended: start another unless closing."""
        if child in self.children:
            self.children.remove(child)
        if self._closing:
            return
        if asyncio.get_running_loop().time() - child.started > STEADY_S:  # a fresh failure, not a crash loop
            self._restarts[child.index] = 0
        delay = self._respawn_later(child.index)
        log.error("%s %d exited (code %s); starting it again in %.1f s", self.name, child.index, code, delay)

    def _respawn_later(self, index: int) -> float:
        """Start child `index` again after the next delay of its series; returns the delay."""
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
            log.exception("could not start %s %d; trying again in %.1f s", self.name, index, delay)

    async def close(self) -> None:
        """Stop the children: one with nothing to answer at once (it may still be starting: waiting for it cost
        every stop of the service two seconds), the others after answering what they have read, when they see
        their input end (killed after `STOP_TIMEOUT_S`)."""
        self._closing = True
        for child in list(self.children):
            if child.transport is None:
                continue
            if not child.pending and child.alive:
                child.transport.terminate()
                continue
            stdin = child.transport.get_pipe_transport(0)
            if stdin is not None:
                stdin.close()
        await self._exits(STOP_TIMEOUT_S)
        for child in self.children:
            if child.alive and child.transport is not None:
                child.transport.kill()
        await self._exits(STOP_TIMEOUT_S)
        for child in self.children:
            if child.transport is not None:
                child.transport.close()

    async def _exits(self, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any(c.alive for c in self.children) and loop.time() < deadline:
            await asyncio.sleep(0.02)


# --- the child's side ----------------------------------------------------------------------------------------


def child_pipes() -> tuple[int, int]:
    """In a child: the descriptors to read requests from and write answers to.  Answers go to a private copy of
    standard output, and standard output becomes standard error (the service's log), so that anything printed
    cannot corrupt them."""
    answers = os.dup(1)
    os.dup2(2, 1)
    return 0, answers


def read_frames(fd: int) -> Iterator[list[Any]]:
    """In a child: the messages on `fd`, as lists of those read at once, until the input ends."""
    buffer = bytearray()
    while data := os.read(fd, 1 << 20):
        buffer += data
        messages = unframe(buffer)
        if messages:
            yield messages


def write_all(fd: int, data: bytes) -> None:
    """In a child: write all of `data` to `fd`."""
    while data:
        data = data[os.write(fd, data) :]
