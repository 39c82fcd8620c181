"""Destinations end to end: a NAS mounted as a volume, and an rclone remote that is no NAS at all.

The volume destination is a PersistentVolumeClaim bound to a hostPath
PersistentVolume, standing in for an NFS or SMB CSI volume: the mover mounts
it and copies into it, and verify reads the copy back in a fresh pod.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.support import tree, wait_phase

from nassync_dev.scenario import OperatorProcess, syncjob, target_body, write_run
from nassync_dev.testing import Kubectl

pytestmark = [pytest.mark.cluster]

RUN = "PROJ-0004/Runs/Run_2026-12-02T08-00"
FILES = {"raw/frame_0001.tif": os.urandom(30_000), "raw/frame_0002.tif": os.urandom(10_000), "notes.txt": b"n\n"}


def _share(ns: Kubectl, share: Path) -> None:
    """A PersistentVolumeClaim `nas-share` bound to a hostPath PV at `share` (the "NFS mount")."""
    share.mkdir()
    os.chmod(share, 0o777)  # the NAS export lets the mover's uid write
    pv = f"nas-{ns.namespace}"
    ns.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
              "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                       "storageClassName": "nas", "hostPath": {"path": str(share)},
                       "claimRef": {"namespace": ns.namespace, "name": "nas-share"}}})
    ns.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "nas-share"},
              "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "nas",
                       "resources": {"requests": {"storage": "1Gi"}}}})


def test_a_run_to_a_mounted_nas_volume_reaches_cleaned(
        ns: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    run = write_run(source, RUN, FILES)
    share = tmp_path / "nfs-export"
    _share(ns, share)
    ns.apply(target_body("scope", source, {"volume": {"claimName": "nas-share", "path": "/lab/runs"}}, None))
    ns.apply(syncjob("to-volume", "scope", RUN))
    done = wait_phase(ns, "to-volume", "Cleaned", timeout=180)

    copy = share / "lab" / "runs" / RUN
    on_nas = tree(copy)
    assert all(hashlib.sha256(on_nas[rel]).digest() == hashlib.sha256(data).digest() for rel, data in FILES.items())
    assert done["status"]["remotePath"] == f"/lab/runs/{RUN}"
    assert not any((run / rel).exists() for rel in FILES)
    target = ns.get("synctarget", "scope")["status"]
    assert target["destinationType"] == "volume"
    assert {c["type"]: c["status"] for c in target["conditions"]}["Ready"] == "True"


def test_an_rclone_remote_of_type_local_is_refused_at_once(
        ns: Kubectl, operator: OperatorProcess, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    files: dict[str, Any] = {"a.txt": b"a"}
    run = write_run(source, RUN, files)
    conf = "[nas]\ntype = local\n"
    ns.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "fake-nas"},
              "data": {"rclone.conf": base64.b64encode(conf.encode()).decode()}})
    ns.apply(target_body("scope", source, {"rclone": {"remote": "nas", "path": "/volume1/runs",
                                                      "configSecretRef": {"name": "fake-nas"}}}, None))
    ns.apply(syncjob("local", "scope", RUN))
    failed = wait_phase(ns, "local", "Failed")
    error = failed["status"]["lastError"]
    assert error["kind"] == "Config"
    assert "local path" in error["message"] and "spec.destination.volume" in error["message"]
    assert failed["status"]["moverRuns"] == 1, "refused by the first gate"
    assert (run / "a.txt").read_bytes() == b"a"
