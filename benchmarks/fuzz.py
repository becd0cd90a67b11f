"""Fuzz every endpoint of the census service from its own OpenAPI document (schemathesis), at length.

    uv run python -m benchmarks.fuzz --max-examples 200      # about 4 minutes on 2 cores (100: 1 m 45 s)
    uv run python -m benchmarks.fuzz --seed 7                # other cases

Starts the service (SQLite, a scheduler whose Ray address is a closed port on 127.0.0.1, so jobs queue without
Ray) on a free port in a temporary folder, stores a few nodes, jobs and tokens, then sends every operation
`--max-examples` schema-valid and as many schema-invalid cases, with an admin token. Each answer must be no 5xx,
a declared status and content type, and a body matching the declared schema. Prints the cases run, the answers
by status, the distinct failures with a curl line to reproduce each, and the time; exits 1 on any failure.
The CI test (tests/integration/service/test_fuzz.py) runs the same fuzzer with 10 cases per operation and mode.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.fuzzing import fuzz, fuzz_service, seed, still_serving


def main() -> int:
    """Run the fuzzer; 0 when nothing failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-examples", type=int, default=200, help="cases per operation and mode (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0: the same cases every run)")
    parser.add_argument("--slowest", type=int, default=5, help="list the N slowest operations (default 5)")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="suanli-fuzz-") as workdir:
        service = fuzz_service(Path(workdir))
        try:
            result = fuzz(service, seed(service), max_examples=args.max_examples, seed_value=args.seed)
            still_serving(service)
            unexpected = service.log.read_text(errors="replace").count("unexpected error")
        finally:
            service.stop()
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(result.by_status.items()))
    print(f"operations      {result.operations} (x positive and negative data)")
    print(f"cases run       {result.cases}")
    print(f"answers         {statuses}")
    print(f"failures        {len(result.failures)}")
    print(f"5xx logged      {unexpected}")
    print(
        f"fuzzing time    {result.seconds:.1f} s ({result.cases / max(result.seconds, 1e-9):.0f} cases/s); "
        f"{time.monotonic() - started:.1f} s in all"
    )
    if result.skipped:
        print(f"no invalid case possible: {', '.join(result.skipped)}")
    slowest = sorted(result.seconds_by_operation.items(), key=lambda item: -item[1])[: args.slowest]
    print("slowest         " + "; ".join(f"{label} {seconds:.1f} s" for label, seconds in slowest))
    for report in result.failures.values():
        print(f"\n--- {report}")
    return 1 if result.failures or unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
