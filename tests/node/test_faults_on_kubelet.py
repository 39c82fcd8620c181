"""#12 item 5 on the real kubelet node: a mover image that cannot be pulled.

The process node ignores images; the kubelet pulls them. A SyncTarget naming
an image that does not exist (pull policy Never: nothing leaves the machine)
leaves the mover pod in ErrImageNeverPull: within spec.mover.startTimeout the
SyncJob says so on the step's condition, then the Job is removed, the step is
retried as NotStarted and the target's slot is free. (#12 item 4's kubelet
variant — restarting the kubelet under a running mover — is left for a
private kubelet node: the session's one is shared by every test here.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.node.conftest import Node

from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, rclone_target, syncjob, write_run
from nassync_dev.testing import Kubectl, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.nas, pytest.mark.kubelet]

RUN = "PROJ-0012/Runs/Run_2026-12-02T10-00"


def test_an_image_that_cannot_be_pulled_is_explained_removed_and_frees_the_slot(
        ns: Kubectl, operator: OperatorProcess, kubelet_node: Node, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    run = write_run(source, RUN, {"a.bin": b"a" * 1000})
    spec = kubelet_node.mover_spec()
    spec["mover"].update({"image": "localhost/nassync/does-not-exist:0", "imagePullPolicy": "Never",
                          "startTimeout": "20s"})
    spec["retry"] = {"maxAttempts": 3, "backoffSeconds": [600]}
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs", spec=spec)
    ns.apply(syncjob("run-img", "scope", RUN))

    def status() -> dict[str, Any]:
        return dict(ns.get("syncjob", "run-img").get("status") or {})

    def explained() -> bool:
        gated = {c["type"]: c for c in status().get("conditions", [])}.get("Gated") or {}
        return gated.get("reason") == "MoverNotStarted" and "ErrImageNeverPull" in gated.get("message", "")
    eventually(explained, timeout=90, what="the Gated condition to name ErrImageNeverPull")
    eventually(lambda: (status().get("lastError") or {}).get("kind") == "NotStarted", timeout=90,
               what="NotStarted after startTimeout")
    assert "ErrImageNeverPull" in status()["lastError"]["message"]
    eventually(lambda: (ns.get("synctarget", "scope").get("status") or {}).get("activeMovers") == 0,
               timeout=60, what="the target's slot freed")
    assert (run / "a.bin").read_bytes() == b"a" * 1000
