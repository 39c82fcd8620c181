"""The few Kubernetes API calls the operator makes, behind one small interface.

`Kube` is everything the reconciler may do to the cluster; `ApiKube` does it
with the kubernetes client, and the unit tests use a fake (tests/unit/fake_kube.py),
so the reconcile loop is tested without an apiserver (as the CronJob
controller tests its loop). Keeping every call here also makes the operator's
RBAC auditable: each verb the chart's ClusterRole grants is used by a method
of `ApiKube`, and nothing else in the operator talks to the API.

Raw objects cross module lines as the TypedDicts below: only the fields the
operator reads are named.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any, Protocol, TypedDict

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from nassync.api.common import GROUP, VERSION

log = logging.getLogger("nassync.kube")

SYNCJOBS = "syncjobs"
SYNCTARGETS = "synctargets"


class ObjectMeta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    resourceVersion: str
    creationTimestamp: str
    deletionTimestamp: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[dict[str, Any]]


class Body(TypedDict, total=False):
    """A Kubernetes object as the API returns it (SyncJob, SyncTarget, Job, Pod)."""

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: dict[str, Any]
    status: dict[str, Any]


class Kube(Protocol):
    """What the reconciler does to the cluster."""

    def get_target(self, namespace: str, name: str) -> Body | None: ...
    def list_syncjobs(self, namespace: str) -> list[Body]: ...
    def list_target_syncjobs(self, namespace: str, target: str) -> list[Body]: ...
    def delete_syncjob(self, namespace: str, name: str, *, uid: str, resource_version: str) -> bool: ...
    def replace_syncjob_status(self, body: Body) -> bool: ...
    def patch_target_status(self, namespace: str, name: str, status: dict[str, Any]) -> None: ...
    def list_jobs(self, namespace: str, selector: str) -> list[Body]: ...
    def list_pods(self, namespace: str, selector: str) -> list[Body]: ...
    def create_job(self, body: dict[str, Any]) -> bool: ...
    def delete_job(self, namespace: str, name: str) -> None: ...
    def list_events(self, namespace: str, involved: str) -> list[dict[str, Any]]: ...
    def pod_log_tail(self, namespace: str, pod: str, *, lines: int = 20) -> str: ...
    def secret_keys(self, namespace: str, name: str, *, fresh: bool = False) -> frozenset[str] | None: ...
    def emit_event(self, involved: Body, *, type_: str, reason: str, message: str) -> None: ...


def load_config() -> None:
    """In-cluster service-account credentials when in a pod, else the kubeconfig."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


class ApiKube:
    """`Kube` through the kubernetes client (in-cluster credentials or the kubeconfig)."""

    def __init__(self) -> None:
        self.core = client.CoreV1Api()
        self.batch = client.BatchV1Api()
        self.custom = client.CustomObjectsApi()

    # custom resources ------------------------------------------------------
    def get_target(self, namespace: str, name: str) -> Body | None:
        try:
            obj: Body = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, namespace, SYNCTARGETS, name)
            return obj
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def list_syncjobs(self, namespace: str) -> list[Body]:
        items: list[Body] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, namespace, SYNCJOBS)["items"]
        return items

    def delete_syncjob(self, namespace: str, name: str, *, uid: str, resource_version: str) -> bool:
        """Delete one SyncJob, only if it is still the object judged (uid and resourceVersion preconditions)."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(
            uid=uid, resource_version=resource_version or None))
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, SYNCJOBS, name, body=options)
            return True
        except ApiException as e:
            if e.status in (404, 409):
                return False
            raise

    def list_target_syncjobs(self, namespace: str, target: str) -> list[Body]:
        """The SyncJobs of one target (spec.targetRef.name)."""
        return [b for b in self.list_syncjobs(namespace)
                if ((b.get("spec") or {}).get("targetRef") or {}).get("name") == target]

    def replace_syncjob_status(self, body: Body) -> bool:
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
    def list_jobs(self, namespace: str, selector: str) -> list[Body]:
        resp = self.batch.list_namespaced_job(namespace, label_selector=selector,
                                              _preload_content=False)
        items: list[Body] = json.loads(resp.data)["items"]
        return items

    def list_pods(self, namespace: str, selector: str) -> list[Body]:
        resp = self.core.list_namespaced_pod(namespace, label_selector=selector,
                                             _preload_content=False)
        items: list[Body] = json.loads(resp.data)["items"]
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

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a mover Job with foreground propagation: it stays visible until its pods are gone."""
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Foreground",
                                             _preload_content=False)
        except ApiException as e:
            if e.status != 404:
                raise

    def list_events(self, namespace: str, involved: str) -> list[dict[str, Any]]:
        """Events about one object (a mover Job or its pod), for saying why a pod did not start."""
        resp = self.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={involved}",
                                               _preload_content=False)
        events: list[dict[str, Any]] = json.loads(resp.data)["items"]
        return events

    def pod_log_tail(self, namespace: str, pod: str, *, lines: int = 20) -> str:
        try:
            text: str = self.core.read_namespaced_pod_log(pod, namespace, tail_lines=lines,
                                                          container="mover")
            return text
        except ApiException:
            return ""

    def secret_keys(self, namespace: str, name: str, *, fresh: bool = False) -> frozenset[str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        return frozenset((secret.data or {}).keys())

    # events -----------------------------------------------------------------
    def emit_event(self, involved: Body, *, type_: str, reason: str, message: str) -> None:
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
