"""The SyncJob phase machine: one pure function from observations to a decision.

`decide()` is the whole policy of the operator (docs/concepts.md). It sees
one SyncJob, its SyncTarget (None when missing or unreadable) and whether that
target is ready (core/readiness.py), the mover Jobs that exist for it, the
running mover's latest progress, whether a mover slot is free, and the time;
it returns the new status, the actions to take and when to look again. No I/O, no kopf, no Kubernetes client:
everything here is tested with plain values, and the kopf shell only observes
and executes.

    Pending → Gating → Queued → Pushing → Verifying → Verified → Cleaning → Cleaned
                 ↘ Blocked                 (audit: Verified → Verifying → Verified)
    any mover step → Failed (terminal class, or attempts exhausted)

How state survives restarts: the status is the operator's only memory. A
mover is started by bumping `status.moverRuns` to n and recording
`status.moverJob` (name, step, Running); its name `<syncjob>-<step>-<n>` is
deterministic. A result is consumed exactly once, when `moverJob` says Running
and the child of that name has finished; consuming flips `moverJob.state`, so
the same result is never read twice. If a Job with run number n already exists
when the core wants to start mover n (created before a crash, status not yet
patched), it is adopted instead of created (`_adopt_orphan`).

Three rules worth seeing at a glance:
- at most one `CreateMoverJob` per call, and none without `slot_available`
  (the shell counts a creation as taking the slot, so a target never runs more
  than `concurrency` movers);
- a cleanup mover needs a `CleanupPermit`, which only `interlocks.permit()`
  issues (see `_try_cleanup`), and `CreateMoverJob` refuses a cleanup without one;
- `status.attempts` never exceeds the target's `retry.maxAttempts`.

Each mover step is one row of `STEP_TABLE` (at the bottom): the phase it
runs in, the condition it reports on, the phases in which it comes next, how
it starts, how its result is checked and applied, and where a retry goes.

Why one module: every transition reads and writes the same working status,
and a reader checking "can this path delete data?" should be able to follow
it top to bottom without hopping files. Its parts that stand alone (names,
backoff, conditions, interlocks, readiness, actions) live beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nassync.api.common import InvalidTime, parse_time
from nassync.api.mover_io import ErrorKind, GateOutcome, MoverResult, Step, VerifySummary
from nassync.api.syncjob import (
    MAX_FINDINGS,
    RETRY_ANNOTATION,
    VERIFY_ANNOTATION,
    Deleted,
    DestinationStatus,
    GateFinding,
    GateStatus,
    LastError,
    ManifestStatus,
    MoverJobState,
    MoverJobStatus,
    Phase,
    Progress,
    RunOwner,
    SyncJob,
    SyncJobStatus,
    TransferStatus,
)
from nassync.api.target import PRIMARY, SyncTarget
from nassync.core import conditions as cond
from nassync.core import interlocks, replicas
from nassync.core.actions import Action, CreateMoverJob, Decision, DeleteMoverJob, EmitEvent, EventType
from nassync.core.backoff import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    Verdict,
    failure_outcome,
)
from nassync.core.conditions import ConditionStatus
from nassync.core.humanize import human_bytes, human_seconds
from nassync.core.interlocks import CleanupFacts, CleanupPermit, ReplicaFacts
from nassync.core.names import job_name
from nassync.core.readiness import READY, Readiness

ChildState = MoverJobState

# A Job the operator has just created may not be visible yet in what the shell
# observed (watch/cache lag); only after this long is a missing Job "gone".
MOVER_APPEAR_GRACE_SECONDS = 60.0
# How often a job waiting for a mover slot looks again (a finishing mover of the
# same target also wakes it through the shell).
SLOT_POLL_SECONDS = 15.0
# A mover Job whose pod has not started: look again this often (to say why), and
# give up on it after the target's spec.mover.startTimeout (this without a target).
NOT_STARTED_POLL_SECONDS = 5.0
STARTING_GRACE_SECONDS = 8.0
DEFAULT_START_TIMEOUT_SECONDS = 180
TARGET_MISSING_POLL_SECONDS = 30.0
# Secrets are not watched: a target waiting for one looks again this often.
TARGET_NOT_READY_POLL_SECONDS = 15.0
_NOT_READY_PREFIX = "SyncTarget is not ready"


@dataclass(frozen=True)
class ChildJob:
    """An observed mover Job of this SyncJob (the shell reads it from the Job and its pod)."""

    name: str
    step: Step
    state: ChildState
    result: MoverResult | None = None  # parsed termination message, if any
    replica: str | None = None  # the replica it works on (its nassync.dev/replica label); None: the primary
    # Whether its pod ever started (a container ran); a Running Job whose pod has
    # not started after the target's startTimeout is removed and retried.
    started: bool = True
    created_at: datetime | None = None
    waiting: str | None = None  # why its pod has not started (conditions, events), when known
    failure: str | None = None  # why the Job/pod failed (Job condition, container state), when known
    deadline_exceeded: bool = False  # the Job controller stopped it at activeDeadlineSeconds


@dataclass(frozen=True)
class MoverProgress:
    """The latest progress line of mover Job `name` (read by the shell from its pod log)."""

    name: str
    step: Step
    progress: Progress
    replica: str | None = None  # the replica the mover works on; None: the primary


# --- the working state of one call ------------------------------------------


@dataclass
class _Run:
    """Everything one decide() call reads and the decision it is building."""

    job: SyncJob
    target: SyncTarget | None
    children: Mapping[str, ChildJob]
    slot_available: bool
    now: datetime
    status: SyncJobStatus
    actions: list[Action] = field(default_factory=list)
    requeue_after: float | None = None
    started_mover: bool = False
    verify_request: str | None = None  # a nassync.dev/verify value not yet acted on
    # The replicas' status.destinations[] entries (core/replicas.py), edited in place.
    replicas: list[DestinationStatus] = field(default_factory=list)

    def replica(self, name: str) -> DestinationStatus | None:
        return next((entry for entry in self.replicas if entry.name == name), None)

    def emit(self, type_: EventType, reason: str, message: str) -> None:
        self.actions.append(EmitEvent(type=type_, reason=reason, message=message))

    def wake_in(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        if self.requeue_after is None or seconds < self.requeue_after:
            self.requeue_after = seconds

    def wake_at(self, when: datetime) -> None:
        self.wake_in((when - self.now).total_seconds())

    def condition(self, type_: str, status: ConditionStatus, reason: str, message: str) -> None:
        self.status.conditions = cond.set_condition(
            self.status.conditions,
            type=type_,
            status=status,
            reason=reason,
            message=message,
            now=self.now,
            generation=self.job.generation,
        )

    def set_phase(self, phase: Phase, *, reason: str, message: str, type_: EventType = "Normal") -> None:
        # Every phase change is an Event: it is how `kubectl describe` tells the story.
        if self.status.phase != phase:
            self.status.phase = phase
            self.emit(type_, reason, message)

    def mover_running(self) -> bool:
        mover = self.status.mover_job
        return mover is not None and mover.state == "Running"


def decide(
    *,
    job: SyncJob,
    target: SyncTarget | None,
    children: Mapping[str, ChildJob],
    slot_available: bool,
    now: datetime,
    readiness: Readiness = READY,
    progress: MoverProgress | None = None,
) -> Decision:
    """Decide what happens next to `job`. Pure: the inputs are not modified.

    `readiness` says whether `target` may start movers (core/readiness.py);
    with `target=None` a ready readiness reads as "the target does not exist".
    """
    run = _Run(
        job=job,
        target=target,
        children=children,
        slot_available=slot_available,
        now=_second(now),
        status=job.status.model_copy(deep=True),
    )
    generation_changed = job.status.observed_generation != job.generation
    run.status.observed_generation = job.generation
    _clamp_attempts(run)
    _load_replicas(run)
    _track_mover(run)
    _adopt_orphan(run)
    _take_requests(run, generation_changed=generation_changed)
    _note_suspend(run)
    if target is None or not readiness.ready:
        _target_unusable(run, readiness)
    else:
        _target_usable(run)
        if not run.mover_running() and not job.spec.suspend:
            _advance(run)
    _note_progress(run, progress)
    _summarise_copies(run)
    return Decision(status=run.status, actions=tuple(run.actions), requeue_after=run.requeue_after)


def _second(now: datetime) -> datetime:
    # Status times are stored with second precision; computing with the same
    # precision keeps decisions identical after a round trip through the apiserver.
    aware = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return aware.replace(microsecond=0)


def _retry_policy(run: _Run) -> tuple[int, tuple[int, ...]]:
    if run.target is None:
        return DEFAULT_MAX_ATTEMPTS, DEFAULT_BACKOFF_SECONDS
    retry = run.target.spec.retry
    return retry.max_attempts, tuple(retry.backoff_seconds)


def _clamp_attempts(run: _Run) -> None:
    # An admin may lower maxAttempts; the count must still read "n of max".
    if run.target is not None:
        run.status.attempts = min(run.status.attempts, run.target.spec.retry.max_attempts)


# --- observing the running mover --------------------------------------------


def _track_mover(run: _Run) -> None:
    """Consume the result of the mover recorded as Running, once it has finished."""
    mover = run.status.mover_job
    if mover is None or mover.state != "Running":
        return
    child = run.children.get(mover.name)
    # A status without a step (hand-edited) is read as the step its phase implies.
    after = _step_after(run.status.phase)
    step = mover.step or (child.step if child else None) or (after.step if after else "push")
    if child is None:
        age = (run.now - mover.started_at).total_seconds() if mover.started_at else None
        if age is not None and 0 <= age < MOVER_APPEAR_GRACE_SECONDS:
            run.wake_in(MOVER_APPEAR_GRACE_SECONDS - age)
            return
        _finish_mover(run, "Failed")
        _mover_failed(
            run,
            step=step,
            kind=ErrorKind.UNKNOWN,
            message=f"mover Job {mover.name} disappeared before it reported a result",
        )
        return
    if child.state == "Running":
        if not child.started:
            _not_started(run, step=step, child=child)
        return
    _finish_mover(run, child.state)
    _consume(run, step=step, child=child)


def _start_timeout(run: _Run) -> int:
    return run.target.spec.mover.start_timeout_seconds if run.target is not None else DEFAULT_START_TIMEOUT_SECONDS


def _not_started(run: _Run, *, step: Step, child: ChildJob) -> None:
    """A mover Job whose pod has not started: say why, and give up on it after startTimeout.

    Giving up removes the Job (its slot is freed once it is gone) and fails the
    step as NotStarted, retried with backoff; the next mover starts only after
    the removed Job has disappeared (`_start`), so two never run at once.
    """
    timeout = _start_timeout(run)
    created = child.created_at or (run.status.mover_job.started_at if run.status.mover_job else None)
    age = (run.now - created).total_seconds() if created is not None else 0.0
    why = child.waiting or "no node has started it yet"
    if age < timeout:
        if age >= STARTING_GRACE_SECONDS:  # a pod starting normally is not worth a status write
            message = f"waiting for the {step} mover pod to start: {why}"
            entry = run.replica(child.replica) if child.replica else None
            if entry is not None:
                entry.message = message[:1024]
            else:
                run.condition(STEP_TABLE[step].condition, "False", "MoverNotStarted", message[:1024])
        run.wake_in(min(timeout - age, NOT_STARTED_POLL_SECONDS))
        return
    run.actions.append(DeleteMoverJob(name=child.name, reason="NotStarted"))
    _finish_mover(run, "Failed")
    message = (f"the {step} mover pod did not start within {human_seconds(timeout)} (spec.mover.startTimeout): "
               f"{why}; its Job {child.name} was removed")
    _mover_failed(run, step=step, kind=ErrorKind.NOT_STARTED, message=message)


def _finish_mover(run: _Run, state: ChildState) -> None:
    mover = run.status.mover_job
    assert mover is not None
    run.status.mover_job = mover.model_copy(update={"state": state})


def _problem(spec: StepSpec, child: ChildJob) -> tuple[ErrorKind, str] | None:
    """Why `child` did not do its job, or None when its result can be used."""
    step = spec.step
    result = child.result
    if child.deadline_exceeded and (result is None or not result.ok):
        return ErrorKind.TIMEOUT, (f"the {step} mover did not finish within its deadline (spec.mover.deadlines."
                                   f"{step}) and was stopped; a NAS that stopped answering, or a run too big for "
                                   f"the deadline at this bandwidth (see kubectl logs job/{child.name})")
    if result is None:
        detail = f": {child.failure}" if child.failure else ""
        return ErrorKind.UNKNOWN, (f"mover pod ended without a result{detail} (see kubectl logs job/{child.name})")
    if result.step != step:
        return ErrorKind.UNKNOWN, f"mover reported a {result.step} result for a {step} Job"
    if not result.ok:
        if result.error is None:
            return ErrorKind.UNKNOWN, f"the {step} mover failed without saying why"
        return result.error.kind, result.error.message
    if child.state == "Failed":
        return ErrorKind.UNKNOWN, f"mover Job {child.name} failed although its result says ok"
    unusable = spec.unusable(result)
    return (ErrorKind.UNKNOWN, unusable) if unusable else None


def _consume(run: _Run, *, step: Step, child: ChildJob) -> None:
    spec = STEP_TABLE[step]
    result = child.result
    if result is not None and result.last_revocation_at is not None:
        _note_revocation(run, result.last_revocation_at)
    problem = _problem(spec, child)
    if problem is not None:
        kind, message = problem
        _mover_failed(run, step=step, kind=kind, message=message, result=result)
        return
    assert result is not None
    replica = run.status.mover_job.replica if run.status.mover_job else None
    if replica is not None:
        _replica_done(run, replica, step, result)
        return
    spec.done(run, result)


def _mover_failed(run: _Run, *, step: Step, kind: ErrorKind, message: str, result: MoverResult | None = None) -> None:
    """A mover failed: a replica's failure is that replica's alone, else the phase machine's."""
    replica = run.status.mover_job.replica if run.status.mover_job else None
    if replica is None:
        _failed(run, step=step, kind=kind, message=message, result=result)
        return
    entry = run.replica(replica)
    if entry is None or step not in ("push", "verify"):
        return  # the replica left the target's spec meanwhile: nothing to record
    _replica_failed(run, entry, step=step, kind=kind, message=message)


