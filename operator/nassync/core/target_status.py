"""A SyncTarget's status: readiness as a Ready condition, plus its movers and queue.

Pure: the reconciler computes the counts while deciding the target's SyncJobs
and writes whatever this returns. The Ready condition follows the API
conventions through core/conditions.py, so `lastTransitionTime` moves only
when readiness flips, and an Event is due exactly then. An edit of the spec
while movers run gets an Event of its own: a running mover keeps the settings
it started with, which an admin who just changed the bandwidth would not guess.
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
) -> tuple[SyncTargetStatus, list[EmitEvent]]:
    """The new status and the Events to record: readiness flipped (or is new); the spec edited under
    running movers."""
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
    events = []
    if previous is None or previous.status != status_text:
        events.append(EmitEvent(type="Normal" if readiness.ready else "Warning", reason=readiness.reason,
                                message=readiness.message))
    edited = old.observed_generation is not None and generation is not None and generation > old.observed_generation
    if edited and old.active_movers:
        running = "1 running mover keeps the settings it" if old.active_movers == 1 else \
            f"{old.active_movers} running movers keep the settings they"
        events.append(EmitEvent(
            type="Normal", reason="SettingsChanged",
            message=f"spec changed (generation {generation}): the {running} started with; the next mover of "
                    "each SyncJob uses the new ones"))
    return new, events
