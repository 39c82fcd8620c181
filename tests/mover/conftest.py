"""Fixtures for mover tests: real loopback NAS endpoints and the real CLI.

The endpoints are session-scoped (starting sshd and rclone serve costs about a
second) and every test uses its own runPath under them, so tests do not see
each other's files. Tests that stop a server start their own. `run_mover`
executes the installed `nassync-mover` console script in a subprocess with
`NASSYNC_PARAMS`, exactly as a mover pod does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from moverlib import MoverRun, Run, RunFactory, finish_mover, start_mover

from nassync.api.mover_io import MoverParams
from nassync_dev.nas import RcloneSftpNas, SshNas


@pytest.fixture(scope="session")
def rclone_nas(sftp_nas: RcloneSftpNas) -> RcloneSftpNas:
    """The session's rclone sftp NAS (tests/conftest.py), by the name mover tests use."""
    return sftp_nas


@pytest.fixture(params=["rclone", "rsync"])
def nas(request: pytest.FixtureRequest) -> SshNas | RcloneSftpNas:
    """Each test using this runs once per transport."""
    name = "rclone_nas" if request.param == "rclone" else "ssh_nas"
    server: SshNas | RcloneSftpNas = request.getfixturevalue(name)
    return server


@pytest.fixture
def make_run(tmp_path: Path) -> RunFactory:
    """make_run({relpath: bytes}) -> a run dir under a per-test source root."""

    def factory(files: Mapping[str, bytes] | None = None, *, prefix: str = "PROJ") -> Run:
        run = Run(source_root=tmp_path / "source", run_path=f"{prefix}/Runs/Run_{uuid.uuid4().hex[:8]}")
        run.dir.mkdir(parents=True)
        for relpath, data in (files or {}).items():
            run.write(relpath, data)
        return run

    return factory


@pytest.fixture
def run_mover(tmp_path: Path) -> Callable[[MoverParams], MoverRun]:
    counter = iter(range(1_000_000))

    def runner(params: MoverParams) -> MoverRun:
        result_path = tmp_path / f"result-{next(counter)}.json"
        return finish_mover(start_mover(params, result_path), result_path)

    return runner