def _note_revocation(run: _Run, value: str) -> None:
    try:
        revoked = parse_time(value)
    except InvalidTime:
        # An unreadable revocation time is doubt; doubt defers cleanup, so
        # count it as a revocation now.
        revoked = run.now
    if revoked is None:
        return
    known = run.status.last_revocation_at
    if known is None or revoked > known:
        run.status.last_revocation_at = revoked


# --- results of successful steps ---------------------------------------------


def _gate_done(run: _Run, result: MoverResult) -> None:
    outcome = result.gate
    assert outcome is not None  # checked by _gate_unusable
    if outcome.run_owner is not None:
        run.status.run_owner = RunOwner(uid=outcome.run_owner.uid, gid=outcome.run_owner.gid)
    if outcome.owner_only:
        _owner_found(run, outcome)
        return
    findings = [
        GateFinding(
            rule=f.rule[:64],
            tier=f.tier,
            path=f.path[:4096],
            message=f.message[:1024],
            overridden=f.overridden,
        )
        for f in outcome.findings[:MAX_FINDINGS]
    ]
    run.status.gate = GateStatus(
        checked_at=run.now,
        quiet=outcome.quiet,
        quiet_remaining_seconds=max(0, outcome.quiet_remaining_seconds),
        findings=findings,
        findings_truncated=outcome.findings_truncated + max(0, len(outcome.findings) - MAX_FINDINGS),
    )
    if outcome.blocked:
        message = _blocked_message(outcome)
        run.condition(cond.GATED, "False", "HardFindings", message)
        run.set_phase(Phase.BLOCKED, reason="GateBlocked", message=message, type_="Warning")
        return
    if not outcome.quiet:
        wait = max(1, outcome.quiet_remaining_seconds)
        run.status.next_attempt_at = run.now + timedelta(seconds=wait)
        why = outcome.waiting_for or "the run changed within the quiet period"
        run.condition(cond.GATED, "False", "NotQuiet", f"{why}; checking again in {human_seconds(wait)}")
        run.set_phase(Phase.GATING, reason="NotQuiet", message=f"waiting: {why}")
        return
    soft = sum(1 for f in outcome.findings if f.tier == "soft")
    overridden = sum(1 for f in outcome.findings if f.overridden)
    message = f"gate passed ({soft} soft findings, {overridden} overridden)"
    run.status.next_attempt_at = None
    run.condition(cond.GATED, "True", "Passed", message)
    run.set_phase(Phase.QUEUED, reason="Gated", message=message)


