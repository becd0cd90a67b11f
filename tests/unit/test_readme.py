"""The README, the front door, stays short and true: its links lead somewhere and its CLI summary names exactly
the commands the two parsers have.  The documentation site's own links are checked by `mkdocs build --strict`
(scripts/test); this module does not build the site."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from api.cli.main import build_parser as suanli_parser
from census_agent.cli import build_parser as agent_parser

ROOT = Path(__file__).parent.parent.parent
README = (ROOT / "README.md").read_text()
MAX_LINES = 250


def subcommands(parser: argparse.ArgumentParser) -> set[str]:
    """The first-level subcommand names of `parser`."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(actions) == 1
    return set(actions[0].choices)


def test_readme_is_at_most_250_lines() -> None:
    """The README is a front door; everything longer belongs in docs/."""
    assert len(README.splitlines()) <= MAX_LINES


def test_every_relative_link_in_the_readme_names_a_file_that_exists() -> None:
    """Links such as docs/agent.md and docs/security.md#known-gaps point at files in the repository."""
    targets = re.findall(r"\]\(([^)]+)\)", README)
    relative = [t.split("#", 1)[0] for t in targets if not re.match(r"[a-z]+:", t)]
    assert relative, "the README links into docs/"
    missing = [t for t in relative if t and not (ROOT / t).exists()]
    assert missing == []


@pytest.mark.parametrize(
    ("program", "parser"), [("suanli", suanli_parser), ("census-agent", agent_parser)], ids=["suanli", "census-agent"]
)
def test_cli_summary_lists_exactly_the_commands_the_parser_has(
    program: str, parser: Callable[[], argparse.ArgumentParser]
) -> None:
    """Each `program COMMAND` line of the README's CLI summary is a real subcommand, and none is left out."""
    listed = set(re.findall(rf"^{re.escape(program)} ([a-z0-9-]+)", README, flags=re.MULTILINE))
    assert listed == subcommands(parser())
