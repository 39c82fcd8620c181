"""End-to-end fixtures: CRDs installed, the operator running, loopback NAS endpoints.

Tests drive nassync only through `kubectl apply` of YAML and read what a user
reads (status, conditions, Events, the NAS directory). The operator runs as a
real process against the real local cluster; mover pods run on the process
node (host binaries instead of the image — the one mock, see docs/development.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nassync_dev.binaries import REPO
from nassync_dev.nas import RcloneSftpNas, SshNas
from nassync_dev.scenario import OperatorProcess
from nassync_dev.testing import Kubectl


@pytest.fixture(scope="session")
def crds(cluster: Kubectl) -> Kubectl:
    cluster("apply", "-f", str(REPO / "crds"))
    for crd in ("syncjobs.nassync.dev", "synctargets.nassync.dev"):
        cluster("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    return cluster


@pytest.fixture(scope="session")
def operator(crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(crds.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def sftp_nas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneSftpNas]:
    with RcloneSftpNas(workdir=tmp_path_factory.mktemp("sftp-nas")) as nas:
        yield nas


@pytest.fixture(scope="session")
def ssh_nas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshNas]:
    with SshNas(workdir=tmp_path_factory.mktemp("ssh-nas")) as nas:
        yield nas


