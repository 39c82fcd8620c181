"""A run goes Pending → … → Cleaned on the local cluster, driven only by kubectl apply.

Each test asserts the user-visible outcome (phase, conditions, Events) and the
ground truth on disk: the NAS copy is byte-identical, the manifest is there,
and local data is gone only when the test expects cleanup.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
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


def _target(transport: str, ns: Kubectl, sftp_nas: RcloneSftpNas, ssh_nas: SshNas, *, source: Path,
            nas_dir: str) -> Path:
    """The SyncTarget `scope` on the transport's loopback NAS; the NAS directory it writes below."""
    if transport == "rclone":
        rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=nas_dir)
        return sftp_nas.root / nas_dir
    rsync_target(ns, ssh_nas, name="scope", source=source, nas_path=nas_dir)
    return ssh_nas.root / nas_dir


@pytest.mark.parametrize("transport", ["rclone", "rsync"])
def test_run_goes_all_the_way_to_cleaned(transport: str, ns: Kubectl, operator: OperatorProcess,
                                         sftp_nas: RcloneSftpNas, ssh_nas: SshNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    run_path = "PROJ-0001/Runs/Run_2026-11-28T10-15"
    run = write_run(source, run_path, RUN_FILES)
    nas_dir = f"{ns.namespace}-{transport}"
    nas_root = _target(transport, ns, sftp_nas, ssh_nas, source=source, nas_dir=nas_dir)
    # rclone's sftp server serves sftp_nas.root as "/"; rsync names the real path.
    remote = f"/{nas_dir}/{run_path}" if transport == "rclone" else str(nas_root / run_path)
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
    ns("wait", "--for=condition=Verified", "syncjob/run-1", "--timeout=10s")

    # The metrics endpoint counted this run exactly once, by the right amounts.
    labels = {"namespace": ns.namespace, "target": "scope"}
    scraped = _scrape(operator)
    assert scraped[("nassync_pushed_bytes_total", _key(labels))] == status["transfer"]["bytes"]
    assert status["transfer"]["bytes"] >= status["manifest"]["bytes"]
    assert scraped[("nassync_cleanup_freed_bytes_total", _key(labels))] == status["manifest"]["bytes"]
    assert scraped[("nassync_movers_started_total", _key({**labels, "step": "push"}))] == 1
    assert scraped[("nassync_phase_transitions_total",
                    _key({**labels, "from_phase": "Cleaning", "to_phase": "Cleaned"}))] == 1
    assert scraped[("nassync_syncjobs", _key({**labels, "phase": "Cleaned"}))] == 1
    assert scraped[("nassync_oldest_unverified_run_seconds", _key(labels))] == 0
    assert scraped[("nassync_step_duration_seconds_count", _key({**labels, "step": "push"}))] == 1
    assert scraped.get(("nassync_failures_total", _key({**labels, "kind": "Network"})), 0) == 0

    # The operator's JSON log tells the same story, each line naming the SyncJob.
    lines = [json.loads(line) for line in operator.log_path.read_text().splitlines() if line.startswith("{")]
    mine = [r for r in lines if r.get("syncjob") == f"{ns.namespace}/run-1"]
    assert {"PushStarted", "Verified", "Cleaned"} <= {r.get("reason") for r in mine}


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _scrape(operator: OperatorProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(operator.metrics()):
        for sample in family.samples:
            out[(sample.name, _key(dict(sample.labels)))] = sample.value
    return out


@pytest.mark.parametrize("transport", ["rclone", "rsync"])
def test_a_run_path_and_nas_path_with_spaces_and_umlauts_reach_cleaned(
        transport: str, ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, ssh_nas: SshNas,
        tmp_path: Path) -> None:
    """Project folders are named by people: spaces, umlauts, parentheses, a quote. Every step (the copy tool's
    remote path, the remote hashing over ssh, the cleanup's proof) must carry them exactly."""
    source = tmp_path / "acq"
    run_path = "Projekt Müller (2026)/Runs/Run_2026-12-02T10-00 it's"
    run = write_run(source, run_path, RUN_FILES)
    nas_root = _target(transport, ns, sftp_nas, ssh_nas, source=source, nas_dir=f"{ns.namespace} lab nas/ärchiv")
    ns.apply(syncjob("odd-names", "scope", run_path))
    done = wait_phase(ns, "odd-names", "Cleaned", timeout=240)
    assert done["status"]["verifyPasses"] >= 1
    _assert_nas_copy(nas_root / run_path, RUN_FILES)
    assert not any((run / rel).exists() for rel in RUN_FILES)
