"""Runs to Cleaned with every mover a real container from the image, on the real kubelet node.

The SyncTarget places movers on the kubelet node (nodeSelector + toleration),
names the image (IfNotPresent: imported, never pulled) and sets
`spec.mover.hostNetwork: true`, the admin-owned option for a NAS reachable
only from the node's own network — here the loopback NAS.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.support import tree, wait_phase
from tests.node.conftest import Node

from nassync_dev.kubelet_node import NODE_NAME
from nassync_dev.nas import RcloneSftpNas, SshNas
from nassync_dev.scenario import OperatorProcess, rclone_target, rsync_target, syncjob, write_run
from nassync_dev.testing import Kubectl, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.nas, pytest.mark.kubelet]

RUN = "PROJ-0042/Runs/Run_2026-12-02T09-00"


def _files(n: int, size: int) -> dict[str, bytes]:
    files = {f"raw/frame_{i:04d}.tif": os.urandom(size) for i in range(1, n + 1)}
    files["metadata.json"] = b'{"instrument": "scope"}\n'
    return files


def _movers(ns: Kubectl) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = json.loads(ns("get", "pods", "-l", "nassync.dev/step", "-o", "json"))["items"]
    return pods


def _assert_ran_on_the_kubelet_node(ns: Kubectl, node: Node) -> list[dict[str, Any]]:
    pods = _movers(ns)
    steps = {p["metadata"]["labels"]["nassync.dev/step"] for p in pods}
    assert {"push", "verify", "cleanup"} <= steps, steps
    for pod in pods:
        assert pod["spec"]["nodeName"] == NODE_NAME
        assert pod["spec"]["hostNetwork"] is True
        status = pod["status"]["containerStatuses"][0]
        assert status["image"].endswith(node.image.split("/", 1)[1])
        assert status["imageID"].startswith("sha256:")  # a containerd image, not a process node stand-in
    return pods


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("transport", ["rclone", "rsync"])
def test_run_reaches_cleaned_with_movers_from_the_image(
        transport: str, ns: Kubectl, operator: OperatorProcess, kubelet_node: Node,
        sftp_nas: RcloneSftpNas, ssh_nas: SshNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    files = _files(4, 300_000)
    run = write_run(source, RUN, files)
    nas_path = f"{ns.namespace}/runs"
    if transport == "rclone":
        rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=nas_path, spec=kubelet_node.mover_spec())
        nas_run = sftp_nas.root / nas_path / RUN
    else:
        rsync_target(ns, ssh_nas, name="scope", source=source, nas_path=nas_path, spec=kubelet_node.mover_spec())
        nas_run = ssh_nas.root / nas_path / RUN
    ns.apply(syncjob("run-1", "scope", RUN))
    done = wait_phase(ns, "run-1", "Cleaned", timeout=240)
    assert done["status"]["verifyPasses"] >= 1
    on_nas = tree(nas_run)
    assert {rel: _sha(data) for rel, data in on_nas.items() if not rel.startswith(".exlab-wizard/")} == \
        {rel: _sha(data) for rel, data in files.items()}
    # Local data files are gone; the cache dir (manifest, creation.json) stays.
    left = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
    assert left and all(p.startswith(".exlab-wizard/") for p in left), left
    pods = _assert_ran_on_the_kubelet_node(ns, kubelet_node)

    # kubectl logs through the real kubelet: the mover's JSON progress and log lines.
    push = next(p for p in pods if p["metadata"]["labels"]["nassync.dev/step"] == "push")
    logs = ns("logs", push["metadata"]["name"])
    events = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(e.get("event") == "progress" and e.get("step") == "push" for e in events), logs[-2000:]
    # Under containerd's seccomp profile and runc, the copy tool still gets its Landlock ruleset.
    started = [e for e in events if e.get("msg") == "copy started"]
    assert started and all(e.get("confinedToRun") is True for e in started), started
    # The result travelled through the kubelet's termination message.
    terminated = push["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0 and json.loads(terminated["message"])


def test_deleting_a_running_mover_pod_is_survived(
        ns: Kubectl, operator: OperatorProcess, kubelet_node: Node, sftp_nas: RcloneSftpNas,
        tmp_path: Path) -> None:
    source = tmp_path / "acq"
    files = _files(8, 256 * 1024)  # 2 MiB at 128 KiB/s: ~16 s of pushing
    write_run(source, RUN, files)
    spec = kubelet_node.mover_spec()
    spec.update(bandwidth={"defaultKiBps": 128}, retry={"maxAttempts": 5, "backoffSeconds": [2, 4]})
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs", spec=spec)
    ns.apply(syncjob("run-d", "scope", RUN))

    def running_push() -> str | None:
        for pod in _movers(ns):
            if pod["metadata"]["labels"]["nassync.dev/step"] == "push" and \
                    (pod.get("status") or {}).get("phase") == "Running":
                return str(pod["metadata"]["name"])
        return None
    victim = eventually(running_push, timeout=120, what="a running push pod")
    # The kubelet streams the running container's log (follow would block; a tail is enough).
    eventually(lambda: ns("logs", victim, "--tail=5").strip(), timeout=30, what="live logs of the push pod")
    ns("delete", "pod", victim, "--wait=true", "--timeout=60s")

    done = wait_phase(ns, "run-d", "Cleaned", timeout=300)
    assert done["status"]["verifyPasses"] >= 1
    on_nas = tree(sftp_nas.root / ns.namespace / "runs" / RUN)
    assert all(_sha(on_nas[rel]) == _sha(data) for rel, data in files.items())
    pushes = [p for p in _movers(ns) if p["metadata"]["labels"]["nassync.dev/step"] == "push"]
    assert victim not in [p["metadata"]["name"] for p in pushes]


@pytest.mark.parametrize("uid", [0, 1000740000], ids=["root", "arbitrary-uid"])
def test_rsync_with_a_root_or_arbitrary_uid_mover_reaches_cleaned(
        uid: int, ns: Kubectl, operator: OperatorProcess, kubelet_node: Node, ssh_nas: SshNas,
        tmp_path: Path) -> None:
    """The two uids a real kubelet makes hard for ssh: root (runAsUser 0 for instrument files owned by
    root; the kubelet's Secret files are root-owned, and ssh refuses a key its own uid owns that others
    may read) and a uid with no passwd entry in the image (ssh: "No user exists for uid")."""
    source = tmp_path / "acq"
    files = _files(2, 100_000)
    run = write_run(source, RUN, files)
    for path in [source, *source.rglob("*")]:
        os.chown(path, uid, uid)
    spec = kubelet_node.mover_spec()
    spec["mover"]["securityContext"] = {"runAsUser": uid, "runAsGroup": uid}
    rsync_target(ns, ssh_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs", spec=spec)
    ns.apply(syncjob("run-u", "scope", RUN))
    wait_phase(ns, "run-u", "Cleaned", timeout=240)
    on_nas = tree(ssh_nas.root / ns.namespace / "runs" / RUN)
    assert all(_sha(on_nas[rel]) == _sha(data) for rel, data in files.items())
    left = {str(p.relative_to(run)) for p in run.rglob("*") if p.is_file()}
    assert all(p.startswith(".exlab-wizard/") for p in left), left
    pod = next(p for p in _movers(ns) if p["metadata"]["labels"]["nassync.dev/step"] == "push")
    assert pod["spec"]["securityContext"]["runAsUser"] == uid
