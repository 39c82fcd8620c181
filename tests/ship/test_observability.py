"""The Grafana dashboard and the PrometheusRule query only metrics the operator exports."""

from __future__ import annotations

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY
from tests.ship.shiplib import CHART, METRIC_RE, docs, one, render

import nassync.controller.metrics  # noqa: F401  (registers the collectors)

DASHBOARD = CHART / "dashboards" / "nassync.json"


def exported_series() -> set[str]:
    """Series names nassync exports, from the collectors registered by metrics.py."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("nassync_"):
            continue
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs: list[str] = []
    for panel in dashboard["panels"]:
        exprs += [t["expr"] for t in panel.get("targets", [])]
        for inner in panel.get("panels", []):
            exprs += [t["expr"] for t in inner.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def rule_exprs(*sets: str) -> dict[str, str]:
    rule = one(docs(render("prometheusRule.enabled=true", *sets)), "PrometheusRule")
    return {r["alert"]: r["expr"] for group in rule["spec"]["groups"] for r in group["rules"]}


def test_exported_series_are_what_metrics_py_defines() -> None:
    series = exported_series()
    # A sanity anchor, so that a broken REGISTRY walk cannot make every check below vacuous.
    assert {
        "nassync_syncjobs",
        "nassync_failures_total",
        "nassync_pushed_bytes_total",
        "nassync_step_duration_seconds_bucket",
        "nassync_oldest_unverified_run_seconds",
    } <= series


def test_dashboard_parses_and_queries_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = dashboard_exprs(dashboard)
    assert exprs and all(e.strip() for e in exprs)
    used = {m for e in exprs for m in METRIC_RE.findall(e)}
    assert used <= exported_series(), f"unknown metrics in the dashboard: {sorted(used - exported_series())}"
    joined = "\n".join(exprs)
    for wanted in (
        "nassync_syncjobs",
        "rate(nassync_pushed_bytes_total",
        "nassync_failures_total",
        "nassync_oldest_unverified_run_seconds",
        "nassync_cleanup_freed_bytes_total",
        "nassync_queue_depth",
        "nassync_active_movers",
        "nassync_step_duration_seconds_bucket",
        "nassync_copies",
        "nassync_replica_failures_total",
    ):
        assert wanted in joined, f"no panel queries {wanted}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert dashboard["uid"] == "nassync-overview"


def test_dashboard_configmap_carries_the_file_with_the_sidecar_label() -> None:
    assert not [d for d in docs(render()) if d["kind"] == "ConfigMap"], "dashboards are opt-in"
    cm = one(docs(render("dashboards.enabled=true")), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["nassync.json"]) == json.loads(DASHBOARD.read_text())


def test_alerts_query_only_exported_metrics_and_follow_the_values() -> None:
    exprs = rule_exprs()
    assert set(exprs) == {
        "NassyncRunUnverifiedTooLong",
        "NassyncFailuresRising",
        "NassyncSyncJobFailed",
        "NassyncSyncJobBlocked",
        "NassyncReplicaGivenUp",
        "NassyncReconcileErrors",
    }
    used = {m for e in exprs.values() for m in METRIC_RE.findall(e)}
    assert used <= exported_series(), f"unknown metrics in alerts: {sorted(used - exported_series())}"
    assert (
        exprs["NassyncRunUnverifiedTooLong"]
        == "max by (namespace, target) (nassync_oldest_unverified_run_seconds) > 86400"
    )
    assert exprs["NassyncFailuresRising"] == "sum by (namespace, target) (increase(nassync_failures_total[1h])) > 3"
    assert exprs["NassyncSyncJobFailed"] == 'sum by (namespace, target) (nassync_syncjobs{phase="Failed"}) > 0'

    tuned = rule_exprs("alerts.oldestUnverifiedHours=1.5", "alerts.failuresPerHour=10")
    assert tuned["NassyncRunUnverifiedTooLong"].endswith("> 5400")
    assert tuned["NassyncFailuresRising"].endswith("> 10")


def test_alert_annotations_keep_prometheus_templates() -> None:
    rule = one(docs(render("prometheusRule.enabled=true", "alerts.failedFor=30m")), "PrometheusRule")
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert rules["NassyncSyncJobFailed"]["for"] == "30m"
    assert rules["NassyncSyncJobFailed"]["labels"]["severity"] == "critical"
    for name, r in rules.items():
        # Helm must leave Prometheus' own {{ $labels.x }} / {{ $value }} templates intact.
        text = r["annotations"]["summary"] + r["annotations"]["description"]
        assert "{{ $labels." in text or "{{ $value" in text, name
    assert "{{ $labels.target }}" in rules["NassyncRunUnverifiedTooLong"]["annotations"]["summary"]


@pytest.mark.parametrize("phase", ["Failed", "Blocked"])
def test_phase_alerts_name_real_phases(phase: str) -> None:
    from nassync.api.syncjob import Phase

    assert phase in {str(p) for p in Phase}
    assert f'phase="{phase}"' in "\n".join(rule_exprs().values())
