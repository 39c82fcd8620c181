"""`nassync-operator`: run the operator (in a pod, or in the foreground with `make run`)."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from pathlib import Path

import kopf
from prometheus_client import start_http_server

from nassync.controller import handlers
from nassync.controller.election import ElectionConfig
from nassync.controller.moverjob import DEFAULT_IMAGE
from nassync.logs import configure_logging

SA_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def _own_namespace() -> str:
    try:
        return Path(SA_NAMESPACE).read_text().strip() or "default"
    except OSError:
        return "default"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="nassync-operator", description=__doc__)
    p.add_argument("-n", "--namespace", action="append", default=[],
                   help="watch only this namespace (repeatable; globs allowed); default: all namespaces")
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("NASSYNC_METRICS_PORT", 8080)),
                   help="port of the Prometheus /metrics endpoint (0 disables it)")
    p.add_argument("--metrics-address", default=os.environ.get("NASSYNC_METRICS_ADDRESS", "0.0.0.0"))
    p.add_argument("--health-port", type=int, default=int(os.environ.get("NASSYNC_HEALTH_PORT", 8081)),
                   help="port of the liveness endpoint /healthz (0 disables it)")
    p.add_argument("--mover-image", default=os.environ.get("NASSYNC_MOVER_IMAGE", DEFAULT_IMAGE),
                   help="image for mover Jobs when a SyncTarget does not set spec.mover.image")
    p.add_argument("--webhook-port", type=int, default=int(os.environ.get("NASSYNC_WEBHOOK_PORT", 0)),
                   help="serve the validating admission webhook on this port (0: no webhook)")
    p.add_argument("--webhook-address", default=os.environ.get("NASSYNC_WEBHOOK_ADDRESS", "0.0.0.0"))
    p.add_argument("--webhook-cert", default=os.environ.get("NASSYNC_WEBHOOK_CERT"),
                   help="TLS certificate (PEM) of the webhook; default: a generated self-signed one")
    p.add_argument("--webhook-key", default=os.environ.get("NASSYNC_WEBHOOK_KEY"))
    p.add_argument("--webhook-host", default=os.environ.get("NASSYNC_WEBHOOK_HOST"),
                   help="host the apiserver reaches the webhook at, for --webhook-manage (e.g. 127.0.0.1)")
    p.add_argument("--webhook-manage", action="store_true",
                   default=os.environ.get("NASSYNC_WEBHOOK_MANAGE", "") == "true",
                   help="create the ValidatingWebhookConfiguration with a URL client config (development); "
                        "in a cluster the Helm chart owns a Service-referenced configuration instead")
    p.add_argument("--leader-elect", action="store_true",
                   default=os.environ.get("NASSYNC_LEADER_ELECT", "") == "true",
                   help="run as one of several replicas: only the holder of a coordination.k8s.io Lease "
                        "reconciles (the Helm chart sets this)")
    p.add_argument("--lease-namespace", default=os.environ.get("POD_NAMESPACE") or _own_namespace(),
                   help="namespace of the Lease (default: the pod's namespace)")
    p.add_argument("--lease-name", default=os.environ.get("NASSYNC_LEASE_NAME", "nassync-operator"))
    p.add_argument("--identity", default=os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}",
                   help="this replica's name in the Lease (default: the pod name)")
    p.add_argument("--log-format", choices=["json", "text"], default=os.environ.get("NASSYNC_LOG_FORMAT", "json"))
    p.add_argument("--log-level", default=os.environ.get("NASSYNC_LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(fmt=args.log_format, level=args.log_level)
    memo = handlers.OperatorMemo(default_image=args.mover_image, namespaces=list(args.namespace))
    if args.leader_elect:
        memo.election = ElectionConfig(namespace=args.lease_namespace, identity=args.identity,
                                       name=args.lease_name)
    if args.webhook_port:
        from nassync.controller import webhook  # noqa: F401  (registers the admission handler)

        memo.webhook = handlers.WebhookConfig(
            port=args.webhook_port, address=args.webhook_address, host=args.webhook_host,
            certfile=args.webhook_cert, keyfile=args.webhook_key, manage=args.webhook_manage)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.metrics_address)
    liveness = f"http://0.0.0.0:{args.health_port}/healthz" if args.health_port else None
    logging.getLogger("nassync.operator").info(
        "starting", extra={"namespaces": args.namespace or ["*"], "metricsPort": args.metrics_port})
    kopf.run(
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=list(args.namespace),
        liveness_endpoint=liveness,
        memo=memo,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
