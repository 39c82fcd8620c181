"""A real node beside the process node: kubelet v1.35.4 + containerd + runc, running the image.

The process node (node.py) runs containers' commands from host binaries, so it
cannot show what only a real runtime shows: that the image holds what a mover
needs, runs as a non-root uid with a read-only root under runc's seccomp and
dropped capabilities, how the kubelet lays out Secret volumes, termination
messages, logs and pod deletion. This module joins a real kubelet to a
LocalCluster (`make cluster-up NODE=kubelet`):

- containerd (Debian 1.6; the kubelet accepts it with a RuntimeConfig warning)
  with runc, the overlayfs snapshotter, a loopback-only CNI config and
  `restrict_oom_score_adj` (root here lacks CAP_SYS_RESOURCE, so runc cannot
  lower oom_score_adj as the kubelet asks);
- the kubelet built from the pinned tools/k8s module, cgroupfs driver,
  `failCgroupV1: false`, client and serving certificates from the cluster CA;
- the images from `make image` (and a local pause image) imported into
  containerd's `k8s.io` namespace, so pods use them with IfNotPresent.

Networking stays on loopback: the node is named `localhost`, the kubelet
listens on 127.0.0.1 and the apiserver reaches it by the node's Hostname
address (`--kubelet-preferred-address-types=Hostname,InternalIP`). Pods that
need the loopback NAS or the apiserver use `hostNetwork: true`; other pods get
a network namespace with only `lo`. (The kubelet still reports the machine's
address as InternalIP; nothing connects to it.)

The node is tainted `nassync.dev/kubelet-node=true:NoSchedule` so only pods
that ask for it (`placement()`) land there, and no scheduler runs, so a small
binder (`python -m nassync_dev.kubelet_node bind`) does the scheduler's one job
for this node: bind pending pods that fit it (scheduling.pod_fits). Everything
else is the real kubelet.

One kubelet node per machine: kubepods cgroups and /var/lib/kubelet/device-plugins
are machine-wide. `down()` leaves no process, mount, cgroup or container.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nassync_dev import binaries, image

NODE_NAME = "localhost"
TAINT = {"key": "nassync.dev/kubelet-node", "value": "true", "effect": "NoSchedule"}
LABELS = {"nassync.dev/kubelet-node": "true"}
PROCESSES = ("kubelet-binder", "kubelet", "containerd")  # stop order
CGROUP_ROOT = Path("/sys/fs/cgroup")
VAR_LIB_KUBELET = Path("/var/lib/kubelet")
RUN_CONTAINERD = Path("/run/containerd")
OWNER_FILE = Path("/run/nassync-kubelet-node")  # which state dir owns this machine's kubelet node

log = logging.getLogger("kubelet-node")

Spawn = Callable[[str, list[str]], int]


def toleration() -> dict[str, str]:
    return {"key": TAINT["key"], "operator": "Equal", "value": TAINT["value"], "effect": TAINT["effect"]}


def placement() -> dict[str, Any]:
    """Pod spec fields that put a pod on the kubelet node (and only there)."""
    return {"nodeSelector": {"kubernetes.io/hostname": NODE_NAME}, "tolerations": [toleration()]}


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _stop_pid(pid: int, *, grace: float = 15.0, group: bool = True) -> None:
    kill = os.killpg if group else os.kill
    with contextlib.suppress(ProcessLookupError, PermissionError):
        kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def mounts_under(*roots: Path) -> list[str]:
    """Mount points at or below any of `roots`, deepest first (from /proc/self/mountinfo)."""
    prefixes = [str(r.resolve()) for r in roots]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def kubepods_cgroups() -> list[Path]:
    """Every kubepods cgroup directory in every hierarchy, deepest first."""
    found = []
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []:
        top = hierarchy / "kubepods"
        if top.is_dir():
            found += [Path(d) for d, _, _ in os.walk(top)]
    return sorted(found, key=lambda p: -len(p.parts))


class KubeletNode:
    """The kubelet node of the LocalCluster whose state directory is `cluster_dir`."""

    def __init__(self, cluster_dir: Path) -> None:
        self.cluster_dir = cluster_dir.resolve()
        self.dir = self.cluster_dir / "kubelet-node"
        self.pki = self.cluster_dir / "pki"
        self.logs = self.cluster_dir / "logs"
        self.socket = self.dir / "run" / "containerd.sock"
        self.root_dir = self.dir / "kubelet"
        self.pod_logs = self.dir / "pod-logs"
        self._marks = self.dir / "created.json"

    # -- configuration ------------------------------------------------------
    def ctr(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"ctr {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def _containerd_config(self, pause: str) -> str:
        d = self.dir
        return f"""version = 2
