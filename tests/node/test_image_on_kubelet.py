"""The image under the real kubelet, containerd and runc, with exactly the mover pod's security.

The pod spec is the operator's own mover Job template (build_mover_job) with
the step's command swapped for a probe script, so what runs here is what a lab
cluster runs: non-root uid, read-only root filesystem, no capabilities, no
privilege escalation, RuntimeDefault seccomp, the Secret volume as the kubelet
lays it out. The probe's findings come back through `kubectl logs` (the
kubelet's log endpoint) and the termination message (pod status).
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from tests.node.conftest import Node

from nassync.api.syncjob import SyncJob
from nassync.api.target import SyncTarget
from nassync.controller.moverjob import build_mover_job
from nassync_dev.kubelet_node import NODE_NAME, placement
from nassync_dev.testing import Kubectl, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.kubelet]

STUCK = ("ErrImagePull", "ErrImageNeverPull", "ImagePullBackOff", "InvalidImageName",
         "CreateContainerConfigError", "CreateContainerError")
ARBITRARY_UID = 1000740000  # an OpenShift-style uid: no passwd entry in the image

PROBE = r"""
set -u
echo "id=$(id -u):$(id -g)"; echo "groups=$(id -G)"
echo "name=$(getent passwd "$(id -u)" | cut -d: -f1)"
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\t' | tr ':' '='
if touch /rootfs-probe 2>/dev/null; then echo rootfs=writable; else echo rootfs=readonly; fi
if touch /tmp/probe 2>/dev/null; then echo tmp=writable; fi
echo "home=$HOME"
nassync-mover --help >/dev/null && echo mover=ok
rclone version | head -1 | sed 's/^/rclone=/'
rsync --version | head -1 | sed 's/^/rsync=/'
ssh -V 2>&1 | sed 's/^/ssh=/'
for f in /var/run/nassync/secret/*; do echo "secret $(basename $f)=$(stat -L -c '%a %u %g' $f)"; done
if cat /var/run/nassync/secret/rclone.conf >/dev/null 2>&1; then echo secret=readable; fi
lib=$(ls /usr/lib/*/libnss_wrapper.so)
printf 'mover:x:%s:%s::/tmp:/usr/sbin/nologin\n' "$(id -u)" "$(id -g)" > /tmp/passwd
export NSS_WRAPPER_PASSWD=/tmp/passwd NSS_WRAPPER_GROUP=/etc/group
echo "nss_wrapper_name=$(LD_PRELOAD=$lib id -un)"
LD_PRELOAD=$lib ssh -V 2>&1 | sed 's/^/nss_wrapper_ssh=/'
echo '{"probe": "done"}' > /dev/termination-log
"""


def _target(node: Node, security: dict[str, Any] | None) -> SyncTarget:
    spec: dict[str, Any] = {
        "source": {"volume": {"hostPath": {"path": "/"}}},
        "destination": {"rclone": {"remote": "nas", "path": "/runs",
                                   "configSecretRef": {"name": "probe-rclone", "key": "rclone.conf"}}},
        # Pods on the kubelet node use the node's network namespace (see kubelet_node.py).
        "mover": {"image": node.image, "imagePullPolicy": "IfNotPresent", "hostNetwork": True},
    }
    where = placement()
    spec["source"].update(nodeSelector=where["nodeSelector"], tolerations=where["tolerations"])
    if security:
        spec["mover"]["securityContext"] = security
    return SyncTarget.from_body({"apiVersion": "nassync.dev/v1alpha1", "kind": "SyncTarget",
                                 "metadata": {"name": "probe", "namespace": "x"}, "spec": spec})


def _probe_pod(node: Node, name: str, security: dict[str, Any] | None) -> dict[str, Any]:
    job = SyncJob.from_body({"apiVersion": "nassync.dev/v1alpha1", "kind": "SyncJob",
                             "metadata": {"name": "probe", "namespace": "x", "uid": "u-1", "generation": 1},
                             "spec": {"targetRef": {"name": "probe"}, "runPath": "probe/run"}})
    template = build_mover_job(job=job, target=_target(node, security), step="gate", name=name, n=1)
    pod_spec = template["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    container["command"] = ["sh", "-c", PROBE]
    # The source is irrelevant here; an emptyDir keeps the probe away from host paths.
    pod_spec["volumes"] = [v if v["name"] != "source" else {"name": "source", "emptyDir": {}}
                           for v in pod_spec["volumes"]]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": pod_spec}


def _run_probe(ns: Kubectl, node: Node, name: str, security: dict[str, Any] | None) -> tuple[dict[str, str], Any]:
    ns.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "probe-rclone"},
              "data": {"rclone.conf": base64.b64encode(b"[nas]\ntype = local\n").decode()}})
    pod = _probe_pod(node, name, security)
    ns.apply(pod)

    def finished() -> dict[str, Any] | None:
        got = ns.get("pod", name)
        for cs in got.get("status", {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            assert waiting.get("reason") not in STUCK, f"{name}: {waiting}"
        return got if got.get("status", {}).get("phase") in ("Succeeded", "Failed") else None
    done = eventually(finished, timeout=120, what=f"probe pod {name} to finish")
    assert done["spec"]["nodeName"] == NODE_NAME
    status = done["status"]["containerStatuses"][0]
    logs = ns("logs", name, "-c", "mover")
    assert done["status"]["phase"] == "Succeeded", f"{status}\n{logs}"
    found: dict[str, str] = {}
    for line in logs.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key.strip()] = value.strip()
    return found, status


def _assert_locked_down(found: dict[str, str]) -> None:
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert found[cap] == "0000000000000000", (cap, found)
    assert found["NoNewPrivs"] == "1"
    assert found["Seccomp"] == "2", "RuntimeDefault seccomp filter mode"
    assert found["rootfs"] == "readonly"
    assert found["tmp"] == "writable"
    assert found["home"] == "/tmp"
    assert found["mover"] == "ok"
    assert found["rclone"].startswith("rclone v")
    assert found["rsync"].startswith("rsync")
    assert found["nss_wrapper_ssh"].startswith("OpenSSH_")


def test_mover_image_runs_as_65532_read_only_no_capabilities(ns: Kubectl, kubelet_node: Node) -> None:
    found, status = _run_probe(ns, kubelet_node, "probe-default", None)
    assert found["id"] == "65532:65532", found
    assert found["name"] == "nassync"
    assert found["ssh"].startswith("OpenSSH_")
    _assert_locked_down(found)
    # Without fsGroup the kubelet lays Secret files out root-owned with the mover Job's defaultMode 0444.
    assert found["secret rclone.conf"] == "444 0 0"
    assert found["secret"] == "readable"
    assert json.loads(status["state"]["terminated"]["message"]) == {"probe": "done"}
    assert status["image"].endswith(kubelet_node.image.split("/", 1)[1])


def test_mover_image_runs_as_an_arbitrary_uid_without_passwd_entry(ns: Kubectl, kubelet_node: Node) -> None:
    security = {"runAsUser": ARBITRARY_UID, "runAsGroup": ARBITRARY_UID, "fsGroup": ARBITRARY_UID}
    found, _ = _run_probe(ns, kubelet_node, "probe-arbitrary", security)
    assert found["id"] == f"{ARBITRARY_UID}:{ARBITRARY_UID}", found
    assert found["name"] == "", "the image has no passwd entry for an arbitrary uid"
    _assert_locked_down(found)
    # fsGroup: the kubelet gives the Secret files that group, and the mover Job asks for 0440.
    assert found["secret rclone.conf"] == f"440 0 {ARBITRARY_UID}"
    assert found["secret"] == "readable"
    # ssh refuses such a uid (what #10 fixes in the mover) ...
    assert found["ssh"] == f"No user exists for uid {ARBITRARY_UID}"
    # ... and what the image provides for it works: nss_wrapper with a passwd file of the mover's own.
    assert found["nss_wrapper_name"] == "mover"