def _owner_found(run: _Run, outcome: GateOutcome) -> None:
    """The gate only identified the run's owner (runAsRunOwner): check the range, gate again as the owner."""
    owner = outcome.run_owner
    policy = run.target.spec.mover.run_as_run_owner if run.target is not None else None
    if owner is None or policy is None:
        _failed(run, step="gate", kind=ErrorKind.UNKNOWN, message="the gate reported no run owner")
        return
    if not policy.allows(owner.uid):
        allowed = f"{policy.min_uid}-{policy.max_uid}"
        _failed(run, step="gate", kind=ErrorKind.PERMISSION, message=(
            f"the run directory belongs to uid {owner.uid}, outside the uids movers may run as "
            f"(spec.mover.runAsRunOwner {allowed}; never 0); nothing was read. Change the run's owner, "
            "widen the range, or set spec.mover.securityContext.runAsUser instead"))
        return
    message = f"the run belongs to uid:gid {owner.uid}:{owner.gid}; checking it again as that user"
    run.status.next_attempt_at = None
    run.condition(cond.GATED, "False", "OwnerFound", message)
    run.emit("Normal", "RunOwnerFound", message)


def _blocked_message(outcome: GateOutcome) -> str:
    hard = [f for f in outcome.findings if f.tier == "hard" and not f.overridden]
    by_rule: dict[str, list[str]] = {}
    for finding in hard:
        by_rule.setdefault(finding.rule, []).append(finding.path)
    if not by_rule:
        listed = "hard findings (details truncated)"
        example_rule = "<rule>"
    else:
        listed = ", ".join(f"{rule} ({len(paths)}, e.g. {paths[0]!r})" for rule, paths in by_rule.items())
        example_rule = next(iter(by_rule))
    return (
        f"the gate blocked this run: {listed}. Fix the files, or acknowledge a rule with "
        f"spec.overrides: [{{rule: {example_rule}, reason: ...}}] (the job re-gates when "
        f"the spec changes), or annotate nassync.dev/retry=<new value> to check again"
    )