root = "{d / 'containerd' / 'root'}"
state = "{d / 'containerd' / 'state'}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = ""
  level = "info"
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # root on these machines lacks CAP_SYS_RESOURCE: runc cannot lower
  # oom_score_adj to the kubelet's -998/-997, so clamp it to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{shutil.which('runc') or '/usr/sbin/runc'}"
        Root = "{d / 'runc'}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d / 'cni'}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
"""

    def _kubelet_config(self, *, port: int, healthz_port: int) -> dict[str, Any]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "failCgroupV1": False, "cgroupDriver": "cgroupfs",
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "imageServiceEndpoint": f"unix://{self.socket}",
            "address": "127.0.0.1", "port": port, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": healthz_port,
            "tlsCertFile": str(self.pki / "kubelet-node-serving.crt"),
            "tlsPrivateKeyFile": str(self.pki / "kubelet-node-serving.key"),
            "rotateCertificates": False, "serverTLSBootstrap": False,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "failSwapOn": False, "podLogsDir": str(self.pod_logs),
            "resolvConf": "/etc/resolv.conf", "clusterDomain": "cluster.local", "clusterDNS": [],
            "registerNode": True, "registerWithTaints": [TAINT],
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                             "imagefs.available": "1%"},
            # The images were imported, not pulled: never garbage-collect them.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": False, "maxPods": 30,
        }

    def _kubeconfig(self, server: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": server,
                                                       "certificate-authority": str(self.pki / "ca.crt")}}],
            "users": [{"name": "kubelet", "user": {
                "client-certificate": str(self.pki / "kubelet-node-client.crt"),
                "client-key": str(self.pki / "kubelet-node-client.key")}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "kubelet"}}],
            "current-context": "local",
        }

    # -- lifecycle ----------------------------------------------------------
    def _claim_machine(self) -> None:
        if not self._owns_machine():
            owner = json.loads(OWNER_FILE.read_text())
            other = KubeletNode(Path(owner["dir"]).parent)
            if other._cluster_alive():
                raise RuntimeError(
                    f"a kubelet node of another cluster is running ({owner['dir']}); one per machine "
                    "(kubepods cgroups are machine-wide). Reuse that cluster (eval \"$(make -s cluster-env)\") "
                    "or stop it (make cluster-down).")
            # Its cluster is gone (a killed test session, say): stop what is left of that node.
            log.warning("stopping the orphaned kubelet node of %s", owner["dir"])
            other.down(dict(owner.get("named") or {}), kubectl=None)
            OWNER_FILE.unlink(missing_ok=True)
        OWNER_FILE.write_text(json.dumps({"dir": str(self.dir), "pids": []}))

    def _cluster_alive(self) -> bool:
        """The apiserver of this node's cluster still runs."""
        try:
            pid = json.loads((self.cluster_dir / "cluster.json").read_text())["pids"]["kube-apiserver"]
        except (OSError, ValueError, KeyError):
            return False
        return _alive(int(pid))

    def _owns_machine(self) -> bool:
        """No other cluster's kubelet node is running here (its pod cgroups are not ours to touch)."""
        if not OWNER_FILE.exists():
            return True
        owner = json.loads(OWNER_FILE.read_text() or "{}")
        return owner.get("dir") == str(self.dir) or not any(_alive(p) for p in owner.get("pids", []))

    def _record_owner(self, pids: dict[str, int]) -> None:
        OWNER_FILE.write_text(json.dumps({"dir": str(self.dir), "pids": list(pids.values()), "named": pids}))

    def up(self, *, spawn: Spawn, server: str, kubectl: Callable[..., subprocess.CompletedProcess[str]],
           timeout: float = 120) -> dict[str, int]:
        """Start containerd, import the images, start the kubelet and the binder; wait for Ready."""
        binaries.ensure(kubelet=True)
        for tool in ("containerd", "runc", "ctr"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed (make apt installs it)")
        app, pause = image.ensure_image(), image.ensure_pause()
        self._claim_machine()
        if self.dir.exists():
            self._cleanup_leftovers()
        for sub in ("run", "cni", "containerd", "runc"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.root_dir.mkdir(parents=True, exist_ok=True)
        self.pod_logs.mkdir(parents=True, exist_ok=True)
        self._marks.write_text(json.dumps({"var_lib_kubelet": not VAR_LIB_KUBELET.exists(),
                                           "run_containerd": not RUN_CONTAINERD.exists()}))
        (self.dir / "cni" / "10-loopback.conflist").write_text(json.dumps(
            {"cniVersion": "0.4.0", "name": "nassync-lo", "plugins": [{"type": "loopback"}]}))
        (self.dir / "containerd.toml").write_text(self._containerd_config(pause.name))
        pids = {"containerd": spawn("containerd", ["containerd", "--config", str(self.dir / "containerd.toml")])}
        self._record_owner(pids)
        _wait(lambda: self.ctr("version", timeout=5).returncode == 0, timeout=30, what="containerd socket")
        for built in (pause, app):
            self.import_image(built)
        from nassync_dev.cluster import free_port  # cluster imports this module

        ports = {"kubelet_port": free_port(), "kubelet_healthz_port": free_port()}
        (self.dir / "kubelet.json").write_text(json.dumps(
            self._kubelet_config(port=ports["kubelet_port"], healthz_port=ports["kubelet_healthz_port"]),
            indent=2))
        (self.dir / "kubeconfig").write_text(json.dumps(self._kubeconfig(server), indent=2))
        (self.dir / "kubeconfig").chmod(0o600)
        pids["kubelet"] = self.start_kubelet(spawn)
        pids["kubelet-binder"] = spawn("kubelet-binder", [
            sys.executable, "-m", "nassync_dev.kubelet_node", "bind",
            "--kubeconfig", str(self.cluster_dir / "kubeconfig")])
        self._record_owner(pids)
        _wait(lambda: kubectl("get", "node", NODE_NAME, "-o",
                              "jsonpath={.status.conditions[?(@.type=='Ready')].status}").stdout == "True",
              timeout=timeout, what=f"kubelet node {NODE_NAME} Ready (log: {self.logs / 'kubelet.log'})")
        return {**pids, **ports}

    def start_kubelet(self, spawn: Spawn) -> int:
        """Start the kubelet alone, with the configuration `up` wrote: after a kubelet restart it finds
        containerd's running containers and adopts them (the restart fault of #12 item 4)."""
        bins = binaries.ensure(kubelet=True)
        pid = spawn("kubelet", [
            str(bins.kubelet), f"--config={self.dir / 'kubelet.json'}",
            f"--kubeconfig={self.dir / 'kubeconfig'}", f"--root-dir={self.root_dir}",
            f"--hostname-override={NODE_NAME}",
            f"--node-labels={','.join(f'{k}={v}' for k, v in LABELS.items())}", "--v=1"])
        if OWNER_FILE.exists():  # an orphan clean-up must find the kubelet that runs now
            owner = json.loads(OWNER_FILE.read_text() or "{}")
            if owner.get("dir") == str(self.dir) and "named" in owner:
                self._record_owner({**owner["named"], "kubelet": pid})
        return pid

    def import_image(self, built: image.BuiltImage) -> None:
        """`ctr images import` of the OCI archive, unless containerd has that digest already."""
        have = self.ctr("images", "ls").stdout
        if built.name in have and built.digest in have:
            return
        self.ctr("images", "import", built.archive, timeout=600)
        if built.name not in self.ctr("images", "ls", "-q").stdout.split():
            raise RuntimeError(f"ctr import of {built.archive} did not yield {built.name}")

    def down(self, pids: dict[str, int], *, kubectl: Callable[..., subprocess.CompletedProcess[str]] | None) -> None:
        """Stop everything the node started and remove what it left on the machine."""
        if kubectl is not None and _alive(pids.get("kubelet", 0)):
            self._drain(kubectl)
        for name in ("kubelet-binder", "kubelet"):
            if name in pids:
                _stop_pid(pids[name])
        if _alive(pids.get("containerd", 0)):
            self._remove_containers()
            _stop_pid(pids["containerd"])
        self._cleanup_leftovers()
        if kubectl is not None:
            with contextlib.suppress(Exception):
                kubectl("delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false")
        if OWNER_FILE.exists() and json.loads(OWNER_FILE.read_text() or "{}").get("dir") == str(self.dir):
            OWNER_FILE.unlink()

    def _drain(self, kubectl: Callable[..., subprocess.CompletedProcess[str]]) -> None:
        """Delete the node's pods through the API and let the kubelet tear them down (CRI stop: netns removed)."""
        with contextlib.suppress(Exception):
            kubectl("delete", "pods", "--all-namespaces", f"--field-selector=spec.nodeName={NODE_NAME}",
                    "--grace-period=1", "--wait=false")
            _wait(lambda: not self.ctr("tasks", "ls", "-q", timeout=10).stdout.strip(),
                  timeout=30, what="the kubelet to stop the node's containers")

    def _remove_containers(self) -> None:
        """Kill and delete whatever containerd still runs (after a kubelet crash, say)."""
        with contextlib.suppress(Exception):
            netns: list[str] = []
            for cid in self.ctr("containers", "ls", "-q", timeout=20).stdout.split():
                with contextlib.suppress(Exception):
                    spec = json.loads(self.ctr("containers", "info", cid, timeout=20).stdout).get("Spec") or {}
                    netns += [n["path"] for n in (spec.get("linux") or {}).get("namespaces", [])
                              if n.get("type") == "network" and n.get("path")]
                self.ctr("tasks", "kill", "--signal", "SIGKILL", cid, timeout=20, check=False)
                self.ctr("tasks", "delete", "--force", cid, timeout=30, check=False)
                self.ctr("containers", "delete", cid, timeout=30, check=False)
            for path in netns:
                subprocess.run(["umount", path], capture_output=True, check=False)
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def _cleanup_leftovers(self) -> None:
        if not self._owns_machine():
            return
        # Shims of our containerd (their own sessions) and any process still in a pod cgroup.
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmd = proc.joinpath("cmdline").read_bytes().split(b"\0")
                if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and str(self.socket).encode() in cmd:
                    _stop_pid(int(proc.name), grace=2, group=False)
        for cg in kubepods_cgroups():
            with contextlib.suppress(OSError):
                for pid in (cg / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
        for point in mounts_under(self.dir):
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        deadline = time.monotonic() + 10
        for cg in kubepods_cgroups():
            while cg.exists():
                try:
                    cg.rmdir()
                except OSError:
                    if time.monotonic() > deadline:
                        log.warning("cannot remove cgroup %s", cg)
                        break
                    time.sleep(0.1)
        marks = json.loads(self._marks.read_text()) if self._marks.exists() else {}
        if marks.get("var_lib_kubelet"):
            shutil.rmtree(VAR_LIB_KUBELET, ignore_errors=True)
        if marks.get("run_containerd"):
            shutil.rmtree(RUN_CONTAINERD, ignore_errors=True)
        # containerd's root (imported images) stays for the next start; runtime state goes.
        for sub in ("run", "runc", "kubelet", "containerd/state"):
            shutil.rmtree(self.dir / sub, ignore_errors=True)


def _wait(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as e:
            last = e
        time.sleep(0.25)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}" + (f" ({last})" if last else ""))


# -- the binder: the scheduler's one job for this node ------------------------
def bind_forever(kubeconfig: Path) -> None:
    from kubernetes import client, config, watch
    from kubernetes.client.rest import ApiException

    from nassync_dev.scheduling import pod_fits

    config.load_kube_config(config_file=str(kubeconfig))
    api = client.CoreV1Api()
    labels = {"kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", **LABELS}

    def consider(pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if spec.get("nodeName") or meta.get("deletionTimestamp"):
            return
        if not pod_fits(pod, node_name=NODE_NAME, labels=labels, taints=[TAINT]):
            return
        body = client.V1Binding(metadata=client.V1ObjectMeta(name=meta["name"]),
                                target=client.V1ObjectReference(kind="Node", name=NODE_NAME))
        try:
            api.create_namespaced_pod_binding(meta["name"], meta["namespace"], body, _preload_content=False)
        except ApiException as e:
            if e.status not in (404, 409):
                log.warning("binding %s/%s failed: %s", meta["namespace"], meta["name"], e.reason)

    while True:
        try:
            listing = json.loads(api.list_pod_for_all_namespaces(
                field_selector="spec.nodeName=", _preload_content=False).data)
            for item in listing["items"]:
                consider(item)
            for event in watch.Watch().stream(
                    api.list_pod_for_all_namespaces, field_selector="spec.nodeName=",
                    resource_version=listing["metadata"]["resourceVersion"], timeout_seconds=20):
                if event["type"] in ("ADDED", "MODIFIED"):
                    consider(event["raw_object"])
        except Exception:
            log.exception("pod watch failed; resyncing")
            time.sleep(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nassync_dev.kubelet_node")
    sub = parser.add_subparsers(dest="command", required=True)
    bind = sub.add_parser("bind", help="bind pending pods that fit the kubelet node")
    bind.add_argument("--kubeconfig", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    bind_forever(args.kubeconfig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
