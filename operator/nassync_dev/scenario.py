"""Building blocks of a nassync scenario: a run on disk, a target's Secret and SyncTarget, a SyncJob.

Shared by the end-to-end tests and `make demo`, so the demo shows exactly what
the tests prove.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from nassync.api.mover_io import MoverParams
from nassync_dev.binaries import REPO
from nassync_dev.cluster import free_port
from nassync_dev.nas import RcloneS3Nas, RcloneSftpNas, SshNas
from nassync_dev.testing import Kubectl, eventually

MOVER_UID = 65532  # the image's user; `make deps` gives the host the same passwd entry


@dataclass(frozen=True)
class Run:
    """A run directory below a source root, for tests that drive the mover CLI directly."""

    source_root: Path
    run_path: str

    @property
    def dir(self) -> Path:
        return self.source_root / self.run_path

    def write(self, relpath: str, data: bytes) -> Path:
        path = self.dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


LAB_CACHE_DIR = ".exlab-wizard"  # the lab app's cache dir name (creation.json, the manifest)


class _Nas(Protocol):
    def destination(self, *, path: str) -> Any: ...


def params_for(nas: _Nas, run: Run, step: str, *, owner: str = "lab/job-a/uid-a", **extra: Any) -> MoverParams:
    """The parameters of one mover step for `run` on `nas` (its `destination(path="/nas")` unless given)."""
    destination = extra.pop("destination", None) or nas.destination(path="/nas")
    return MoverParams.model_validate({
        "step": step,
        "sourceRoot": str(run.source_root),
        "runPath": run.run_path,
        "cacheDirName": LAB_CACHE_DIR,
        "destination": destination.model_dump(by_alias=True),
        "owner": owner,
        **extra,
    })


@contextmanager
def reachable_tmpdir(prefix: str) -> Iterator[Path]:
    """A temporary directory (0755) that a mover running as another uid can reach.

    pytest keeps /tmp/pytest-of-<user> private (0700), and every pytest session
    that starts (another xdist worker, a second run on the machine) makes it so
    again, so a path below it can turn unreachable for a non-root mover in the
    middle of a test.
    """
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def install_crds(cluster: Kubectl) -> Kubectl:
    """nassync's CRDs applied and established."""
    cluster("apply", "-f", str(REPO / "crds"))
    for crd in ("syncjobs.nassync.dev", "synctargets.nassync.dev"):
        cluster("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    return cluster


def write_run(root: Path, run_path: str, files: dict[str, bytes], *, age: float = 3600) -> Path:
    """Create a run directory owned by the mover's user, last modified `age` seconds ago."""
    run = root / run_path
    for rel, data in files.items():
        path = run / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    old = time.time() - age
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chown(dirpath, MOVER_UID, MOVER_UID)
        for name in filenames:
            os.chown(os.path.join(dirpath, name), MOVER_UID, MOVER_UID)
    for dirpath, _dirnames, filenames in os.walk(run, topdown=False):
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (old, old))
        os.utime(dirpath, (old, old))
    return run


