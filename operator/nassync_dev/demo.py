"""`make demo`: one instrument run from the acquisition disk to the NAS, on a real (local) cluster.

Brings up the local control plane, a loopback sftp "NAS" (`rclone serve sftp`),
installs the CRDs, starts the operator, creates a run on a host directory,
applies the sample SyncTarget and SyncJob from manifests/samples/ (with the
demo's paths and NAS port filled in), and prints each phase as it changes until
the run is Cleaned. It ends by listing the NAS copy and its manifest.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from nassync_dev.binaries import REPO
from nassync_dev.cluster import LocalCluster
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, install_crds, rclone_target, write_run
from nassync_dev.testing import Kubectl

DEMO = REPO / ".cache" / "demo"
NAMESPACE = "nassync-demo"
RUN_PATH = "PROJ-0001/Runs/Run_2026-11-28T10-15"


def _say(text: str) -> None:
    print(text, flush=True)


def _sample(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "manifests" / "samples" / name).read_text())
    return loaded


def _make_run(source: Path) -> Path:
    files = {f"raw/frame_{i:04d}.tif": os.urandom(256 * 1024) for i in range(1, 9)}
    files["metadata.json"] = b'{"instrument": "microscope-01", "operator": "demo"}\n'
    return write_run(source, RUN_PATH, files)


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir(parents=True)
    cluster = LocalCluster(REPO / ".cache" / "cluster")
    _say(">> starting the local cluster (etcd, kube-apiserver, kube-controller-manager, process node)")
    started = time.monotonic()
    cluster.up()
    _say(f"   ready in {time.monotonic() - started:.1f}s at {cluster.server}")
    kubectl = install_crds(Kubectl(cluster.kubeconfig))
    if not kubectl.exists("namespace", NAMESPACE):
        kubectl("create", "namespace", NAMESPACE)
    ns = kubectl.in_namespace(NAMESPACE)
    ns.run("delete", "syncjob,synctarget", "--all", "--wait=true", check=False)

    _say(">> starting the loopback NAS (rclone serve sftp, SHA-256 capable)")
    nas = RcloneSftpNas(workdir=DEMO / "nas").start()
    operator = OperatorProcess(cluster.kubeconfig, DEMO / "operator.log")
    try:
        _say(">> starting the operator (log: .cache/demo/operator.log)")
        operator.start()
        source = DEMO / "acq" / "microscope-01"
        run = _make_run(source)
        _say(f">> acquired run: {run} ({sum(1 for p in run.rglob('*') if p.is_file())} files)")

        sample_target = _sample("synctarget-rclone.yaml")
        spec = sample_target["spec"]
        rclone_target(ns, nas, name=sample_target["metadata"]["name"], source=source,
                      nas_path="volume1/runs/microscope-01",
                      spec={"gate": {"quietPeriod": "0s"},
                            "cleanup": {"enabled": True, "minVerifyPasses": 2, "minAgeAfterVerify": "0s",
                                        "reverifyInterval": "3s"},
                            "bandwidth": spec.get("bandwidth", {})})
        job = _sample("syncjob.yaml")
        job["spec"]["targetRef"]["name"] = sample_target["metadata"]["name"]
        job["spec"]["runPath"] = RUN_PATH
        ns.apply(job)
        name = job["metadata"]["name"]
        _say(f">> applied SyncTarget {sample_target['metadata']['name']} and SyncJob {name}; watching phases")
        last = None
        deadline = time.monotonic() + 300
        phase = ""
        while time.monotonic() < deadline:
            status = ns.get("syncjob", name).get("status") or {}
            phase = status.get("phase", "")
            shown = (phase, status.get("verifyPasses"))
            if shown != last:
                passes = status.get("verifyPasses", 0)
                extra = f" (verify passes: {passes})" if phase in ("Verified", "Verifying") else ""
                _say(f"   {time.strftime('%H:%M:%S')}  {phase or '(new)'}{extra}")
                last = shown
            if phase in ("Cleaned", "Failed"):
                break
            time.sleep(0.5)
        _say("")
        _say(ns("get", "syncjobs", "-o", "wide"))
        _say("Events:" + ns("describe", "syncjob", name).split("Events:")[-1])
        if phase != "Cleaned":
            _say(f"!! the run did not reach Cleaned (phase {phase!r}); see .cache/demo/operator.log")
            return 1
        nas_run = nas.root / "volume1/runs/microscope-01" / RUN_PATH
        _say(f">> NAS copy at {nas_run}:")
        for path in sorted(nas_run.rglob("*")):
            if path.is_file():
                _say(f"   {path.relative_to(nas_run)}  ({path.stat().st_size} bytes)")
        _say(">> manifest on the NAS (.exlab-wizard/checksums.sha256):")
        _say((nas_run / ".exlab-wizard" / "checksums.sha256").read_text().rstrip())
        _say(f">> local run dir now holds only: {[str(p.relative_to(run)) for p in run.rglob('*') if p.is_file()]}")
        _say('>> the cluster keeps running: eval "$(make -s cluster-env)"; kubectl get sj -A; make cluster-down')
        return 0
    finally:
        operator.stop()
        nas.stop()


if __name__ == "__main__":
    sys.exit(main())
