"""Pricing workers (`api.ingest.pool`) against real worker processes: a worker's answer, and each refusal, is
exactly what pricing in the service's own process gives; a worker that dies is replaced, and meanwhile reports are
priced in process; one that garbles or withholds its answer fails the request instead of hanging it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest

from api.auth import Principal, Role
from api.errors import Forbidden, InvalidReport, InvalidRequest, PricingUnavailable, ServiceError
from api.ingest.pool import PricingPool
from api.ingest.pricing import Prepared, Pricer
from census_agent.report import ComputeModel
from tests.integration.service.helpers import document, make_report, planned_inventory

REGIONS = {"440106", "440112", "440100", "440000", "CN"}
NOW = datetime.now(tz=UTC)  # when every report here is dated and priced (a session may run long after import)
ADMIN = Principal(token_id=1, name="admin", role=Role.ADMIN, node_id=None)


def body(node_id: str = "priced-1", **changes: object) -> bytes:
    """A valid report document for `node_id`, dated `NOW` (the time the tests price it at), with top-level
    `changes`."""
    doc = (
        document(make_report(planned_inventory(node_id)))
        | {"report_id": str(uuid.uuid4()), "generated_at": NOW.isoformat()}
        | changes
    )
    return json.dumps(doc).encode()


def fields(prepared: Prepared) -> tuple[object, ...]:
    return (
        prepared.report_id,
        prepared.node_id,
        prepared.order,
        prepared.state,
        prepared.history(True),
        prepared.tier,
        prepared.peaks,
        prepared.principal,
    )


def refusal(call: Callable[[], object]) -> ServiceError:
    """The error `call` raises."""
    with pytest.raises(ServiceError) as caught:
        call()
    return caught.value


LOOP = asyncio.new_event_loop()  # the module's pool lives on it


@pytest.fixture(scope="module")
def pool() -> Iterator[PricingPool]:
    """One real worker process for this module's tests."""
    started = PricingPool(1, Pricer(ComputeModel(), REGIONS, "sqlite"), "sqlite")
    LOOP.run_until_complete(started.start())
    yield started
    LOOP.run_until_complete(started.close())


def test_a_worker_prices_a_report_exactly_as_the_service_process_does(pool: PricingPool) -> None:
    """The rows a worker prepares (state, history, order, peaks, tier) equal the in-process pricer's for the same
    body and time, and carry the caller's own principal."""
    payload = body()
    in_worker = LOOP.run_until_complete(pool.price(payload, ADMIN, NOW))
    in_process = Pricer(ComputeModel(), REGIONS, "sqlite").price(payload, ADMIN, NOW)
    assert fields(in_worker) == fields(in_process)
    assert in_worker.principal is ADMIN
    assert in_worker.state["fp64_flops"] > 0


@pytest.mark.parametrize(
    ("payload", "principal", "kind"),
    [
        pytest.param(b'{"schema_version": 1', ADMIN, InvalidRequest, id="not-json"),
        pytest.param(body(sequence=-1), ADMIN, InvalidRequest, id="negative-sequence"),
        pytest.param(body(schema_version=2), ADMIN, InvalidRequest, id="unknown-schema-version"),
        pytest.param(body(generated_at="2099-01-01T00:00:00Z"), ADMIN, InvalidReport, id="future"),
        pytest.param(
            body(),
            Principal(token_id=7, name="a", role=Role.AGENT, node_id="other-node"),
            Forbidden,
            id="agent-token-bound-elsewhere",
        ),
    ],
)
def test_a_worker_refuses_what_the_service_process_refuses_with_the_same_answer(
    pool: PricingPool, payload: bytes, principal: Principal, kind: type[ServiceError]
) -> None:
    """Malformed JSON, a schema violation, a report from the future and a report for another node than the agent
    token's: the same error class, detail and extra members (the 422's field list) from a worker as in process."""
    in_worker = refusal(lambda: LOOP.run_until_complete(pool.price(payload, principal, NOW)))
    in_process = refusal(lambda: Pricer(ComputeModel(), REGIONS, "sqlite").price(payload, principal, NOW))
    assert type(in_worker) is kind
    assert type(in_process) is kind
    assert (in_worker.detail, in_worker.extra) == (in_process.detail, in_process.extra)


