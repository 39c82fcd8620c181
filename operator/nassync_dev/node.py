"""The process node: a Node that binds pending pods and runs them as host processes.

Without a kubelet or scheduler, pods stay Pending and Jobs never finish. This
agent plays both roles for one Node: it binds pods that fit the node (node
selector, required node affinity, tolerations against its taints), runs each
container under bubblewrap (see sandbox.py) from the host's binaries, reports
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
import subprocess
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
from nassync_dev.podspec import NodeInfo, NotReady, PodEnvironment, expand
from nassync_dev.sandbox import Mount, bwrap_argv, hidden_host_dirs

log = logging.getLogger("process-node")
_MAX_TERMINATION_MESSAGE = 4096


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- scheduling ---------------------------------------------------------------

def _match_expression(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr["key"], expr["operator"], expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def _tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint["key"]:
                return True
        elif t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def pod_fits(pod: dict[str, Any], *, node_name: str, labels: dict[str, str],
             taints: list[dict[str, Any]]) -> bool:
    """What the scheduler's filter plugins would say, for the parts pods here use."""
    spec = pod.get("spec", {})
    if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
        return False
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    tolerations = spec.get("tolerations") or []
    for taint in taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(taint, tolerations):
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required:
        fields = {"metadata.name": node_name}
        ok = False
        for term in required.get("nodeSelectorTerms", []):
            exprs = term.get("matchExpressions") or []
            field_exprs = term.get("matchFields") or []
            if all(_match_expression(e, labels) for e in exprs) and all(
                    _match_expression(e, fields) for e in field_exprs):
                ok = True
                break
        if not ok:
            return False
    return True


# -- running one pod ----------------------------------------------------------

class ContainerRun:
    def __init__(self, name: str, proc: subprocess.Popen[bytes], log_path: Path,
                 term_path: Path, term_in_pod: str, policy: str) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.term_path = term_path
        self.term_in_pod = term_in_pod
        self.policy = policy
        self.started_at = _now()
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.log_path.open("ab") as out:
            for line in iter(self.proc.stdout.readline, b""):
                stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()
                out.write(stamp + b" " + line if line.endswith(b"\n") else stamp + b" " + line + b"\n")
                out.flush()

    def finish(self) -> tuple[int, str]:
        code = self.proc.wait()
        self.pump.join(timeout=5)
        if code < 0:
            code = 128 - code
        message = ""
        with contextlib.suppress(OSError):
            message = self.term_path.read_bytes()[:_MAX_TERMINATION_MESSAGE].decode(errors="replace")
        if not message and code != 0 and self.policy == "FallbackToLogsOnError":
            lines = read_log(self.log_path, timestamps=False).splitlines()[-80:]
            message = "\n".join(lines)[-2048:]
        return code, message


def read_log(path: Path, *, timestamps: bool) -> str:
    try:
        raw = path.read_bytes().decode(errors="replace")
    except OSError:
        return ""
    if timestamps:
        return raw
    return "".join(line.split(" ", 1)[1] if " " in line else line
                   for line in raw.splitlines(keepends=True))


