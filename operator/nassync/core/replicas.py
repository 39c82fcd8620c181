"""Further copies of a run (spec.replicas): where each one stands and what it needs next.

The primary copy (spec.destination, the lab NAS) runs the phase machine of
decide.py: gate, push (which writes the manifest), verify. A replica is an
extra copy of the same manifest: it is pushed once the primary copy is
verified, then verified, re-verified on the target's schedule and retried on
its own backoff, all while the SyncJob stays Verified. A replica that keeps
failing never holds back the primary or another replica; it only holds back
the cleanup, and only when it is `requiredForCleanup`.

Each replica's whole memory is its `status.destinations[]` entry; the entry
named `primary` mirrors the top-level fields so a dashboard reads every copy
the same way. Everything here is pure: it reads and edits those entries and
says what mover a replica needs next; decide.py starts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from nassync.api.common import format_time
from nassync.api.mover_io import ErrorKind, MoverResult
from nassync.api.syncjob import DestinationStatus, LastError, Phase, SyncJobStatus, TransferStatus
from nassync.api.target import PRIMARY, SyncTarget
from nassync.core.backoff import Verdict, failure_outcome
from nassync.core.humanize import human_bytes

ReplicaStep = Literal["push", "verify"]

# The primary's entry, read off the phase machine.
_PRIMARY_STATE: dict[Phase, str] = {
    Phase.PUSHING: "Pushing",
    Phase.VERIFYING: "Verifying",
    Phase.VERIFIED: "Verified",
    Phase.CLEANING: "Verified",
    Phase.CLEANED: "Verified",
    Phase.FAILED: "Failed",
}


@dataclass(frozen=True)
class Work:
    """The mover a replica needs next."""

    replica: str
    step: ReplicaStep


def track(status: SyncJobStatus, target: SyncTarget, *, run_path: str) -> list[DestinationStatus]:
    """The replica entries for `target`'s spec.replicas, in spec order, memory kept by name.

    A copy pushed or verified against another manifest than the run's current
    one (the run was pushed again) proves nothing about it: it starts over.
    """
    manifest = status.manifest.sha256 if status.manifest is not None else ""
    entries: list[DestinationStatus] = []
    for replica in target.spec.replicas:
        entry = status.destination(replica.name)
        entry = entry.model_copy(deep=True) if entry is not None else DestinationStatus(name=replica.name)
        entry.type = replica.destination.type  # type: ignore[assignment]
        entry.required_for_cleanup = replica.required_for_cleanup
        entry.remote_path = replica.destination.remote_path(run_path)
        if entry.manifest_sha256 and entry.manifest_sha256 != manifest and entry.state not in ("Pushing", "Verifying"):
            _start_over(entry, "the run was pushed again with new content; this copy is made again")
        entries.append(entry)
    return entries


def _start_over(entry: DestinationStatus, message: str) -> None:
    entry.state = "Pending"
    entry.message = message
    entry.manifest_sha256 = ""
    entry.verify_passes = 0
    entry.verified_at = None
    entry.last_verified_at = None
    entry.transfer = None


def primary_entry(status: SyncJobStatus, target: SyncTarget) -> DestinationStatus:
    """The primary copy as a destinations[] entry (a mirror of the top-level fields)."""
    phase = status.phase
    state = _PRIMARY_STATE.get(phase, "Pending")
    if phase == Phase.VERIFYING and status.mover_job is not None and status.mover_job.step == "push":
        state = "Pushed"
    manifest = status.manifest.sha256 if status.manifest is not None else ""
    passes = status.verify_passes
    message = {
        "Verified": _verified_message(passes),
        "Failed": status.last_error.message[:1024] if status.last_error else "failed",
    }.get(state, f"the SyncJob is {phase}")
    return DestinationStatus(
        name=PRIMARY, type=target.spec.destination.type,  # type: ignore[arg-type]
        required_for_cleanup=True, state=state,  # type: ignore[arg-type]
        message=message, remote_path=status.remote_path, manifest_sha256=manifest,
        transfer=status.transfer, verify_passes=passes, verified_at=status.verified_at,
        last_verified_at=status.last_verified_at, attempts=status.attempts, last_error=status.last_error,
        next_attempt_at=status.next_attempt_at,
    )


def _verified_message(passes: int) -> str:
    return f"verified against the manifest ({passes} pass{'es' if passes != 1 else ''})"


def copies(entries: Sequence[DestinationStatus]) -> str:
    """`<verified>/<all>`, for the printer column."""
    return f"{sum(1 for e in entries if e.state == 'Verified')}/{len(entries)}"


# --- what comes next ------------------------------------------------------------


def next_work(entries: Sequence[DestinationStatus], *, now: datetime, min_passes: int,
              reverify_interval: float | None) -> tuple[Work | None, datetime | None]:
    """The replica mover due now, if any, and when the next one falls due.

    Pushes come first (a copy that does not exist yet is the biggest risk),
    then first verifies, then the audit passes cleanup needs.
    """
    due: list[tuple[int, int, Work]] = []
    later: list[datetime] = []
    for index, entry in enumerate(entries):
        wanted = _wanted(entry, now=now, min_passes=min_passes, reverify_interval=reverify_interval)
        if wanted is None:
            continue
        step, at, rank = wanted
        if at is not None and at > now:
            later.append(at)
        else:
            due.append((rank, index, Work(entry.name, step)))
    work = min(due)[2] if due else None
    return work, (min(later) if later else None)


def _wanted(entry: DestinationStatus, *, now: datetime, min_passes: int,
            reverify_interval: float | None) -> tuple[ReplicaStep, datetime | None, int] | None:
    if entry.state == "Pending":
        return "push", entry.next_attempt_at, 0
    if entry.state == "Pushed":
        return "verify", entry.next_attempt_at, 1
    if entry.state == "Verified" and entry.verify_passes < max(1, min_passes) and reverify_interval is not None:
        last = entry.last_verified_at or entry.verified_at
        return "verify", (last + timedelta(seconds=reverify_interval)) if last else None, 2
    return None


def request_verify(entries: Sequence[DestinationStatus]) -> None:
    """nassync.dev/verify: every verified replica is verified again before cleanup may use it."""
    for entry in entries:
        if entry.state == "Verified":
            entry.state = "Pushed"
            entry.next_attempt_at = None
            entry.message = "verify requested (nassync.dev/verify)"


def rearm(entries: Sequence[DestinationStatus]) -> list[str]:
    """nassync.dev/retry: failed replicas start over from their last good state; their names."""
    names = []
    for entry in entries:
        if entry.state == "Failed":
            entry.state = "Pushed" if entry.manifest_sha256 else "Pending"
            entry.attempts = 0
            entry.next_attempt_at = None
            entry.message = "retry requested (nassync.dev/retry)"
            names.append(entry.name)
    return names


def skip_unmade(entries: Sequence[DestinationStatus]) -> list[str]:
    """After cleanup: replicas never verified cannot be made any more; their names.

    Only optional ones can be left at cleanup time; a required one is only
    found here when it was added to the target after the run was cleaned.
    """
    names = []
    for entry in entries:
        if entry.state not in ("Verified", "Skipped"):
            entry.state = "Skipped"
            entry.next_attempt_at = None
            why = "(requiredForCleanup: false)" if not entry.required_for_cleanup else "(added to the target later)"
            entry.message = (f"the run's local data was deleted before this copy was verified {why}; copy it from "
                             "the primary by hand if you need it")
            names.append(entry.name)
    return names


# --- what a replica mover did ------------------------------------------------------


def started(entry: DestinationStatus, step: ReplicaStep, *, now: datetime, job_name: str) -> None:
    entry.state = "Pushing" if step == "push" else "Verifying"
    entry.next_attempt_at = None
    entry.message = f"{step} running (mover Job {job_name})"
    if step == "push":
        entry.transfer = TransferStatus(started_at=now)


def pushed(entry: DestinationStatus, result: MoverResult, *, now: datetime) -> str:
    """Record a successful push; the message for the event."""
    assert result.manifest is not None
    transfer = result.transfer
    started_at = entry.transfer.started_at if entry.transfer else None
    entry.transfer = TransferStatus(
        started_at=started_at, finished_at=now, bytes=transfer.bytes if transfer else 0,
        files=transfer.files if transfer else 0,
        bandwidthLimitKiBps=transfer.bandwidth_limit_kibps if transfer else 0)
    entry.manifest_sha256 = result.manifest.sha256
    entry.state = "Pushed"
    entry.message = (f"pushed {result.manifest.files} files ({human_bytes(result.manifest.bytes)}) to "
                     f"{entry.remote_path or 'the replica'}; verifying next")
    return f"replica {entry.name}: {entry.message}"


def verified(entry: DestinationStatus, *, now: datetime) -> str:
    entry.state = "Verified"
    entry.verify_passes += 1
    entry.verified_at = entry.verified_at or now
    entry.last_verified_at = now
    entry.attempts = 0
    entry.last_error = None
    entry.next_attempt_at = None
    entry.message = _verified_message(entry.verify_passes)
    return f"replica {entry.name}: the copy matches the manifest; verify pass {entry.verify_passes}"


def failed(entry: DestinationStatus, *, step: ReplicaStep | Literal["cleanup"], kind: ErrorKind, message: str,
           now: datetime, max_attempts: int, schedule: Sequence[int]) -> str:
    """Apply the retry policy to a replica's failure; the message for the event.

    A mismatch forgets the copy's passes and pushes it again (content compared);
    a verify that could not reach the copy is retried as a verify; a push as a push.
    """
    previous = entry.last_error
    outcome = failure_outcome(kind=kind, attempts=entry.attempts, max_attempts=max_attempts, schedule=schedule,
                              mismatch_since_success=previous is not None and previous.kind == ErrorKind.HASH_MISMATCH)
    entry.attempts = outcome.attempts
    entry.last_error = LastError(kind=kind, message=message[:4096], at=now)
    if kind is ErrorKind.HASH_MISMATCH:
        entry.verify_passes = 0
        entry.verified_at = None
        entry.last_verified_at = None
    if outcome.verdict is Verdict.FAIL:
        entry.state = "Failed"
        entry.next_attempt_at = None
        entry.message = (f"{kind}: {message} ({outcome.why}); fix the cause, then annotate "
                         "nassync.dev/retry=<new value>")[:1024]
        return f"replica {entry.name}: {step} failed and is given up: {entry.message}"
    entry.state = "Pending" if step == "push" or kind is ErrorKind.HASH_MISMATCH or not entry.manifest_sha256 \
        else "Pushed"
    entry.next_attempt_at = now + timedelta(seconds=outcome.delay_seconds) if outcome.verdict is Verdict.RETRY \
        else None
    when = f"next attempt at {format_time(entry.next_attempt_at)}" if entry.next_attempt_at else "pushing again"
    entry.message = f"{kind}: {message}; {when}"[:1024]
    return f"replica {entry.name}: {step} failed ({kind}): {message}; {when}"


# --- summaries -------------------------------------------------------------------


def unverified(entries: Sequence[DestinationStatus], *, required_only: bool) -> list[DestinationStatus]:
    return [e for e in entries if e.state != "Verified" and (e.required_for_cleanup or not required_only)]


def standing(entry: DestinationStatus) -> str:
    """Where a copy stands, without times: the same words while it fails the same way (no event per retry)."""
    if entry.last_error is not None:
        return f"{entry.state} after {entry.last_error.kind}: {entry.last_error.message}"
    return entry.state


def describe(entry: DestinationStatus) -> str:
    """One copy's standing, for condition messages: `offsite (Pending: Network: ...)`."""
    return f"{entry.name} ({entry.state}: {entry.message})" if entry.message else f"{entry.name} ({entry.state})"
