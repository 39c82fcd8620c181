"""The few Kubernetes API calls the operator makes, in one place.

Keeping them here keeps the reconciler readable and makes the operator's RBAC
auditable: every verb the chart's ClusterRole grants is used by a function in
this module, and nothing else in the operator talks to the API.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from nassync.api.common import GROUP, VERSION

log = logging.getLogger("nassync.kube")

SYNCJOBS = "syncjobs"
SYNCTARGETS = "synctargets"


def load_config() -> None:
    """In-cluster service-account credentials when in a pod, else the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class Kube:
    def __init__(self) -> None:
        self.core = client.CoreV1Api()
        self.batch = client.BatchV1Api()
        self.custom = client.CustomObjectsApi()

    # custom resources ------------------------------------------------------
    def get_target(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, SYNCTARGETS, name)
            return obj
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list_syncjobs(self, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, SYNCJOBS)["items"]
        return items

    def replace_syncjob_status(self, body: dict[str, Any]) -> bool:
        """PUT the status with the body's resourceVersion; False on a conflict."""
        meta = body["metadata"]
        try:
            self.custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], SYNCJOBS, meta["name"], body)
            return True
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise

    def patch_target_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, SYNCTARGETS, name, {"status": status})
        except ApiException as e:
            if e.status != 404:
                raise

    # mover jobs and pods ---------------------------------------------------
    def list_jobs(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        resp = self.batch.list_namespaced_job(namespace, label_selector=selector,
                                              _preload_content=False)
        items: list[dict[str, Any]] = json.loads(resp.data)["items"]
        return items

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        resp = self.core.list_namespaced_pod(namespace, label_selector=selector,
                                             _preload_content=False)
        items: list[dict[str, Any]] = json.loads(resp.data)["items"]
        return items

    def create_job(self, body: dict[str, Any]) -> bool:
        """Create a mover Job; True if created, False if it already existed (same name)."""
        try:
            self.batch.create_namespaced_job(body["metadata"]["namespace"], body)
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            raise

    def pod_log_tail(self, namespace: str, pod: str, *, lines: int = 20) -> str:
        try:
            text: str = self.core.read_namespaced_pod_log(pod, namespace, tail_lines=lines,
                                                          container="mover")
            return text
        except ApiException:
            return ""

    def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return set((secret.data or {}).keys())

    # events -----------------------------------------------------------------
    def emit_event(self, involved: dict[str, Any], *, type_: str, reason: str, message: str) -> None:
        meta = involved["metadata"]
        now = dt.datetime.now(dt.UTC)
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": involved.get("apiVersion", f"{GROUP}/{VERSION}"),
                               "kind": involved.get("kind", "SyncJob"), "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "type": type_, "reason": reason, "message": message[:1024],
            "source": {"component": "nassync-operator"},
            "reportingComponent": "nassync.dev/operator", "reportingInstance": "nassync-operator",
            "firstTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        }
        try:
            self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as e:  # an Event is best effort; never fail a step on it
            log.warning("could not record event %s on %s: %s", reason, meta["name"], e.reason)
