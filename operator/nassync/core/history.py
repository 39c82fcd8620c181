"""Which finished SyncJobs a target's history policy removes (spec.history), as a pure function.

A lab with 50 instruments makes ~90,000 SyncJobs a year. A SyncTarget may opt
in to keeping only the newest `keepFinished` finished ones and/or removing
them `deleteFinishedAfter` after they finished. "Finished" is narrow on
purpose: `Cleaned`, or `Verified` while the target's cleanup is disabled (the
end of the road for such a run). Never removed: a SyncJob in any other phase
(Failed and Blocked wait for a person), one with a mover recorded as running,
one annotated `nassync.dev/history=keep` (e.g. managed by Argo CD, which would
re-create it), or one being deleted. Deleting a SyncJob never touches data
(its mover Jobs go with it; the local run and the NAS copy stay).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from nassync.api.syncjob import Phase, SyncJob
from nassync.api.target import History

HISTORY_ANNOTATION = "nassync.dev/history"
KEEP = "keep"


@dataclass(frozen=True)
class Pruning:
    """The SyncJobs to delete now (name, uid, resourceVersion) and when to look again."""

    delete: tuple[tuple[str, str, str], ...]
    next_check: datetime | None


def finished_at(job: SyncJob, *, cleanup_enabled: bool) -> datetime | None:
    """When `job` finished, or None if it is not finished (and so never removed)."""
    status = job.status
    if status.mover_job is not None and status.mover_job.state == "Running":
        return None
    if status.phase == Phase.CLEANED:
        return status.cleaned_at or status.last_verified_at or status.verified_at
    if status.phase == Phase.VERIFIED and not cleanup_enabled:
        return status.verified_at
    return None


def prune(jobs: Iterable[SyncJob], *, policy: History, cleanup_enabled: bool, now: datetime) -> Pruning:
    if not policy.enabled:
        return Pruning((), None)
    done: list[tuple[datetime, SyncJob]] = []
    for job in jobs:
        if job.annotations.get(HISTORY_ANNOTATION) == KEEP or job.metadata.get("deletionTimestamp"):
            continue
        when = finished_at(job, cleanup_enabled=cleanup_enabled)
        if when is not None:
            done.append((when, job))
    done.sort(key=lambda item: (item[0], str(item[1].metadata.get("creationTimestamp") or ""), item[1].name),
              reverse=True)  # newest first
    doomed: dict[str, SyncJob] = {}
    if policy.keep_finished is not None:
        for _when, job in done[policy.keep_finished:]:
            doomed[job.uid] = job
    age = policy.delete_finished_after_seconds
    next_check: datetime | None = None
    if age is not None:
        for when, job in done:
            due = when + timedelta(seconds=age)
            if now >= due:
                doomed[job.uid] = job
            elif job.uid not in doomed and (next_check is None or due < next_check):
                next_check = due
    delete = tuple(sorted((j.name, j.uid, str(j.metadata.get("resourceVersion") or "")) for j in doomed.values()))
    return Pruning(delete, next_check)
