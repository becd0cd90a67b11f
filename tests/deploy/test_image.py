"""The container recipe (Dockerfile), read as text: there is no docker here to build it, so these are the facts
that can be checked honestly without one: both targets exist, run as a non-root user, expose their ports,
pin their base image and uv, install from uv.lock, keep the server packages out of the agent, and match the
chart's default images."""

from __future__ import annotations

import re

import yaml

from tests.deploy.helm import CHART, ROOT

DOCKERFILE = ROOT / "Dockerfile"


def stages() -> dict[str, list[str]]:
    """Each stage's instructions (continuation lines joined), by stage name, plus "" for the lines before FROM."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found: dict[str, list[str]] = {"": []}
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = match.group(2) or match.group(1)
            found[current] = [line]
        else:
            found[current].append(line)
    return found


def test_agent_and_server_targets_run_unprivileged_and_expose_their_ports() -> None:
    """`--target agent` and `--target server` exist; each ends as user 10001 (not root) with its port exposed and
    its command as entry point."""
    every = stages()
    for target, port, command in (("agent", "9464", "census-agent"), ("server", "8080", "suanli")):
        lines = every[target]
        users = [line.split()[1] for line in lines if line.startswith("USER ")]
        assert users, f"{target}: no USER"
        assert users[-1].split(":")[0] not in ("0", "root")
        assert f"EXPOSE {port}" in lines
        assert f'ENTRYPOINT ["{command}"]' in lines


def test_base_images_and_tools_are_pinned() -> None:
    """No `latest` and no untagged image anywhere; the Python base image names a patch release; uv is pinned."""
    text = DOCKERFILE.read_text()
    assert "latest" not in text
    (base,) = re.findall(r"ARG PYTHON_IMAGE=(\S+)", text)
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", base), base
    for line in text.splitlines():
        if line.startswith("FROM "):
            image = line.split()[1]
            assert image == "${PYTHON_IMAGE}" or image in stages(), line
    assert re.search(r"pip install uv==\d+\.\d+\.\d+", text)


def test_images_install_the_locked_packages_and_the_agent_none_of_the_servers() -> None:
    """Every install is `uv sync --locked --no-dev`; only the server build adds the `server` extra."""
    every = stages()
    for stage, lines in every.items():
        for line in lines:
            if "uv sync" in line:
                assert "--locked" in line
                assert "--no-dev" in line
                assert ("--extra server" in line) == (stage == "server-build"), line
    assert any("agent-build" in line for line in every["agent"] if line.startswith("COPY --from"))
    assert any("server-build" in line for line in every["server"] if line.startswith("COPY --from"))


def test_chart_default_images_are_the_ones_the_dockerfile_builds() -> None:
    """The chart's api.image and agent.image repositories (tag: appVersion) are the tags the Dockerfile's build
    lines give the server and agent targets."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    text = DOCKERFILE.read_text()
    for target, key in (("server", "api"), ("agent", "agent")):
        image = values[key]["image"]
        assert image["tag"] == ""  # the chart's appVersion
        assert re.search(rf"--target {target}\s+-t {re.escape(image['repository'])}:{re.escape(version)}\s", text)


def test_dockerignore_keeps_local_state_out_of_the_build() -> None:
    """.dockerignore leaves out the virtual environment, the tool cache (helm), git and local data."""
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".cache", "suanli-data", "tests"} <= ignored
