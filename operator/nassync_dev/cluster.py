"""A real Kubernetes control plane as local processes: etcd, kube-apiserver,
kube-controller-manager, the process node, and on request a real kubelet node
(kubelet_node.py: kubelet + containerd + runc running the image).

No Docker engine exists where nassync is developed or tested, and the behaviour
an operator depends on (CRD schemas and CEL, admission webhooks, the Job
controller, garbage collection, resourceVersion conflicts) is exactly what
mocks get wrong. So we run the real binaries on loopback with a fresh CA.

Everything about one cluster lives in its state directory: certificates,
kubeconfigs, logs and `cluster.json` (ports and PIDs). `up()` is idempotent: a
cluster whose processes are alive and whose apiserver answers is reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nassync.certs import CertificateAuthority, write_service_account_key
from nassync_dev import binaries
from nassync_dev.kubelet_node import PROCESSES as KUBELET_NODE_PROCESSES
from nassync_dev.kubelet_node import KubeletNode

NODE_NAME = "nassync-node"
_CONTROLLERS = ",".join([
    "job-controller", "garbage-collector-controller", "namespace-controller",
    "ttl-after-finished-controller", "serviceaccount-controller",
    "serviceaccount-token-controller", "root-ca-certificate-publisher-controller",
    "clusterrole-aggregation-controller", "replicaset-controller", "deployment-controller",
    "persistentvolume-binder-controller",
])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str,
             interval: float = 0.2) -> None:
    """Poll `predicate` until it holds; raise naming `what` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


@dataclass
class ClusterState:
    etcd_port: int = 0
    apiserver_port: int = 0
    kubelet_port: int = 0
    pids: dict[str, int] = field(default_factory=dict)
    etcd_data: str = ""
    kubelet_node_port: int = 0
    kubelet_node_healthz_port: int = 0


