"""What the decision core asks the shell to do.

`decide()` never talks to Kubernetes; it returns a `Decision`: the SyncJob's
new status (the shell patches it), a few `Action`s (the shell executes them, in
order) and when to look again. Actions are frozen values so a test can compare
them and the shell can log them; they carry names, never secrets.

Executing a decision, the shell should create the mover Job first, then patch
the status, then emit the events. A `CreateMoverJob` whose name already exists
(HTTP 409 AlreadyExists) is the same Job, created before a restart or a failed
status patch (names are deterministic and owned by this SyncJob): treat it as
success. If the operator dies after creating the Job but before the patch, the
next `decide()` computes the same name, sees the Job among the children and
adopts it instead of asking for a second one. (Patching first would turn such
a crash into a "mover Job disappeared" failure and cost a retry attempt.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nassync.api.mover_io import Step
from nassync.api.syncjob import SyncJobStatus
from nassync.core.interlocks import CleanupPermit

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class CreateMoverJob:
    """Create mover Job `name` running `step`; `attempt` is its run number n.

    A cleanup step cannot be requested without a `CleanupPermit`, which only
    `interlocks.permit()` issues when every interlock holds: the rule "no
    delete without all interlocks" is enforced by construction, not by care.
    """

    step: Step
    name: str
    attempt: int
    permit: CleanupPermit | None = field(default=None, compare=False, repr=False)
    replica: str | None = None  # a push or verify of this replica (spec.replicas[].name) instead of the primary

    def __post_init__(self) -> None:
        if self.step == "cleanup" and self.permit is None:
            raise ValueError("a cleanup mover needs a CleanupPermit")


@dataclass(frozen=True)
class EmitEvent:
    """Record a Kubernetes Event on the SyncJob."""

    type: EventType
    reason: str  # CamelCase, e.g. GateBlocked
    message: str


@dataclass(frozen=True)
class DeleteMoverJob:
    """Remove mover Job `name` (and its pod) that will never do its job, e.g. a pod that never started.

    Only the Job controller's pods are affected; never data. The shell deletes
    it with foreground propagation, so the Job stays visible (and keeps its
    mover slot) until its pod is gone.
    """

    name: str
    reason: str


Action = CreateMoverJob | DeleteMoverJob | EmitEvent


@dataclass(frozen=True)
class Decision:
    """The outcome of one `decide()` call."""

    status: SyncJobStatus
    actions: tuple[Action, ...] = ()
    # Seconds until decide() should run again even if nothing changes; None
    # means "only when something changes" (a Job finishes, the spec is edited).
    requeue_after: float | None = None

    @property
    def creates(self) -> tuple[CreateMoverJob, ...]:
        return tuple(a for a in self.actions if isinstance(a, CreateMoverJob))

    @property
    def deletes(self) -> tuple[DeleteMoverJob, ...]:
        return tuple(a for a in self.actions if isinstance(a, DeleteMoverJob))

    @property
    def events(self) -> tuple[EmitEvent, ...]:
        return tuple(a for a in self.actions if isinstance(a, EmitEvent))
