"""End-to-end fixtures: CRDs installed, the operator running, loopback NAS endpoints.

Tests drive nassync only through `kubectl apply` of YAML and read what a user
reads (status, conditions, Events, the NAS directory). The operator runs as a
real process against the real local cluster; mover pods run on the process
node (host binaries instead of the image — the one mock, see docs/development.md).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nassync_dev.scenario import OperatorProcess
from nassync_dev.testing import Kubectl


@pytest.fixture(scope="session")
def operator(crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(crds.kubeconfig, tmp_path_factory.mktemp("operator") / "operator.log")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