class PodRunner(threading.Thread):
    """Owns one pod's processes from bind to terminal status."""

    def __init__(self, agent: ProcessNode, pod: dict[str, Any]) -> None:
        super().__init__(daemon=True, name=f"pod-{pod['metadata']['name']}")
        self.agent = agent
        self.pod = pod
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.dir = agent.pods_dir / f"{self.ns}_{self.name}_{self.uid}"
        self.killing = threading.Event()
        self.done = threading.Event()
        self.running: dict[str, ContainerRun] = {}
        self.lock = threading.Lock()
        self.statuses: dict[str, dict[str, Any]] = {}
        self.restarts: dict[str, int] = {}

    # status -------------------------------------------------------------
    def _container_status(self, c: dict[str, Any], state: dict[str, Any], ready: bool) -> dict[str, Any]:
        return {"name": c["name"], "image": c.get("image", ""), "imageID": "",
                "containerID": f"process://{self.uid}/{c['name']}", "ready": ready,
                "started": "running" in state, "restartCount": self.restarts.get(c["name"], 0),
                "state": state}

    def _patch(self, status: dict[str, Any]) -> None:
        with contextlib.suppress(ApiException):
            self.agent.api.patch_namespaced_pod_status(self.name, self.ns, {"status": status})

    def _conditions(self, ready: bool) -> list[dict[str, Any]]:
        now = _now()
        flag = "True" if ready else "False"
        return [{"type": t, "status": s, "lastTransitionTime": now} for t, s in (
            ("PodScheduled", "True"), ("Initialized", "True"), ("ContainersReady", flag),
            ("Ready", flag))]

    # run ----------------------------------------------------------------
    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # a broken pod must not take the node down
            log.exception("pod %s/%s failed in the node", self.ns, self.name)
            self._patch({"phase": "Failed", "reason": "ProcessNodeError", "message": str(e)})
        finally:
            self.done.set()

    def _prepare(self) -> tuple[PodEnvironment, dict[str, str]] | None:
        env = PodEnvironment(self.agent.api, self.pod, pod_dir=self.dir, node=self.agent.info)
        while not self.killing.is_set():
            try:
                sources = {v["name"]: env.volume_source(v) for v in self.pod["spec"].get("volumes", [])}
                return env, sources
            except NotReady as e:
                self._patch({"phase": "Pending", "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "False", "reason": "ContainerCreating",
                     "message": str(e)}]})
                self.killing.wait(1.0)
        return None

    def _start(self, env: PodEnvironment, sources: dict[str, str],
               c: dict[str, Any]) -> ContainerRun:
        cdir = self.dir / "containers" / c["name"]
        cdir.mkdir(parents=True, exist_ok=True)
        term = cdir / "termination-log"
        term.write_bytes(b"")
        term.chmod(0o666)
        variables = env.env(c)
        command = [expand(a, variables) for a in (c.get("command") or []) + (c.get("args") or [])]
        if not c.get("command"):
            raise NotReady(f"container {c['name']!r} has no command: the process node cannot run "
                           "an image's entrypoint")
        term_in_pod = c.get("terminationMessagePath") or "/dev/termination-log"
        mounts = [*env.mounts(c, sources), Mount(str(term), term_in_pod),
                  *(Mount(path, path, True) for path in self.agent.info.host_binds)]
        run_as, groups = env.identity(c)
        argv = bwrap_argv(command=command, mounts=mounts, working_dir=c.get("workingDir"),
                          run_as=run_as, supplemental_groups=groups)
        proc = subprocess.Popen(argv, env=variables, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        return ContainerRun(c["name"], proc, cdir / "current.log", term, term_in_pod,
                            c.get("terminationMessagePolicy") or "File")

    def _run(self) -> None:
        prepared = self._prepare()
        if prepared is None:
            return
        env, sources = prepared
        spec = self.pod["spec"]
        policy = spec.get("restartPolicy", "Always")
        start_time = _now()
        for c in spec.get("initContainers", []):
            try:
                run = self._start(env, sources, c)
            except NotReady as e:
                self._fail_start(c, str(e))
                return
            self.running[c["name"]] = run
            code, _ = run.finish()
            del self.running[c["name"]]
            if code != 0 or self.killing.is_set():
                self._patch({"phase": "Failed", "reason": "InitContainerFailed"})
                return
        containers = spec["containers"]
        try:
            for c in containers:
                self.running[c["name"]] = self._start(env, sources, c)
        except NotReady as e:
            self._kill_all(signal.SIGKILL)
            self._fail_start(c, str(e))
            return
        for c in containers:
            self.statuses[c["name"]] = self._container_status(
                c, {"running": {"startedAt": self.running[c["name"]].started_at}}, True)
        self._patch({"phase": "Running", "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                     "podIPs": [{"ip": "127.0.0.1"}], "startTime": start_time,
                     "conditions": self._conditions(True),
                     "containerStatuses": list(self.statuses.values())})
        results: dict[str, int] = {}
        pending = {c["name"]: c for c in containers}
        while pending:
            for name, c in list(pending.items()):
                run = self.running[name]
                if run.proc.poll() is None:
                    continue
                code, message = run.finish()
                terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                              "startedAt": run.started_at, "finishedAt": _now(),
                              "containerID": f"process://{self.uid}/{name}"}
                if message:
                    terminated["message"] = message
                restart = not self.killing.is_set() and (
                    policy == "Always" or (policy == "OnFailure" and code != 0))
                if restart:
                    self.restarts[name] = self.restarts.get(name, 0) + 1
                    backoff = min(10 * 2 ** (self.restarts[name] - 1), 300)
                    self.statuses[name] = self._container_status(
                        c, {"waiting": {"reason": "CrashLoopBackOff"}}, False)
                    self.statuses[name]["lastState"] = {"terminated": terminated}
                    self._patch({"containerStatuses": list(self.statuses.values()),
                                 "conditions": self._conditions(False)})
                    if self.killing.wait(backoff):
                        del pending[name]
                        results[name] = code
                        continue
                    self.running[name] = self._start(env, sources, c)
                    self.statuses[name] = self._container_status(
                        c, {"running": {"startedAt": self.running[name].started_at}}, True)
                    self._patch({"containerStatuses": list(self.statuses.values()),
                                 "conditions": self._conditions(True)})
                    continue
                results[name] = code
                del pending[name]
                self.statuses[name] = self._container_status(c, {"terminated": terminated}, False)
                self._patch({"containerStatuses": list(self.statuses.values())})
            if pending:
                time.sleep(0.1)
        phase = "Succeeded" if all(code == 0 for code in results.values()) else "Failed"
        self._patch({"phase": phase, "conditions": self._conditions(False),
                     "containerStatuses": list(self.statuses.values())})

    def _fail_start(self, c: dict[str, Any], message: str) -> None:
        state = {"terminated": {"exitCode": 128, "reason": "StartError", "message": message,
                                "finishedAt": _now()}}
        self.statuses[c["name"]] = self._container_status(c, state, False)
        self._patch({"phase": "Failed", "reason": "StartError", "message": message,
                     "containerStatuses": list(self.statuses.values())})

    def _kill_all(self, sig: int) -> None:
        for run in list(self.running.values()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.proc.pid, sig)

    def kill(self, grace: float) -> None:
        """Stop the pod's processes: SIGTERM, then SIGKILL after the grace period."""
        self.killing.set()
        self._kill_all(signal.SIGTERM)
        deadline = time.monotonic() + max(grace, 0)
        while any(r.proc.poll() is None for r in self.running.values()):
            if time.monotonic() > deadline:
                self._kill_all(signal.SIGKILL)
                break
            time.sleep(0.05)

    def log_path(self, container: str) -> Path:
        return self.dir / "containers" / container / "current.log"


# -- the agent ----------------------------------------------------------------

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

    def register(self) -> None:
        now = _now()
        conditions = [{"type": "Ready", "status": "True", "reason": "ProcessNodeReady",
                       "message": "process node agent is running",
                       "lastHeartbeatTime": now, "lastTransitionTime": now}]
        capacity = {"cpu": str(os.cpu_count() or 1), "memory": "16Gi", "pods": "110",
                    "ephemeral-storage": "100Gi"}
        status = {"conditions": conditions, "capacity": capacity, "allocatable": capacity,
                  "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                {"type": "Hostname", "address": self.name}],
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
            if not deleted and not meta.get("deletionTimestamp") and pod_fits(
                    pod, node_name=self.name, labels=self.labels, taints=self.taints):
                self._bind(pod)
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
        if runner is None and phase not in ("Succeeded", "Failed"):
            runner = PodRunner(self, pod)
            self.runners[uid] = runner
            runner.start()

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
                now = _now()
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