def test_an_unknown_region_is_refused_by_the_worker_s_own_region_table(pool: PricingPool) -> None:
    """The worker was given the service's region codes: a district outside them is a 422 naming the field."""
    doc = json.loads(body())
    doc["inventory"]["labels"]["region"] = "999999"
    error = refusal(lambda: LOOP.run_until_complete(pool.price(json.dumps(doc).encode(), ADMIN, NOW)))
    assert isinstance(error, InvalidReport)
    assert error.extra == {"field": "inventory.labels.region"}


def test_a_killed_worker_is_replaced_and_meanwhile_reports_are_priced_in_process() -> None:
    """SIGKILL the only worker: the pool notices, prices the next report in process (same answer), and starts a
    new worker process, which then prices reports again."""

    async def scenario() -> None:
        pricer = Pricer(ComputeModel(), REGIONS, "sqlite")
        pool = PricingPool(1, pricer, "sqlite")
        await pool.start()
        try:
            first = pool.workers[0]
            assert first.transport is not None
            old_pid = first.transport.get_pid()
            await pool.price(body(), ADMIN, NOW)  # the worker is up and answering
            os.kill(old_pid, signal.SIGKILL)
            for _ in range(200):
                if not first.alive:
                    break
                await asyncio.sleep(0.05)
            assert not first.alive, "the pool did not notice its worker's death"
            payload = body()
            assert fields(await pool.price(payload, ADMIN, NOW)) == fields(pricer.price(payload, ADMIN, NOW))
            for _ in range(200):
                if any(w.alive for w in pool.workers):
                    break
                await asyncio.sleep(0.05)
            replaced = [w for w in pool.workers if w.alive]
            assert replaced, "no worker was started again"
            assert replaced[0].transport is not None
            assert replaced[0].transport.get_pid() != old_pid
            payload = body()
            priced = await pool.price(payload, ADMIN, NOW)
            assert fields(priced) == fields(pricer.price(payload, ADMIN, NOW))
        finally:
            await pool.close()

    asyncio.run(scenario())


# Stand-ins for a worker: one that reads its configuration and a request and answers with a frame that is no
# pickle, one that never answers.  (A replacement of either waits quietly for its first request.)
GARBLED = """
import os, struct, sys, time
for _ in range(2):
    (length,) = struct.unpack("!I", sys.stdin.buffer.read(4))
    sys.stdin.buffer.read(length)
os.write(1, b"\\x00\\x00\\x00\\x05garbage")
time.sleep(60)
"""
SILENT = "import time; time.sleep(60)"


@pytest.mark.parametrize(
    ("program", "kind", "title"),
    [
        pytest.param(GARBLED, ServiceError, "Internal error", id="garbled-answer"),
        pytest.param(SILENT, PricingUnavailable, "Pricing unavailable", id="no-answer"),
    ],
)
def test_a_worker_that_garbles_or_withholds_its_answer_fails_the_request_and_is_replaced(
    program: str, kind: type[ServiceError], title: str
) -> None:
    """A worker process (here a stand-in program) that answers bytes that are no frame, or nothing at all within
    the answer timeout: the waiting request fails (500, or a retryable 503) instead of hanging, and the process is
    killed and a new one started."""

    async def scenario() -> None:
        pool = PricingPool(
            1,
            Pricer(ComputeModel(), REGIONS, "sqlite"),
            "sqlite",
            command=(sys.executable, "-c", program),
            answer_timeout_s=0.5,
        )
        await pool.start()
        try:
            first = pool.workers[0]
            assert first.transport is not None
            pid = first.transport.get_pid()
            with pytest.raises(ServiceError) as caught:
                await asyncio.wait_for(pool.price(body(), ADMIN, NOW), timeout=10)
            assert type(caught.value) is kind
            assert caught.value.title == title
            for _ in range(100):
                if any(w.alive for w in pool.workers):
                    break
                await asyncio.sleep(0.05)
            assert [w.transport.get_pid() for w in pool.workers if w.alive and w.transport] not in ([], [pid])
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_a_worker_that_cannot_be_started_leaves_the_service_pricing_in_process(tmp_path: Path) -> None:
    """A worker command that does not exist: the pool starts anyway, with no worker, and prices in process (the
    same answer); it goes on trying to start the worker in the background."""

    async def scenario() -> None:
        pricer = Pricer(ComputeModel(), REGIONS, "sqlite")
        pool = PricingPool(1, pricer, "sqlite", command=(str(tmp_path / "no-such-python"),))
        await pool.start()
        try:
            assert pool.workers == []
            payload = body()
            assert fields(await pool.price(payload, ADMIN, NOW)) == fields(pricer.price(payload, ADMIN, NOW))
        finally:
            await pool.close()

    asyncio.run(scenario())