def _push_done(run: _Run, result: MoverResult) -> None:
    assert result.manifest is not None
    status = run.status
    manifest = ManifestStatus(files=result.manifest.files, bytes=result.manifest.bytes, sha256=result.manifest.sha256)
    if status.manifest is not None and status.manifest.sha256 != manifest.sha256:
        # Passes proved an older manifest; they say nothing about these bytes.
        _forget_verification(run, "ManifestChanged", "the run was pushed again with new content")
    status.manifest = manifest
    transfer = result.transfer
    started = status.transfer.started_at if status.transfer else None
    status.transfer = TransferStatus(
        started_at=started,
        finished_at=run.now,
        bytes=transfer.bytes if transfer else 0,
        files=transfer.files if transfer else 0,
        bandwidthLimitKiBps=transfer.bandwidth_limit_kibps if transfer else 0,
    )
    if run.target is not None:
        status.remote_path = run.target.spec.destination.remote_path(run.job.spec.run_path)
    where = status.remote_path or "the NAS"
    message = f"pushed {manifest.files} files ({human_bytes(manifest.bytes)}) to {where}"
    run.condition(cond.PUSHED, "True", "Pushed", message)
    run.set_phase(Phase.VERIFYING, reason="Pushed", message=message)


def _verify_done(run: _Run, result: MoverResult) -> None:
    summary = result.verify or VerifySummary.model_validate({})
    status = run.status
    if summary.local_changed:
        message = "local files changed after the push; gating and pushing again"
        _forget_verification(run, "LocalChanged", message)
        status.next_attempt_at = None
        run.set_phase(Phase.PENDING, reason="LocalChanged", message=message)
        return
    status.verify_passes += 1
    status.verified_at = status.verified_at or run.now
    status.last_verified_at = run.now
    status.attempts = 0
    status.last_error = None
    status.next_attempt_at = None
    files = status.manifest.files if status.manifest else 0
    message = f"the NAS copy matches the manifest ({files} files); verify pass {status.verify_passes}"
    run.condition(cond.VERIFIED, "True", "Verified", message)
    if status.condition(cond.FAILED) is not None:
        run.condition(cond.FAILED, "False", "Recovered", "the last verify succeeded")
    run.set_phase(Phase.VERIFIED, reason="Verified", message=message)


def _note_deleted(run: _Run, result: MoverResult | None) -> None:
    """Add what a cleanup mover deleted (also one that stopped part way) to status.deleted."""
    summary = result.cleanup if result is not None else None
    if summary is None or summary.files_deleted <= 0:
        return
    before = run.status.deleted or Deleted(files=0, bytes=0)
    run.status.deleted = Deleted(files=before.files + summary.files_deleted, bytes=before.bytes + summary.bytes_freed)


def _partly_cleaned(run: _Run) -> bool:
    return run.status.deleted is not None and run.status.deleted.files > 0


def _cleanup_done(run: _Run, result: MoverResult) -> None:
    summary = result.cleanup
    if summary is not None and summary.deferred:
        # The pod found a revocation the operator had not seen yet (noted by
        # _consume); back to Verified, where the interlocks wait it out.
        message = f"cleanup deferred: {summary.deferred}"
        run.condition(cond.CLEANED, "False", "OverrideRevoked", message)
        run.emit("Normal", "CleanupDeferred", message)
        run.set_phase(Phase.VERIFIED, reason="CleanupDeferred", message=message)
        return
    _note_deleted(run, result)
    files = summary.files_deleted if summary else 0
    freed = summary.bytes_freed if summary else 0
    skipped = replicas.skip_unmade(run.replicas)
    if skipped:
        run.emit("Warning", "ReplicaSkipped", f"replica(s) {', '.join(skipped)} (requiredForCleanup: false) were not "
                                              "verified before the local data was deleted; they will not be made")
    run.status.cleaned_at = run.now
    message = f"deleted {files} local files, freed {human_bytes(freed)}; the NAS copy is verified"
    run.condition(cond.CLEANED, "True", "Cleaned", message)
    run.set_phase(Phase.CLEANED, reason="Cleaned", message=message)


def _forget_verification(run: _Run, reason: str, message: str) -> None:
    status = run.status
    status.verify_passes = 0
    status.verified_at = None
    status.last_verified_at = None
    if status.condition(cond.VERIFIED) is not None:
        run.condition(cond.VERIFIED, "False", reason, message)


# --- failures ----------------------------------------------------------------