class LocalCluster:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self.pki = self.state_dir / "pki"
        self.logs = self.state_dir / "logs"
        self.kubeconfig = self.state_dir / "kubeconfig"
        self._state_file = self.state_dir / "cluster.json"

    # -- state --------------------------------------------------------------
    def _load(self) -> ClusterState:
        if not self._state_file.exists():
            return ClusterState()
        return ClusterState(**json.loads(self._state_file.read_text()))

    def _save(self, state: ClusterState) -> None:
        self._state_file.write_text(json.dumps(asdict(state), indent=2))

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self._load().apiserver_port}"

    def env(self) -> dict[str, str]:
        found = binaries.locate()
        path = os.pathsep.join([*(str(d) for d in found.path_dirs), os.environ.get("PATH", "")])
        return {"KUBECONFIG": str(self.kubeconfig), "PATH": path}

    # -- health -------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        ctx.load_cert_chain(str(self.pki / "admin.crt"), str(self.pki / "admin.key"))
        return ctx

    def _get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        with urllib.request.urlopen(self.server + path, context=self._ssl_context(),
                                    timeout=timeout) as resp:
            return int(resp.status), resp.read()

    def apiserver_ready(self) -> bool:
        try:
            return self._get("/readyz")[0] == 200
        except Exception:
            return False

    def is_up(self) -> bool:
        state = self._load()
        names = ("etcd", "kube-apiserver", "kube-controller-manager", "process-node")
        if not all(n in state.pids and _alive(state.pids[n]) for n in names):
            return False
        return self.apiserver_ready()

    def kubelet_node_up(self) -> bool:
        pids = self._load().pids
        return all(n in pids and _alive(pids[n]) for n in KUBELET_NODE_PROCESSES)

    # -- lifecycle ----------------------------------------------------------
    def up(self, *, timeout: float = 120.0, kubelet_node: bool = False) -> None:
        """Start the cluster (or reuse a running one); `kubelet_node` adds the real node."""
        if self.is_up():
            if kubelet_node and not self.kubelet_node_up():
                self.start_kubelet_node(timeout=timeout)
            return
        self.down()
        bins = binaries.ensure(kubelet=kubelet_node)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        state = ClusterState(etcd_port=free_port(), apiserver_port=free_port(),
                             kubelet_port=free_port())
        digest = hashlib.sha256(str(self.state_dir).encode()).hexdigest()[:12]
        shm = Path("/dev/shm")
        data_root = shm if shm.is_dir() and os.access(shm, os.W_OK) else self.state_dir
        state.etcd_data = str(data_root / f"nassync-etcd-{digest}")
        self._write_pki()
        self._save(state)
        try:
            self._start_etcd(bins, state)
            self._start_apiserver(bins, state)
            self._write_kubeconfigs(state)
            self._start_controller_manager(bins, state)
            self._start_node(state)
            self._wait_ready(bins, timeout=timeout)
            if kubelet_node:
                self.start_kubelet_node(timeout=timeout)
        except BaseException:
            self.down()
            raise

    def start_kubelet_node(self, *, timeout: float = 120.0) -> None:
        """Join the real kubelet node (kubelet_node.py) to this running cluster."""
        bins = binaries.ensure(kubelet=True)
        state = self._load()
        node = KubeletNode(self.state_dir)
        try:
            started = node.up(spawn=lambda name, argv: self._spawn(state, name, argv), server=self.server,
                              kubectl=lambda *a: self._kubectl(bins, *a), timeout=timeout)
        except BaseException:
            self.stop_kubelet_node()
            raise
        state.kubelet_node_port = started["kubelet_port"]
        state.kubelet_node_healthz_port = started["kubelet_healthz_port"]
        self._save(state)

    def stop_kubelet_node(self) -> None:
        """Stop the kubelet node only; no process, mount, cgroup or container stays behind."""
        state = self._load()
        pids = {n: state.pids[n] for n in KUBELET_NODE_PROCESSES if n in state.pids}
        bins = binaries.locate()
        kubectl = (lambda *a: self._kubectl(bins, *a)) if self.apiserver_ready() else None
        KubeletNode(self.state_dir).down(pids, kubectl=kubectl)
        for name in pids:
            state.pids.pop(name, None)
        state.kubelet_node_port = state.kubelet_node_healthz_port = 0
        self._save(state)

    def _spawn(self, state: ClusterState, name: str, argv: list[str],
               env: dict[str, str] | None = None) -> int:
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, **(env or {})})
        state.pids[name] = proc.pid
        self._save(state)
        return proc.pid

    def _write_pki(self) -> None:
        if self.pki.exists():
            shutil.rmtree(self.pki)
        ca = CertificateAuthority(self.pki)
        ca.issue("apiserver", common_name="kube-apiserver", server=True,
                 hosts=("127.0.0.1", "localhost", "10.0.0.1", "kubernetes",
                        "kubernetes.default", "kubernetes.default.svc",
                        "kubernetes.default.svc.cluster.local"))
        ca.issue("admin", common_name="nassync-admin", orgs=("system:masters",), client=True)
        ca.issue("controller-manager", common_name="system:kube-controller-manager", client=True)
        ca.issue("kubelet-client", common_name="kube-apiserver-kubelet-client",
                 orgs=("system:masters",), client=True)
        ca.issue("kubelet-serving", common_name=NODE_NAME, server=True,
                 hosts=("127.0.0.1", "localhost"))
        # The kubelet node (`localhost`): registers as system:node:localhost, serves on 127.0.0.1.
        ca.issue("kubelet-node-client", common_name="system:node:localhost", orgs=("system:nodes",),
                 client=True)
        ca.issue("kubelet-node-serving", common_name="localhost", server=True,
                 hosts=("127.0.0.1", "localhost"))
        write_service_account_key(self.pki / "sa.key")

    def _start_etcd(self, bins: binaries.Binaries, state: ClusterState) -> None:
        url = f"http://127.0.0.1:{state.etcd_port}"
        self._spawn(state, "etcd", [
            str(bins.etcd), f"--data-dir={state.etcd_data}", f"--listen-client-urls={url}",
            f"--advertise-client-urls={url}", "--listen-peer-urls=http://127.0.0.1:0",
            "--unsafe-no-fsync=true", "--log-level=warn",
        ])

        def healthy() -> bool:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                return b'"true"' in resp.read()
        wait_for(healthy, timeout=30, what="etcd /health")

    def _start_apiserver(self, bins: binaries.Binaries, state: ClusterState) -> None:
        p = self.pki
        self._spawn(state, "kube-apiserver", [
            str(bins.kube_apiserver),
            f"--etcd-servers=http://127.0.0.1:{state.etcd_port}",
            "--bind-address=127.0.0.1", f"--secure-port={state.apiserver_port}",
            "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
            f"--tls-cert-file={p / 'apiserver.crt'}", f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.key'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            "--service-cluster-ip-range=10.0.0.0/24", "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            f"--kubelet-certificate-authority={p / 'ca.crt'}",
            f"--kubelet-client-certificate={p / 'kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'kubelet-client.key'}",
            # Both nodes publish Hostname `localhost`: logs/exec stay on loopback
            # (the real kubelet reports the machine's address as InternalIP).
            "--kubelet-preferred-address-types=Hostname,InternalIP",
            f"--cert-dir={self.state_dir / 'apiserver-certs'}",
            "--v=1",
        ])
        wait_for(self.apiserver_ready, timeout=90, what="kube-apiserver /readyz")

    def _kubeconfig(self, user: str, path: Path) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "nassync-local", "cluster": {
                "server": self.server, "certificate-authority": str(self.pki / "ca.crt")}}],
            "users": [{"name": user, "user": {
                "client-certificate": str(self.pki / f"{user}.crt"),
                "client-key": str(self.pki / f"{user}.key")}}],
            "contexts": [{"name": "nassync-local",
                          "context": {"cluster": "nassync-local", "user": user}}],
            "current-context": "nassync-local",
        }
        path.write_text(json.dumps(config, indent=2))
        path.chmod(0o600)

    def _write_kubeconfigs(self, state: ClusterState) -> None:
        self._kubeconfig("admin", self.kubeconfig)
        self._kubeconfig("controller-manager", self.state_dir / "controller-manager.kubeconfig")

    def _start_controller_manager(self, bins: binaries.Binaries, state: ClusterState) -> None:
        self._spawn(state, "kube-controller-manager", [
            str(bins.kube_controller_manager),
            f"--kubeconfig={self.state_dir / 'controller-manager.kubeconfig'}",
            "--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0",
            f"--controllers={_CONTROLLERS}",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            "--use-service-account-credentials=true", "--v=1",
        ])

    def _start_node(self, state: ClusterState) -> None:
        self._spawn(state, "process-node", [
            sys.executable, "-m", "nassync_dev.node", "--state-dir", str(self.state_dir),
            "--name", NODE_NAME, "--port", str(state.kubelet_port),
        ])

    def _kubectl(self, bins: binaries.Binaries, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(bins.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
                              capture_output=True, text=True, timeout=20)

    def _wait_ready(self, bins: binaries.Binaries, *, timeout: float) -> None:
        wait_for(lambda: self._kubectl(bins, "get", "serviceaccount", "default",
                                       "-n", "default").returncode == 0,
                 timeout=timeout, what="kube-controller-manager (ServiceAccount default/default)")
        wait_for(lambda: self._kubectl(
            bins, "get", "node", NODE_NAME, "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}").stdout == "True",
            timeout=timeout, what=f"node {NODE_NAME} Ready")

    def down(self) -> None:
        if any(n in self._load().pids for n in KUBELET_NODE_PROCESSES) or (self.state_dir / "kubelet-node").exists():
            self.stop_kubelet_node()
        state = self._load()
        # Reverse start order: the node first, so no container outlives its apiserver.
        for name in ("process-node", "kube-controller-manager", "kube-apiserver", "etcd"):
            pid = state.pids.get(name)
            if pid is None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        if state.etcd_data:
            shutil.rmtree(state.etcd_data, ignore_errors=True)
        if self._state_file.exists():
            self._save(ClusterState())
