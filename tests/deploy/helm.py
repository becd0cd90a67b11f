"""Running the real `helm` (fetched by scripts/fetch-helm, never committed) on the chart, and reading its output."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parent.parent.parent
CHART = ROOT / "deploy" / "helm" / "suanli"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
RELEASE = "census"
NAMESPACE = "suanli"


def helm_binary() -> Path:
    """$SUANLI_HELM, else .cache/tools/helm; a missing helm FAILS the test (CI must run these checks)."""
    path = Path(os.environ.get("SUANLI_HELM") or ROOT / ".cache" / "tools" / "helm")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"no helm at {path}: run scripts/fetch-helm (or set SUANLI_HELM to a helm binary)")
    return path


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    """Run helm with `args`; never raises on a non-zero exit (the caller checks returncode)."""
    return subprocess.run([str(helm_binary()), *args], capture_output=True, text=True, timeout=120, check=False)


def template(*values_args: str) -> list[dict[str, Any]]:
    """`helm template` of the chart with the given -f/--set arguments: the rendered objects, in order."""
    result = helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *values_args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """The objects of `kind` (and `name`, when given)."""
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
