"""#12 items 4 and 5 on the real kubelet node.

Item 5, a mover image that cannot be pulled: the process node ignores images;
the kubelet pulls them. A SyncTarget naming an image that does not exist (pull
policy Never: nothing leaves the machine) leaves the mover pod in
ErrImageNeverPull: within spec.mover.startTimeout the SyncJob says so on the
step's condition, then the Job is removed, the step is retried as NotStarted
and the target's slot is free.

Item 4, the kubelet restarted under a running push: unlike the process node
(tests/faults/test_node_agent_faults.py, whose containers die with the agent),
containerd keeps the mover's container running while the kubelet is down, and
the restarted kubelet adopts it. The same push Job finishes: no retry, no
second mover, the run reaches Cleaned. The session's kubelet node is shared by
the tests here, which run one after another; this one leaves it Ready.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.support import wait_phase
from tests.node.conftest import Node

from nassync_dev import faults
from nassync_dev.kubelet_node import NODE_NAME, KubeletNode
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


def test_kubelet_restarted_mid_push_the_same_push_job_finishes(
        ns: Kubectl, operator: OperatorProcess, kubelet_node: Node, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    data = {f"raw/frame_{i:04d}.tif": os.urandom(256 * 1024) for i in range(8)}  # ~16 s at 128 KiB/s
    run = write_run(source, RUN, data)
    spec = kubelet_node.mover_spec()
    spec["bandwidth"] = {"defaultKiBps": 128}
    nas_path = f"{ns.namespace}/runs"
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=nas_path, spec=spec)
    ns.apply(syncjob("run-k", "scope", RUN))

    def running_push() -> tuple[str, str] | None:
        pods = json.loads(ns("get", "pods", "-l", "nassync.dev/step=push", "-o", "json"))["items"]
        for pod in pods:
            state = ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]
            if "running" in (state.get("state") or {}):
                return pod["metadata"]["name"], state["containerID"].removeprefix("containerd://")
        return None
    pod, container = eventually(running_push, timeout=120, interval=0.2, what="the push container running")

    node = KubeletNode(kubelet_node.cluster.state_dir)
    faults.stop_component(kubelet_node.cluster, "kubelet")
    try:
        tasks = node.ctr("tasks", "ls").stdout
        assert any(line.split()[:1] == [container] and "RUNNING" in line for line in tasks.splitlines()), \
            f"the push container keeps running while the kubelet is down:\n{tasks}"
    finally:
        faults.start_component(kubelet_node.cluster, "kubelet")
    eventually(lambda: ns("get", "node", NODE_NAME, "-o",
                          "jsonpath={.status.conditions[?(@.type=='Ready')].status}") == "True",
               timeout=120, what="the kubelet node Ready again")

    done = wait_phase(ns, "run-k", "Cleaned", timeout=240)["status"]
    pushes = json.loads(ns("get", "jobs", "-l", "nassync.dev/step=push", "-o", "json"))["items"]
    assert len(pushes) == 1, "the push was not retried: the restarted kubelet adopted its container"
    assert pushes[0]["status"].get("succeeded") == 1 and not pushes[0]["status"].get("failed")
    assert not done.get("lastError"), done.get("lastError")
    pod_after = json.loads(ns("get", "pod", pod, "-o", "json"))
    assert pod_after["status"]["containerStatuses"][0]["restartCount"] == 0
    nas_run = sftp_nas.root / nas_path / RUN
    for rel, blob in data.items():
        assert (nas_run / rel).read_bytes() == blob
        assert not (run / rel).exists()
