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


def child_jobs(owner_uid: str, jobs: Iterable[Body], pods: Mapping[str, list[Body]]) -> dict[str, ChildJob]:
    """The mover Jobs controlled by the SyncJob with `owner_uid`, with finished ones' results."""
    children = {}
    for job in jobs:
        meta = job.get("metadata", {})
        if not any(ref.get("uid") == owner_uid for ref in meta.get("ownerReferences") or []):
            continue
        state = job_state(job)
        result = parse_result(pods.get(meta.get("name", ""), [])) if state != "Running" else None
        step = (meta.get("labels") or {}).get(names.LABEL_STEP, "push")
        children[meta["name"]] = ChildJob(name=meta["name"], step=step, state=state,  # type: ignore[arg-type]
                                          result=result)
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
