"""Runs as labs have them, end to end with kubectl only.

An instrument user (uid 1000) owns the run with private modes, the lab app
wrote creation.json its way (0600, temp file + replace under creation.json.lock).
A target that runs movers as its default uid fails within one gate pass and
says whose files they are and what to set; with `runAsRunOwner` the same run
reaches Cleaned and creation.json is still the lab app's. A cleanup whose
mover may not remove the emptied run directory is not a failure and never
leads to a push that would replace the NAS manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.support import events, tree, wait_phase

from nassync_dev.labapp import creation_document, own_tree, read_creation, write_creation
from nassync_dev.nas import RcloneS3Nas, RcloneSftpNas, SshNas
from nassync_dev.scenario import (
    OperatorProcess,
    rclone_target,
    rsync_replica,
    s3_replica,
    syncjob,
    write_run,
)
from nassync_dev.testing import Kubectl, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.nas]

RUN = "PROJ-0003/Runs/Run_2026-12-01T09-00"
LAB_UID = 1000
FILES = {"raw/frame_0001.tif": os.urandom(40_000), "raw/frame_0002.tif": os.urandom(20_000), "notes.txt": b"n\n"}


def _movers(ns: Kubectl) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(ns("get", "jobs", "-l", "app.kubernetes.io/managed-by=nassync",
                                                "-o", "json"))["items"]
    return items


def _lab_run(source: Path) -> Path:
    run = write_run(source, RUN, FILES)
    own_tree(source, LAB_UID, LAB_UID, file_mode=0o644, dir_mode=0o755)  # the source root and projects
    own_tree(run, LAB_UID, LAB_UID, file_mode=0o600, dir_mode=0o700)  # the run itself: private
    write_creation(run, creation_document(RUN), uid=LAB_UID, gid=LAB_UID)
    old = os.stat(run / "notes.txt").st_mtime
    os.utime(run, (old, old))
    return run


def test_a_private_run_of_uid_1000_fails_at_once_then_cleans_as_its_owner(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    run = _lab_run(source)
    body = rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs")
    ns.apply(syncjob("lab-run", "scope", RUN))

    failed = wait_phase(ns, "lab-run", "Failed")
    error = failed["status"]["lastError"]
    assert error["kind"] == "Permission"
    for fragment in ("1000:1000", "65532:65532", "runAsUser", "runAsRunOwner"):
        assert fragment in error["message"], (fragment, error["message"])
    assert [m["metadata"]["name"] for m in _movers(ns)] == ["lab-run-gate-1"], "one gate pass, no retries"
    assert failed["status"]["attempts"] == 0
    assert "GateFailed" in [e["reason"] for e in events(ns, "lab-run")]
    assert not (sftp_nas.root / ns.namespace / "runs" / RUN).exists()

    # The admin lets movers run as each run's owner (within a range), then retries.
    spec = body["spec"]
    spec["mover"] = {"runAsRunOwner": {"minUID": 1000, "maxUID": 1999}}
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs", spec=spec)
    ns("annotate", "syncjob", "lab-run", "nassync.dev/retry=1", "--overwrite")
    done = wait_phase(ns, "lab-run", "Cleaned", timeout=180)
    assert done["status"]["runOwner"] == {"uid": LAB_UID, "gid": LAB_UID}
    assert "RunOwnerFound" in [e["reason"] for e in events(ns, "lab-run")]
    pod_users = {(m["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
                  m["spec"]["template"]["spec"]["securityContext"].get("runAsGroup")) for m in _movers(ns)
                 if m["metadata"]["labels"]["nassync.dev/step"] in ("push", "verify", "cleanup")}
    assert pod_users == {(LAB_UID, LAB_UID)}

    nas_run = sftp_nas.root / ns.namespace / "runs" / RUN
    on_nas = tree(nas_run)
    assert all(hashlib.sha256(on_nas[rel]).digest() == hashlib.sha256(data).digest() for rel, data in FILES.items())
    assert not any((run / rel).exists() for rel in FILES)
    creation = run / ".exlab-wizard" / "creation.json"
    info = creation.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (LAB_UID, LAB_UID, 0o600)
    document = read_creation(run)  # the lab app can read it: schema_version and every field kept
    assert document["sync_status"] == "cleaned"
    assert {k: v for k, v in document.items() if k != "sync_status"} == creation_document(RUN)
    assert read_creation(nas_run)["sync_status"] == "synced"


def test_a_private_run_of_uid_1000_reaches_every_copy_as_its_owner(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, ssh_nas: SshNas, tmp_path: Path) -> None:
    """The lab's run and the replicas together: every mover of the run (the S3 and rsync replicas' push and
    verify, and the cleanup that proves each replica before deleting) runs as the run's owner, reads its 0600
    files and its Secrets (an rclone config, an ssh key), and leaves creation.json the lab app's."""
    source = tmp_path / "acq"
    run = _lab_run(source)
    with RcloneS3Nas(workdir=tmp_path / "s3") as s3:
        spec = {"mover": {"runAsRunOwner": {"minUID": 1000, "maxUID": 1999}},
                "replicas": [s3_replica(ns, s3, name="offsite", path="runs"),
                             rsync_replica(ns, ssh_nas, name="tape", nas_path=f"{ns.namespace}/tape")]}
        rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs", spec=spec)
        ns.apply(syncjob("lab-copies", "scope", RUN))
        done = wait_phase(ns, "lab-copies", "Cleaned", timeout=240)
        on_s3 = tree(s3.object_path("runs") / RUN)
    status = done["status"]
    assert status["copies"] == "3/3"
    assert [(d["name"], d["state"]) for d in status["destinations"]] == [
        ("primary", "Verified"), ("offsite", "Verified"), ("tape", "Verified")]
    for replica in ("offsite", "tape"):
        steps = {m["metadata"]["labels"]["nassync.dev/step"] for m in _movers(ns)
                 if m["metadata"]["labels"].get("nassync.dev/replica") == replica}
        assert steps >= {"push", "verify"}, (replica, steps)
    users = {(m["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
              m["spec"]["template"]["spec"]["securityContext"].get("runAsGroup")) for m in _movers(ns)
             if m["metadata"]["labels"]["nassync.dev/step"] != "gate"}
    assert users == {(LAB_UID, LAB_UID)}
    on_nas = tree(sftp_nas.root / ns.namespace / "runs" / RUN)
    on_tape = tree(ssh_nas.root / ns.namespace / "tape" / RUN)
    for rel, data in FILES.items():
        assert on_nas[rel] == data and on_s3[rel] == data and on_tape[rel] == data, rel
        assert not (run / rel).exists()
    info = (run / ".exlab-wizard" / "creation.json").stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (LAB_UID, LAB_UID, 0o600)
    assert read_creation(run)["sync_status"] == "cleaned"

def test_an_emptied_run_dir_that_cannot_be_removed_is_cleaned_and_never_pushed_again(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    run = write_run(source, RUN, FILES)  # the mover's uid owns the run ...
    parent = run.parent
    os.chown(parent, 0, 0)  # ... but not the directory that holds it
    os.chmod(parent, 0o755)
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs",
                  spec={"cleanup": {"retainCache": False}})
    ns.apply(syncjob("keep-dir", "scope", RUN))
    done = wait_phase(ns, "keep-dir", "Cleaned", timeout=180)

    assert run.is_dir() and list(run.iterdir()) == [], "data and nassync's cache files gone, the directory stays"
    nas_manifest = (sftp_nas.root / ns.namespace / "runs" / RUN / ".exlab-wizard" / "checksums.sha256").read_bytes()
    assert hashlib.sha256(nas_manifest).hexdigest() == done["status"]["manifest"]["sha256"]
    steps = [m["metadata"]["labels"]["nassync.dev/step"] for m in _movers(ns)]
    assert steps.count("push") == 1 and steps.count("cleanup") == 1, steps
    assert done["status"]["deleted"] == {"files": len(FILES), "bytes": sum(len(v) for v in FILES.values())}
    assert "lastError" not in done["status"]


def test_a_run_the_lab_app_marks_complete_waits_for_its_marker(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    run = write_run(source, RUN, FILES)
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs",
                  spec={"cleanup": {"enabled": False},
                        "gate": {"completionMarker": {"names": ["CopyComplete.txt"]}}})
    ns.apply(syncjob("marker", "scope", RUN))

    def waiting() -> dict[str, Any] | None:
        status = ns.get("syncjob", "marker").get("status") or {}
        gated = {c["type"]: c for c in status.get("conditions", [])}.get("Gated")
        return gated if gated and gated["reason"] == "NotQuiet" else None
    gated = eventually(waiting, timeout=60, what="the gate to wait for the completion marker")
    assert "CopyComplete.txt" in gated["message"]
    assert not [m for m in _movers(ns) if m["metadata"]["labels"]["nassync.dev/step"] == "push"]

    write_run(source, RUN, {"CopyComplete.txt": b"done\n"}, age=3600)
    wait_phase(ns, "marker", "Verified", timeout=180)  # the gate looks again within a minute
    assert (sftp_nas.root / ns.namespace / "runs" / RUN / "CopyComplete.txt").read_bytes() == b"done\n"
    assert (run / "CopyComplete.txt").exists()
