"""Where the Go-built control-plane binaries live, and building them when missing.

The versions are whatever `tools/*/go.mod` pins; the binaries sit in a per-version
directory under `~/.cache/nassync/bin` (override with NASSYNC_CACHE) so a fresh
clone on a machine that built once starts in seconds, and bumping a pin builds
the new version next to the old one.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"


def cache_dir() -> Path:
    return Path(os.environ.get("NASSYNC_CACHE", Path.home() / ".cache" / "nassync"))


def _pinned(module: str, go_mod: Path) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise RuntimeError(f"{go_mod} does not pin {module}")
    return match.group(1)


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kubectl: Path
    helm: Path
    kubelet: Path
    kubernetes_version: str

    @property
    def path_dirs(self) -> list[Path]:
        """Directories to put first on PATH so this release's kubectl and helm win."""
        return [self.kubectl.parent, self.helm.parent]

    def missing(self) -> list[Path]:
        return [p for p in (self.etcd, self.kube_apiserver, self.kube_controller_manager,
                            self.kubectl, self.helm) if not os.access(p, os.X_OK)]


def locate() -> Binaries:
    bin_root = cache_dir() / "bin"
    k8s = _pinned("k8s.io/kubernetes", TOOLS / "k8s" / "go.mod")
    etcd = _pinned("go.etcd.io/etcd/server/v3", TOOLS / "etcd" / "go.mod")
    helm = _pinned("helm.sh/helm/v3", TOOLS / "helm" / "go.mod")
    kube_dir = bin_root / f"kubernetes-{k8s}"
    return Binaries(
        etcd=bin_root / f"etcd-{etcd}" / "etcd",
        kube_apiserver=kube_dir / "kube-apiserver",
        kube_controller_manager=kube_dir / "kube-controller-manager",
        kubectl=kube_dir / "kubectl",
        helm=bin_root / f"helm-{helm}" / "helm",
        kubelet=kube_dir / "kubelet",
        kubernetes_version=k8s,
    )


def ensure(*, kubelet: bool = False) -> Binaries:
    """Return the binaries, building the missing ones first (slow only the first time).

    `kubelet`: the kubelet node's binary is needed too (tools/build.sh builds it
    with the control plane)."""
    found = locate()
    if found.missing() or (kubelet and not os.access(found.kubelet, os.X_OK)):
        subprocess.run(["bash", str(TOOLS / "build.sh"), "all"], check=True)
    return locate()
