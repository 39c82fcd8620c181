"""The Helm chart, installed as rendered, runs the operator under its own ServiceAccount to Cleaned.

This is the RBAC proof: the operator pod (on the process node; host binaries
stand in for the image) authenticates with the token of the chart's
ServiceAccount through the TokenRequest API, so every API call it makes is
checked against exactly the chart's ClusterRole. The webhook is disabled here:
its Service-referenced configuration needs cluster networking (a ClusterIP)
that the loopback cluster does not have; tests/e2e/test_admission_e2e.py covers
the webhook itself.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.e2e.support import wait_phase

from nassync_dev.binaries import REPO, locate
from nassync_dev.cluster import free_port
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, rclone_target, syncjob, write_run
from nassync_dev.testing import Kubectl, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.nas]

RELEASE_NS = "nassync-system"


def _render(*values: str) -> str:
    result = subprocess.run(
        [str(locate().helm), "template", "nassync", str(REPO / "charts" / "nassync"), "--namespace", RELEASE_NS,
         *[arg for v in values for arg in ("--set", v)]],
        capture_output=True, text=True, check=True)
    return result.stdout


@pytest.fixture
def chart_operator(operator: OperatorProcess, crds: Kubectl) -> Iterator[str]:
    """The chart's Deployment running instead of the session's operator process."""
    operator.stop()
    # One replica: the process node runs pods in the host network, so a second one would find
    # the metrics port taken. Leader election stays on: its Lease RBAC is exercised all the same.
    rendered = _render("webhook.enabled=false", f"metrics.port={free_port()}", f"health.port={free_port()}",
                       "logFormat=json", "replicaCount=1")
    if not crds.exists("namespace", RELEASE_NS):
        crds("create", "namespace", RELEASE_NS)
    crds("apply", "-n", RELEASE_NS, "-f", "-", input=rendered)
    system = crds.in_namespace(RELEASE_NS)
    try:
        def running_pod() -> str | None:
            pods = json.loads(system("get", "pods", "-l", "app.kubernetes.io/name=nassync", "-o", "json"))["items"]
            live = [p for p in pods if (p.get("status") or {}).get("phase") == "Running"
                    and not p["metadata"].get("deletionTimestamp")]
            return str(live[0]["metadata"]["name"]) if live else None
        pod: str = eventually(running_pod, timeout=90, what="the chart's operator pod Running")
        yield pod
    finally:
        crds.run("delete", "-n", RELEASE_NS, "-f", "-", "--wait=true", "--timeout=60s", input=rendered, check=False)
        operator.start()


def test_chart_operator_syncs_a_run_to_cleaned_under_its_service_account(
        chart_operator: str, ns: Kubectl, cluster: Kubectl, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    system = cluster.in_namespace(RELEASE_NS)
    pod = system.get("pod", chart_operator)
    assert pod["spec"]["serviceAccountName"] == "nassync-operator"
    # No broader identity sneaks in: the SA's bindings are the chart's ClusterRole only.
    bindings = json.loads(cluster("get", "clusterrolebindings", "-o", "json"))["items"]
    roles = {b["roleRef"]["name"] for b in bindings
             if any(s.get("kind") == "ServiceAccount" and s.get("name") == "nassync-operator"
                    and s.get("namespace") == RELEASE_NS for s in b.get("subjects") or [])}
    assert roles == {"nassync-operator"}

    source = tmp_path / "acq"
    write_run(source, "PROJ-0003/Runs/Run_1", {"raw/a.tif": b"a" * 5000, "meta.json": b"{}"})
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs")
    ns.apply(syncjob("run-chart", "scope", "PROJ-0003/Runs/Run_1"))
    wait_phase(ns, "run-chart", "Cleaned", timeout=180)
    assert (sftp_nas.root / ns.namespace / "runs" / "PROJ-0003/Runs/Run_1" / "raw/a.tif").read_bytes() == b"a" * 5000

    lease = system.get("lease", "nassync-operator")
    assert lease["spec"]["holderIdentity"] == chart_operator, "the operator pod leads through its chart RBAC"
    logs = system("logs", chart_operator)
    assert "Forbidden" not in logs and "forbidden" not in logs, logs[-2000:]
    target = ns.get("synctarget", "scope")["status"]
    assert {c["type"]: c["status"] for c in target["conditions"]}["Ready"] == "True"
