"""Fixtures for the safety suite: the loopback NAS endpoints (tests/conftest.py), runs, the real CLI.

Runs live under a per-test source root in a directory every uid may traverse,
so that a test can run the mover as a non-root uid (tests run as root here).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from safetylib import Mover, Nas, Run, RunFactory, VolumeNas

from nassync_dev.nas import RcloneSftpNas, SshNas
from nassync_dev.scenario import reachable_tmpdir


@pytest.fixture(params=["rclone", "rsync", "volume"])
def nas(request: pytest.FixtureRequest, open_tmp: Path) -> Nas:
    """Each test using this runs once per transport: real rclone serve sftp, real sshd, a mounted volume."""
    if request.param == "volume":
        root = open_tmp / "volume-nas"  # reachable by a non-root mover, like a mounted share
        root.mkdir(mode=0o755)
        return VolumeNas(root=root)
    server: SshNas | RcloneSftpNas = request.getfixturevalue("sftp_nas" if request.param == "rclone" else "ssh_nas")
    return server


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary directory (0755) that a mover running as another uid can reach."""
    with reachable_tmpdir("nassync-safety-") as path:
        yield path


@pytest.fixture
def make_run(open_tmp: Path) -> RunFactory:
    """make_run({relpath: bytes}) -> a run under a per-test source root."""

    def factory(files: Mapping[str, bytes] | None = None, *, run_path: str | None = None) -> Run:
        run = Run(source_root=open_tmp / "source", run_path=run_path or f"PROJ/Runs/Run_{uuid.uuid4().hex[:8]}")
        run.dir.mkdir(parents=True, exist_ok=True)
        for relpath, data in (files or {}).items():
            run.write(relpath, data)
        return run

    return factory


@pytest.fixture
def mover(open_tmp: Path) -> Mover:
    results = open_tmp / "results"
    results.mkdir()
    results.chmod(0o777)
    return Mover(workdir=results)


@pytest.fixture
def outside(open_tmp: Path) -> Path:
    """A directory outside every run, holding bytes that must never reach the NAS or change."""
    path = open_tmp / "outside"
    (path / ".exlab-wizard").mkdir(parents=True)
    (path / "secret.txt").write_bytes(b"OUTSIDE-SECRET-BYTES " + uuid.uuid4().hex.encode())
    (path / "data").mkdir()
    (path / "data" / "a.bin").write_bytes(b"OUTSIDE-SECRET-BYTES in data/a.bin")
    (path / ".exlab-wizard" / "creation.json").write_bytes(b'{"OUTSIDE-SECRET-BYTES": "creation"}')
    return path
