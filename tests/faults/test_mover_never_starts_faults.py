"""#12 item 5: a mover pod that never starts is explained and does not hold the target's slot.

Causes: no node matches the nodeSelector, a taint without toleration, a
volume that cannot be mounted, and a namespace enforcing Pod Security
`baseline` or `restricted` (hostPath refused: FailedCreate). Within
spec.mover.startTimeout the SyncJob says why (the step's condition, reason
MoverNotStarted), then the Job is removed, lastError is NotStarted with the
reason, no mover of the target is left running, and no data was touched. A
local PV + PVC source works under `restricted` (docs/troubleshooting.md, Pod
Security). An image that cannot be pulled needs the kubelet node (the process
node ignores images): tests/node/test_faults_on_kubelet.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultlib import RUN, files, local_intact, movers, status, wait_phase

from nassync_dev.cluster import NODE_NAME
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, rclone_target, syncjob, write_run
from nassync_dev.testing import Kubectl, eventually

TAINT = "nassync.dev/maintenance=yes:NoSchedule"
FAST = {"mover": {"startTimeout": "15s"}, "retry": {"maxAttempts": 3, "backoffSeconds": [600]}}


@pytest.fixture
def tainted_node(cluster: Kubectl) -> Iterator[None]:
    cluster("taint", "node", NODE_NAME, TAINT)
    try:
        yield
    finally:
        cluster("taint", "node", NODE_NAME, TAINT + "-")


CASES: dict[str, tuple[dict[str, Any], dict[str, str], str]] = {
    "node-selector": ({"source": {"nodeSelector": {"lab.example/instrument": "absent-pc"}}}, {},
                      "didn't match Pod's node affinity/selector"),
    "taint": ({}, {}, "untolerated taint"),
    "volume": ({"source": {"volume": {"hostPath": {"path": "/nonexistent/instrument-disk"}}}}, {},
               "/nonexistent/instrument-disk"),
    "pod-security-baseline": ({}, {"pod-security.kubernetes.io/enforce": "baseline"}, "violates PodSecurity"),
    "pod-security-restricted": ({}, {"pod-security.kubernetes.io/enforce": "restricted"},
                                "uses restricted volume type \"hostPath\""),
}


@pytest.mark.parametrize("cause", list(CASES))
def test_a_mover_that_never_starts_is_explained_removed_and_frees_the_slot(
        cause: str, request: pytest.FixtureRequest, ns: Kubectl, operator: OperatorProcess,
        sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    spec, labels, says = CASES[cause]
    if cause == "taint":
        request.getfixturevalue("tainted_node")
    for key, value in labels.items():
        ns.run("label", "namespace", ns.namespace or "", f"{key}={value}", "--overwrite", namespaced=False)
    source = tmp_path / "acq"
    data = files(2, 1000)
    run = write_run(source, RUN, data)
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs",
                  spec=json.loads(json.dumps({**FAST, **spec})))
    ns.apply(syncjob("run-x", "scope", RUN))

    def explained() -> dict[str, Any] | None:
        gated = {c["type"]: c for c in status(ns, "run-x").get("conditions", [])}.get("Gated") or {}
        return gated if gated.get("reason") == "MoverNotStarted" and says in gated.get("message", "") else None
    try:
        eventually(explained, timeout=60, what=f"the Gated condition to say why the mover has not started ({says})")
    except AssertionError as e:
        raise AssertionError(f"{e}; status: {status(ns, 'run-x')}") from None

    def gave_up() -> dict[str, Any] | None:
        got = status(ns, "run-x")
        return got if (got.get("lastError") or {}).get("kind") == "NotStarted" else None
    failed = eventually(gave_up, timeout=90, what="NotStarted after spec.mover.startTimeout")
    assert says in failed["lastError"]["message"] and "did not start within 15s" in failed["lastError"]["message"]
    assert failed["phase"] == "Pending" and failed.get("nextAttemptAt"), "retried with backoff"
    eventually(lambda: not movers(ns), timeout=60, what="the stuck mover Job removed")
    eventually(lambda: (ns.get("synctarget", "scope").get("status") or {}).get("activeMovers") == 0,
               timeout=30, what="the target's slot freed")
    assert "GateFailed" in [e["reason"] for e in ns.get("events")["items"]
                            if e["involvedObject"]["name"] == "run-x"]
    assert local_intact(run, data)


def test_a_local_pv_and_pvc_source_works_under_restricted_pod_security(
        ns: Kubectl, cluster: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    namespace = ns.namespace or ""
    ns.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite",
           namespaced=False)
    source = tmp_path / "acq"
    data = files(3, 5000)
    run = write_run(source, RUN, data)
    storage_class = f"local-{namespace}"
    cluster.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"acq-{namespace}"},
                   "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": storage_class,
                            "local": {"path": str(source)},
                            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                                {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}]}]}}}})
    try:
        ns.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "acq-data"},
                  "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                           "volumeName": f"acq-{namespace}", "resources": {"requests": {"storage": "1Gi"}}}})
        rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{namespace}/runs",
                      spec={"source": {"volume": {"hostPath": None, "persistentVolumeClaim": {"claimName": "acq-data"}},
                                       "nodeSelector": {"kubernetes.io/hostname": NODE_NAME}}})
        ns.apply(syncjob("run-pvc", "scope", RUN))
        wait_phase(ns, "run-pvc", "Cleaned", timeout=180)
        nas_run = sftp_nas.root / namespace / "runs" / RUN
        assert all((nas_run / rel).read_bytes() == blob for rel, blob in data.items())
        assert not any((run / rel).exists() for rel in data)
    finally:
        ns.run("delete", "pvc", "acq-data", "--wait=false", check=False)
        cluster.run("delete", "pv", f"acq-{namespace}", "--wait=false", check=False)
