"""``suanli census --plan FILE`` and ``suanli census --projection``: the planners' questions on the terminal.

A plan file is JSON: ``{"machines": [{"count": 10, "region": "440106", "inventory_file": "dgx.json"}]}``; each
machine gives its inventory inline (``"inventory": {...}``, the document ``census-agent estimate`` reads) or as
``inventory_file``, a file on the planner's machine (relative to the plan file) that this command reads and sends
as data: the service never opens a path. Must not import the server's stack (see the CLI's import contract).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from api.cli.client import SuanliClient
from census_agent.units import human_flops, table

TIER_NAMES = {"general": "general 通用", "ai": "ai 智算", "hpc": "hpc 超算", "edge": "edge 边缘"}
PREFIXES = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21}
_FLOPS = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGTPEZ]?)(?:FLOPS)?\s*$", re.IGNORECASE)


def parse_flops(text: str) -> float:
    """``300E``, ``300 EFLOPS``, ``3e20`` or ``12.5T`` as FLOPS; ``ValueError`` naming the text otherwise."""
    match = _FLOPS.match(text)
    if not match:
        raise ValueError(f"not a FLOPS figure: {text!r} (e.g. 300E, 300 EFLOPS, 3e20, 12.5T)")
    value = float(match.group(1)) * PREFIXES[match.group(2).upper()]
    if value <= 0:
        raise ValueError(f"a target must be positive: {text!r}")
    return value


def flops_argument(text: str) -> float:
    """`parse_flops` for argparse (whose usage error then carries the reason)."""
    try:
        return parse_flops(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_plan(path: Path) -> dict[str, Any]:
    """The plan body to send: the file's machines, each ``inventory_file`` read here and sent as its document."""
    plan = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(plan, dict) or not isinstance(plan.get("machines"), list):
        raise ValueError(f"{path}: a plan is a JSON object with a list `machines`")
    machines = []
    for index, machine in enumerate(plan["machines"]):
        if not isinstance(machine, dict):
            raise ValueError(f"{path}: machines[{index}] is not an object")
        entry = dict(machine)
        name = entry.pop("inventory_file", None)
        if name is not None:
            if "inventory" in entry:
                raise ValueError(f"{path}: machines[{index}] has both `inventory` and `inventory_file`")
            entry["inventory"] = json.loads((path.parent / str(name)).read_text(encoding="utf-8"))
        machines.append(entry)
    return {**plan, "machines": machines}


def _share(share: float | None) -> str:
    return "-" if share is None else f"{share:.1%}"


def _change(before: float, after: float) -> str:
    return f"+{human_flops(after - before)}" if after >= before else f"-{human_flops(before - after)}"


def render_plan(doc: dict[str, Any]) -> str:
    """The before/after screen of a plan."""
    before, after = doc["before"], doc["after"]
    added = doc["added"]
    lines = [
        f"What if: {added['machines']:,} machine(s) of {added['kinds']} kind(s) added "
        f"(+{added['accelerators']:,} accelerators); nothing stored",
        table(
            [
                [
                    m["name"] or "-",
                    f"{m['count']:,}",
                    m["region"],
                    TIER_NAMES.get(m["tier"], m["tier"]),
                    f"{human_flops(m['per_machine_headline_flops'])} {m['headline_precision']}",
                    human_flops(m["added_headline_flops"]),
                ]
                for m in doc["machines"]
            ],
            ["kind", "count", "region", "tier", "per machine", "added"],
        ),
        "",
        f"Headline = {after['headline']['label_en']}",
    ]
    rows = [
        [
            "headline 算力总量",
            human_flops(before["headline"]["flops"]),
            human_flops(after["headline"]["flops"]),
            _change(before["headline"]["flops"], after["headline"]["flops"]),
        ],
        [
            "AI share 智能算力占比",
            _share(before["headline"]["ai_share"]),
            _share(after["headline"]["ai_share"]),
            f"target {after['headline']['ai_share_target']:.0%}",
        ],
    ]
    for old, new in zip(before["by_tier"], after["by_tier"], strict=True):
        rows.append(
            [
                f"{TIER_NAMES.get(new['tier'], new['tier'])} ({new['headline_precision']})",
                f"{human_flops(old['headline_flops'])} ({_share(old['share_of_headline'])})",
                f"{human_flops(new['headline_flops'])} ({_share(new['share_of_headline'])})",
                _change(old["headline_flops"], new["headline_flops"]),
            ]
        )
    lines += [table(rows, ["", "before", "after", "change"]), "", "Regions the plan changes:"]
    regions = []
    for r in doc["changes"]:
        old, new = r["before"], r["after"]
        regions.append(
            [
                r["code"],
                f"{r['name_zh']} {r['name_en']}",
                human_flops(old["headline_flops"]),
                human_flops(new["headline_flops"]),
                human_flops(old["per_capita_headline_flops"]) if old["per_capita_headline_flops"] is not None else "-",
                human_flops(new["per_capita_headline_flops"]) if new["per_capita_headline_flops"] is not None else "-",
                _share(old["ai_share"]),
                _share(new["ai_share"]),
            ]
        )
    lines.append(
        table(
            regions,
            ["code", "region", "before", "after", "per capita 人均 before", "after", "AI share before", "after"],
        )
    )
    return "\n".join(lines)


