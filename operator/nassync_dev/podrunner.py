"""One pod's life on the process node: volumes, containers as sandboxed processes, status.

The kubelet's part of the process node. A `PodRunner` thread takes a bound pod
from "dependencies ready" to a terminal phase: it materialises volumes and env
(podspec.py), runs init containers in order and then the containers under
bubblewrap (sandbox.py), pumps their output into per-container log files,
honours restartPolicy, and reports Running → Succeeded/Failed with exit codes
and termination messages through the pod status.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes.client.rest import ApiException

from nassync_dev.podspec import NotReady, PodEnvironment, expand
from nassync_dev.sandbox import Mount, bwrap_argv

if TYPE_CHECKING:
    from nassync_dev.node import ProcessNode

log = logging.getLogger("process-node")
_MAX_TERMINATION_MESSAGE = 4096


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ContainerRun:
    def __init__(self, name: str, proc: subprocess.Popen[bytes], log_path: Path,
                 term_path: Path, term_in_pod: str, policy: str) -> None:
        self.name = name
        self.proc = proc
        self.log_path = log_path
        self.term_path = term_path
        self.term_in_pod = term_in_pod
        self.policy = policy
        self.started_at = utc_now()
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
        now = utc_now()
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
        start_time = utc_now()
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
                              "startedAt": run.started_at, "finishedAt": utc_now(),
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
                                "finishedAt": utc_now()}}
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
