"""`nassync-dev`: the local cluster from the command line (what the Makefile calls).

    nassync-dev cluster-up      start (or reuse) the cluster in .cache/cluster
                                (--node kubelet: also the real kubelet node, see kubelet_node.py)
    nassync-dev cluster-down    stop it; no process is left behind
    nassync-dev cluster-env     print `export` lines for KUBECONFIG and PATH
    nassync-dev build           build the Go binaries when missing
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

from nassync_dev import binaries
from nassync_dev.cluster import LocalCluster

DEFAULT_STATE = binaries.REPO / ".cache" / "cluster"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nassync-dev", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["cluster-up", "cluster-down", "cluster-env", "build"])
    parser.add_argument("--node", choices=["process", "kubelet"], default="process",
                        help="process: the process node only; kubelet: plus the real kubelet node")
    parser.add_argument("--state-dir", type=Path,
                        default=Path(os.environ.get("NASSYNC_CLUSTER_DIR", DEFAULT_STATE)))
    args = parser.parse_args(argv)
    cluster = LocalCluster(args.state_dir)
    if args.command == "build":
        binaries.ensure()
    elif args.command == "cluster-up":
        started = time.monotonic()
        kubelet = args.node == "kubelet"
        reused = cluster.is_up()
        cluster.up()
        verb = "already running" if reused else f"ready in {time.monotonic() - started:.1f}s"
        print(f"local cluster {verb}: {cluster.server} (KUBECONFIG={cluster.kubeconfig})",
              file=sys.stderr)
        if kubelet:
            started = time.monotonic()
            node_reused = cluster.kubelet_node_up()
            cluster.up(kubelet_node=True)
            verb = "already running" if node_reused else f"Ready in {time.monotonic() - started:.1f}s"
            print(f"kubelet node localhost {verb} (containerd, runc, kubelet; image imported)", file=sys.stderr)
    elif args.command == "cluster-down":
        cluster.down()
        print("local cluster stopped", file=sys.stderr)
    else:
        for key, value in cluster.env().items():
            print(f"export {key}={shlex.quote(value)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