def _series_row(name: str, series: dict[str, Any]) -> list[str]:
    fit = series["fit"]
    last = human_flops(series["last_flops"]) if series["last_flops"] is not None else "-"
    if fit is None:
        return [name, last, "-", "-", "-", "-", series["reason"] or ""]
    doubling = f"{fit['doubling_days']:,.0f} d" if fit["doubling_days"] is not None else "-"
    r_squared = f"{fit['r_squared']:.4f}" if fit["r_squared"] is not None else "-"
    growth = f"{fit['growth_per_year']:+.1%}" if fit["growth_per_year"] is not None else "-"
    return [name, last, growth, doubling, r_squared, str(fit["points"]), ""]


def render_projection(doc: dict[str, Any]) -> str:
    """The growth and target screen of a projection."""
    where = f"region {doc['region']}" if doc["region"] else "the whole census"
    lines = [
        f"Projection for {where}, {doc['method']}: {doc['description']}",
        f"Snapshots from {doc['from'] or '-'} to {doc['to'] or '-'} (a fit needs at least {doc['min_points']})",
        "",
        table(
            [
                _series_row("headline 算力总量", doc["total"]),
                *(_series_row(TIER_NAMES.get(t, t), s) for t, s in doc["by_tier"].items()),
            ],
            ["series", "last", "growth/year", "doubling", "r²", "points", "no fit because"],
        ),
    ]
    for target in doc["targets"]:
        label = "total" if target["kind"] == "total_flops" else "per capita 人均"
        if target["already_reached"]:
            outcome = "already reached"
        elif target["reached_at"]:
            outcome = f"reached {target['reached_at']} (by the fit)"
        else:
            outcome = f"no date: {target['reason']}"
        lines.append(f"Target {label} {human_flops(target['target'])}: {outcome}")
    return "\n".join(lines)


def add_census_flags(census: argparse.ArgumentParser) -> None:
    """``--plan``, ``--projection`` and the projection's options on ``suanli census``."""
    census.add_argument(
        "--plan", type=Path, metavar="FILE", help="what if: the census before and after the planned machines in FILE"
    )
    census.add_argument("--projection", action="store_true", help="when: growth per tier and target dates")
    census.add_argument("--method", choices=["exponential", "linear"], default="exponential", help="projection fit")
    census.add_argument("--target-total", type=flops_argument, metavar="FLOPS", help="e.g. 300E or 3e20")
    census.add_argument("--target-per-capita", type=flops_argument, metavar="FLOPS", help="needs --region")


def run(args: argparse.Namespace, client: SuanliClient) -> int:
    """``census --plan FILE`` or ``census --projection``; the exit code (the caller handles API errors)."""
    if args.plan is not None:
        doc = client.plan(load_plan(args.plan), include=args.include, region=args.region)
        print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else render_plan(doc))
        return 0
    doc = client.projection(
        include=args.include,
        region=args.region,
        method=args.method,
        target_total_flops=args.target_total,
        target_per_capita_flops=args.target_per_capita,
    )
    print(json.dumps(doc, indent=2, ensure_ascii=False) if args.json else render_projection(doc))
    return 0
