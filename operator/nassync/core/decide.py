"""The SyncJob phase machine: one pure function from observations to a decision.

`decide()` is the whole policy of the operator (DESIGN.md §2). It sees one
SyncJob, its SyncTarget (None when missing), the mover Jobs that exist for it,
whether a mover slot is free, and the time; it returns the new status, the
actions to take and when to look again. No I/O, no kopf, no Kubernetes client:
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

Why one module of ~750 lines: every transition reads and writes the same
working status, and a reader checking "can this path delete data?" should be
able to follow it top to bottom without hopping files. Its parts that stand
alone (names, backoff, conditions, interlocks, actions) live beside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from nassync.api.common import InvalidTime, parse_time
from nassync.api.mover_io import ErrorKind, GateOutcome, MoverResult, Step, VerifySummary
from nassync.api.syncjob import (
    MAX_FINDINGS,
    RETRY_ANNOTATION,
    VERIFY_ANNOTATION,
    GateFinding,
    GateStatus,
    LastError,
    ManifestStatus,
    MoverJobStatus,
    Phase,
    SyncJob,
    SyncJobStatus,
    TransferStatus,
)
from nassync.api.target import SyncTarget
from nassync.core import conditions as cond
from nassync.core import interlocks
from nassync.core.actions import Action, CreateMoverJob, Decision, EmitEvent, EventType
from nassync.core.backoff import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    Verdict,
    failure_outcome,
    human_seconds,
)
from nassync.core.conditions import ConditionStatus
from nassync.core.interlocks import CleanupFacts, CleanupPermit
from nassync.core.names import job_name

ChildState = Literal["Running", "Succeeded", "Failed"]

# A Job the operator has just created may not be visible yet in what the shell
# observed (watch/cache lag); only after this long is a missing Job "gone".
MOVER_APPEAR_GRACE_SECONDS = 60.0
# How often a job waiting for a mover slot looks again (a finishing mover of the
# same target also wakes it through the shell).
SLOT_POLL_SECONDS = 15.0
TARGET_MISSING_POLL_SECONDS = 30.0

_PHASE_OF_STEP: dict[Step, Phase] = {
    "gate": Phase.GATING,
    "push": Phase.PUSHING,
    "verify": Phase.VERIFYING,
    "cleanup": Phase.CLEANING,
}
_CONDITION_OF_STEP: dict[Step, str] = {
    "gate": cond.GATED,
    "push": cond.PUSHED,
    "verify": cond.VERIFIED,
    "cleanup": cond.CLEANED,
}
_STEPS: tuple[Step, ...] = ("gate", "push", "verify", "cleanup")


@dataclass(frozen=True)
class ChildJob:
    """An observed mover Job of this SyncJob (the shell reads it from the Job and its pod)."""

    name: str
    step: Step
    state: ChildState
    result: MoverResult | None = None  # parsed termination message, if any


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
) -> Decision:
    """Decide what happens next to `job`. Pure: the inputs are not modified."""
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
    _track_mover(run)
    _adopt_orphan(run)
    _take_requests(run, generation_changed=generation_changed)
    _note_suspend(run)
    if target is None:
        _target_missing(run)
    else:
        _target_found(run)
        if not run.mover_running() and not job.spec.suspend:
            _advance(run)
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
    step = mover.step or (child.step if child else None) or _next_step(run.status.phase) or "push"
    if child is None:
        age = (run.now - mover.started_at).total_seconds() if mover.started_at else None
        if age is not None and 0 <= age < MOVER_APPEAR_GRACE_SECONDS:
            run.wake_in(MOVER_APPEAR_GRACE_SECONDS - age)
            return
        _finish_mover(run, "Failed")
        _failed(
            run,
            step=step,
            kind=ErrorKind.UNKNOWN,
            message=f"mover Job {mover.name} disappeared before it reported a result",
        )
        return
    if child.state == "Running":
        return
    _finish_mover(run, child.state)
    _consume(run, step=step, child=child)


def _finish_mover(run: _Run, state: ChildState) -> None:
    mover = run.status.mover_job
    assert mover is not None
    run.status.mover_job = mover.model_copy(update={"state": state})


def _problem(step: Step, child: ChildJob) -> tuple[ErrorKind, str] | None:
    """Why `child` did not do its job, or None when its result can be used."""
    result = child.result
    if result is None:
        return ErrorKind.UNKNOWN, (f"mover pod ended without a result (see kubectl logs job/{child.name})")
    if result.step != step:
        return ErrorKind.UNKNOWN, f"mover reported a {result.step} result for a {step} Job"
    if not result.ok:
        if result.error is None:
            return ErrorKind.UNKNOWN, f"the {step} mover failed without saying why"
        return result.error.kind, result.error.message
    if child.state == "Failed":
        return ErrorKind.UNKNOWN, f"mover Job {child.name} failed although its result says ok"
    if step == "gate" and result.gate is None:
        return ErrorKind.UNKNOWN, "the gate mover reported success without a gate outcome"
    if step == "push" and (result.manifest is None or not result.manifest.sha256):
        return ErrorKind.UNKNOWN, "the push mover reported success without a manifest"
    return None


def _consume(run: _Run, *, step: Step, child: ChildJob) -> None:
    result = child.result
    if result is not None and result.last_revocation_at is not None:
        _note_revocation(run, result.last_revocation_at)
    problem = _problem(step, child)
    if problem is not None:
        kind, message = problem
        _failed(run, step=step, kind=kind, message=message, result=result)
        return
    assert result is not None
    if step == "gate":
        assert result.gate is not None
        _gate_done(run, result.gate)
    elif step == "push":
        _push_done(run, result)
    elif step == "verify":
        _verify_done(run, result.verify or VerifySummary.model_validate({}))
    else:
        _cleanup_done(run, result)


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


def _gate_done(run: _Run, outcome: GateOutcome) -> None:
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
        run.condition(
            cond.GATED,
            "False",
            "NotQuiet",
            f"the run changed within the quiet period; checking again in {human_seconds(wait)}",
        )
        run.set_phase(Phase.GATING, reason="NotQuiet", message="waiting for the run to be quiet")
        return
    soft = sum(1 for f in outcome.findings if f.tier == "soft")
    overridden = sum(1 for f in outcome.findings if f.overridden)
    message = f"gate passed ({soft} soft findings, {overridden} overridden)"
    run.status.next_attempt_at = None
    run.condition(cond.GATED, "True", "Passed", message)
    run.set_phase(Phase.QUEUED, reason="Gated", message=message)


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
        status.remote_path = remote_path(run.target, run.job)
    where = status.remote_path or "the NAS"
    message = f"pushed {manifest.files} files ({_size(manifest.bytes)}) to {where}"
    run.condition(cond.PUSHED, "True", "Pushed", message)
    run.set_phase(Phase.VERIFYING, reason="Pushed", message=message)


def _verify_done(run: _Run, summary: VerifySummary) -> None:
    status = run.status
    if summary.local_changed:
        message = "local files changed after the push; pushing again"
        _forget_verification(run, "LocalChanged", message)
        status.next_attempt_at = None
        run.set_phase(Phase.QUEUED, reason="LocalChanged", message=message)
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


def _cleanup_done(run: _Run, result: MoverResult) -> None:
    summary = result.cleanup
    files = summary.files_deleted if summary else 0
    freed = summary.bytes_freed if summary else 0
    run.status.cleaned_at = run.now
    message = f"deleted {files} local files, freed {_size(freed)}; the NAS copy is verified"
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
    if kind is ErrorKind.HASH_MISMATCH and step in ("verify", "cleanup"):
        message = _mismatch_message(step, message, result)
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
    # A gate is retried as a gate: skipping it would push an unchecked run. A
    # cleanup that could not finish (NAS unreachable, pod killed part way) is
    # retried as a cleanup: pushing again would rewrite the manifest from a run
    # that may already be partly deleted.
    # (A mismatch still pushes again: the NAS copy is what needs repair then.)
    if step == "gate":
        back_to = Phase.PENDING
    elif step == "cleanup" and kind is not ErrorKind.HASH_MISMATCH:
        back_to = Phase.VERIFIED
    else:
        back_to = Phase.QUEUED
    status.next_attempt_at = (
        run.now + timedelta(seconds=outcome.delay_seconds) if outcome.verdict is Verdict.RETRY else None
    )
    text = f"{kind}: {message}; {outcome.why}"
    run.condition(cond.FAILED, "False", "Retrying", text)
    run.set_phase(back_to, reason="Retrying", message=text)


def _mismatch_message(step: Step, mover_message: str, result: MoverResult | None) -> str:
    summary = result.verify if result is not None else None
    detail = mover_message
    if summary is not None:
        examples = ", ".join(summary.examples[:3])
        detail = f"{summary.missing} missing, {summary.differing} differing" + (
            f", e.g. {examples}" if examples else ""
        )
    if step == "cleanup":
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
    if status.phase == Phase.BLOCKED and generation_changed:
        _rearm(run, "SpecChanged", "the spec changed (e.g. spec.overrides); checking again")
    verify = annotations.get(VERIFY_ANNOTATION)
    if verify is not None and verify != status.handled_verify:
        if status.phase == Phase.VERIFIED and not run.mover_running():
            run.verify_request = verify  # recorded once the verify actually starts
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


def remote_path(target: SyncTarget, job: SyncJob) -> str:
    """Where the run lands on the NAS: `<destination.path>/<runPath>`."""
    return f"{target.spec.destination.path.rstrip('/')}/{job.spec.run_path}"


def _target_missing_message(job: SyncJob) -> str:
    return f'SyncTarget "{job.spec.target_ref.name}" not found in namespace "{job.namespace}"'


def _target_missing(run: _Run) -> None:
    status = run.status
    step = _next_step(status.phase)
    if step is None or run.mover_running():
        return
    message = _target_missing_message(run.job)
    last = status.last_error
    if last is None or last.kind != ErrorKind.CONFIG or last.message != message:
        status.last_error = LastError(kind=ErrorKind.CONFIG, message=message, at=run.now)
        run.emit("Warning", "TargetMissing", message)
    _hold(run, step, "TargetMissing", message)
    run.wake_in(TARGET_MISSING_POLL_SECONDS)


def _target_found(run: _Run) -> None:
    last = run.status.last_error
    if last is not None and last.message == _target_missing_message(run.job):
        run.status.last_error = None


def _next_step(phase: Phase) -> Step | None:
    if phase in (Phase.PENDING, Phase.GATING):
        return "gate"
    if phase in (Phase.QUEUED, Phase.PUSHING):
        return "push"
    if phase == Phase.VERIFYING:
        return "verify"
    if phase in (Phase.VERIFIED, Phase.CLEANING):
        return "cleanup"
    return None  # Blocked, Cleaned, Failed wait for a person


# --- starting the next mover -------------------------------------------------------


def _advance(run: _Run) -> None:
    """Start the next step of a job that has no running mover."""
    phase = run.status.phase
    if phase in (Phase.PENDING, Phase.GATING):
        if _due(run):
            _start(run, "gate")
    elif phase in (Phase.QUEUED, Phase.PUSHING):
        if _due(run):
            _start(run, "push")
    elif phase == Phase.VERIFYING:
        _start(run, "verify")
    elif phase in (Phase.VERIFIED, Phase.CLEANING):
        # Cleaning without a running mover only follows a hand-edited status:
        # fall back to Verified, which re-checks every interlock.
        run.set_phase(Phase.VERIFIED, reason="Resumed", message="re-checking cleanup interlocks")
        if _due(run):  # a failed cleanup waits out its backoff
            _audit(run)


def _due(run: _Run) -> bool:
    due = run.status.next_attempt_at
    if due is not None and run.now < due:
        run.wake_at(due)
        return False
    return True


def _start(run: _Run, step: Step, *, permit: CleanupPermit | None = None) -> bool:
    """Ask for mover n = moverRuns + 1 running `step`; False when it must wait."""
    status = run.status
    if run.job.spec.suspend or run.started_mover:
        return False
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
        _PHASE_OF_STEP[step],
        reason=f"{step.capitalize()}Started",
        message=f"{step} started (mover Job {name})",
    )
    return True


def _record_mover(run: _Run, *, step: Step, name: str, n: int) -> None:
    status = run.status
    status.mover_runs = n
    status.mover_job = MoverJobStatus(name=name, step=step, state="Running", started_at=run.now)
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
    names = (job_name(syncjob=run.job.name, step=step, n=n) for step in _STEPS)
    orphan = next((run.children[name] for name in names if name in run.children), None)
    if orphan is None:
        return
    _record_mover(run, step=orphan.step, name=orphan.name, n=n)
    run.set_phase(
        _PHASE_OF_STEP[orphan.step],
        reason="MoverAdopted",
        message=f"following mover Job {orphan.name}, created before the operator restarted",
    )
    _track_mover(run)


def _hold(run: _Run, step: Step, reason: str, message: str) -> None:
    """Say why `step` does not start, on the condition of the step that waits."""
    type_ = _CONDITION_OF_STEP[step]
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
    )


def _audit(run: _Run) -> None:
    """In Verified: verify on request, clean up when allowed, else re-verify or wait."""
    assert run.target is not None
    if run.verify_request is not None:
        if _start(run, "verify"):
            run.status.handled_verify = run.verify_request
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


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