def _failed(run: _Run, *, step: Step, kind: ErrorKind, message: str, result: MoverResult | None = None) -> None:
    """Apply the failure policy (backoff.failure_outcome) to a failed step."""
    status = run.status
    if step == "cleanup":
        _note_deleted(run, result)
    if step == "cleanup" and kind is ErrorKind.HASH_MISMATCH and _replica_refused_cleanup(run, message, result):
        return
    if kind is ErrorKind.HASH_MISMATCH and step in ("verify", "cleanup"):
        message = _mismatch_message(run, step, message, result)
        _forget_verification(run, "RemoteMismatch", message)
        run.condition(cond.VERIFIED, "False", "RemoteMismatch", message)
        run.emit("Warning", "VerifyMismatch", message)
    limit, schedule = _retry_policy(run)
    previous = status.last_error
    outcome = failure_outcome(
        kind=kind,
        attempts=status.attempts,
        max_attempts=limit,
        schedule=schedule,
        mismatch_since_success=previous is not None and previous.kind == ErrorKind.HASH_MISMATCH,
    )
    status.attempts = outcome.attempts
    status.last_error = LastError(kind=kind, message=message[:4096], at=run.now)
    run.emit("Warning", f"{step.capitalize()}Failed", f"{step} failed ({kind}): {message}")
    if outcome.verdict is Verdict.FAIL:
        status.next_attempt_at = None
        text = f"{kind}: {message} ({outcome.why}); fix the cause, then annotate nassync.dev/retry=<new value>"
        run.condition(cond.FAILED, "True", str(kind), text)
        run.set_phase(Phase.FAILED, reason="Failed", message=text, type_="Warning")
        return
    spec = STEP_TABLE[step]
    back_to = spec.mismatch_retry_in if kind is ErrorKind.HASH_MISMATCH else spec.retry_in
    if _partly_cleaned(run) and back_to != Phase.VERIFIED:
        # Local files are gone already: a push would replace the NAS manifest, the
        # only proof of what was deleted, with that of an emptied run.
        deleted = status.deleted.files if status.deleted else 0
        text = (f"{kind}: {message}; {deleted} local file(s) of this run were already deleted after the NAS copy "
                "was verified, so the run is never pushed again. Check the NAS copy, then annotate "
                "nassync.dev/retry=<new value> to finish the cleanup from it")
        status.next_attempt_at = None
        run.condition(cond.FAILED, "True", str(kind), text)
        run.set_phase(Phase.FAILED, reason="Failed", message=text, type_="Warning")
        return
    status.next_attempt_at = (
        run.now + timedelta(seconds=outcome.delay_seconds) if outcome.verdict is Verdict.RETRY else None
    )
    text = f"{kind}: {message}; {outcome.why}"
    run.condition(cond.FAILED, "False", "Retrying", text)
    run.set_phase(back_to, reason="Retrying", message=text)


def _mismatch_message(run: _Run, step: Step, mover_message: str, result: MoverResult | None) -> str:
    summary = result.verify if result is not None else None
    detail = mover_message
    if summary is not None:
        examples = ", ".join(summary.examples[:3])
        detail = f"{summary.missing} missing, {summary.differing} differing" + (
            f", e.g. {examples}" if examples else ""
        )
    if step == "cleanup":
        if _partly_cleaned(run):
            deleted = run.status.deleted.files if run.status.deleted else 0
            return (f"cleanup refused: the NAS copy no longer matches the manifest ({detail}); no more local data "
                    f"deleted ({deleted} file(s) were deleted earlier, after a verified NAS copy)")
        return (
            f"cleanup refused: the NAS copy no longer matches the manifest ({detail}); local data kept; pushing again"
        )
    return f"the NAS copy does not match the manifest ({detail})"


# --- requests from the user ------------------------------------------------------


def _take_requests(run: _Run, *, generation_changed: bool) -> None:
    status = run.status
    annotations = run.job.annotations
    retry = annotations.get(RETRY_ANNOTATION)
    if retry is not None and retry != status.handled_retry:
        status.handled_retry = retry
        if status.phase in (Phase.FAILED, Phase.BLOCKED) and not run.mover_running():
            _rearm(run, "RetryRequested", f"retry requested ({RETRY_ANNOTATION}={retry})")
        again = replicas.rearm(run.replicas)  # a failed replica never has a mover running
        if again:
            run.emit("Normal", "RetryRequested",
                     f"retry requested ({RETRY_ANNOTATION}={retry}) for replica(s) {', '.join(again)}")
    if status.phase == Phase.BLOCKED and generation_changed:
        _rearm(run, "SpecChanged", "the spec changed (e.g. spec.overrides); checking again")
    verify = annotations.get(VERIFY_ANNOTATION)
    if verify is not None and verify != status.handled_verify:
        if status.phase == Phase.VERIFIED:
            if not run.mover_running():
                run.verify_request = verify  # recorded once the verify actually starts
            # else a replica's mover runs in Verified: the request waits for it
        else:
            # Outside Verified a verify is either coming anyway or pointless.
            status.handled_verify = verify


def _rearm(run: _Run, reason: str, message: str) -> None:
    status = run.status
    status.attempts = 0
    status.last_error = None
    status.next_attempt_at = None
    if status.condition(cond.FAILED) is not None:
        run.condition(cond.FAILED, "False", reason, message)
    run.set_phase(Phase.PENDING, reason=reason, message=f"{message}; gating the run again")


def _note_suspend(run: _Run) -> None:
    if run.job.spec.suspend:
        run.condition(
            cond.SUSPENDED,
            "True",
            "Suspended",
            "spec.suspend is true: no new mover starts (a running one finishes)",
        )
    elif cond.is_true(run.status.conditions, cond.SUSPENDED):
        run.condition(cond.SUSPENDED, "False", "Resumed", "spec.suspend is false")


# --- the target -----------------------------------------------------------------


def _target_missing_message(job: SyncJob) -> str:
    return f'SyncTarget "{job.spec.target_ref.name}" not found in namespace "{job.namespace}"'


def _target_unusable(run: _Run, readiness: Readiness) -> None:
    """Say on the SyncJob why nothing moves: its target is missing, unreadable or not ready.

    A running mover finishes and is consumed as usual; nothing new starts.
    """
    status = run.status
    spec = _step_after(status.phase)
    if spec is None or run.mover_running():
        return
    missing = run.target is None and (readiness.ready or readiness.reason == "TargetMissing")
    if missing:
        reason, message = "TargetMissing", _target_missing_message(run.job)
        poll = TARGET_MISSING_POLL_SECONDS
    else:
        reason, message = "TargetNotReady", f"{_NOT_READY_PREFIX} ({readiness.reason}): {readiness.message}"
        poll = TARGET_NOT_READY_POLL_SECONDS
    last = status.last_error
    if last is None or last.kind != ErrorKind.CONFIG or last.message != message:
        status.last_error = LastError(kind=ErrorKind.CONFIG, message=message, at=run.now)
        # Literal reasons, so that docs/operations.md can be checked against them.
        if missing:
            run.emit("Warning", "TargetMissing", message)
        else:
            run.emit("Warning", "TargetNotReady", message)
    _hold(run, spec.step, reason, message)
    run.wake_in(poll)


