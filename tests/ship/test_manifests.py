"""manifests/: the kustomize base has the chart's RBAC and pod spec; the dev overlay applies."""

from __future__ import annotations

import filecmp
from typing import Any

import pytest
import yaml
from tests.ship.shiplib import BASE, DEV_OVERLAY, REPO, Doc, docs, one, render, rule_set, to_yaml_stream

from nassync.controller import main as operator_main
from nassync_dev.testing import Kubectl


def kustomize(cluster: Kubectl, path: str) -> list[Doc]:
    return docs(cluster("kustomize", path, namespaced=False))


def test_base_crds_are_the_repository_crds() -> None:
    top = sorted(p.name for p in (REPO / "crds").glob("*.yaml"))
    assert sorted(p.name for p in (BASE / "crds").glob("*.yaml")) == top
    for name in top:
        assert filecmp.cmp(REPO / "crds" / name, BASE / "crds" / name, shallow=False), (
            f"manifests/base/crds/{name} differs from crds/{name}: cp crds/*.yaml manifests/base/crds/"
        )
    listed = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    assert sorted(r for r in listed if r.startswith("crds/")) == [f"crds/{n}" for n in top]


@pytest.mark.cluster
def test_base_has_the_charts_rbac_and_operator_pod(cluster: Kubectl) -> None:
    base = kustomize(cluster, str(BASE))
    chart = docs(render("webhook.enabled=false"))
    assert {d["kind"] for d in base} == {
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "Role",
        "RoleBinding",
        "PodDisruptionBudget",
    }
    assert one(base, "Namespace")["metadata"]["name"] == "nassync-system"
    for kind in ("ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Deployment", "Service", "Role",
                 "RoleBinding", "PodDisruptionBudget"):
        assert [d["metadata"]["name"] for d in base if d["kind"] == kind] == [
            d["metadata"]["name"] for d in chart if d["kind"] == kind
        ], kind
    assert rule_set(one(base, "ClusterRole")["rules"]) == rule_set(one(chart, "ClusterRole")["rules"])
    assert one(base, "ClusterRoleBinding")["subjects"] == one(chart, "ClusterRoleBinding")["subjects"]
    base_pod, chart_pod = (one(x, "Deployment")["spec"] for x in (base, chart))
    assert base_pod == chart_pod, "manifests/base/deployment.yaml drifted from the chart (webhook.enabled=false)"
    assert one(base, "Service")["spec"] == one(chart, "Service")["spec"]
    assert one(base, "Role")["rules"] == one(chart, "Role")["rules"]
    assert one(base, "PodDisruptionBudget")["spec"] == one(chart, "PodDisruptionBudget")["spec"]


def _retarget(items: list[Doc], namespace: str) -> tuple[list[Doc], list[Doc]]:
    """(cluster-scoped documents, namespaced documents moved into `namespace`)."""
    cluster_scoped = [d for d in items if "namespace" not in d["metadata"]]
    namespaced: list[Doc] = []
    for d in items:
        if "namespace" in d["metadata"]:
            moved: dict[str, Any] = yaml.safe_load(yaml.safe_dump(d))
            moved["metadata"]["namespace"] = namespace
            namespaced.append(moved)
    return cluster_scoped, namespaced


@pytest.mark.cluster
def test_dev_overlay_is_accepted_by_the_apiserver(ns: Kubectl, cluster: Kubectl) -> None:
    items = kustomize(cluster, str(DEV_OVERLAY))
    assert {d["metadata"]["name"] for d in items if d["kind"] == "Namespace"} == {"nassync-system", "nassync-dev"}
    assert all(d["metadata"]["namespace"] == "nassync-system" for d in items if "namespace" in d["metadata"])
    c = one(items, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    args = operator_main.parse_args(c["args"])
    assert args.namespace == ["nassync-dev"] and args.mover_image == c["image"] == "nassync:dev"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert (ports["metrics"], ports["health"]) == (args.metrics_port, args.health_port)
    # Watching named namespaces: kopf needs to list/watch Namespaces (dev-only extra ClusterRole).
    extra = one(items, "ClusterRole", "nassync-operator-namespaces")
    assert rule_set(extra["rules"]) == {("", "namespaces"): frozenset({"list", "watch"})}

    # A server-side dry run cannot create objects inside a namespace that the same
    # dry run only pretends to create, so the namespaced objects are checked in
    # this test's namespace; cluster-scoped ones (Namespaces, CRDs, RBAC) as they are.
    assert ns.namespace
    cluster_scoped, namespaced = _retarget(items, ns.namespace)
    out = cluster("apply", "--dry-run=server", "-f", "-", input=to_yaml_stream(cluster_scoped))
    assert out.count("(server dry run)") == len(cluster_scoped)
    assert sorted(d["kind"] for d in namespaced) == ["Deployment", "PodDisruptionBudget", "Role", "RoleBinding",
                                                     "Service", "ServiceAccount"]
    out = ns("apply", "--dry-run=server", "-f", "-", input=to_yaml_stream(namespaced))
    assert out.count("(server dry run)") == len(namespaced)
