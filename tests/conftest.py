"""Session fixtures shared by the cluster and end-to-end tests.

`cluster` starts the real local control plane once per session (or reuses the
one KUBECONFIG points at, for fast local iteration: `eval "$(make -s
cluster-env)"` then `pytest tests/e2e`). `ns` gives each test a fresh namespace.
"""

from __future__ import annotations

import os
import ssl
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nassync_dev.cluster import LocalCluster
from nassync_dev.nas import RcloneSftpNas, SshNas
from nassync_dev.scenario import OperatorProcess, install_crds
from nassync_dev.testing import Kubectl


def _reachable(kubeconfig: Path) -> bool:
    """True when `kubeconfig` is one of our local clusters and its apiserver is ready."""
    try:
        import yaml

        cfg = yaml.safe_load(kubeconfig.read_text())
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"]
        ctx = ssl.create_default_context(cafile=cluster["certificate-authority"])
        ctx.load_cert_chain(user["client-certificate"], user["client-key"])
        with urllib.request.urlopen(cluster["server"] + "/readyz", context=ctx, timeout=2) as r:
            return bool(r.status == 200)
    except Exception:
        return False


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubectl]:
    existing = os.environ.get("KUBECONFIG")
    if existing and _reachable(Path(existing)):
        yield Kubectl(Path(existing))
        return
    local = LocalCluster(tmp_path_factory.mktemp("cluster"))
    local.up()
    try:
        yield Kubectl(local.kubeconfig)
    finally:
        local.down()


@pytest.fixture
def ns(cluster: Kubectl) -> Iterator[Kubectl]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster("create", "namespace", name)
    cluster.run("label", "namespace", name, "nassync.dev/test=true")
    try:
        yield cluster.in_namespace(name)
    finally:
        cluster.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def crds(cluster: Kubectl) -> Kubectl:
    """The cluster with nassync's CRDs installed and established."""
    return install_crds(cluster)


@pytest.fixture(scope="session")
def sftp_nas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneSftpNas]:
    """`rclone serve sftp` on loopback (SHA-256 capable), shared by the session."""
    with RcloneSftpNas(workdir=tmp_path_factory.mktemp("sftp-nas")) as nas:
        yield nas


@pytest.fixture(scope="session")
def ssh_nas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshNas]:
    """OpenSSH sshd with key-only auth on loopback, shared by the session."""
    with SshNas(workdir=tmp_path_factory.mktemp("ssh-nas")) as nas:
        yield nas


@pytest.fixture(scope="session")
def operator(crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    """The operator as a host process, one per session (e2e and kubelet-node tests share it:
    two operators would reconcile the same SyncJobs)."""
    with OperatorProcess(crds.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log") as proc:
        yield proc
