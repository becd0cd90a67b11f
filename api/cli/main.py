"""``suanli``: the operators' and planners' command (the entry point: settings are read here, once).

suanli up                      the census service (SQLite) and an agent reporting this machine
suanli serve                   the census service alone
suanli census [--by tier|region] [--json|--csv]
suanli census --plan FILE | --projection [--target-total F --target-per-capita F]   what if, and when
suanli nodes [--tier T --region R --status S]
suanli token create|list|revoke
suanli k8s-sync [--kubeconfig F] [--dry-run]   a Kubernetes cluster's Nodes into the census (see api.cli.k8s)
suanli submit|jobs|job|logs|cancel|tiers   jobs on the tiers (see api.cli.jobs)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from api.cli import jobs as cli_jobs
from api.cli import k8s as cli_k8s
from api.cli import planning as cli_planning
from api.cli.client import ApiError, SuanliClient, wait_until_ready
from census_agent.units import human_bytes, human_flops, table

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_SERVER = "http://127.0.0.1:8080"

EPILOG = """\
connection (census, nodes, token): --server (env SUANLI_SERVER, default http://127.0.0.1:8080) and a token
from --token-file, SUANLI_TOKEN_FILE, SUANLI_TOKEN, or ./suanli-data/admin.token written by `suanli up`.

service settings (serve, up) come from the environment, SUANLI_<SETTING>: DATABASE_URL (default
sqlite:///suanli.db; postgresql://user@host/db for PostgreSQL), HOST, PORT, ADMIN_TOKEN_FILE,
MAX_BODY_BYTES, STALE_AFTER_SECONDS, OFFLINE_AFTER_SECONDS, SNAPSHOT_INTERVAL_SECONDS, INGEST_WORKERS,
TLS_CERTFILE, TLS_KEYFILE (HTTPS; or serve --tls-cert/--tls-key); flags override them. Client commands verify an HTTPS
service against SUANLI_CA_FILE when set (else the system CAs).

examples:
  suanli up                                   # service + local agent; data in ./suanli-data
  suanli census                               # headline, composition by tier
  suanli census --by region --csv > census.csv
  suanli census --plan plan.json              # the census before and after planned machines (nothing stored)
  suanli census --projection --region 440100 --target-total 10E --target-per-capita 1T
  suanli token create rack7-agents --role agent
  suanli token create alice --role user --organisation physics --organisation chem   # physics: her default
  suanli submit --class ai --gpus 1 --time-limit 2h -- python train.py
  suanli jobs; suanli job JOB_ID; suanli logs JOB_ID --follow; suanli cancel JOB_ID; suanli tiers
  suanli k8s-sync --dry-run                   # what a Kubernetes cluster's Nodes add to the census
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="suanli",
        description="Suanli compute census and tiered jobs: run the service, read the census, submit and follow "
        "jobs, manage tokens.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def service_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", help="address to bind (default 127.0.0.1)")
        p.add_argument("--port", type=int, help="port (default 8080)")
        p.add_argument("--database-url", dest="database_url", help="sqlite:///FILE or postgresql://...")
        p.add_argument(
            "--admin-token-file",
            dest="admin_token_file",
            type=Path,
            help="first admin token: read from this file, or written to it if missing",
        )
        p.add_argument(
            "--ingest-workers",
            dest="ingest_workers",
            type=int,
            metavar="N",
            help="processes that validate, price and (on an SQLite file) store reports beside the event "
            "loop (default: one per core beyond the first, at most 4; 0: in the service's own "
            "process)",
        )

    serve = sub.add_parser("serve", help="run the census service", description="Run the census service (uvicorn).")
    service_flags(serve)
    serve.add_argument("--tls-cert", dest="tls_certfile", type=Path, help="serve HTTPS with this PEM certificate")
    serve.add_argument("--tls-key", dest="tls_keyfile", type=Path, help="the certificate's PEM private key")
    serve.add_argument(
        "--role",
        dest="serve_role",
        choices=("all", "api", "dispatcher"),
        help="all: the API and a candidate for the singleton duties (default, $SUANLI_SERVE_ROLE); api: the API "
        "only; dispatcher: the duties only, serving /healthz, /readyz and /metrics (docs/operations.md)",
    )
    up = sub.add_parser(
        "up",
        help="the whole system on this machine: service, agent, a Ray raylet per tier",
        description="Start the census service on SQLite in --data-dir, a local Ray cluster of one "
        "head and one raylet per tier (general, ai, hpc, edge; this machine's CPUs and memory "
        "shared out between them) that the service dispatches jobs to, and a census agent "
        "reporting this machine. The census counts the physical machine once. Ctrl-C stops "
        "everything it started and nothing else.",
    )
    service_flags(up)
    up.add_argument(
        "--data-dir", type=Path, default=Path("suanli-data"), help="database, tokens, spool (default ./suanli-data)"
    )
    up.add_argument("--region", default="440106", help="region code of this machine (default 440106, Tianhe)")
    up.add_argument(
        "--no-ray", dest="ray", action="store_false", help="census only: no local Ray cluster, so no job routes"
    )
    up.add_argument(
        "--ray-cpus",
        dest="ray_cpus",
        type=int,
        help="logical CPUs shared out over the four tier raylets (default: this machine's, at least 4)",
    )
    up.add_argument(
        "--ray-memory",
        dest="ray_memory",
        type=cli_jobs.parse_bytes,
        help="memory shared out over the raylets (default: half this machine's, at most 8 GiB)",
    )
    up.add_argument(
        "--ray-gpus",
        dest="ray_gpus",
        type=int,
        default=0,
        help="GPUs given to the ai raylet (default 0; logical GPUs need no real GPU)",
    )

    def client_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--server", help="service URL (default $SUANLI_SERVER or http://127.0.0.1:8080)")
        p.add_argument("--token-file", dest="token_file", type=Path, help="file holding a bearer token")

    census = sub.add_parser("census", help="census totals by tier or region")
    client_flags(census)
    census.add_argument("--by", choices=["tier", "region"], default="tier")
    census.add_argument(
        "--include", choices=["active", "all"], default="active", help="count active nodes only (default)"
    )
    census.add_argument("--region", help="limit regions to this one and below")
    fmt = census.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the API's JSON document")
    fmt.add_argument("--csv", action="store_true", help="CSV by region and tier")
    cli_planning.add_census_flags(census)
    census.add_argument(
        "--utilisation",
        action="store_true",
        help="per tier: capacity, allocated and consumed, utilisation over --window, wait, power and GFLOPS/W",
    )
    census.add_argument(
        "--window", type=_window_seconds, default=None, help="utilisation window: seconds, or e.g. 6h, 7d (default 24h)"
    )

    nodes = sub.add_parser("nodes", help="list nodes")
    client_flags(nodes)
    for name in ("tier", "region", "status", "organisation"):
        nodes.add_argument(f"--{name}")
    nodes.add_argument("--limit", type=int, default=100)
    nodes.add_argument("--json", action="store_true")

    _add_token_commands(sub, client_flags)
    add_audit_command(sub, client_flags)
    cli_jobs.add_commands(sub, client_flags, parse_duration)
    cli_k8s.add_command(sub, client_flags)
    return parser


def _add_token_commands(
    sub: Any,  # noqa: ANN401 - argparse's subparsers action has no public type
    client_flags: Callable[[argparse.ArgumentParser], None],
) -> None:
    """``token create|list|revoke``."""
    token = sub.add_parser("token", help="create, list or revoke tokens (admin)")
    tsub = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = tsub.add_parser("create", help="create a token (its secret is shown once)")
    create.add_argument("name")
    create.add_argument(
        "--role",
        required=True,
        choices=["admin", "operator", "planner", "user", "agent", "enrol"],
        help="agent: one node's reports; enrol: a fleet's agents trade it for their own",
    )
    create.add_argument(
        "--expires-in",
        dest="expires_in",
        help="e.g. 3600s, 12h, 30d (default: never; an enrol token: the service's default, 24 h unless set)",
    )
    create.add_argument(
        "--organisation",
        "--org",
        dest="organisations",
        action="append",
        default=[],
        metavar="ORG",
        help="user tokens (required, repeatable): an organisation its jobs may be submitted for; the first is "
        "the default of a job that names none",
    )
    create.add_argument("--json", action="store_true")
    listing = tsub.add_parser("list", help="list tokens (never their secrets)")
    revoke = tsub.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", type=int)
    for p in (create, listing, revoke):
        client_flags(p)


def add_audit_command(sub: Any, client_flags: Callable[[argparse.ArgumentParser], None]) -> None:  # noqa: ANN401 - argparse subparsers
    """``suanli audit``: list the chain's entries, or verify it (admin)."""
    audit = sub.add_parser(
        "audit",
        help="the audit chain: who did what (admin); --verify checks it",
        description="List the audit chain's entries, newest first, or verify the chain and the reports it covers.",
    )
    client_flags(audit)
    audit.add_argument("--action", help="only this action, e.g. token.create, job.submit, reports.store")
    audit.add_argument("--actor", help="only acts of this token name ('service': the service's own)")
    audit.add_argument("--since", help="at or after this ISO 8601 time (no offset: UTC)")
    audit.add_argument("--until", help="before this ISO 8601 time")
    audit.add_argument("--limit", type=int, default=50, help="entries to show (default 50)")
    audit.add_argument("--json", action="store_true", help="the API's JSON document")
    audit.add_argument(
        "--verify", action="store_true", help="walk the chain and its reports; exit 1 naming the first break"
    )
    audit.add_argument("--anchor", help="with --verify: SEQ:HASH of an entry you kept (see the head it prints)")


def parse_duration(text: str) -> int:
    """``90s``, ``15m``, ``12h``, ``30d`` (or plain seconds) to seconds."""
    match = re.fullmatch(r"(\d+)([smhd]?)", text.strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 3600s, 12h, 30d)")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _token(args: argparse.Namespace) -> str | None:
    path = args.token_file or (Path(os.environ["SUANLI_TOKEN_FILE"]) if os.environ.get("SUANLI_TOKEN_FILE") else None)
    if path is None and os.environ.get("SUANLI_TOKEN"):
        return os.environ["SUANLI_TOKEN"].strip()
    if path is None and Path("suanli-data/admin.token").exists():
        path = Path("suanli-data/admin.token")
    if path is None:
        return None
    return path.read_text(encoding="utf-8").strip()


def _is_validation_error(exc: BaseException) -> bool:
    """Whether `exc` is pydantic's ValidationError (a ValueError): settings that do not validate. pydantic is not
    imported for this: the client commands start without it, and an error of its kind needs it loaded first."""
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and isinstance(exc, pydantic.ValidationError)


def _client(args: argparse.Namespace) -> SuanliClient:
    ca_file = os.environ.get("SUANLI_CA_FILE")  # verify an HTTPS service against this CA bundle
    verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
    return SuanliClient(args.server or os.environ.get("SUANLI_SERVER", DEFAULT_SERVER), _token(args), verify=verify)


def _settings(args: argparse.Namespace, **extra: Any) -> Any:  # noqa: ANN401 - api.settings.Settings
    from api.settings import Settings  # noqa: PLC0415 - server packages load only for serve/up

    names = (
        "host",
        "port",
        "database_url",
        "admin_token_file",
        "ingest_workers",
        "tls_certfile",
        "tls_keyfile",
        "serve_role",
    )
    overrides = {k: getattr(args, k, None) for k in names}
    return Settings(**{k: v for k, v in {**overrides, **extra}.items() if v is not None})


def _uvicorn_kwargs(settings: Any) -> dict[str, Any]:  # noqa: ANN401
    # proxy_headers off: uvicorn would trust X-Forwarded-For from 127.0.0.1; the application applies the
    # service's own trusted_proxies instead (api.app), so there is one trust decision, default none.
    kwargs: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "proxy_headers": False,
    }
    if (settings.tls_certfile is None) != (settings.tls_keyfile is None):
        raise ValueError("HTTPS needs both a certificate and its key (--tls-cert and --tls-key)")
    if settings.tls_certfile and settings.tls_keyfile:
        kwargs |= {"ssl_certfile": str(settings.tls_certfile), "ssl_keyfile": str(settings.tls_keyfile)}
    return kwargs


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``."""
    import uvicorn  # noqa: PLC0415

    from api.app import create_app  # noqa: PLC0415

    settings = _settings(args)
    uvicorn.run(create_app(settings), **_uvicorn_kwargs(settings))
    return EXIT_OK


PRIVATE_UMASK = 0o077  # `up`'s files (tokens, database, configuration) are the local user's alone


def prepare_data_dir(data: Path) -> Path:
    """`up`'s data directory, made (or made again) private: the directory 0700 and every file already directly in
    it 0600 (a directory made by an earlier version may be readable by others). Returns its resolved path."""
    data = data.resolve()
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    data.chmod(0o700)
    for entry in data.iterdir():
        if entry.is_file() and not entry.is_symlink():
            entry.chmod(0o600)
    return data


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable and writable by its owner alone (0600 whatever the umask)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def cmd_up(args: argparse.Namespace) -> int:
    """``up``: service and local agent as child processes; one Ctrl-C stops both and nothing else. Single-user
    mode: every job runs as the local OS user who ran it, so its files are made private to that user (the umask
    is inherited by the service, the agent and Ray, so the database and the logs are created 0600 too)."""
    os.umask(PRIVATE_UMASK)
    data = prepare_data_dir(args.data_dir)
    admin_file = args.admin_token_file or data / "admin.token"
    settings = _settings(
        args, database_url=args.database_url or f"sqlite:///{data / 'suanli.db'}", admin_token_file=admin_file
    )
    env = {
        # Not a Ray address of the shell's: Ray's SDK would send the scheduler's calls there (ray_backend refuses it).
        **{k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")},
        "SUANLI_DATABASE_URL": settings.database_url,
        "SUANLI_ADMIN_TOKEN_FILE": str(admin_file),
        "SUANLI_HOST": settings.host,
        "SUANLI_PORT": str(settings.port),
    }
    server_url = f"http://{settings.host}:{settings.port}"
    children: list[subprocess.Popen[bytes]] = []
    cluster = None
    # Ctrl-C and SIGTERM both stop everything (SIGINT explicitly: a shell may start us with it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        if args.ray:
            cluster = _ray_cluster(args, data)
            cluster.start()  # assigned first: a Ctrl-C during the start still stops what it started
            config = data / "scheduler.toml"
            write_private(
                config,
                f'# written by `suanli up`\n[ray]\naddress = "{cluster.dashboard_url}"\n'
                f"token_file = {json.dumps(str(cluster.token_file))}\n"  # a TOML string: JSON's escapes are TOML's
                f'gcs_address = "{cluster.address}"\n',
            )
            env["SUANLI_SCHEDULER_CONFIG"] = str(config)
        # Own sessions: a terminal's Ctrl-C reaches only this process, which stops the agent, then the service.
        children.append(subprocess.Popen([sys.executable, "-m", "api.cli", "serve"], env=env, start_new_session=True))
        if not wait_until_ready(server_url, children[0]):
            print("suanli up: the service did not become ready; see its log above", file=sys.stderr)
            return EXIT_ERROR
        admin = admin_file.read_text().strip()
        agent_token = data / "agent.token"
        if not agent_token.exists():
            with SuanliClient(server_url, admin) as c:
                write_private(agent_token, _local_agent_token(c) + "\n")
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "census_agent.cli",
                    "run",
                    "--server",
                    server_url,
                    "--token-file",
                    str(agent_token),
                    "--spool-dir",
                    str(data / "spool"),
                    "--region",
                    args.region,
                    "--interval",
                    "30",
                ],
                start_new_session=True,
            )
        )
        ray = (
            f"Ray dashboard {cluster.dashboard_url} (a raylet per tier; Ray token authentication on, its token in "
            f"{cluster.token_file})\n"
            if cluster
            else ""
        )
        print(
            f"\nSuanli is up: service {server_url} (docs {server_url}/docs), database {settings.database_url}\n"
            f"{ray}admin token in {admin_file}; try `suanli census`, `suanli tiers` and "
            f"`suanli submit --class general -- echo hello` in another terminal. Ctrl-C stops everything.\n"
            f"Single-user mode: every job runs as the local OS user {_os_user()}, with that user's files and "
            f"rights; {data} is private to that user (0700). Do not hand out tokens to anyone you would not "
            f"give a shell.\n",
            file=sys.stderr,
            flush=True,
        )
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if cluster is not None:
            cluster.stop()
        print(
            "suanli up: stopped the agent and the service" + (" and the Ray cluster" if cluster else ""),
            file=sys.stderr,
        )


def _os_user() -> str:
    """The local OS user's name (its uid when the name cannot be found)."""
    import pwd  # noqa: PLC0415 - POSIX only, and only `up` needs it

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def _ray_cluster(args: argparse.Namespace, data: Path) -> Any:  # noqa: ANN401 - scheduler.local_cluster.LocalRayCluster
    """A head and one raylet per tier, sharing out --ray-cpus and --ray-memory (the figures stay honest)."""
    import psutil  # noqa: PLC0415 - server-side commands only

    from scheduler.local_cluster import LocalRayCluster  # noqa: PLC0415
    from scheduler.slicing import split_machine  # noqa: PLC0415

    tiers = ["general", "ai", "hpc", "edge"]
    cpus = args.ray_cpus or max(os.cpu_count() or 1, len(tiers))
    memory = args.ray_memory or min(psutil.virtual_memory().total // 2, 8 * 2**30)
    specs = split_machine(cpus, memory, tiers, gpus_for_ai=args.ray_gpus)
    print(
        f"suanli up: starting Ray: a head and {len(specs)} raylets ({cpus} CPUs, {human_bytes(memory)} shared "
        "out; about 20-60 s)...",
        file=sys.stderr,
        flush=True,
    )
    return LocalRayCluster(data / "ray", specs)


def _precision_cells(peaks: dict[str, float]) -> list[str]:
    return [
        human_flops(peaks["fp64"]),
        human_flops(peaks["fp32"]),
        human_flops(peaks["fp16"]),
        human_flops(peaks["int8"], ops=True),
    ]


def share_text(share: float | None) -> str:
    """A share as a percentage with one decimal, or ``-`` when there is none."""
    return "-" if share is None else f"{share:.1%}"


def headline_lines(head: dict[str, Any]) -> list[str]:
    """What the headline is (its label in both languages) and the AI share beside the national target; nothing
    for a service too old to say it."""
    if "label_en" not in head:
        return []
    return [
        f"  = {head['label_en']}",
        f"    {head['label_zh']}",
        f"AI share 智能算力占比: {share_text(head['ai_share'])}   (national target {head['ai_share_target']:.0%}: "
        f"{head['ai_share_target_source']})",
    ]


def render_census(doc: dict[str, Any], by: str) -> str:
    """The human census screen."""
    head = doc["headline"]
    conv = ", ".join(f"{t} at {p}" for t, p in head["convention"].items())
    lines = [
        f"Headline compute 算力总量: {human_flops(head['flops'])}   ({conv}; {', '.join(doc['statuses'])} nodes)",
        *headline_lines(head),
        f"Nodes {doc['totals']['nodes']:,}, cores {doc['totals']['physical_cores']:,}, accelerators "
        f"{doc['totals']['accelerators']:,}, memory {human_bytes(doc['totals']['memory_bytes'])}",
        "",
    ]
    if by == "tier":
        names = {"general": "general 通用", "ai": "ai 智算", "hpc": "hpc 超算", "edge": "edge 边缘"}
        rows = [
            [
                names[t["tier"]],
                f"{t['nodes']:,}",
                human_flops(t["headline_flops"]),
                f"{t['share_of_headline']:.1%}" if t["share_of_headline"] is not None else "-",
                *_precision_cells(t["peak_flops"]),
            ]
            for t in doc["by_tier"]
        ]
        lines.append(table(rows, ["tier", "nodes", "headline", "share", "fp64", "fp32", "fp16", "int8"]))
    else:
        rows = []
        for r in doc["by_region"]:
            per_capita = r["per_capita_headline_flops"]
            rows.append(
                [
                    r["code"],
                    f"{r['name_zh']} {r['name_en']}",
                    r["level"],
                    f"{r['nodes']:,}",
                    human_flops(r["headline_flops"]),
                    human_flops(per_capita) if per_capita else "-",
                    f"{r['population']:,}" if r["population"] else "-",
                ]
            )
        lines.append(table(rows, ["code", "region", "level", "nodes", "headline", "per capita 人均", "population"]))
    return "\n".join(lines)


def cmd_census(args: argparse.Namespace) -> int:
    """``census``."""
    if args.plan is not None or args.projection:
        with _client(args) as client:
            return cli_planning.run(args, client)
    window = getattr(args, "window", None)
    with _client(args) as client:
        if args.csv:
            sys.stdout.write(client.census_csv(include=args.include, region=args.region, window=window))
            return EXIT_OK
        doc = client.census(include=args.include, region=args.region, window=window)
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    elif getattr(args, "utilisation", False):
        print(render_utilisation(doc))
    else:
        print(render_census(doc, args.by))
    return EXIT_OK


WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _window_seconds(text: str) -> int:
    """``--window``: whole seconds, or a number with s, m, h or d (the service bounds it: 60 s to 366 days)."""
    value = text.strip().lower()
    unit = WINDOW_UNITS.get(value[-1:])
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 3600, 6h, 7d)") from None
    if not 0 < seconds < 1e9:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 3600, 6h, 7d)")
    return round(seconds)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _seconds_text(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min" if value < 7200 else f"{value / 3600:.1f} h"


def render_utilisation(doc: dict[str, Any]) -> str:
    """The utilisation screen (``census --utilisation``): per tier the three layers now, utilisation over the
    window, the scheduler's wait and expansion factor, power with its provenance and peak GFLOPS per watt."""
    names = {"general": "general 通用", "ai": "ai 智算", "hpc": "hpc 超算", "edge": "edge 边缘"}
    window = doc["window"]
    total = doc["utilisation"]
    energy = doc["energy"]
    lines = [
        f"Utilisation 利用率 over {_seconds_text(window['seconds'])} ({window['snapshots']} snapshots covering "
        f"{_seconds_text(window['covered_seconds'])}): compute {_percent(total['utilisation']['compute'])}, "
        f"CPU {_percent(total['utilisation']['cpu'])}, accelerators {_percent(total['utilisation']['accelerators'])}",
        f"Power 功率 {energy['power']['watts'] / 1000:,.1f} kW ({energy['power']['provenance']}), "
        f"facility {energy['power']['facility_watts'] / 1000:,.1f} kW; energy {energy['energy_kwh']:,.1f} kWh",
        "",
    ]
    rows = []
    for t in doc["by_tier"]:
        u, d, e = t["utilisation"], t["demand"], t["energy"]
        gflops_w = e["peak_gflops_per_watt"]
        rows.append(
            [
                names[t["tier"]],
                human_flops(u["capacity"]["headline_flops"]),
                f"{human_flops(u['allocated']['headline_flops'])} {_percent(u['allocated']['share_of_capacity'])}",
                f"{human_flops(u['consumed']['headline_flops'])} {_percent(u['consumed']['share_of_capacity'])}",
                _percent(u["utilisation"]["compute"]),
                _percent(u["utilisation"]["cpu"]),
                _percent(u["utilisation"]["accelerators"]),
                _seconds_text(d["mean_wait_seconds"]),
                "-" if d["expansion_factor"] is None else f"{d['expansion_factor']:.2f}",
                f"{e['power']['watts'] / 1000:,.1f} kW {e['power']['provenance']}",
                "-" if gflops_w is None else f"{gflops_w:,.1f} ({e['headline_precision']})",
                str(t["unpriced_accelerators"]),
            ]
        )
    headers = [
        "tier",
        "capacity",
        "allocated",
        "consumed",
        "util",
        "cpu",
        "accel",
        "wait",
        "xfactor",
        "power",
        "peak GFLOPS/W",
        "unpriced",
    ]
    lines.append(table(rows, headers))
    lines += [
        "capacity / allocated / consumed: headline FLOPS now (share of capacity); util, cpu, accel: consumed /",
        "available hours over the window (FLOPS-weighted, core-hours, GPU-hours); wait, xfactor: the scheduler's",
        "mean wait and expansion factor; peak GFLOPS/W: peaks at the tier's headline precision over its power.",
    ]
    return "\n".join(lines)


def cmd_nodes(args: argparse.Namespace) -> int:
    """``nodes``."""
    with _client(args) as client:
        page = client.nodes(
            tier=args.tier, region=args.region, status=args.status, organisation=args.organisation, limit=args.limit
        )
    if args.json:
        print(json.dumps(page, indent=2, ensure_ascii=False))
        return EXIT_OK
    rows = [
        [
            n["node_id"][:16],
            n["hostname"],
            n["tier"],
            n["status"],
            n["region_code"] or "-",
            str(n["physical_cores"]),
            str(n["accelerators"]),
            human_bytes(n["memory_bytes"]),
            human_flops(n["fp64_flops"]),
            human_flops(n["fp16_flops"]),
        ]
        for n in page["items"]
    ]
    print(table(rows, ["node", "hostname", "tier", "status", "region", "cores", "accel", "memory", "fp64", "fp16"]))
    if page["next_after"]:
        print(f"(more: --limit, or the API's after={page['next_after']})")
    return EXIT_OK


def _token_state(token: dict[str, Any]) -> str:
    if token["revoked_at"]:
        return "revoked"
    return f"expires {token['expires_at'][:19]}" if token["expires_at"] else "active"


def _local_agent_token(client: SuanliClient) -> str:
    """A new agent token for `up`'s own agent: ``local agent``, or ``local agent (N)`` when an earlier one (its
    token file since deleted) still holds the name (names are unique)."""
    for n in range(1, 100):
        try:
            return str(client.create_token("local agent" if n == 1 else f"local agent ({n})", "agent")["token"])
        except ApiError as exc:
            if exc.status != 409:
                raise
    raise ApiError(409, "no free name for the local agent's token")


def cmd_token(args: argparse.Namespace) -> int:
    """``token create|list|revoke``."""
    with _client(args) as client:
        action = args.token_command
        if action == "create":
            expires = parse_duration(args.expires_in) if args.expires_in else None
            made = client.create_token(args.name, args.role, expires, args.organisations)
            if args.json:
                print(json.dumps(made, indent=2))
            else:
                orgs = made.get("organisations") or []
                given = f", organisations {', '.join(orgs)}" if orgs else ""
                expiry = f"expires {made['expires_at'][:19]}" if made.get("expires_at") else "never expires"
                print(
                    f"token {made['id']} ({made['role']}{given}) for {made['name']!r}, {expiry}; store it now, it "
                    "is not shown again:"
                )
                print(made["token"])
        elif action == "list":
            rows = [
                [
                    str(t["id"]),
                    t["name"],
                    t["role"],
                    t["prefix"] + "...",
                    t["node_id"] or "-",
                    ", ".join(t.get("organisations") or []) or "-",
                    t["created_at"][:19],
                    _token_state(t),
                ]
                for t in client.tokens()
            ]
            print(table(rows, ["id", "name", "role", "prefix", "bound node", "organisations", "created", "state"]))
        else:
            client.revoke_token(args.id)
            print(f"token {args.id} revoked")
    return EXIT_OK


def _summary(detail: dict[str, Any]) -> str:
    if "reports" in detail and isinstance(detail["reports"], dict):
        return f"{len(detail['reports'])} report(s)"
    return json.dumps(detail, ensure_ascii=False, separators=(",", ":"))[:80]


def cmd_audit(args: argparse.Namespace) -> int:
    """``audit [--verify]``."""
    with _client(args) as client:
        if args.verify:
            result = client.verify_audit(args.anchor)
        else:
            page = client.audit(
                action=args.action, actor=args.actor, since=args.since, until=args.until, limit=args.limit
            )
    if not args.verify:
        if args.json:
            print(json.dumps(page, indent=2, ensure_ascii=False))
            return EXIT_OK
        rows = [
            [str(e["seq"]), e["at"][:19], e["action"], e["actor"], e["subject"] or "-", _summary(e["detail"])]
            for e in page["items"]
        ]
        print(table(rows, ["seq", "at", "action", "actor", "subject", "detail"]))
        if page["next_before"]:
            print(f"(more: --limit, or the API's before={page['next_before']})")
        return EXIT_OK
    if args.json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        head = result["head"]
        where = f"head {head['seq']}:{head['hash']}" if head else "no head"
        print(f"{result['entries']} entries, {result['reports']} reports checked; {where}")
        if result["first_break"]:
            b = result["first_break"]
            print(f"BROKEN at entry {b['seq']} ({b['kind']}): {b['detail']}", file=sys.stderr)
        for m in result["mismatches"]:
            print(f"REPORT {m['report_id']} ({m['kind']}): {m['detail']}", file=sys.stderr)
        if result["reports_mismatched"] > len(result["mismatches"]):
            print(f"... {result['reports_mismatched']} mismatching report(s) in all", file=sys.stderr)
        if result["ok"]:
            print("the audit chain holds")
    return EXIT_OK if result["ok"] else EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``suanli``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    handlers = {
        "serve": cmd_serve,
        "up": cmd_up,
        "census": cmd_census,
        "nodes": cmd_nodes,
        "token": cmd_token,
        "audit": cmd_audit,
    }
    try:
        if args.command in cli_jobs.COMMANDS:
            return cli_jobs.run(args, _client)
        if args.command == cli_k8s.COMMAND:
            return cli_k8s.run(args, _client)
        return handlers[args.command](args)
    except ApiError as exc:
        print(f"suanli {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE if exc.status in (400, 422) else EXIT_ERROR
    except (ValueError, OSError) as exc:
        if _is_validation_error(exc):
            print(f"suanli {args.command}: invalid settings:\n{exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"suanli {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
