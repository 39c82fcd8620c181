"""Reading what the cluster shows about mover Jobs: their state, result and progress.

The decision core works on plain values (`ChildJob`, `MoverProgress`); this
module turns raw Job and Pod objects and pod log lines into those values. It
decides nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from nassync.api.common import InvalidTime, parse_time
from nassync.api.mover_io import MoverResult
from nassync.api.syncjob import MoverJobState, Progress
from nassync.controller.kube import Body
from nassync.core import names
from nassync.core.decide import ChildJob

log = logging.getLogger("nassync.observe")

MOVER_CONTAINER = "mover"


def job_state(job: Body) -> MoverJobState:
    """Running until the Job controller marks the Job Complete or Failed."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Succeeded"
        if cond.get("type") == "Failed":
            return "Failed"
    return "Running"


def _terminated(pod: Body) -> dict[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == MOVER_CONTAINER and "terminated" in (cs.get("state") or {}):
            terminated: dict[str, Any] = cs["state"]["terminated"]
            return terminated
    return None


def parse_result(pods: Iterable[Body]) -> MoverResult | None:
    """The mover's JSON result from its termination message, if any pod left one."""
    for pod in pods:
        term = _terminated(pod)
        if term and term.get("message"):
            try:
                return MoverResult.model_validate_json(term["message"])
            except ValidationError:
                log.warning("pod %s left a termination message that is not a mover result",
                            pod.get("metadata", {}).get("name"))
    return None


def pods_by_job(pods: Iterable[Body]) -> dict[str, list[Body]]:
    """Pods grouped by the `job-name` label the Job controller gives them."""
    grouped: dict[str, list[Body]] = {}
    for pod in pods:
        job_name = (pod.get("metadata", {}).get("labels") or {}).get("job-name")
        if job_name:
            grouped.setdefault(job_name, []).append(pod)
    return grouped


def _failed_condition(job: Body) -> dict[str, Any] | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Failed", "FailureTarget") and cond.get("status") == "True":
            return dict(cond)
    return None


def started(job: Body, pods: Iterable[Body]) -> bool:
    """Whether a pod of this Job ever ran a container (ready, finished, or seen running)."""
    status = job.get("status") or {}
    if status.get("ready") or status.get("succeeded") or status.get("failed") or job_state(job) != "Running":
        return True
    for pod in pods:
        if (pod.get("status") or {}).get("phase") in ("Running", "Succeeded", "Failed"):
            return True
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if "running" in (cs.get("state") or {}) or "terminated" in (cs.get("state") or {}):
                return True
    return False


def why_not_started(job: Body, pods: Iterable[Body], events: Iterable[Mapping[str, Any]]) -> str | None:
    """Why a Job's pod has not started, from its pods' conditions and states and the Events of both.

    FailedCreate (e.g. Pod Security refusing a hostPath volume) exists only as an
    Event on the Job; Unschedulable is the pod's PodScheduled condition;
    ErrImagePull and mount failures are container states, conditions and Events.
    """
    reasons: list[str] = []
    for event in sorted(events, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""),
                        reverse=True):
        if event.get("type") == "Warning" and event.get("reason"):
            reasons.append(f"{event['reason']}: {event.get('message', '')}".strip())
            break
    for pod in pods:
        status = pod.get("status") or {}
        for cs in status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting.get("reason") != "ContainerCreating":
                reasons.append(f"{waiting['reason']}: {waiting.get('message', '')}".strip(": "))
        for cond in status.get("conditions") or []:
            if cond.get("status") == "False" and cond.get("message"):
                reasons.append(f"{cond['message']} ({cond.get('reason') or cond.get('type')})")
        if status.get("message"):
            reasons.append(str(status["message"]))
        if not (pod.get("spec") or {}).get("nodeName") and not reasons:
            reasons.append("the pod is not scheduled to any node (no node matches spec.source.nodeSelector, "
                           "or a taint is not tolerated)")
    if not reasons and not list(pods):
        reasons.append("the Job has no pod yet")
    unique = list(dict.fromkeys(r for r in reasons if r))
    return "; ".join(unique)[:900] if unique else None


def _failure(job: Body, pods: Iterable[Body]) -> str | None:
    parts = []
    cond = _failed_condition(job)
    if cond is not None:
        parts.append(f"{cond.get('reason', 'Failed')}: {cond.get('message', '')}".strip(": "))
    for pod in pods:
        term = _terminated(pod)
        if term:
            parts.append(f"container mover {term.get('reason', 'terminated')}, exit code {term.get('exitCode')}"
                         + (f" ({term['message'][:200]})" if term.get("message") and not
                            str(term["message"]).startswith("{") else ""))
    return "; ".join(parts) if parts else None


def _created(job: Body) -> Any:
    try:
        return parse_time(job.get("metadata", {}).get("creationTimestamp"))
    except InvalidTime:
        return None


def child_jobs(owner_uid: str, jobs: Iterable[Body], pods: Mapping[str, list[Body]],
               events: Mapping[str, list[dict[str, Any]]] | None = None) -> dict[str, ChildJob]:
    """The mover Jobs controlled by the SyncJob with `owner_uid`, with finished ones' results.

    `events` (by Job name) are the Events of a Job and its pods, read only for
    Jobs whose pod has not started; they explain why.
    """
    children = {}
    for job in jobs:
        meta = job.get("metadata", {})
        if not any(ref.get("uid") == owner_uid for ref in meta.get("ownerReferences") or []):
            continue
        name = meta.get("name", "")
        own_pods = pods.get(name, [])
        state = job_state(job)
        result = parse_result(own_pods) if state != "Running" else None
        labels = meta.get("labels") or {}
        step = labels.get(names.LABEL_STEP, "push")
        ran = started(job, own_pods)
        cond = _failed_condition(job)
        children[name] = ChildJob(
            name=name, step=step, state=state, result=result,  # type: ignore[arg-type]
            started=ran, created_at=_created(job),
            waiting=None if ran else why_not_started(job, own_pods, (events or {}).get(name, [])),
            failure=_failure(job, own_pods) if state != "Running" else None,
            deadline_exceeded=cond is not None and cond.get("reason") == "DeadlineExceeded",
            replica=labels.get(names.LABEL_REPLICA) or None)
    return children


def running_pod(pods: Iterable[Body]) -> str | None:
    """The name of a Running pod among `pods`, if there is one."""
    return next((p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("phase") == "Running"), None)


def latest_progress(log_tail: str) -> dict[str, Any] | None:
    """The last `{"event": "progress", ...}` line a mover printed."""
    for line in reversed(log_tail.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "progress":
            return dict(record)
    return None


def progress_model(record: Mapping[str, Any]) -> Progress:
    """A progress line as the status field shows it."""
    done = int(record.get("bytes") or 0)
    total = int(record.get("totalBytes") or 0)
    percent = min(100, int(done * 100 / total)) if total else 0
    eta = record.get("etaSeconds")
    return Progress(bytes=done, total_bytes=total, percent=percent,
                    bytes_per_second=int(record.get("bytesPerSecond") or 0),
                    eta_seconds=int(eta) if eta is not None else None)
