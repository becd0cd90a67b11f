"""``census-agent``: the node agent's command line (the entry point: settings are read here, once).

census-agent inspect [--json]         what this node is and what it is worth in compute
census-agent estimate FILE.json       peaks and tier of an inventory described in a file
census-agent measure [--seconds S]    measured matmul GFLOPS beside the peak (Rmax beside Rpeak)
census-agent run --server URL ...     report to the census service, export Prometheus metrics
census-agent schema                   the JSON Schema of the report document
census-agent catalogue [--json]       the accelerator catalogue the peaks are priced from
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from pydantic import ValidationError

from census_agent import __version__
from census_agent.collectors.cpu import CpuInfoError
from census_agent.collectors.inventory import collect_inventory
from census_agent.collectors.nvml import default_api
from census_agent.collectors.vendor_tools import collect_vendor_facts
from census_agent.config import AgentConfig, ConfigError, load_config
from census_agent.models import Measurement, Report
from census_agent.render import render_report
from census_agent.report import ComputeModel, build_report, inventory_from_document

log = logging.getLogger("census_agent")

EPILOG = """\
configuration (lowest precedence first):
  defaults < config file (--config, else /etc/suanli/agent.toml if present)
           < environment SUANLI_AGENT_<SETTING>, e.g. SUANLI_AGENT_SERVER, SUANLI_AGENT_REGION
           < flags
  Settings: server, token_file, enrol_token_file, ca_file, interval_seconds, jitter, backoff_max_seconds,
  request_timeout_seconds, spool_dir, spool_max_reports, spool_max_bytes, metrics_port, metrics_host,
  root, node_id, nvml, vendor_tools, inventory_refresh_seconds, log_level; labels: region, organisation, site, tier
  (in the file under [labels], with declared_peaks, cpu_fp64_flops_per_cycle and cpu_base_clock_hz);
  [[accelerators]] for devices neither the PCI bus, NVML nor a vendor tool can name. See docs/agent.md for a
  full example.

examples:
  census-agent inspect
  census-agent inspect --json > node.json && census-agent estimate node.json
  census-agent measure --seconds 10
  census-agent catalogue --vendor huawei
  census-agent run --server https://census.example:8443 --token-file /etc/suanli/agent.token \\
      --region 440106 --metrics-port 9464
  census-agent run --server https://census.example:8443 --enrol-token-file /etc/suanli/enrol.token
