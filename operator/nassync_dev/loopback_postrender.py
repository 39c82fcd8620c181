"""Helm post-renderer: the chart's operator Deployment adapted to the loopback cluster, nothing else.

    helm install ... --post-renderer python3 \\
        --post-renderer-args -m --post-renderer-args nassync_dev.loopback_postrender \\
        --post-renderer-args <apiserver port>

A lab cluster gives the operator pod Service networking: it reaches the
apiserver at the `kubernetes` Service's ClusterIP, which the kubelet puts in
KUBERNETES_SERVICE_HOST. The local cluster has no kube-proxy and no pod
network, and test traffic may not leave 127.0.0.0/8, so on the kubelet node
the operator pod runs in the node's network namespace and is pointed at the
apiserver on 127.0.0.1, and the kubelet's probes go to 127.0.0.1 instead of
the pod IP (with hostNetwork that would be the machine's own address). The
chart's RBAC, ServiceAccount, security context, image, args and volumes stay
exactly as rendered.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml


def adapt(doc: dict[str, Any], apiserver_port: int) -> dict[str, Any]:
    if doc.get("kind") != "Deployment":
        return doc
    pod = doc["spec"]["template"]["spec"]
    pod["hostNetwork"] = True
    pod["dnsPolicy"] = "ClusterFirstWithHostNet"
    for container in pod["containers"]:
        env = [e for e in container.get("env") or [] if e["name"] not in (
            "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "NASSYNC_METRICS_ADDRESS")]
        env += [{"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                {"name": "KUBERNETES_SERVICE_PORT", "value": str(apiserver_port)},
                {"name": "NASSYNC_METRICS_ADDRESS", "value": "127.0.0.1"}]
        container["env"] = env
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if (container.get(probe) or {}).get("httpGet"):
                container[probe]["httpGet"]["host"] = "127.0.0.1"
    return doc


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    port = int(args[0])
    docs = [adapt(d, port) for d in yaml.safe_load_all(sys.stdin) if d]
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
