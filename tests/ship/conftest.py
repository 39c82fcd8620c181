"""Stub CRDs for the optional kinds the chart renders but the local cluster lacks.

The local control plane has no prometheus-operator and no cert-manager, so a
server-side dry run of a ServiceMonitor, PrometheusRule, Certificate or Issuer
would fail with "no matches for kind". These stubs define those kinds with a
structural schema of just the fields the chart sets (types checked, anything
else preserved), so the apiserver still validates the chart's documents. They
are applied idempotently (server-side apply, labelled nassync.dev/test-stub)
and left in place: tests running in parallel against the shared development
cluster may be using them. A real CRD of the same name is never replaced.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from nassync_dev.testing import Kubectl

_STR: dict[str, Any] = {"type": "string"}
_STRMAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


def _crd(group: str, kind: str, plural: str, version: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}", "labels": {"nassync.dev/test-stub": "true"}},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {"spec": {"x-kubernetes-preserve-unknown-fields": True, **spec}},
                        }
                    },
                }
            ],
        },
    }


STUB_CRDS = [
    _crd(
        "monitoring.coreos.com",
        "ServiceMonitor",
        "servicemonitors",
        "v1",
        {
            "type": "object",
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {"type": "object", "properties": {"matchLabels": _STRMAP}},
                "namespaceSelector": {"type": "object", "properties": {"matchNames": {"type": "array", "items": _STR}}},
                "endpoints": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "port": _STR,
                            "path": _STR,
                            "interval": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
                                "(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
                            },
                            "scrapeTimeout": _STR,
                        },
                    },
                },
            },
        },
    ),
    _crd(
        "monitoring.coreos.com",
        "PrometheusRule",
        "prometheusrules",
        "v1",
        {
            "type": "object",
            "properties": {
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": _STR,
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "properties": {
                                        "alert": _STR,
                                        "record": _STR,
                                        "for": _STR,
                                        "labels": _STRMAP,
                                        "annotations": _STRMAP,
                                        "expr": {"x-kubernetes-int-or-string": True},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
    ),
    _crd(
        "cert-manager.io",
        "Certificate",
        "certificates",
        "v1",
        {
            "type": "object",
            "required": ["secretName", "issuerRef"],
            "properties": {
                "secretName": _STR,
                "commonName": _STR,
                "duration": _STR,
                "renewBefore": _STR,
                "dnsNames": {"type": "array", "items": _STR},
                "privateKey": {
                    "type": "object",
                    "properties": {
                        "algorithm": {"type": "string", "enum": ["RSA", "ECDSA", "Ed25519"]},
                        "size": {"type": "integer"},
                        "rotationPolicy": {"type": "string", "enum": ["Never", "Always"]},
                    },
                },
                "issuerRef": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": _STR, "kind": _STR, "group": _STR},
                },
            },
        },
    ),
    _crd(
        "cert-manager.io",
        "Issuer",
        "issuers",
        "v1",
        {"type": "object", "properties": {"selfSigned": {"type": "object"}}},
    ),
]


@pytest.fixture(scope="session")
def stub_crds(cluster: Kubectl) -> Kubectl:
    for crd in STUB_CRDS:
        name = crd["metadata"]["name"]
        existing = cluster.run("get", "crd", name, "-o", "jsonpath={.metadata.labels}", check=False)
        if existing.returncode == 0 and "nassync.dev/test-stub" not in existing.stdout:
            continue  # a real CRD: validate against it instead
        cluster(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=nassync-ship-tests",
            "-f",
            "-",
            input=json.dumps(crd),
        )
        cluster("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    return cluster
