"""Fault tests: each module gets its own control plane, operator and NAS.

These tests SIGKILL operators, restart the apiserver and etcd, restart the node
agent and stop NAS servers, so nothing they touch may be shared with another
test: `cluster`, `crds` and `operator` are overridden here with module scope
(a private LocalCluster per test module; under pytest-xdist `--dist loadfile`
a module runs on one worker). Every test ends by checking the ground truth on
disk: the NAS copy's SHA-256s against the run's, local files intact unless a
verified cleanup removed them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from nassync_dev.cluster import LocalCluster
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, install_crds
from nassync_dev.testing import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.nas, pytest.mark.faults]


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A control plane of this module's own, so that killing parts of it harms no other test."""
    local = LocalCluster(tmp_path_factory.mktemp("faults-cluster"))
    local.up()
    try:
        yield local
    finally:
        local.down()


@pytest.fixture(scope="module")
def cluster(local_cluster: LocalCluster) -> Kubectl:
    return Kubectl(local_cluster.kubeconfig)


@pytest.fixture(scope="module")
def crds(cluster: Kubectl) -> Kubectl:
    return install_crds(cluster)


@pytest.fixture(scope="module")
def operator(crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    with OperatorProcess(crds.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log") as proc:
        yield proc


@pytest.fixture
def own_nas(tmp_path: Path) -> Iterator[RcloneSftpNas]:
    """A NAS this test may stop, freeze or fill without disturbing other tests."""
    with RcloneSftpNas(workdir=tmp_path / "nas") as nas:
        yield nas
