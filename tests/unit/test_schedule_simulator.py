"""The schedule-quality simulator's pure parts: SWF parsing, the event loop over the real queue, the metrics."""

from __future__ import annotations

import pytest

from benchmarks.schedule_quality import (
    TraceJob,
    bounded_slowdown,
    lower_bound,
    machine_size,
    parse_swf,
    percentile,
    quality,
    simulate,
)
from scheduler.policy import Policy

TRACE = """\
; Version: 2.2
; MaxProcs: 8
;   a comment without a colon
3 20.0 5 30.5 2 -1 -1 2 60.5 -1 1 7 -1 -1 -1 -1 -1 -1
1 10.0 0 40 4 -1 -1 -1 -1 -1 1 7 -1 -1 -1 -1 -1 -1

2 10.0 0 90 1 -1 -1 1 60 -1 0 8 -1 -1 -1 -1 -1 -1
4 12.0 0 -1 1 -1 -1 1 60 -1 5 8 -1 -1 -1 -1 -1 -1
5 13.0 0 10 -1 -1 -1 -1 60 -1 5 8 -1 -1 -1 -1 -1 -1
"""

# Four processors. A: two wide, runs 80 s of a 100 s limit. B: the whole machine. C: two wide and short.
SCENARIO = [
    TraceJob(number=1, submit=0.0, run=80.0, width=2, limit=100),
    TraceJob(number=2, submit=1.0, run=50.0, width=4, limit=60),
    TraceJob(number=3, submit=2.0, run=10.0, width=2, limit=20),
]


def test_swf_parsing_skips_comments_and_unknowns_and_sorts_by_submission() -> None:
    """Comment and blank lines are skipped, jobs come out in submission order (trace order on ties), a missing
    requested width falls back to the allocated one, a missing requested time to the run time, a run longer
    than its limit is cut there, and jobs with an unknown run time or width are counted, not kept."""
    trace = parse_swf(TRACE, "inline")
    assert [(j.number, j.submit, j.run, j.width, j.limit) for j in trace.jobs] == [
        (1, 10.0, 40.0, 4, 40),
        (2, 10.0, 60.0, 1, 60),
        (3, 20.0, 30.5, 2, 61),
    ]
    assert (trace.max_procs, trace.max_nodes, trace.unknown) == (8, None, 2)


def test_swf_line_without_eighteen_fields_is_refused_with_its_line_number() -> None:
    """A truncated line is an error naming the trace and line, not a silently shifted record."""
    with pytest.raises(ValueError, match=r"bad\.swf:2: 17 fields"):
        parse_swf("; MaxProcs: 4\n1 0 0 10 1 -1 -1 1 10 -1 1 -1 -1 -1 -1 -1 -1\n", "bad.swf")


def test_machine_size_prefers_the_option_then_the_header_then_the_widest_job() -> None:
    """--nodes wins, then MaxProcs, then MaxNodes, then the widest job."""
    trace = parse_swf(TRACE)
    assert machine_size(trace, 16) == (16, "--nodes")
    assert machine_size(trace) == (8, "header MaxProcs")
    assert machine_size(parse_swf(TRACE.replace("MaxProcs", "MaxNodes"))) == (8, "header MaxNodes")
    assert machine_size(parse_swf(TRACE.replace("; MaxProcs: 8\n", ""))) == (4, "widest job")


def test_fifo_holds_a_short_job_behind_the_blocked_wide_one() -> None:
    """Strict order: B waits for A to end (at 80, before A's limit), C waits behind B until B ends at 130."""
    starts = simulate(SCENARIO, 4, Policy(backfill=False))
    assert starts == [0.0, 80.0, 130.0]
    waits = [s - j.submit for j, s in zip(SCENARIO, starts, strict=True)]
    assert waits == [0.0, 79.0, 128.0]
    assert [bounded_slowdown(w, j.run) for w, j in zip(waits, SCENARIO, strict=True)] == [1.0, 2.58, 13.8]
    result = quality(SCENARIO, starts, 4)
    assert result.mean_wait == pytest.approx(207 / 3)
    assert result.mean_bsld == pytest.approx((1.0 + 2.58 + 13.8) / 3)
    assert result.makespan == 140.0
    assert result.utilisation == pytest.approx(380 / (4 * 140))


def test_backfill_starts_the_short_job_at_once_without_delaying_the_wide_one() -> None:
    """EASY backfill: B's reservation is at A's limit (100); C's limit ends at 22, so it starts on arrival,
    and B still starts as soon as A ends (80)."""
    starts = simulate(SCENARIO, 4, Policy())
    assert starts == [0.0, 80.0, 2.0]
    waits = [s - j.submit for j, s in zip(SCENARIO, starts, strict=True)]
    assert waits == [0.0, 79.0, 0.0]
    assert [bounded_slowdown(w, j.run) for w, j in zip(waits, SCENARIO, strict=True)] == [1.0, 2.58, 1.0]
    result = quality(SCENARIO, starts, 4)
    assert result.mean_bsld == pytest.approx((1.0 + 2.58 + 1.0) / 3)
    assert result.makespan == 130.0


def test_backfill_refuses_a_job_whose_limit_passes_the_reservation() -> None:
    """With a 200 s limit C could delay B (reserved on every node at 100), so it waits as under FIFO."""
    jobs = [*SCENARIO[:2], TraceJob(number=3, submit=2.0, run=10.0, width=2, limit=200)]
    assert simulate(jobs, 4, Policy()) == [0.0, 80.0, 130.0]


def test_simulation_refuses_a_job_wider_than_the_machine() -> None:
    """A job that could never start is an error, not an endless wait."""
    with pytest.raises(ValueError, match="wider than the machine"):
        simulate(SCENARIO, 3, Policy())


def test_bounded_slowdown_uses_ten_seconds_for_short_jobs_and_never_goes_below_one() -> None:
    """A 1 s job waiting 9 s has slowdown 1 (10 / 10); one waiting 19 s, 2; a job that never waits, 1."""
    assert bounded_slowdown(9.0, 1.0) == 1.0
    assert bounded_slowdown(19.0, 1.0) == 2.0
    assert bounded_slowdown(0.0, 0.0) == 1.0
    assert bounded_slowdown(100.0, 100.0) == 2.0


def test_p95_is_the_nearest_rank() -> None:
    """Of 1..20 the 95th percentile is the 19th value; of 1..10, the 10th."""
    assert percentile([float(v) for v in range(20, 0, -1)], 95) == 19.0
    assert percentile([float(v) for v in range(1, 11)], 95) == 10.0


def test_lower_bound_names_the_term_that_binds() -> None:
    """The scenario's 380 processor-seconds on 4 processors need 95 s, but A alone runs 80 s from 0 and B's
    200 processor-seconds arrive at 1 s: total work / capacity binds. A lone late long job binds otherwise."""
    bound = lower_bound(SCENARIO, 4)
    assert (bound.makespan, bound.binding, bound.work_over_capacity) == (95.0, "total work / capacity", 95.0)
    assert bound.utilisation == 1.0
    late = [*SCENARIO, TraceJob(number=9, submit=50.0, run=100.0, width=1, limit=100)]
    bound = lower_bound(late, 4)
    assert (bound.makespan, bound.binding) == (150.0, "job 9's submission + run time")
    assert bound.utilisation == pytest.approx(480 / (4 * 150))
