"""Kubelet-node fixtures: the image from `make image` and the real kubelet node joined to the session cluster.

`kubelet_node` reuses the node when the session's cluster already runs one
(`make cluster-up NODE=kubelet`, then `eval "$(make -s cluster-env)"`), and
otherwise starts it (and stops it at the end of the session). Every test here
carries the `kubelet` marker: `pytest -m "not kubelet"` skips them locally;
`make test` and CI run them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from nassync_dev import image
from nassync_dev.cluster import LocalCluster
from nassync_dev.kubelet_node import KubeletNode, placement
from nassync_dev.testing import Kubectl


@dataclass(frozen=True)
class Node:
    cluster: LocalCluster
    image: str

    def mover_spec(self) -> dict[str, Any]:
        """SyncTarget spec fragment: movers from the image, on the kubelet node, in its network namespace
        (the loopback NAS is reachable only there)."""
        where = placement()
        return {"source": {"nodeSelector": where["nodeSelector"], "tolerations": where["tolerations"]},
                "mover": {"image": self.image, "imagePullPolicy": "IfNotPresent", "hostNetwork": True}}


@pytest.fixture(scope="session")
def kubelet_node(cluster: Kubectl) -> Iterator[Node]:
    built = image.ensure_image()
    local = LocalCluster(cluster.kubeconfig.parent)
    started = not local.kubelet_node_up()
    if started:
        local.start_kubelet_node()
    else:  # a running node may hold an older image: import the current one (no-op when present)
        KubeletNode(local.state_dir).import_image(built)
    try:
        yield Node(cluster=local, image=built.name)
    finally:
        if started and local.kubelet_node_up():
            local.stop_kubelet_node()
