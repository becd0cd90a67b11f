"""`suanli up`'s data directory is private to the local user: the directory 0700, its files 0600.

The whole of `up` (a service, an agent and a Ray cluster) is tested in tests/integration/service/test_up.py; this
checks the functions that make its directory and write its files, on a real temporary directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from api.cli.main import PRIVATE_UMASK, prepare_data_dir, write_private


def mode(path: Path) -> int:
    """The permission bits of `path`."""
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_directory_is_made_0700(tmp_path: Path) -> None:
    """A directory that does not exist yet (its parents neither) is made owner-only."""
    data = prepare_data_dir(tmp_path / "a" / "suanli")
    assert data.is_dir()
    assert mode(data) == 0o700


def test_an_existing_open_data_directory_and_its_files_are_made_private(tmp_path: Path) -> None:
    """A directory an earlier version left 0755 with 0644 files (a token, a database) becomes 0700 with 0600
    files; a subdirectory keeps its mode (Ray and the spool manage their own)."""
    data = tmp_path / "suanli"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    for name in ("admin.token", "suanli.db", "scheduler.toml"):
        (data / name).write_text("x")
        (data / name).chmod(0o644)
    (data / "spool").mkdir()
    (data / "spool").chmod(0o755)
    assert prepare_data_dir(data) == data.resolve()
    assert mode(data) == 0o700
    assert {name: mode(data / name) for name in ("admin.token", "suanli.db", "scheduler.toml")} == dict.fromkeys(
        ("admin.token", "suanli.db", "scheduler.toml"), 0o600
    )
    assert mode(data / "spool") == 0o755


def test_private_files_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    """`write_private` gives 0600 under an open umask, on a new file and over an existing 0644 one."""
    old = os.umask(0o000)
    try:
        write_private(tmp_path / "agent.token", "secret\n")
        (tmp_path / "scheduler.toml").write_text("old")
        (tmp_path / "scheduler.toml").chmod(0o644)
        write_private(tmp_path / "scheduler.toml", "[ray]\n")
    finally:
        os.umask(old)
    assert (mode(tmp_path / "agent.token"), mode(tmp_path / "scheduler.toml")) == (0o600, 0o600)
    assert (tmp_path / "scheduler.toml").read_text() == "[ray]\n"


def test_the_umask_up_sets_makes_what_its_children_create_private(tmp_path: Path) -> None:
    """Under `up`'s umask a file the service creates (its SQLite database, say) is 0600 and a directory 0700."""
    old = os.umask(PRIVATE_UMASK)
    try:
        (tmp_path / "suanli.db").write_bytes(b"")
        (tmp_path / "logs").mkdir()
    finally:
        os.umask(old)
    assert (mode(tmp_path / "suanli.db"), mode(tmp_path / "logs")) == (0o600, 0o700)