def _target_usable(run: _Run) -> None:
    """Forget an error that only said the target was missing or not ready."""
    last = run.status.last_error
    if last is not None and (last.message == _target_missing_message(run.job)
                             or last.message.startswith(_NOT_READY_PREFIX)):
        run.status.last_error = None


def _step_after(phase: Phase) -> StepSpec | None:
    """The step that comes next in `phase`; None where a person must act (Blocked, Cleaned, Failed)."""
    return next((spec for spec in STEP_TABLE.values() if phase in spec.next_in), None)


def _note_progress(run: _Run, progress: MoverProgress | None) -> None:
    """Copy the running mover's latest progress into the transfer status of the copy it works on."""
    mover = run.status.mover_job
    if progress is None or mover is None or mover.state != "Running":
        return
    if (mover.name, mover.step, mover.replica) != (progress.name, progress.step, progress.replica):
        return
    if mover.replica is not None:
        entry = run.replica(mover.replica)
        if entry is not None:
            entry.transfer = (entry.transfer or TransferStatus()).model_copy(update={"progress": progress.progress})
        return
    transfer = run.status.transfer or TransferStatus()
    run.status.transfer = transfer.model_copy(update={"progress": progress.progress})


# --- starting the next mover -------------------------------------------------------


def _advance(run: _Run) -> None:
    """Start the next step of a job that has no running mover."""
    spec = _step_after(run.status.phase)
    if spec is not None:
        spec.advance(run, spec)


def _start_when_due(run: _Run, spec: StepSpec) -> None:
    if not spec.waits_for_backoff or _due(run):
        _start(run, spec.step)


def _audit_when_due(run: _Run, spec: StepSpec) -> None:
    # Cleaning without a running mover only follows a hand-edited status:
    # fall back to Verified, which re-checks every interlock.
    run.set_phase(Phase.VERIFIED, reason="Resumed", message="re-checking cleanup interlocks")
    if not spec.waits_for_backoff or _due(run):  # a failed cleanup waits out its backoff
        _audit(run)
    else:
        _replica_work(run)  # replicas keep their own schedule meanwhile


def _due(run: _Run) -> bool:
    due = run.status.next_attempt_at
    if due is not None and run.now < due:
        run.wake_at(due)
        return False
    return True


def _start(run: _Run, step: Step, *, permit: CleanupPermit | None = None, replica: str | None = None) -> bool:
    """Ask for mover n = moverRuns + 1 running `step` (on `replica`, if given); False when it must wait."""
    status = run.status
    if run.job.spec.suspend or run.started_mover:
        return False
    lingering = sorted(c.name for c in run.children.values() if c.state == "Running")
    if lingering:
        # An earlier mover of this SyncJob is still there (e.g. removed after it never
        # started, and not gone yet): never two movers of one SyncJob at once.
        message = f"waiting for mover Job {lingering[0]} to go away"
        entry = run.replica(replica) if replica is not None else None
        if entry is not None:
            entry.message = f"{step} {message}"
        elif replica is None:
            _hold(run, step, "WaitingForOldMover", message)
        run.wake_in(SLOT_POLL_SECONDS)
        return False
    if replica is not None:
        return _start_replica(run, step, replica)
    if not run.slot_available:
        concurrency = run.target.spec.concurrency if run.target else 1
        _hold(run, step, "WaitingForSlot", f"waiting for a mover slot (concurrency {concurrency})")
        run.wake_in(SLOT_POLL_SECONDS)
        return False
    n = status.mover_runs + 1
    name = job_name(syncjob=run.job.name, step=step, n=n)
    run.actions.append(CreateMoverJob(step=step, name=name, attempt=n, permit=permit))
    run.started_mover = True
    _record_mover(run, step=step, name=name, n=n)
    run.set_phase(
        STEP_TABLE[step].phase,
        reason=f"{step.capitalize()}Started",
        message=f"{step} started (mover Job {name})",
    )
    return True


def _record_mover(run: _Run, *, step: Step, name: str, n: int, replica: str | None = None) -> None:
    status = run.status
    status.mover_runs = n
    status.mover_job = MoverJobStatus(name=name, step=step, state="Running", started_at=run.now, replica=replica)
    if replica is not None:
        entry = run.replica(replica)
        if entry is not None and step in ("push", "verify"):
            replicas.started(entry, "push" if step == "push" else "verify", now=run.now, job_name=name)
        return
    status.next_attempt_at = None
    if step == "push":
        status.transfer = TransferStatus(started_at=run.now)


def _adopt_orphan(run: _Run) -> None:
    """Follow a mover Job that exists but that the status does not record yet.

    The shell creates a Job before it patches the status; an operator that died
    in between left Job n = moverRuns + 1 behind. Its name is the one we would
    compute, so we adopt it (and consume it at once if it already finished)
    instead of starting a second mover on the same run.
    """
    if run.mover_running():
        return
    n = run.status.mover_runs + 1
    copies: list[str | None] = [None, *(entry.name for entry in run.replicas)]
    names = (job_name(syncjob=run.job.name, step=step, n=n, replica=copy) for copy in copies for step in STEPS)
    orphan = next((run.children[name] for name in names if name in run.children), None)
    if orphan is None:
        return
    _record_mover(run, step=orphan.step, name=orphan.name, n=n, replica=orphan.replica)
    message = f"following mover Job {orphan.name}, created before the operator restarted"
    if orphan.replica is None:
        run.set_phase(STEP_TABLE[orphan.step].phase, reason="MoverAdopted", message=message)
    else:
        run.emit("Normal", "MoverAdopted", message)
    _track_mover(run)


def _hold(run: _Run, step: Step, reason: str, message: str) -> None:
    """Say why `step` does not start, on the condition of the step that waits."""
    type_ = STEP_TABLE[step].condition
    if step == "verify" and run.status.phase == Phase.VERIFIED:
        type_ = cond.CLEANED  # an audit pass: Verified stays True meanwhile
    if not cond.is_true(run.status.conditions, type_):
        run.condition(type_, "False", reason, message)


