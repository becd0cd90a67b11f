"""The process supervisor (`api.ingest.supervisor`) with a real child that knows nothing of pricing: each request
gets its own answer (or the exception the child answered) from a child that was sent its configuration first,
even when the child prints on its standard output; requests are spread over the children, and closing stops them
all.  (Restarts, stuck and garbling children are checked through the pricing pool, `test_pricing_pool`.)"""

from __future__ import annotations

import asyncio
import sys

import psutil
import pytest

from api.ingest.supervisor import Supervisor

# A child that answers (its configuration, the request) and fails on request; it prints on standard output,
# which must not reach the supervisor's pipe.
ECHO = """
from api.ingest.supervisor import child_pipes, frame, read_frames, write_all
read_fd, write_fd = child_pipes()
hello = None
for messages in read_frames(read_fd):
    for request in messages:
        if hello is None:
            hello = request
            print("a stray line on standard output", flush=True)
            continue
        request_id, message = request
        if message == "fail":
            write_all(write_fd, frame((request_id, False, ValueError("asked to fail"))))
        else:
            write_all(write_fd, frame((request_id, True, (hello, message))))
"""


def test_children_answer_each_request_with_their_configuration_and_stop_when_closed() -> None:
    """Two echo children, 20 requests at once: each answer is the child's configuration and that request's own
    message, both children were used, an answered exception is raised to its caller, and after `close` no child
    process is left."""

    async def scenario() -> tuple[list[object], list[int], list[int]]:
        supervisor = Supervisor("echo child", 2, (sys.executable, "-c", ECHO), "hello", answer_timeout_s=30)
        await supervisor.start()
        try:
            pids = [c.transport.get_pid() for c in supervisor.children if c.transport is not None]

            async def call(message: object) -> object:
                child = supervisor.least_busy()
                assert child is not None
                return await supervisor.ask(child, message)

            calls = [asyncio.ensure_future(call(n)) for n in range(20)]
            await asyncio.sleep(0)  # every call has chosen its child and sent its request
            loads = [len(c.pending) for c in supervisor.children]
            answers = await asyncio.gather(*calls)
            with pytest.raises(ValueError, match="asked to fail"):
                await call("fail")
        finally:
            await supervisor.close()
        return answers, loads, pids

    answers, loads, pids = asyncio.run(scenario())
    assert answers == [("hello", n) for n in range(20)]
    assert loads == [10, 10]
    assert len(pids) == 2
    assert all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE for p in pids)