def _secret(name: str, data: dict[str, bytes]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def sftp_rclone_secret(ns: Kubectl, nas: RcloneSftpNas, secret: str) -> None:
    """Apply Secret `secret`: an rclone config for the loopback sftp NAS, with its key and known_hosts."""
    conf = (f"[nas]\ntype = sftp\nhost = 127.0.0.1\nport = {nas.port}\nuser = root\n"
            "key_file = /var/run/nassync/secret/ssh-privatekey\n"
            "known_hosts_file = /var/run/nassync/secret/known_hosts\n")
    ns.apply(_secret(secret, {
        "rclone.conf": conf.encode(),
        "ssh-privatekey": nas.client_key.private_path.read_bytes(),
        "known_hosts": nas.known_hosts.read_bytes()}))


def rclone_target(ns: Kubectl, nas: RcloneSftpNas, *, name: str, source: Path, nas_path: str,
                  spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """Apply a Secret and an rclone SyncTarget pointing at the loopback sftp NAS."""
    sftp_rclone_secret(ns, nas, f"{name}-rclone")
    body = target_body(name, source, {"rclone": {
        # rclone serve sftp serves nas.root as "/".
        "remote": "nas", "path": "/" + nas_path.strip("/"),
        "configSecretRef": {"name": f"{name}-rclone", "key": "rclone.conf"}}}, spec)
    ns.apply(body)
    return body


def sftp_replica(ns: Kubectl, nas: RcloneSftpNas, *, name: str, nas_path: str, **fields: Any) -> dict[str, Any]:
    """A spec.replicas[] entry on a (second) loopback sftp NAS, its Secret applied."""
    sftp_rclone_secret(ns, nas, f"replica-{name}")
    return {"name": name, "destination": {"rclone": {
        "remote": "nas", "path": "/" + nas_path.strip("/"), "configSecretRef": {"name": f"replica-{name}"}}},
        **fields}


def s3_replica(ns: Kubectl, s3: RcloneS3Nas, *, name: str, path: str, **fields: Any) -> dict[str, Any]:
    """A spec.replicas[] entry in the loopback S3 server's bucket, its Secret (rclone config) applied."""
    ns.apply(_secret(f"replica-{name}", {"rclone.conf": s3.config_path.read_bytes()}))
    destination = s3.destination(path=path)
    return {"name": name, "destination": {"rclone": {
        "remote": destination.remote, "path": destination.path, "configSecretRef": {"name": f"replica-{name}"}}},
        **fields}


def rsync_destination(ns: Kubectl, nas: SshNas, *, secret: str, nas_path: str) -> dict[str, Any]:
    """An rsync destination block on the loopback sshd, its Secret (key, known_hosts) applied."""
    ns.apply(_secret(secret, {
        "ssh-privatekey": nas.client_key.private_path.read_bytes(),
        "known_hosts": nas.known_hosts.read_bytes()}))
    return {"rsync": {"host": "127.0.0.1", "port": nas.port, "user": nas.user,
                      "path": str(nas.root / nas_path.strip("/")), "sshSecretRef": {"name": secret}}}


def rsync_target(ns: Kubectl, nas: SshNas, *, name: str, source: Path, nas_path: str,
                 spec: dict[str, Any] | None = None) -> dict[str, Any]:
    body = target_body(name, source, rsync_destination(ns, nas, secret=f"{name}-ssh", nas_path=nas_path), spec)
    ns.apply(body)
    return body


def rsync_replica(ns: Kubectl, nas: SshNas, *, name: str, nas_path: str, **fields: Any) -> dict[str, Any]:
    """A spec.replicas[] entry on the loopback sshd (rsync over ssh), its Secret applied."""
    return {"name": name, "destination": rsync_destination(ns, nas, secret=f"replica-{name}", nas_path=nas_path),
            **fields}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def target_body(name: str, source: Path, destination: dict[str, Any],
                spec: dict[str, Any] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "nassync.dev/v1alpha1", "kind": "SyncTarget", "metadata": {"name": name},
            "spec": {"source": {"volume": {"hostPath": {"path": str(source)}}},
                     "destination": destination,
                     "gate": {"quietPeriod": "0s"},
                     "retry": {"maxAttempts": 5, "backoffSeconds": [2, 4, 8]},
                     "cleanup": {"enabled": True, "minVerifyPasses": 1, "minAgeAfterVerify": "0s",
                                 "reverifyInterval": "5s"}}}
    _merge(body["spec"], spec or {})
    return body


def syncjob(name: str, target: str, run_path: str, **spec: Any) -> str:
    return yaml.safe_dump({"apiVersion": "nassync.dev/v1alpha1", "kind": "SyncJob",
                           "metadata": {"name": name},
                           "spec": {"targetRef": {"name": target}, "runPath": run_path, **spec}})


class OperatorProcess:
    def __init__(self, kubeconfig: Path, log_path: Path, *, extra_args: tuple[str, ...] = ()) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.extra_args = extra_args
        self.metrics_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("nassync-operator")),
             "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port),
             "--metrics-address", "127.0.0.1", "--log-level", "INFO", *self.extra_args],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        eventually(self._healthy, timeout=60, what="operator liveness endpoint")

    def _healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"operator exited; log:\n{self.log_path.read_text()[-3000:]}")
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as r:
            return bool(r.status == 200)

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, as when a node dies."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())
