"""The process node: a Node that binds pending pods and runs them as host processes.

Without a kubelet or scheduler, pods stay Pending and Jobs never finish. This
agent plays both roles for one Node: it binds pods that fit the node
(scheduling.py: node selector, required node affinity, tolerations against its
taints), runs each pod (podrunner.py) with its containers under bubblewrap
(sandbox.py) from the host's binaries, reports
Running → Succeeded/Failed with exit codes and termination messages through
the pod status, kills processes of deleted pods and then finalises the
deletion, and serves `/containerLogs` over TLS so `kubectl logs` works through
the apiserver exactly as with a kubelet.

Limits (documented in docs/development.md): images are not pulled or run (the
command must exist on the host), no probes, no resource limits, host network.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from nassync_dev.binaries import REPO
from nassync_dev.podrunner import PodRunner, read_log, utc_now
from nassync_dev.podspec import NodeInfo
from nassync_dev.sandbox import hidden_host_dirs
from nassync_dev.scheduling import unfit_reason

log = logging.getLogger("process-node")
LIFECYCLE_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
UNSCHEDULABLE_AFTER = 5.0  # seconds a pod that fits no node waits before it is told why


def _age(meta: dict[str, Any]) -> float:
    created = meta.get("creationTimestamp")
    if not created:
        return 0.0
    when = dt.datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return (dt.datetime.now(dt.UTC) - when).total_seconds()


class ProcessNode:
    def __init__(self, *, name: str, state_dir: Path, port: int, kubeconfig: Path,
                 labels: dict[str, str], taints: list[dict[str, Any]]) -> None:
        config.load_kube_config(config_file=str(kubeconfig))
        self.api = client.CoreV1Api()
        host = urlparse(client.Configuration.get_default_copy().host)
        self.info = NodeInfo(name=name, apiserver_host=host.hostname or "127.0.0.1",
                             apiserver_port=host.port or 443,
                             extra_path=os.path.dirname(sys.executable),
                             host_binds=hidden_host_dirs([sys.prefix, str(REPO)]))
        self.name = name
        self.state_dir = state_dir
        self.pods_dir = state_dir / "pods"
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "nassync.dev/process-node": "true",
                       **labels}
        self.taints = taints
        self.runners: dict[str, PodRunner] = {}
        self._unschedulable: set[str] = set()  # pods already told why they do not fit

    def register(self) -> None:
        now = utc_now()
        conditions = [{"type": "Ready", "status": "True", "reason": "ProcessNodeReady",
                       "message": "process node agent is running",
                       "lastHeartbeatTime": now, "lastTransitionTime": now}]
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": "16Gi", "pods": "110",
                    "ephemeral-storage": "100Gi"}
        status = {"conditions": conditions, "capacity": capacity, "allocatable": capacity,
                  # The apiserver prefers the Hostname address (the kubelet node is
                  # `localhost`): a name that resolved through DNS would leave loopback.
                  "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                {"type": "Hostname", "address": "localhost"}],
                  "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                  "nodeInfo": {"architecture": "amd64", "operatingSystem": "linux",
                               "kubeletVersion": "process-node", "kubeProxyVersion": "",
                               "containerRuntimeVersion": "process://bubblewrap",
                               "osImage": "host", "kernelVersion": os.uname().release,
                               "bootID": "", "machineID": "", "systemUUID": ""}}
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": self.name, "labels": self.labels},
                "spec": {"taints": self.taints} if self.taints else {}, "status": status}
        try:
            self.api.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
            self.api.patch_node(self.name, {"metadata": {"labels": self.labels}})
        self.api.patch_node_status(self.name, {"status": status})

    # one pass over a pod ------------------------------------------------
    def handle(self, pod: dict[str, Any], deleted: bool = False) -> None:
        meta, spec = pod["metadata"], pod.get("spec", {})
        uid = meta["uid"]
        node_name = spec.get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        if not node_name:
            if deleted or meta.get("deletionTimestamp"):
                return
            with contextlib.suppress(Exception):  # as the scheduler does: the Node's taints as they are now
                self._read_taints()
            why = unfit_reason(pod, node_name=self.name, labels=self.labels, taints=self.taints)
            if why is None:
                self._bind(pod)
            elif uid not in self._unschedulable and _age(meta) >= UNSCHEDULABLE_AFTER:
                # The scheduler's part: say why the pod stays Pending (PodScheduled=False), once
                # no other binder (the kubelet node's) took it either.
                self._unschedulable.add(uid)
                with contextlib.suppress(ApiException):
                    self.api.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": {
                        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                        "message": why, "lastTransitionTime": utc_now()}]}})
            return
        if node_name != self.name:
            return
        runner = self.runners.get(uid)
        if deleted:
            if runner:
                runner.kill(0)
                self.runners.pop(uid, None)
            return
        if meta.get("deletionTimestamp"):
            if runner and not runner.done.is_set():
                grace = float(meta.get("deletionGracePeriodSeconds") or 0)
                threading.Thread(target=self._terminate, args=(runner, pod, grace),
                                 daemon=True).start()
            elif runner is None or runner.done.is_set():
                self._finalise(pod)
            return
        if runner is None and phase == "Running":
            # Started by an earlier incarnation of this agent: its containers died with
            # it (bwrap --die-with-parent). Report them as the kubelet reports containers
            # it cannot find, so the Job (restartPolicy Never) fails and its owner retries.
            self._report_lost(pod)
            return
        if runner is None and phase not in ("Succeeded", "Failed"):
            runner = PodRunner(self, pod)
            self.runners[uid] = runner
            runner.start()

    def _report_lost(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        lost = {"exitCode": 137, "reason": "ContainerStatusUnknown",
                "message": "The container could not be located when the pod was terminated",
                "finishedAt": utc_now()}
        statuses = [{"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False,
                     "started": False, "restartCount": 0, "state": {"terminated": lost}}
                    for c in pod["spec"].get("containers", [])]
        log.warning("pod %s/%s was running before this agent started: its containers are lost",
                    meta["namespace"], meta["name"])
        with contextlib.suppress(ApiException):
            self.api.patch_namespaced_pod_status(meta["name"], meta["namespace"], {"status": {
                "phase": "Failed", "reason": "ContainerStatusUnknown", "containerStatuses": statuses}})

    def _read_taints(self) -> bool:
        """Read the Node's taints; True when they changed."""
        node = self.api.read_node(self.name, _preload_content=False)
        # Without a node-lifecycle controller nobody lifts the not-ready taint that
        # admission puts on a new Node; this node is Ready, so it does not apply.
        taints = [taint for taint in json.loads(node.data).get("spec", {}).get("taints") or []
                  if taint.get("key") not in LIFECYCLE_TAINTS]
        changed = taints != self.taints
        if changed:
            self.taints = taints
            self._unschedulable.clear()
        return changed

    def _refresh_taints(self) -> None:
        """Taints are the Node object's (`kubectl taint node`), as the scheduler reads them."""
        tick = 0
        while True:
            with contextlib.suppress(Exception):
                changed = self._read_taints()
                tick += 1
                if changed or tick % 5 == 0:
                    # Pending pods are judged again (at once when the taints changed), as the
                    # scheduler would; one that still fits nowhere is told why.
                    pending = self.api.list_pod_for_all_namespaces(field_selector="spec.nodeName=",
                                                                   _preload_content=False)
                    for pod in json.loads(pending.data)["items"]:
                        self.handle(pod)
            time.sleep(1)

    def _terminate(self, runner: PodRunner, pod: dict[str, Any], grace: float) -> None:
        if runner.killing.is_set():
            return
        runner.kill(grace)
        runner.done.wait(30)
        self._finalise(pod)

    def _finalise(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(ApiException):
            self.api.delete_namespaced_pod(
                meta["name"], meta["namespace"], grace_period_seconds=0,
                body=client.V1DeleteOptions(grace_period_seconds=0,
                                            preconditions=client.V1Preconditions(uid=meta["uid"])))

    def _bind(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        body = client.V1Binding(metadata=client.V1ObjectMeta(name=meta["name"]),
                                target=client.V1ObjectReference(kind="Node", name=self.name))
        try:
            # _preload_content=False: the client cannot deserialise the Status reply.
            self.api.create_namespaced_pod_binding(meta["name"], meta["namespace"], body,
                                                   _preload_content=False)
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], e.reason)

    def reap(self, live: set[str]) -> None:
        for uid, runner in list(self.runners.items()):
            if uid not in live:
                runner.kill(0)
                self.runners.pop(uid, None)
                shutil.rmtree(runner.dir / "volumes", ignore_errors=True)

    def runner_for(self, ns: str, name: str) -> PodRunner | None:
        for runner in self.runners.values():
            if runner.ns == ns and runner.name == name:
                return runner
        return None

    def log_dir_for(self, ns: str, name: str) -> Path | None:
        runner = self.runner_for(ns, name)
        if runner:
            return runner.dir
        matches = sorted(self.pods_dir.glob(f"{ns}_{name}_*"), key=lambda p: p.stat().st_mtime)
        return matches[-1] if matches else None

    # loops --------------------------------------------------------------
    def run(self) -> None:
        self.register()
        threading.Thread(target=self._serve_logs, daemon=True).start()
        threading.Thread(target=self._heartbeat, daemon=True).start()
        threading.Thread(target=self._refresh_taints, daemon=True).start()
        while True:
            try:
                self._sync_and_watch()
            except Exception:
                log.exception("pod watch failed; resyncing")
                time.sleep(1)

    def _heartbeat(self) -> None:
        while True:
            time.sleep(30)
            with contextlib.suppress(Exception):
                now = utc_now()
                self.api.patch_node_status(self.name, {"status": {"conditions": [{
                    "type": "Ready", "status": "True", "reason": "ProcessNodeReady",
                    "message": "process node agent is running", "lastHeartbeatTime": now}]}})

    def _sync_and_watch(self) -> None:
        api_client = self.api.api_client
        listing = self.api.list_pod_for_all_namespaces(_preload_content=False)
        data = json.loads(listing.data)
        live = set()
        for item in data["items"]:
            live.add(item["metadata"]["uid"])
            self.handle(item)
        self.reap(live)
        w = watch.Watch()
        for event in w.stream(self.api.list_pod_for_all_namespaces,
                              resource_version=data["metadata"]["resourceVersion"],
                              timeout_seconds=20, allow_watch_bookmarks=True):
            obj = event["raw_object"]
            if event["type"] == "BOOKMARK":
                continue
            if event["type"] == "ERROR":
                return
            self.handle(obj, deleted=event["type"] == "DELETED")
        del api_client

    # kubelet log endpoint -------------------------------------------------
    def _serve_logs(self) -> None:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                url = urlparse(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "containerLogs":
                    self.send_error(404)
                    return
                _, ns, name, container = parts
                query = {k: v[-1] for k, v in parse_qs(url.query).items()}
                pod_dir = agent.log_dir_for(ns, name)
                if pod_dir is None:
                    self.send_error(404, f"pod {ns}/{name} is not on this node")
                    return
                path = pod_dir / "containers" / container / "current.log"
                timestamps = query.get("timestamps") == "true"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                text = read_log(path, timestamps=timestamps)
                if "tailLines" in query:
                    lines = text.splitlines(keepends=True)
                    text = "".join(lines[-int(query["tailLines"]):]) if int(query["tailLines"]) else ""
                data = text.encode()
                if "limitBytes" in query:
                    data = data[: int(query["limitBytes"])]
                self.wfile.write(data)
                if query.get("follow") != "true":
                    return
                sent = path.stat().st_size if path.exists() else 0
                runner = agent.runner_for(ns, name)
                while runner is not None and not runner.done.is_set():
                    time.sleep(0.2)
                    size = path.stat().st_size if path.exists() else 0
                    if size > sent:
                        with path.open("rb") as f:
                            f.seek(sent)
                            chunk = f.read(size - sent).decode(errors="replace")
                        sent = size
                        out = chunk if timestamps else "".join(
                            line.split(" ", 1)[1] if " " in line else line
                            for line in chunk.splitlines(keepends=True))
                        try:
                            self.wfile.write(out.encode())
                            self.wfile.flush()
                        except OSError:
                            return

        pki = self.state_dir / "pki"
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki / "kubelet-serving.crt"), str(pki / "kubelet-serving.key"))
        ctx.load_verify_locations(str(pki / "ca.crt"))
        ctx.verify_mode = ssl.CERT_REQUIRED  # only the apiserver (our CA) may read logs
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--name", default="nassync-node")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--label", action="append", default=[], help="extra node label k=v")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    labels = dict(item.split("=", 1) for item in args.label)
    node = ProcessNode(name=args.name, state_dir=args.state_dir, port=args.port,
                       kubeconfig=args.state_dir / "kubeconfig", labels=labels, taints=[])

    def stop(signum: int, frame: Any) -> None:
        for runner in list(node.runners.values()):
            runner.kill(2)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    node.run()


if __name__ == "__main__":
    main()
