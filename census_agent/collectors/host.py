"""Host identity under an injected root: hostname, a stable node id, OS, kernel, boot time."""

from __future__ import annotations

import logging
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

from census_agent.collectors.files import read_text
from census_agent.models import HostInfo

log = logging.getLogger(__name__)
_MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")
_OS_RELEASE = re.compile(r'^PRETTY_NAME=("?)(.*)\1$', re.MULTILINE)


def _first_line(path: Path) -> str | None:
    text = read_text(path)
    return text.strip().splitlines()[0].strip() if text and text.strip() else None


def _machine_id(root: Path) -> str | None:
    for candidate in (root / "etc" / "machine-id", root / "var" / "lib" / "dbus" / "machine-id"):
        value = _first_line(candidate)
        if value and _MACHINE_ID.match(value):
            return value
    return None


def collect_host(root: Path, node_id_override: str | None = None) -> HostInfo:
    """Identity of the machine under `root`. The node id is the override, else machine-id, else hostname."""
    hostname = _first_line(root / "proc" / "sys" / "kernel" / "hostname") or _first_line(root / "etc" / "hostname")
    hostname = hostname or "unknown"
    os_release = read_text(root / "etc" / "os-release") or read_text(root / "usr" / "lib" / "os-release") or ""
    match = _OS_RELEASE.search(os_release)
    ostype = _first_line(root / "proc" / "sys" / "kernel" / "ostype") or "Linux"
    kernel = _first_line(root / "proc" / "sys" / "kernel" / "osrelease") or "unknown"
    boot_time = None
    for line in (read_text(root / "proc" / "stat") or "").splitlines():
        if line.startswith("btime "):
            boot_time = datetime.fromtimestamp(int(line.split()[1]), tz=UTC)
            break

    if node_id_override:
        node_id, source = node_id_override, "override"
    elif (machine_id := _machine_id(root)) is not None:
        node_id, source = machine_id, "machine-id"
    else:
        node_id, source = uuid.uuid5(uuid.NAMESPACE_DNS, hostname).hex, "hostname"
        log.warning(
            "no /etc/machine-id under %s: node id %s derived from hostname %r; set node_id in the config "
            "to keep it stable across renames",
            root,
            node_id,
            hostname,
        )
    return HostInfo(
        node_id=node_id,
        node_id_source=source,
        hostname=hostname,
        os=match.group(2) if match else ostype,
        kernel=kernel,
        boot_time=boot_time,
    )
