"""`helm install` of charts/nassync with the image: the operator runs from the image on the kubelet node.

This is a lab admin's first install: the chart's Deployment, ServiceAccount and
RBAC as rendered, the operator container from the image under the kubelet's
security context enforcement, its liveness/readiness probes run by the kubelet,
mover Jobs from the chart's default mover image (the same image). A SyncJob
applied with kubectl reaches Cleaned. The only adaptation is the loopback
post-renderer (nassync_dev/loopback_postrender.py): host network and the
apiserver on 127.0.0.1, because this cluster has no Service networking. The
webhook stays off for the same reason (tests/e2e/test_admission_e2e.py covers it).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from tests.e2e.support import tree, wait_phase
from tests.node.conftest import Node

from nassync_dev.binaries import REPO, locate
from nassync_dev.cluster import free_port
from nassync_dev.kubelet_node import NODE_NAME, placement
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, rclone_target, syncjob, write_run
from nassync_dev.testing import Kubectl, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.nas, pytest.mark.kubelet]

RELEASE_NS = "nassync-kubelet"


def _helm(kubectl: Kubectl, *args: str) -> str:
    result = subprocess.run([str(locate().helm), *args], capture_output=True, text=True, timeout=300,
                            env=kubectl.env())
    assert result.returncode == 0, f"helm {' '.join(args[:2])} failed:\n{result.stderr}{result.stdout}"
    return result.stdout


@pytest.fixture
def helm_operator(operator: OperatorProcess, crds: Kubectl, kubelet_node: Node,
                  tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The chart's operator on the kubelet node instead of the session's operator process."""
    repository, tag = kubelet_node.image.rsplit(":", 1)
    where = placement()
    # One replica: the loopback post-renderer puts the operator on the host network, where two
    # replicas on the one node would fight over the metrics and health ports (HA itself is
    # tests/faults/test_failover_faults.py).
    values = {"replicaCount": 1,
              "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
              "webhook": {"enabled": False}, "metrics": {"port": free_port()}, "health": {"port": free_port()},
              "logFormat": "json", "nodeSelector": where["nodeSelector"], "tolerations": where["tolerations"]}
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    port = str(urlparse(kubelet_node.cluster.server).port)
    operator.stop()
    try:
        _helm(crds, "install", "nassync", str(REPO / "charts" / "nassync"), "--namespace", RELEASE_NS,
              "--create-namespace", "--values", str(values_file), "--wait", "--timeout", "120s",
              "--post-renderer", sys.executable, "--post-renderer-args", "-m",
              "--post-renderer-args", "nassync_dev.loopback_postrender", "--post-renderer-args", port)
        system = crds.in_namespace(RELEASE_NS)
        pods = system.get("pods", None)["items"]
        assert len(pods) == 1
        yield pods[0]
    finally:
        crds.run("logs", "-n", RELEASE_NS, "deploy/nassync-operator", "--tail=50", check=False)
        subprocess.run([str(locate().helm), "uninstall", "nassync", "--namespace", RELEASE_NS, "--wait",
                        "--timeout", "120s"], capture_output=True, env=crds.env(), timeout=180)
        operator.start()


def test_helm_installed_operator_from_the_image_syncs_a_run_to_cleaned(
        helm_operator: dict[str, Any], ns: Kubectl, cluster: Kubectl, kubelet_node: Node,
        sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    pod = helm_operator
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod["spec"]["serviceAccountName"] == "nassync-operator"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] is True, "the kubelet's readiness probe passed"
    assert status["image"].endswith(kubelet_node.image.split("/", 1)[1])
    bindings = json.loads(cluster("get", "clusterrolebindings", "-o", "json"))["items"]
    roles = {b["roleRef"]["name"] for b in bindings
             if any(s.get("kind") == "ServiceAccount" and s.get("name") == "nassync-operator"
                    and s.get("namespace") == RELEASE_NS for s in b.get("subjects") or [])}
    assert roles == {"nassync-operator"}, "chart RBAC only"

    source = tmp_path / "acq"
    files = {"raw/a.tif": b"a" * 50_000, "raw/b.tif": b"b" * 70_000, "meta.json": b"{}"}
    run_path = "PROJ-0007/Runs/Run_1"
    write_run(source, run_path, files)
    # No spec.mover.image: movers use the chart's --mover-image, i.e. the same image.
    where = placement()
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs",
                  spec={"source": {"nodeSelector": where["nodeSelector"], "tolerations": where["tolerations"]},
                        "mover": {"hostNetwork": True}})
    ns("apply", "-f", "-", input=syncjob("run-helm", "scope", run_path))
    wait_phase(ns, "run-helm", "Cleaned", timeout=240)
    on_nas = tree(sftp_nas.root / ns.namespace / "runs" / run_path)
    assert {k: v for k, v in on_nas.items() if k in files} == files

    movers = json.loads(ns("get", "pods", "-l", "nassync.dev/step", "-o", "json"))["items"]
    assert movers and all(m["spec"]["nodeName"] == NODE_NAME for m in movers)
    assert all(m["spec"]["containers"][0]["image"] == kubelet_node.image for m in movers)
    system = cluster.in_namespace(RELEASE_NS)
    logs = system("logs", pod["metadata"]["name"])
    assert "Forbidden" not in logs and "forbidden" not in logs, logs[-2000:]
    assert eventually(lambda: '"syncjob"' in logs and logs, what="JSON log lines from the operator pod")
