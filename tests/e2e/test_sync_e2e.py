"""A run goes Pending → … → Cleaned on the local cluster, driven only by kubectl apply.

Each test asserts the user-visible outcome (phase, conditions, Events) and the
ground truth on disk: the NAS copy is byte-identical, the manifest is there,
and local data is gone only when the test expects cleanup.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from tests.e2e.support import events, tree, wait_phase

from nassync_dev.nas import RcloneSftpNas, SshNas
from nassync_dev.scenario import OperatorProcess, rclone_target, rsync_target, syncjob, write_run
from nassync_dev.testing import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.nas]

RUN_FILES = {
    "raw/frame_0001.tif": os.urandom(200_000),
    "raw/frame_0002.tif": os.urandom(150_000),
    "metadata.json": b'{"instrument": "microscope-01"}\n',
    "notes with spaces.txt": "naïve café ünïcode\n".encode(),
    "empty.dat": b"",
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _assert_nas_copy(nas_run: Path, files: dict[str, bytes]) -> None:
    on_nas = tree(nas_run)
    for rel, data in files.items():
        assert rel in on_nas, f"{rel} missing on the NAS"
        assert _sha(on_nas[rel]) == _sha(data), f"{rel} differs on the NAS"
    manifest = (nas_run / ".exlab-wizard" / "checksums.sha256").read_text()
    for rel, data in files.items():
        assert f"{_sha(data)}  {rel}\n" in manifest


@pytest.mark.parametrize("transport", ["rclone", "rsync"])
def test_run_goes_all_the_way_to_cleaned(transport: str, ns: Kubectl, operator: OperatorProcess,
                                         sftp_nas: RcloneSftpNas, ssh_nas: SshNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    run_path = "PROJ-0001/Runs/Run_2026-11-28T10-15"
    run = write_run(source, run_path, RUN_FILES)
    nas_dir = f"{ns.namespace}-{transport}"
    if transport == "rclone":
        rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=nas_dir)
        nas_root = sftp_nas.root / nas_dir
        remote = f"/{nas_dir}/{run_path}"  # the sftp server's root is sftp_nas.root
    else:
        rsync_target(ns, ssh_nas, name="scope", source=source, nas_path=nas_dir)
        nas_root = ssh_nas.root / nas_dir
        remote = str(nas_root / run_path)
    ns.apply(syncjob("run-1", "scope", run_path))

    done = wait_phase(ns, "run-1", "Cleaned", timeout=180)

    _assert_nas_copy(nas_root / run_path, RUN_FILES)
    # Local data files are gone; the cache dir (manifest, creation.json) stays.
    left = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
    assert left and all(p.startswith(".exlab-wizard/") for p in left)
    status = done["status"]
    assert status["verifyPasses"] >= 1
    assert status["manifest"]["files"] == len(RUN_FILES)
    assert status["manifest"]["bytes"] == sum(len(v) for v in RUN_FILES.values())
    assert status["remotePath"] == remote
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Verified"]["status"] == "True"
    assert conds["Cleaned"]["status"] == "True"
    reasons = [e["reason"] for e in events(ns, "run-1")]
    for expected in ("PushStarted", "Verified", "Cleaned"):
        assert expected in reasons, f"no {expected} Event in {reasons}"
