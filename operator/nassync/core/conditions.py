"""Status conditions, following the Kubernetes API conventions.

A condition is a typed, dated observation (`type`, `status`, `reason`,
`message`, `lastTransitionTime`, `observedGeneration`). Tools such as
`kubectl wait --for=condition=Verified`, Argo CD health checks and dashboards
rely on two rules that are easy to break by rebuilding the list every time:

- `lastTransitionTime` changes only when `status` changes (a new reason or
  message is an update, not a transition), so "Verified since ..." stays true;
- each type appears at most once, and types keep their position in the list
  so status patches stay small and diffs readable.

Reasons are CamelCase single words (`HardFindings`, `WaitingForSlot`), messages
are sentences for humans. `set_condition` never mutates its input.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final, Literal

from nassync.api.common import Condition, find_condition

ConditionStatus = Literal["True", "False", "Unknown"]

GATED: Final = "Gated"
PUSHED: Final = "Pushed"
VERIFIED: Final = "Verified"
CLEANED: Final = "Cleaned"
FAILED: Final = "Failed"
SUSPENDED: Final = "Suspended"
REPLICATED: Final = "Replicated"  # only on SyncJobs whose target has spec.replicas

TYPES: Final = (GATED, PUSHED, VERIFIED, CLEANED, FAILED, SUSPENDED, REPLICATED)


def set_condition(
    conditions: Sequence[Condition],
    *,
    type: str,  # shadows the builtin on purpose: the API field is `type`
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """A copy of `conditions` with condition `type` set as given.

    `lastTransitionTime` is `now` for a new condition or a changed status, and
    kept otherwise.
    """
    old = find_condition(list(conditions), type)
    changed = old is None or old.status != status
    new = Condition(
        type=type,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=now if changed or old is None else old.last_transition_time,
        observed_generation=generation,
    )
    if old is None:
        return [*(c.model_copy() for c in conditions), new]
    return [new if c.type == type else c.model_copy() for c in conditions]


def is_true(conditions: Sequence[Condition], type: str) -> bool:
    """True when condition `type` is present with status True."""
    found = find_condition(list(conditions), type)
    return found is not None and found.status == "True"


def remove_condition(conditions: Sequence[Condition], type: str) -> list[Condition]:
    """A copy of `conditions` without condition `type`."""
    return [c.model_copy() for c in conditions if c.type != type]
