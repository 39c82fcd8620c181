"""A SyncTarget's status: readiness as a Ready condition, plus its movers and queue.

Pure: the reconciler computes the counts while deciding the target's SyncJobs
and writes whatever this returns. The Ready condition follows the API
conventions through core/conditions.py, so `lastTransitionTime` moves only
when readiness flips, and an Event is due exactly then.
"""

from __future__ import annotations

from datetime import datetime

from nassync.api.target import SyncTarget, SyncTargetStatus
from nassync.core import conditions as cond
from nassync.core.actions import EmitEvent
from nassync.core.readiness import Readiness

READY = "Ready"


def target_status(
    *,
    old: SyncTargetStatus,
    readiness: Readiness,
    target: SyncTarget | None,
    generation: int | None,
    active: int,
    queued: int,
    now: datetime,
) -> tuple[SyncTargetStatus, EmitEvent | None]:
    """The new status and, when readiness flipped (or is new), the Event to record."""
    status_text: cond.ConditionStatus = "True" if readiness.ready else "False"
    previous = old.condition(READY)
    conditions = cond.set_condition(
        old.conditions, type=READY, status=status_text, reason=readiness.reason,
        message=readiness.message, now=now, generation=generation)
    new = old.model_copy(update={
        "observed_generation": generation,
        "conditions": conditions,
        "active_movers": active,
        "queued": queued,
    })
    if target is not None:
        new = new.model_copy(update={"source": target.spec.source_summary(),
                                     "destination_type": target.spec.destination.type})
    event = None
    if previous is None or previous.status != status_text:
        event = EmitEvent(type="Normal" if readiness.ready else "Warning", reason=readiness.reason,
                          message=readiness.message)
    return new, event