# --- Verified: audit and cleanup ----------------------------------------------------


def _cleanup_facts(run: _Run) -> CleanupFacts:
    assert run.target is not None
    policy = run.target.spec.cleanup
    try:
        min_age: float | None = policy.min_age_after_verify_seconds
    except ValueError:
        min_age = None
    return CleanupFacts(
        enabled=policy.enabled,
        hold=run.job.spec.cleanup.hold,
        verify_passes=run.status.verify_passes,
        min_verify_passes=policy.min_verify_passes,
        verified_at=run.status.verified_at,
        min_age_after_verify=min_age,
        last_revocation_at=run.status.last_revocation_at,
        replicas=tuple(
            ReplicaFacts(name=entry.name, verified=entry.state == "Verified", verify_passes=entry.verify_passes,
                         verified_at=entry.verified_at, standing=replicas.standing(entry))
            for entry in run.replicas if entry.required_for_cleanup),
    )


def _audit(run: _Run) -> None:
    """In Verified: verify on request, clean up when allowed, else re-verify or wait."""
    assert run.target is not None
    if run.verify_request is not None:
        if _start(run, "verify"):
            run.status.handled_verify = run.verify_request
            replicas.request_verify(run.replicas)
        return
    if _replica_work(run):
        return
    facts = _cleanup_facts(run)
    unmet = interlocks.unmet(facts, now=run.now)
    if unmet and unmet[0].reason in ("CleanupDisabled", "OnHold"):
        run.condition(cond.CLEANED, "False", unmet[0].reason, unmet[0].message)
        return
    if _try_cleanup(run, facts):
        return
    reverify_at = _reverify_due(run, facts)
    if reverify_at is not None and run.now >= reverify_at:
        _start(run, "verify")
        return
    _defer_cleanup(run, unmet)
    recheck = interlocks.earliest_recheck(facts, now=run.now)
    for when in (recheck, reverify_at):
        if when is not None:
            run.wake_at(when)


def _try_cleanup(run: _Run, facts: CleanupFacts) -> bool:
    """Start the cleanup mover if, and only if, every interlock holds."""
    permit = interlocks.permit(facts, now=run.now)
    if permit is None:
        return False
    _start(run, "cleanup", permit=permit)
    return True


def _reverify_due(run: _Run, facts: CleanupFacts) -> datetime | None:
    """When the next audit verify is due; None when no more passes are needed."""
    assert run.target is not None
    if facts.min_verify_passes is None or run.status.verify_passes >= facts.min_verify_passes:
        return None
    last = run.status.last_verified_at or run.status.verified_at
    if last is None:
        return run.now
    try:
        interval = run.target.spec.cleanup.reverify_interval_seconds
    except ValueError:
        return None
    return last + timedelta(seconds=interval)


def _defer_cleanup(run: _Run, unmet: tuple[interlocks.Check, ...]) -> None:
    if not unmet:
        return
    reason = unmet[0].reason
    message = "; ".join(check.message for check in unmet)
    current = run.status.condition(cond.CLEANED)
    if current is None or (current.reason, current.message) != (reason, message):
        run.emit("Normal", "CleanupDeferred", f"cleanup deferred: {message}")
    run.condition(cond.CLEANED, "False", reason, message)


# --- replicas (core/replicas.py) -----------------------------------------------------


def _load_replicas(run: _Run) -> None:
    """The replicas' entries this call works on: the target's spec.replicas, memory kept by name."""
    if run.target is None:
        # Unknown target: keep what the status says, start nothing new.
        run.replicas = [e.model_copy(deep=True) for e in run.status.destinations or () if e.name != PRIMARY]
        return
    run.replicas = replicas.track(run.status, run.target, run_path=run.job.spec.run_path)


def _summarise_copies(run: _Run) -> None:
    """status.copies; with replicas also status.destinations and the Replicated condition."""
    status = run.status
    if run.target is not None and not run.target.spec.replicas:
        status.destinations = None
        status.copies = "1/1" if status.phase.nas_copy_proven else "0/1"
        return
    if run.target is None:
        return
    if status.phase == Phase.CLEANED:
        replicas.skip_unmade(run.replicas)  # e.g. a replica added after the run was cleaned
    entries = [replicas.primary_entry(status, run.target), *run.replicas]
    status.destinations = entries
    status.copies = replicas.copies(entries)
    waiting = replicas.unverified(run.replicas, required_only=False)
    if not waiting:
        run.condition(cond.REPLICATED, "True", "Verified", f"all {len(run.replicas)} replica(s) hold a verified copy")
        return
    states = {entry.state for entry in waiting}
    reason = "ReplicaFailed" if "Failed" in states else (
        "ReplicaRetrying" if any(e.last_error is not None for e in waiting) else "ReplicaPending")
    done = len(run.replicas) - len(waiting)
    message = f"{done} of {len(run.replicas)} replica(s) verified; " + "; ".join(map(replicas.describe, waiting))
    if not status.phase.nas_copy_proven and status.phase != Phase.FAILED:
        message += " (replicas are made once the primary copy is verified)"
    run.condition(cond.REPLICATED, "False", reason, message[:1024])


def _replica_work(run: _Run) -> bool:
    """Start the replica mover that is due, if any; True when one was started."""
    if not run.replicas or run.target is None or run.job.spec.suspend:
        return False
    policy = run.target.spec.cleanup
    audits = policy.enabled and not run.job.spec.cleanup.hold  # only cleanup needs more than one pass
    try:
        interval: float | None = policy.reverify_interval_seconds
    except ValueError:
        interval = None
    work, later = replicas.next_work(run.replicas, now=run.now, min_passes=policy.min_verify_passes if audits else 1,
                                     reverify_interval=interval)
    if later is not None:
        run.wake_at(later)
    if work is None:
        return False
    return _start(run, work.step, replica=work.replica)