"""

CATALOGUE_EPILOG = """\
columns (TFLOPS, INT8 in TOPS; dense figures only: a datasheet's 2:4-sparse figure is halved):
  fp64     the FP64 figure counted, and its basis: matrix (tensor/matrix units, as TOP500 counts where HPL
           runs on them), vector, or none (the model has no FP64, or no figure could be sourced: 0, never
           a guess); "formula" means the datasheet is silent and the NVIDIA per-SM formula fills it
  fp32, fp16 (dense tensor/matrix), int8; "-" where no source gives a figure
  conf     high: vendor datasheet or whitepaper; medium: vendor announcement or talk, or a reputable
           third party quoting one; low: derived, estimated or single-source third-party figures
  source   where the figures come from (a URL or a named document); --json adds match pattern, PCI ids,
           revision and note. docs/census.md describes every column.

examples:
  census-agent catalogue
  census-agent catalogue --vendor nvidia
  census-agent catalogue --json | jq '.[] | select(.confidence == "low") | .model'
"""

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (default: /etc/suanli/agent.toml if present)")
    parser.add_argument("--root", type=Path, help="host root holding proc/, sys/, etc/ (default /; /host in a pod)")
    parser.add_argument("--node-id", dest="node_id", help="node id to report (default: /etc/machine-id)")
    parser.add_argument("--region", help="six-digit administrative code of the node's district, e.g. 440106")
    parser.add_argument("--organisation", help="organisation that owns the node")
    parser.add_argument("--site", help="data centre or site name")
    parser.add_argument("--tier", choices=["general", "ai", "hpc", "edge"], help="override the tier rules")
    parser.add_argument("--no-nvml", dest="nvml", action="store_const", const=False, help="do not query NVML")
    parser.add_argument(
        "--no-vendor-tools",
        dest="vendor_tools",
        action="store_const",
        const=False,
        help="do not run amd-smi, npu-smi, hy-smi or cnmon (PCI discovery still finds the devices)",
    )
    parser.add_argument("--log-level", dest="log_level", help="DEBUG, INFO (default), WARNING, ERROR")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (the README and docs/agent.md list its commands)."""
    parser = argparse.ArgumentParser(
        prog="census-agent",
        description="Suanli census agent: inventories this node (CPU, memory, GPUs), computes its peak FLOPS "
        "per precision and census tier, reports to the census service and exports Prometheus metrics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"census-agent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = sub.add_parser(
        "inspect",
        help="show this node's inventory, peaks and tier",
        description="Collect this node's inventory once and show its peaks and tier.",
    )
    _common(inspect)
    inspect.add_argument("--json", action="store_true", help="print the exact report document instead")
    inspect.add_argument(
        "--sample",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="also read what the node uses (CPU busy cores, memory, accelerators, power) over SECONDS (0-60; "
        "default 0: not sampled, inspect returns at once)",
    )

    estimate = sub.add_parser(
        "estimate",
        help="peaks and tier of an inventory in a JSON file",
        description="Price a machine that may not exist yet: FILE holds a report document (as `inspect --json` "
        "prints) or just its `inventory` object. The host section may be left out.",
    )
    estimate.add_argument("file", type=Path, help="JSON file; - reads standard input")
    estimate.add_argument("--json", action="store_true", help="print the computed report document")

    measure = sub.add_parser(
        "measure",
        help="measure dense matmul GFLOPS (fp64, fp32) beside the peak",
        description="Run a short dense matrix-multiply benchmark (needs numpy).",
    )
    _common(measure)
    measure.add_argument("--seconds", type=float, default=10.0, help="time budget in seconds (default 10, max 600)")
    measure.add_argument("--json", action="store_true", help="print the measurements as JSON")

    run = sub.add_parser(
        "run",
        help="report to the census service every interval",
        description="Push a report every interval (with jitter), spooling on disk while the "
        "server is unreachable, and optionally export Prometheus metrics.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(run)
    run.add_argument("--server", help="census service base URL, e.g. https://census.example:8443")
    run.add_argument("--token-file", dest="token_file", type=Path, help="file holding the agent's bearer token")
    run.add_argument(
        "--enrol-token-file",
        dest="enrol_token_file",
        type=Path,
        help="a fleet's enrolment token: traded once for this node's own token, which is kept in "
        "--token-file (default: agent.token beside the spool directory)",
    )
    run.add_argument("--ca-file", dest="ca_file", type=Path, help="CA bundle to verify the server's certificate")
    run.add_argument("--interval", dest="interval_seconds", type=float, help="seconds between reports (default 30)")
    run.add_argument(
        "--spool-dir",
        dest="spool_dir",
        type=Path,
        help="where unsent reports wait (default /var/lib/suanli-agent/spool)",
    )
    run.add_argument("--metrics-port", dest="metrics_port", type=int, help="serve Prometheus metrics on this port")
    run.add_argument("--metrics-host", dest="metrics_host", help="address for metrics (default 127.0.0.1)")
    run.add_argument(
        "--measure-seconds",
        type=float,
        default=0.0,
        help="run `measure` once at start with this budget and include it in reports (default off)",
    )

    sub.add_parser(
        "schema",
        help="print the JSON Schema of the report document",
        description="Print the JSON Schema (draft 2020-12) of the report the service accepts.",
    )

    catalogue = sub.add_parser(
        "catalogue",
        help="print the accelerator catalogue peaks are priced from",
        description="Print the accelerator catalogue shipped with this agent (seeds/accelerators.csv): one row "
        "per model with its dense peaks, the FP64 basis, the confidence and the source of its figures. "
        "Reads no machine state.",
        epilog=CATALOGUE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    catalogue.add_argument("--json", action="store_true", help="print every column of every row as JSON")
    catalogue.add_argument(
        "--vendor", help="only rows of this vendor (case-insensitive, e.g. nvidia, huawei, 'moore threads')"
    )
    return parser


def _flags(args: argparse.Namespace) -> dict[str, Any]:
    names = (
        "root",
        "node_id",
        "region",
        "organisation",
        "site",
        "tier",
        "nvml",
        "vendor_tools",
        "log_level",
        "server",
        "token_file",
        "enrol_token_file",
        "ca_file",
        "interval_seconds",
        "spool_dir",
        "metrics_port",
        "metrics_host",
    )
    return {name: getattr(args, name, None) for name in names}


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _local_report(
    config: AgentConfig, measurements: list[Measurement] | None = None, *, sample_seconds: float = 0.0
) -> tuple[Report, str]:
    nvml = default_api() if config.nvml else None
    inventory, scan = collect_inventory(
        config.root,
        labels=config.labels,
        declared_accelerators=config.accelerators,
        node_id=config.node_id,
        nvml=nvml,
        vendor_facts=collect_vendor_facts if config.vendor_tools else None,
    )
    usage = None
    if sample_seconds > 0:
        from census_agent.collectors.usage import sample_usage  # noqa: PLC0415 - only when asked

        usage = sample_usage(config.root, nvml, inventory.accelerators, sample_seconds)
    report = build_report(
        inventory,
        ComputeModel(),
        report_id=uuid.uuid4(),
        sequence=0,
        generated_at=datetime.now(tz=UTC),
        measurements=measurements,
        usage=usage,
    )
    return report, scan.status


def cmd_inspect(config: AgentConfig, args: argparse.Namespace) -> int:
    """``inspect``."""
    if not 0 <= args.sample <= 60:
        print("census-agent inspect: --sample must be in [0, 60] seconds", file=sys.stderr)
        return EXIT_USAGE
    report, status = _local_report(config, sample_seconds=args.sample)
    if args.sample and report.usage is None:
        print(
            f"census-agent inspect: no usage: the CPU counters under {config.root} did not move in {args.sample:g} s "
            "or cannot be read",
            file=sys.stderr,
        )
    print(report.model_dump_json(indent=2) if args.json else render_report(report, status))
    return EXIT_OK


def cmd_estimate(args: argparse.Namespace) -> int:
    """``estimate FILE``."""
    source = "standard input" if str(args.file) == "-" else str(args.file)
    try:
        text = sys.stdin.read() if source == "standard input" else args.file.read_text(encoding="utf-8")
        inventory = inventory_from_document(text)
    except OSError as exc:
        print(f"census-agent estimate: cannot read {source}: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, ValidationError) as exc:
        print(f"census-agent estimate: {source} is not a valid inventory:\n{exc}", file=sys.stderr)
        return EXIT_ERROR
    report = build_report(
        inventory, ComputeModel(), report_id=uuid.UUID(int=0), sequence=0, generated_at=datetime.now(tz=UTC)
    )
    print(report.model_dump_json(indent=2) if args.json else render_report(report))
    return EXIT_OK


def cmd_measure(config: AgentConfig, args: argparse.Namespace) -> int:
    """``measure``."""
    from census_agent.measure import MeasureUnavailable, measure  # noqa: PLC0415 - numpy only when asked

    if not 0 < args.seconds <= 600:
        print("census-agent measure: --seconds must be in (0, 600]", file=sys.stderr)
        return EXIT_USAGE
    try:
        log.info("measuring dense matmul for up to %.0f s ...", args.seconds)
        measurements = measure(args.seconds)
    except MeasureUnavailable as exc:
        print(f"census-agent measure: {exc}", file=sys.stderr)
        return EXIT_ERROR
    report, _ = _local_report(config, measurements)
    if args.json:
        print(json.dumps([m.model_dump(mode="json") for m in measurements], indent=2))
    else:
        from census_agent.render import measurements_table  # noqa: PLC0415

        print(measurements_table(measurements, report.peaks))
    return EXIT_OK


def cmd_run(config: AgentConfig, args: argparse.Namespace) -> int:
    """``run``: the long-lived agent."""
    from census_agent.agent import Agent  # noqa: PLC0415 - the long-lived path loads what it needs
    from census_agent.metrics import serve  # noqa: PLC0415
    from census_agent.push import Pusher  # noqa: PLC0415
    from census_agent.spool import Spool, SpoolError  # noqa: PLC0415

    if config.server is None and config.metrics_port is None:
        print(
            "census-agent run: give --server URL (and --token-file), or --metrics-port to only export metrics",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        spool = Spool(config.spool_dir, max_reports=config.spool_max_reports, max_bytes=config.spool_max_bytes)
    except SpoolError as exc:
        print(f"census-agent run: {exc.strerror}", file=sys.stderr)
        return EXIT_ERROR
    measurements: list[Measurement] = []
    if args.measure_seconds > 0:
        from census_agent.measure import MeasureUnavailable, measure  # noqa: PLC0415

        try:
            measurements = measure(min(args.measure_seconds, 600.0))
        except MeasureUnavailable as exc:
            log.warning("%s; reporting without measurements", exc)
    pusher = None
    if config.server is not None:
        token_file = config.token_file
        if token_file is None and config.enrol_token_file is not None:
            token_file = config.spool_dir.parent / "agent.token"
        try:
            pusher = Pusher(
                str(config.server),
                token_file,
                ca_file=config.ca_file,
                timeout=config.request_timeout_seconds,
                enrol_token_file=config.enrol_token_file,
            )
        except ValueError as exc:  # a proxy variable that is not an http:// URL
            print(f"census-agent run: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as exc:  # the CA file is missing, unreadable or not PEM
            print(f"census-agent run: cannot load --ca-file {config.ca_file}: {exc}", file=sys.stderr)
            return EXIT_ERROR
    agent = Agent(
        config,
        spool=spool,
        pusher=pusher,
        nvml=default_api() if config.nvml else None,
        measurements=measurements,
    )

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            log.info("SIGHUP: the inventory will be collected again before the next report")
            agent.request_refresh()
        else:
            log.info("signal %d: stopping", signum)
            agent.stop()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if config.metrics_port is not None:
        server = serve(agent, config.metrics_host, config.metrics_port)
        log.info("metrics on http://%s:%d/metrics", config.metrics_host, server.server_port)
    log.info(
        "census agent %s: reporting to %s every %.0f s (spool %s holds %d report(s))",
        __version__,
        config.server or "(nowhere: metrics only)",
        config.interval_seconds,
        config.spool_dir,
        spool.depth,
    )
    try:
        agent.run()
    finally:
        if pusher is not None:
            pusher.close()
    return EXIT_OK


def cmd_schema() -> int:
    """``schema``."""
    from census_agent.schema import report_json_schema  # noqa: PLC0415

    print(json.dumps(report_json_schema(), indent=2, ensure_ascii=False))
    return EXIT_OK


def _tflops(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e12:g}"


def cmd_catalogue(args: argparse.Namespace) -> int:
    """``catalogue``: the shipped accelerator catalogue as a table or JSON rows."""
    from census_agent.catalogue import CatalogueError, Fp64Basis, load_default_catalogue  # noqa: PLC0415

    try:
        entries = load_default_catalogue()
    except CatalogueError as exc:
        print(f"census-agent catalogue: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.vendor is not None:
        entries = tuple(e for e in entries if e.vendor.casefold() == args.vendor.strip().casefold())
        if not entries:
            print(f"census-agent catalogue: no rows for vendor {args.vendor!r}", file=sys.stderr)
            return EXIT_USAGE
    if args.json:
        print(json.dumps([e.as_row() for e in entries], indent=2, ensure_ascii=False))
        return EXIT_OK
    header = ("vendor", "model", "fp64", "fp32", "fp16", "int8", "conf", "source")
    lines: list[tuple[str, ...]] = [header]
    for e in entries:
        if e.fp64_basis is Fp64Basis.NONE:
            fp64 = "none"
        else:
            value = e.fp64_tensor_flops if e.fp64_basis is Fp64Basis.MATRIX else e.fp64_flops
            fp64 = f"{_tflops(value)} {e.fp64_basis.value}" if value is not None else "formula"
        cells = (e.vendor, e.model, fp64, _tflops(e.fp32_flops), _tflops(e.fp16_tensor_flops))
        lines.append((*cells, _tflops(e.int8_tensor_ops), e.confidence.value, e.source))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1])
    print(f"\n{len(entries)} row(s); TFLOPS (int8 TOPS), dense. See `census-agent catalogue --help` for the columns.")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``census-agent``; returns the process exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "schema":
        return cmd_schema()
    if args.command == "catalogue":
        return cmd_catalogue(args)
    if args.command == "estimate":
        _setup_logging("WARNING")
        return cmd_estimate(args)
    try:
        config = load_config(args.config, flags=_flags(args))
    except ConfigError as exc:
        print(f"census-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _setup_logging(config.log_level)
    try:
        if args.command == "inspect":
            return cmd_inspect(config, args)
        if args.command == "measure":
            return cmd_measure(config, args)
        return cmd_run(config, args)
    except CpuInfoError as exc:
        print(f"census-agent: {exc} (is --root right?)", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
