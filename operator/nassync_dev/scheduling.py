"""Which pods the process node takes: the scheduler's filters that pods here rely on.

A pod that names another node (nodeSelector, required node affinity) or does
not tolerate the node's taints must stay Pending, as it would on a real
cluster, so that tests of placement mean something.
"""

from __future__ import annotations

from typing import Any


def _match_expression(expr: dict[str, Any], labels: dict[str, str]) -> bool:
    key, op, values = expr["key"], expr["operator"], expr.get("values") or []
    if op == "In":
        return labels.get(key) in values
    if op == "NotIn":
        return labels.get(key) not in values
    if op == "Exists":
        return key in labels
    if op == "DoesNotExist":
        return key not in labels
    return False


def _tolerated(taint: dict[str, Any], tolerations: list[dict[str, Any]]) -> bool:
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t["key"] == taint["key"]:
                return True
        elif t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", ""):
            return True
    return False


def pod_fits(pod: dict[str, Any], *, node_name: str, labels: dict[str, str],
             taints: list[dict[str, Any]]) -> bool:
    """What the scheduler's filter plugins would say, for the parts pods here use."""
    return unfit_reason(pod, node_name=node_name, labels=labels, taints=taints) is None


def unfit_reason(pod: dict[str, Any], *, node_name: str, labels: dict[str, str],
                 taints: list[dict[str, Any]]) -> str | None:
    """None when the pod fits the node; else the scheduler's FailedScheduling wording for why not."""
    spec = pod.get("spec", {})
    if spec.get("schedulerName", "default-scheduler") != "default-scheduler":
        return "0/1 nodes are available: the pod names another scheduler."
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    tolerations = spec.get("tolerations") or []
    for taint in taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerated(taint, tolerations):
            shown = f"{taint['key']}: {taint.get('value', '')}" if taint.get("value") else taint["key"]
            return f"0/1 nodes are available: 1 node(s) had untolerated taint {{{shown}}}."
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required:
        fields = {"metadata.name": node_name}
        ok = False
        for term in required.get("nodeSelectorTerms", []):
            exprs = term.get("matchExpressions") or []
            field_exprs = term.get("matchFields") or []
            if all(_match_expression(e, labels) for e in exprs) and all(
                    _match_expression(e, fields) for e in field_exprs):
                ok = True
                break
        if not ok:
            return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
    return None
