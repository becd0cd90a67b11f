"""The agent's typed settings, read once at the entry point from a TOML file, the environment and flags.

Precedence, lowest first: defaults < file (``--config``, default ``/etc/suanli/agent.toml`` when present) <
environment (``SUANLI_AGENT_<NAME>``) < command-line flags.  Invalid settings raise `ConfigError` with every
problem named; nothing else in the agent reads the environment.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError

from census_agent.models import Bytes, Labels, ShortText, Text

DEFAULT_CONFIG_FILE = Path("/etc/suanli/agent.toml")
ENV_PREFIX = "SUANLI_AGENT_"
# Labels that may also be given as SUANLI_AGENT_<NAME> or --<name> (e.g. the region from a Kubernetes label).
LABEL_KEYS = ("region", "organisation", "site", "tier")


class ConfigError(ValueError):
    """The agent's configuration is invalid; the message names each bad setting."""


class DeclaredAccelerator(BaseModel):
    """An accelerator NVML cannot see (AMD, Ascend, ...), declared by the operator."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    vendor: ShortText
    model: Text
    count: Annotated[int, Field(ge=1, le=1024)] = 1
    memory_bytes: Bytes | None = None


class AgentConfig(BaseModel):
    """Every setting of the agent, with its default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    server: AnyHttpUrl | None = None
    token_file: Path | None = None
    # A fleet's shared enrolment token: traded once for this node's own agent token, kept in token_file
    # (default: agent.token beside the spool directory).
    enrol_token_file: Path | None = None
    ca_file: Path | None = None
    interval_seconds: Annotated[float, Field(ge=1, le=86_400)] = 30.0
    jitter: Annotated[float, Field(ge=0, le=0.5)] = 0.1
    backoff_max_seconds: Annotated[float, Field(ge=1, le=86_400)] = 300.0
    request_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 10.0
    spool_dir: Path = Path("/var/lib/suanli-agent/spool")
    spool_max_reports: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    spool_max_bytes: Annotated[int, Field(ge=4096)] = 256 * 2**20
    metrics_port: Annotated[int, Field(ge=0, le=65_535)] | None = None
    metrics_host: str = "127.0.0.1"
    root: Path = Path("/")
    node_id: ShortText | None = None
    nvml: bool = True
    vendor_tools: bool = True  # run amd-smi, npu-smi, hy-smi, cnmon where installed
    inventory_refresh_seconds: Annotated[float, Field(ge=1)] = 3600.0
    log_level: str = "INFO"
    labels: Labels = Labels()
    accelerators: list[DeclaredAccelerator] = []


def _merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _from_env(environ: Mapping[str, str]) -> dict[str, Any]:
    layer: dict[str, Any] = {}
    scalar_fields = set(AgentConfig.model_fields) - {"labels", "accelerators"}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key in LABEL_KEYS:
            layer.setdefault("labels", {})[key] = value
        elif key in scalar_fields:
            layer[key] = value
        else:
            raise ConfigError(f"unknown environment variable {name}")
    return layer


def _format(error: ValidationError, where: str) -> str:
    lines = [f"invalid agent configuration ({where}):"]
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"  {loc}: {item['msg']}")
    return "\n".join(lines)


def load_config(
    config_file: Path | None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Settings from file, environment and flags (flags given as ``{field: value}``, labels by their name)."""
    layer: dict[str, Any] = {}
    path = config_file if config_file is not None else (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None)
    sources = ["defaults"]
    if path is not None:
        try:
            layer = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        sources.append(str(path))
    layer = _merge(layer, _from_env(os.environ if environ is None else environ))
    flag_layer: dict[str, Any] = {}
    for key, value in (flags or {}).items():
        if value is None:
            continue
        if key in LABEL_KEYS:
            flag_layer.setdefault("labels", {})[key] = value
        else:
            flag_layer[key] = value
    layer = _merge(layer, flag_layer)
    sources += ["environment", "flags"]
    try:
        return AgentConfig.model_validate(layer)
    except ValidationError as exc:
        raise ConfigError(_format(exc, " < ".join(sources))) from exc