def _start_replica(run: _Run, step: Step, replica: str) -> bool:
    entry = run.replica(replica)
    if entry is None:
        return False
    if not run.slot_available:
        concurrency = run.target.spec.concurrency if run.target else 1
        entry.message = f"{step} waiting for a mover slot (concurrency {concurrency})"
        run.wake_in(SLOT_POLL_SECONDS)
        return False
    n = run.status.mover_runs + 1
    name = job_name(syncjob=run.job.name, step=step, n=n, replica=replica)
    run.actions.append(CreateMoverJob(step=step, name=name, attempt=n, replica=replica))
    run.started_mover = True
    _record_mover(run, step=step, name=name, n=n, replica=replica)
    # Literal reasons, so that docs/operations.md can be checked against them.
    message = f"{step} of replica {replica} started (mover Job {name})"
    run.emit("Normal", "ReplicaPushStarted" if step == "push" else "ReplicaVerifyStarted", message)
    return True


def _replica_done(run: _Run, replica: str, step: Step, result: MoverResult) -> None:
    entry = run.replica(replica)
    if entry is None:
        return
    if step == "push":
        recorded = run.status.manifest.sha256 if run.status.manifest else ""
        if result.manifest is None or result.manifest.sha256 != recorded:
            _replica_failed(run, entry, step="push", kind=ErrorKind.UNKNOWN,
                            message="the replica push copied a run whose manifest is not the recorded one")
            return
        run.emit("Normal", "ReplicaPushed", replicas.pushed(entry, result, now=run.now))
    elif step == "verify":
        run.emit("Normal", "ReplicaVerified", replicas.verified(entry, now=run.now))


def _replica_failed(run: _Run, entry: DestinationStatus, *, step: Step, kind: ErrorKind, message: str) -> None:
    limit, schedule = _retry_policy(run)
    text = replicas.failed(entry, step="push" if step == "push" else "verify" if step == "verify" else "cleanup",
                           kind=kind, message=message, now=run.now, max_attempts=limit, schedule=schedule)
    if kind is ErrorKind.HASH_MISMATCH:
        run.emit("Warning", "VerifyMismatch", text)
    else:
        run.emit("Warning", "ReplicaFailed", text)
    if entry.next_attempt_at is not None:
        run.wake_at(entry.next_attempt_at)


def _replica_refused_cleanup(run: _Run, message: str, result: MoverResult | None) -> bool:
    """A cleanup pod found a required replica not matching the manifest: that replica is made again.

    Nothing was deleted (every copy is proven before the first delete). The
    primary's passes stay; only the replica starts over, and cleanup waits for it.
    """
    name = result.verify.replica if result is not None and result.verify is not None else None
    entry = run.replica(name) if name else None
    if entry is None or _partly_cleaned(run):
        return False
    _replica_failed(run, entry, step="cleanup", kind=ErrorKind.HASH_MISMATCH, message=message)
    text = f"cleanup refused: {message}; replica {entry.name} is pushed again before cleanup is tried again"
    run.status.next_attempt_at = None
    run.condition(cond.CLEANED, "False", "ReplicaMismatch", text[:1024])
    run.set_phase(Phase.VERIFIED, reason="ReplicaMismatch", message=text, type_="Warning")
    return True


# --- the step table ------------------------------------------------------------------


def _gate_unusable(result: MoverResult) -> str | None:
    return "the gate mover reported success without a gate outcome" if result.gate is None else None


def _push_unusable(result: MoverResult) -> str | None:
    if result.manifest is None or not result.manifest.sha256:
        return "the push mover reported success without a manifest"
    return None


def _always_usable(result: MoverResult) -> str | None:
    return None


@dataclass(frozen=True)
class StepSpec:
    """One mover step of the phase machine: everything decide() knows about it."""

    step: Step
    phase: Phase  # the phase while its mover runs
    condition: str  # the condition that reports on it (and says why it waits)
    next_in: tuple[Phase, ...]  # the phases in which it is the next step
    advance: Callable[[_Run, StepSpec], None]  # how it starts when nothing runs
    waits_for_backoff: bool  # starts only once status.nextAttemptAt has passed
    unusable: Callable[[MoverResult], str | None]  # why a successful result cannot be used
    done: Callable[[_Run, MoverResult], None]  # apply a usable result: status, phase, what follows
    # Where a failure that will be retried goes. A push never runs without a
    # fresh gate (an emptied or changed run must be judged again), so push and
    # verify retries go back to Pending. A cleanup that could not finish (NAS
    # unreachable, pod killed part way) is retried as a cleanup: pushing again
    # would rewrite the manifest from a run that may be partly deleted.
    retry_in: Phase
    # Where a hash mismatch goes: the NAS copy is what needs repair, so a push,
    # through the gate (never for a partly cleaned run: see _failed).
    mismatch_retry_in: Phase


STEP_TABLE: Mapping[Step, StepSpec] = {
    spec.step: spec
    for spec in (
        StepSpec("gate", Phase.GATING, cond.GATED, (Phase.PENDING, Phase.GATING), _start_when_due,
                 waits_for_backoff=True, unusable=_gate_unusable, done=_gate_done,
                 retry_in=Phase.PENDING, mismatch_retry_in=Phase.PENDING),
        StepSpec("push", Phase.PUSHING, cond.PUSHED, (Phase.QUEUED, Phase.PUSHING), _start_when_due,
                 waits_for_backoff=True, unusable=_push_unusable, done=_push_done,
                 retry_in=Phase.PENDING, mismatch_retry_in=Phase.PENDING),
        StepSpec("verify", Phase.VERIFYING, cond.VERIFIED, (Phase.VERIFYING,), _start_when_due,
                 waits_for_backoff=False, unusable=_always_usable, done=_verify_done,
                 retry_in=Phase.PENDING, mismatch_retry_in=Phase.PENDING),
        StepSpec("cleanup", Phase.CLEANING, cond.CLEANED, (Phase.VERIFIED, Phase.CLEANING), _audit_when_due,
                 waits_for_backoff=True, unusable=_always_usable, done=_cleanup_done,
                 retry_in=Phase.VERIFIED, mismatch_retry_in=Phase.PENDING),
    )
}
STEPS: tuple[Step, ...] = tuple(STEP_TABLE)
