"""The local control plane and process node behave like a real cluster where it matters.

Everything here runs against real etcd, kube-apiserver and
kube-controller-manager; pods run as host processes under bubblewrap (the
image is not run: the host provides the binaries — that is the one mock).
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from nassync.certs import CertificateAuthority
from nassync_dev.cluster import free_port
from nassync_dev.testing import Kubectl, KubectlError, eventually

pytestmark = pytest.mark.cluster


def job(name: str, command: list[str], *, backoff: int = 0, volumes: list[Any] | None = None,
        mounts: list[Any] | None = None, **pod: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": backoff, "template": {"spec": {
            "restartPolicy": "Never", **pod,
            "volumes": volumes or [],
            "containers": [{"name": "main", "image": "ignored.local/none", "command": command,
                            "volumeMounts": mounts or []}],
        }}},
    }


def job_condition(ns: Kubectl, name: str, kind: str) -> bool:
    conds = ns.get("job", name).get("status", {}).get("conditions", [])
    return any(c["type"] == kind and c["status"] == "True" for c in conds)


def test_job_writes_to_host_path_and_completes(ns: Kubectl, tmp_path: Path) -> None:
    host = tmp_path / "acq"
    ns.apply(job("writer", ["sh", "-c", "echo acquired > /data/out.txt; id -u > /data/uid"],
                 volumes=[{"name": "d", "hostPath": {"path": str(host), "type": "DirectoryOrCreate"}}],
                 mounts=[{"name": "d", "mountPath": "/data"}]))
    eventually(lambda: job_condition(ns, "writer", "Complete"), what="Job writer Complete")
    assert (host / "out.txt").read_text() == "acquired\n"


def test_failing_command_fails_the_job_after_backoff_limit(ns: Kubectl) -> None:
    ns.apply(job("failer", ["sh", "-c", "echo boom >&2; exit 3"], backoff=1))
    eventually(lambda: job_condition(ns, "failer", "Failed"), timeout=90, what="Job failer Failed")
    status = ns.get("job", "failer")["status"]
    assert status["failed"] == 2  # the first try plus backoffLimit=1 retry
    pods = ns.get("pods")["items"]
    codes = {p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods}
    assert codes == {3}


def test_termination_message_and_exit_code_reach_pod_status(ns: Kubectl) -> None:
    ns.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "msg"}, "spec": {
        "restartPolicy": "Never", "containers": [{
            "name": "main", "image": "x", "command": ["sh", "-c",
                                                      'printf \'{"ok":false}\' > /dev/termination-log; exit 7']}]}})
    state = eventually(lambda: (ns.get("pod", "msg").get("status", {}).get("containerStatuses")
                                or [{}])[0].get("state", {}).get("terminated"),
                       what="pod msg terminated")
    assert state["exitCode"] == 7
    assert json.loads(state["message"]) == {"ok": False}
    assert ns.get("pod", "msg")["status"]["phase"] == "Failed"


def test_garbage_collector_deletes_owned_jobs(ns: Kubectl) -> None:
    ns.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}})
    uid = ns.get("configmap", "owner")["metadata"]["uid"]
    owned = job("owned", ["sh", "-c", "exit 0"])
    owned["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap",
                                             "name": "owner", "uid": uid}]
    ns.apply(owned)
    assert ns.exists("job", "owned")
    ns("delete", "configmap", "owner", "--wait=false")
    eventually(lambda: not ns.exists("job", "owned"), timeout=90, what="owned Job garbage-collected")


def test_kubectl_logs_returns_pod_output(ns: Kubectl) -> None:
    ns.apply(job("talker", ["sh", "-c", "echo line-one; echo line-two >&2"]))
    eventually(lambda: job_condition(ns, "talker", "Complete"), what="Job talker Complete")
    out = ns("logs", "job/talker")
    assert out.splitlines() == ["line-one", "line-two"]
    assert ns("logs", "job/talker", "--tail=1").strip() == "line-two"


def test_pod_reads_secret_volume_and_secret_env(ns: Kubectl) -> None:
    ns.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
              "data": {"token": base64.b64encode(b"s3cr3t").decode()}})
    reader = job("reader", ["sh", "-c",
                            'test "$(cat /var/run/nassync/secret/token)" = s3cr3t && test "$TOKEN" = s3cr3t'],
                 volumes=[{"name": "s", "secret": {"secretName": "creds"}}],
                 mounts=[{"name": "s", "mountPath": "/var/run/nassync/secret", "readOnly": True}])
    reader["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}]
    ns.apply(reader)
    eventually(lambda: job_condition(ns, "reader", "Complete"), what="Job reader Complete")


def test_pod_for_another_node_stays_pending(ns: Kubectl) -> None:
    ns.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "elsewhere"}, "spec": {
        "nodeSelector": {"kubernetes.io/hostname": "microscope-pc-7"},
        "containers": [{"name": "main", "image": "x", "command": ["true"]}]}})
    ns.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "here"}, "spec": {
        "nodeSelector": {"kubernetes.io/hostname": "nassync-node"}, "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "x", "command": ["true"]}]}})
    # Once the pod that fits has run to completion, the agent has certainly seen both.
    eventually(lambda: ns.get("pod", "here")["status"].get("phase") == "Succeeded",
               what="pod 'here' Succeeded")
    pod = ns.get("pod", "elsewhere")
    assert "nodeName" not in pod["spec"]
    assert pod["status"]["phase"] == "Pending"


def test_deleting_a_running_pod_kills_its_process(ns: Kubectl, tmp_path: Path) -> None:
    marker = tmp_path / "alive"
    ns.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper"}, "spec": {
        "terminationGracePeriodSeconds": 2,
        "volumes": [{"name": "d", "hostPath": {"path": str(tmp_path)}}],
        "containers": [{"name": "main", "image": "x", "volumeMounts": [{"name": "d", "mountPath": "/d"}],
                        "command": ["sh", "-c", "echo $$ > /d/alive; exec sleep 600"]}]}})
    eventually(lambda: marker.exists() and marker.read_text().strip(), what="sleeper started")
    ns("delete", "pod", "sleeper", "--timeout=30s")
    assert not ns.exists("pod", "sleeper")
    # The sandbox's pid namespace hides the pid, so check no sleep 600 of ours survives.
    procs = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    cmdlines = []
    for p in procs:
        try:
            cmdlines.append((p / "cmdline").read_bytes())
        except OSError:
            continue
    assert not any(f"{tmp_path}".encode() in c and b"sleep" in c for c in cmdlines)
    assert b"sleep\x00600\x00" not in b"".join(c for c in cmdlines if b"bwrap" not in c)


CEL_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.celtest.nassync.dev"},
    "spec": {"group": "celtest.nassync.dev", "scope": "Namespaced",
             "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                 "type": "object", "properties": {"spec": {
                     "type": "object",
                     "x-kubernetes-validations": [{"rule": "!self.path.startsWith('/')",
                                                   "message": "spec.path must be relative"}],
                     "properties": {"path": {"type": "string", "maxLength": 256}}}}}}}]},
}


def test_crd_cel_rule_rejects_bad_object_with_its_message(cluster: Kubectl, ns: Kubectl) -> None:
    cluster.apply(CEL_CRD)
    eventually(lambda: "True" in cluster(
        "get", "crd", "widgets.celtest.nassync.dev",
        "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}"),
        what="CRD established")
    widget = {"apiVersion": "celtest.nassync.dev/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"path": "/etc/shadow"}}
    with pytest.raises(KubectlError) as err:
        ns.apply(widget)
    assert "spec.path must be relative" in err.value.stderr
    widget["spec"]["path"] = "runs/ok"
    ns.apply(widget)


@pytest.fixture
def webhook_server(tmp_path: Path) -> Iterator[tuple[int, list[dict[str, Any]], str]]:
    ca = CertificateAuthority(tmp_path / "pki")
    pair = ca.issue("hook", common_name="hook", hosts=("127.0.0.1",), server=True)
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(review)
            response = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                        "response": {"uid": review["request"]["uid"], "allowed": False,
                                     "status": {"code": 403, "message": "denied by the loopback webhook"}}}
            body = json.dumps(response).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    port = free_port()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pair.cert), str(pair.key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, seen, base64.b64encode(ca.cert_path.read_bytes()).decode()
    finally:
        server.shutdown()


def test_validating_webhook_on_loopback_is_called(cluster: Kubectl, ns: Kubectl,
                                                  webhook_server: tuple[int, list[dict[str, Any]], str]) -> None:
    port, seen, ca_bundle = webhook_server
    name = f"loopback-{ns.namespace}"
    cluster.apply({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{"name": "deny.nassync.dev", "admissionReviewVersions": ["v1"],
                      "sideEffects": "None", "failurePolicy": "Fail",
                      "clientConfig": {"url": f"https://127.0.0.1:{port}/validate",
                                       "caBundle": ca_bundle},
                      "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns.namespace}},
                      "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                 "resources": ["configmaps"]}]}]})
    try:
        def denied() -> bool:
            result = ns.run("create", "configmap", "probe", check=False)
            return result.returncode != 0 and "denied by the loopback webhook" in result.stderr
        eventually(denied, what="webhook denying configmap creation")
        assert seen and seen[-1]["request"]["namespace"] == ns.namespace
        assert seen[-1]["request"]["kind"]["kind"] == "ConfigMap"
    finally:
        cluster("delete", "validatingwebhookconfiguration", name)


def test_kubectl_reports_the_pinned_release(cluster: Kubectl) -> None:
    version = json.loads(cluster("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"].startswith("v1.35.")
    assert version["clientVersion"]["gitVersion"] == version["serverVersion"]["gitVersion"]


def test_pod_volumes_env_and_working_dir_like_a_kubelet(ns: Kubectl, tmp_path: Path) -> None:
    """PVC bound to a hostPath PV, configMap volume and env, emptyDir shared with an
    init container, args, workingDir and a custom terminationMessagePath."""
    pv_dir = tmp_path / "pv"
    pv_dir.mkdir()
    (pv_dir / "existing.txt").write_text("on the volume\n")
    pv_name = f"pv-{ns.namespace}"
    ns.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
              "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                       "storageClassName": "manual", "hostPath": {"path": str(pv_dir)},
                       "claimRef": {"namespace": ns.namespace, "name": "acq"}}})
    ns.apply({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "acq"},
              "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                       "resources": {"requests": {"storage": "1Gi"}}}})
    ns.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
              "data": {"mode": "fast", "greeting.txt": "hello\n"}})
    script = ('test "$(cat /cfg/greeting.txt)" = hello && test "$MODE" = fast && test "$(pwd)" = /work '
              '&& test "$(cat /scratch/from-init)" = init && test "$1" = first-arg '
              '&& cat /pvc/existing.txt > /pvc/copied.txt && printf done > /tmp/msg')
    ns.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "kubelet-like"}, "spec": {
        "restartPolicy": "Never",
        "volumes": [{"name": "pvc", "persistentVolumeClaim": {"claimName": "acq"}},
                    {"name": "cfg", "configMap": {"name": "settings", "items": [
                        {"key": "greeting.txt", "path": "greeting.txt"}]}},
                    {"name": "scratch", "emptyDir": {}}, {"name": "work", "emptyDir": {}}],
        "initContainers": [{"name": "init", "image": "x", "command": ["sh", "-c", "echo init > /scratch/from-init"],
                            "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
        "containers": [{"name": "main", "image": "x", "command": ["sh", "-c", script, "sh"], "args": ["first-arg"],
                        "workingDir": "/work", "terminationMessagePath": "/tmp/msg",
                        "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings",
                                                                                   "key": "mode"}}}],
                        "volumeMounts": [{"name": "pvc", "mountPath": "/pvc"},
                                         {"name": "cfg", "mountPath": "/cfg", "readOnly": True},
                                         {"name": "scratch", "mountPath": "/scratch"},
                                         {"name": "work", "mountPath": "/work"}]}]}})
    try:
        state = eventually(lambda: (ns.get("pod", "kubelet-like").get("status", {}).get("containerStatuses")
                                    or [{}])[0].get("state", {}).get("terminated"),
                           timeout=90, what="pod kubelet-like terminated")
        assert state["exitCode"] == 0, ns("logs", "kubelet-like")
        assert state["message"] == "done"
        assert (pv_dir / "copied.txt").read_text() == "on the volume\n"
    finally:
        ns("delete", "pod", "kubelet-like", "--wait=true")
        ns("delete", "pvc", "acq", "--wait=false")
        ns.run("delete", "pv", pv_name, "--wait=false", check=False)


def test_cluster_up_is_idempotent_and_down_leaves_no_process(tmp_path: Path) -> None:
    from nassync_dev.cluster import LocalCluster, _alive

    local = LocalCluster(tmp_path / "second")
    local.up()
    try:
        first = json.loads((tmp_path / "second" / "cluster.json").read_text())["pids"]
        assert local.is_up()
        local.up()  # reuses the running cluster
        assert json.loads((tmp_path / "second" / "cluster.json").read_text())["pids"] == first
    finally:
        local.down()
    assert not any(_alive(pid) for pid in first.values()), first
    assert not local.is_up()
