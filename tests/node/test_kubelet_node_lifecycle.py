"""Stopping the kubelet node (what `make cluster-down` does first) leaves nothing on the machine.

A running pod (reached with `kubectl exec` first) with a Secret volume and an emptyDir gives the teardown real work:
a pod sandbox and container under containerd's shims, tmpfs mounts under the
kubelet's root dir, the kubelet's self bind mount, kubepods cgroups in every
hierarchy. After the stop no process, mount, cgroup or container of the node
is left; the node then starts again for the tests after this one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.node.conftest import Node

from nassync_dev.kubelet_node import NODE_NAME, KubeletNode, kubepods_cgroups, mounts_under, placement
from nassync_dev.testing import Kubectl, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.kubelet]


def _shims(socket: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = proc.joinpath("cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in cmd:
                found.append(int(proc.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_stopping_the_kubelet_node_leaves_no_process_mount_cgroup_or_container(
        ns: Kubectl, kubelet_node: Node) -> None:
    ns.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": {"k": "v"}})
    ns.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"}, "spec": {
        **placement(), "hostNetwork": True, "terminationGracePeriodSeconds": 2,
        "securityContext": {"runAsUser": 65532, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "main", "image": kubelet_node.image, "imagePullPolicy": "IfNotPresent",
                        "command": ["python", "-c", "import time; time.sleep(3600)"],
                        "volumeMounts": [{"name": "s", "mountPath": "/s"}, {"name": "scratch", "mountPath": "/tmp"}]}],
        "volumes": [{"name": "s", "secret": {"secretName": "s"}}, {"name": "scratch", "emptyDir": {}}]}})
    eventually(lambda: ns.get("pod", "sleeper").get("status", {}).get("phase") == "Running", timeout=90,
               what="the sleeper pod Running on the kubelet node")
    # kubectl exec through the apiserver to the real kubelet (and containerd's streaming server).
    assert ns("exec", "sleeper", "--", "id", "-u").strip() == "65532"

    local = kubelet_node.cluster
    node = KubeletNode(local.state_dir)
    state = json.loads((local.state_dir / "cluster.json").read_text())
    pids = [state["pids"][n] for n in ("containerd", "kubelet", "kubelet-binder")]
    assert _shims(node.socket), "the pod's sandbox and container run under containerd shims"
    assert mounts_under(node.dir), "secret tmpfs and the kubelet's root dir are mounted"
    assert kubepods_cgroups()
    created = json.loads((node.dir / "created.json").read_text())

    try:
        local.stop_kubelet_node()
        assert not [p for p in pids if _alive(p)], "kubelet, containerd and the binder are gone"
        assert not _shims(node.socket), "no containerd shim (and so no container) is left"
        assert not mounts_under(node.dir), "nothing stays mounted under the node's directory"
        assert not kubepods_cgroups(), "the kubepods cgroups are removed in every hierarchy"
        if created["var_lib_kubelet"]:
            assert not Path("/var/lib/kubelet").exists()
        if created["run_containerd"]:
            assert not Path("/run/containerd").exists()
        assert not local.kubelet_node_up()
        nodes = json.loads(ns("get", "nodes", "-o", "json", namespaced=False))["items"]
        assert NODE_NAME not in [n["metadata"]["name"] for n in nodes]
        assert not os.path.exists(node.socket)
    finally:
        if not local.kubelet_node_up():
            local.start_kubelet_node()
    assert local.kubelet_node_up()
