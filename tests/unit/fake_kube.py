"""An in-memory `Kube` (nassync.controller.kube): the reconcile loop without an apiserver.

It stores objects as plain dicts, records what the reconciler did (created
Jobs, status writes, Events) and lets a test play the Job controller by
finishing Jobs with a mover result.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from nassync.api.mover_io import MoverResult
from nassync.controller.kube import Body


@dataclass
class Event:
    kind: str
    name: str
    type: str
    reason: str
    message: str


@dataclass
class FakeKube:
    targets: dict[tuple[str, str], Body] = field(default_factory=dict)
    syncjobs: dict[tuple[str, str], Body] = field(default_factory=dict)
    secrets: dict[tuple[str, str], frozenset[str]] = field(default_factory=dict)
    jobs: dict[tuple[str, str], Body] = field(default_factory=dict)
    pods: dict[tuple[str, str], Body] = field(default_factory=dict)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    target_patches: list[dict[str, Any]] = field(default_factory=list)
    _version: int = 0

    # --- test setup ---------------------------------------------------------
    def add(self, body: Body) -> Body:
        self._version += 1
        body = copy.deepcopy(body)
        meta = body.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("generation", 1)
        meta.setdefault("creationTimestamp", f"2026-11-30T12:00:{self._version:02d}Z")
        meta["resourceVersion"] = str(self._version)
        key = (meta["namespace"], meta["name"])
        {"SyncTarget": self.targets, "SyncJob": self.syncjobs}[body["kind"]][key] = body
        return body

    def finish(self, name: str, result: MoverResult, *, namespace: str = "lab") -> None:
        """Play the Job controller: the Job's pod left `result` and the Job is Complete/Failed."""
        job = self.jobs[(namespace, name)]
        job["status"] = {"conditions": [{"type": "Complete" if result.ok else "Failed", "status": "True"}]}
        self.pods[(namespace, f"{name}-pod")] = {
            "metadata": {"name": f"{name}-pod", "namespace": namespace,
                         "labels": {**job["metadata"]["labels"], "job-name": name}},
            "status": {"phase": "Succeeded" if result.ok else "Failed", "containerStatuses": [
                {"name": "mover", "state": {"terminated": {"message": result.dump()}}}]}}

    def start_pod(self, name: str, *, log: str = "", namespace: str = "lab") -> None:
        """Play the node: the Job's pod runs and has printed `log`."""
        job = self.jobs[(namespace, name)]
        pod = f"{name}-pod"
        self.pods[(namespace, pod)] = {
            "metadata": {"name": pod, "namespace": namespace,
                         "labels": {**job["metadata"]["labels"], "job-name": name}},
            "status": {"phase": "Running"}}
        self.logs[(namespace, pod)] = log

    def syncjob(self, name: str, namespace: str = "lab") -> Body:
        return self.syncjobs[(namespace, name)]

    def status(self, name: str, namespace: str = "lab") -> dict[str, Any]:
        return self.syncjob(name, namespace).get("status") or {}

    def reasons(self, name: str) -> list[str]:
        return [e.reason for e in self.events if e.name == name]

    # --- Kube ----------------------------------------------------------------
    def get_target(self, namespace: str, name: str) -> Body | None:
        found = self.targets.get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list_syncjobs(self, namespace: str) -> list[Body]:
        return [copy.deepcopy(b) for (ns, _), b in self.syncjobs.items() if ns == namespace]

    def list_target_syncjobs(self, namespace: str, target: str) -> list[Body]:
        return [b for b in self.list_syncjobs(namespace)
                if ((b.get("spec") or {}).get("targetRef") or {}).get("name") == target]

    def replace_syncjob_status(self, body: Body) -> bool:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        stored = self.syncjobs.get(key)
        if stored is None or stored["metadata"]["resourceVersion"] != body["metadata"]["resourceVersion"]:
            return False
        self._version += 1
        stored["status"] = copy.deepcopy(body["status"])
        stored["metadata"]["resourceVersion"] = str(self._version)
        return True

    def patch_target_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.target_patches.append(copy.deepcopy(status))
        target = self.targets.get((namespace, name))
        if target is not None:
            target["status"] = {**(target.get("status") or {}), **copy.deepcopy(status)}

    def _selected(self, store: dict[tuple[str, str], Body], namespace: str, selector: str) -> list[Body]:
        wanted = dict(part.split("=", 1) for part in selector.split(","))
        return [copy.deepcopy(b) for (ns, _), b in store.items()
                if ns == namespace and all(b["metadata"].get("labels", {}).get(k) == v for k, v in wanted.items())]

    def list_jobs(self, namespace: str, selector: str) -> list[Body]:
        return self._selected(self.jobs, namespace, selector)

    def list_pods(self, namespace: str, selector: str) -> list[Body]:
        return self._selected(self.pods, namespace, selector)

    def create_job(self, body: dict[str, Any]) -> bool:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if key in self.jobs:
            return False
        self.jobs[key] = copy.deepcopy(body)  # type: ignore[assignment]
        return True

    deleted_jobs: list[str] = field(default_factory=list)
    job_events: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)

    def delete_syncjob(self, namespace: str, name: str, *, uid: str, resource_version: str) -> bool:
        stored = self.syncjobs.get((namespace, name))
        meta = stored["metadata"] if stored is not None else None
        if meta is None or meta["uid"] != uid or meta["resourceVersion"] != resource_version:
            return False
        del self.syncjobs[(namespace, name)]
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        self.deleted_jobs.append(name)
        self.jobs.pop((namespace, name), None)

    def list_events(self, namespace: str, involved: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(e) for e in self.job_events.get((namespace, involved), [])]

    def pod_log_tail(self, namespace: str, pod: str, *, lines: int = 20) -> str:
        return "\n".join(self.logs.get((namespace, pod), "").splitlines()[-lines:])

    def secret_keys(self, namespace: str, name: str, *, fresh: bool = False) -> frozenset[str] | None:
        return self.secrets.get((namespace, name))

    def emit_event(self, involved: Body, *, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(kind=involved.get("kind", "SyncJob"), name=involved["metadata"]["name"],
                                 type=type_, reason=reason, message=message))
