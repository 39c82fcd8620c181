"""SyncJob: "push this one run" (user- or app-owned).

A SyncJob names a SyncTarget in its namespace and a run directory relative to
that target's source root; nothing else a user writes reaches a mover pod.
`spec` is the request, `status` is the operator's whole memory of the job:
together with the deterministic mover Job names (`<syncjob>-<step>-<n>`, n
counted by `status.moverRuns`) it is everything an operator restarted in any
phase needs to resume (docs/operations.md, "Operator restarts").

The models mirror `crds/nassync.dev_syncjobs.yaml` (kept in lockstep by
tests/unit/test_crd_schema.py). `runPath` is checked here with exactly the
rules the CRD's CEL enforces, so a path is judged the same in the apiserver,
the webhook and the tests; `check_run_path` is the one implementation.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, StrictBool, field_validator, model_validator

from nassync.api import mover_io
from nassync.api.common import (
    MAX_CONDITIONS,
    ApiModel,
    Condition,
    LocalObjectReference,
    ResourceModel,
    Timestamp,
    find_condition,
    has_control_character,
    has_invisible_character,
)

KIND = "SyncJob"
PLURAL = "syncjobs"

RUN_PATH_MAX_LENGTH = 1024
MAX_OVERRIDES = 32
MAX_FINDINGS = 100

# Annotations whose *change* asks the operator to act; status.handledRetry /
# handledVerify remember the last value acted on, so each change acts once.
RETRY_ANNOTATION = "nassync.dev/retry"
VERIFY_ANNOTATION = "nassync.dev/verify"


class Phase(StrEnum):
    PENDING = "Pending"
    GATING = "Gating"
    BLOCKED = "Blocked"
    QUEUED = "Queued"
    PUSHING = "Pushing"
    VERIFYING = "Verifying"
    VERIFIED = "Verified"
    CLEANING = "Cleaning"
    CLEANED = "Cleaned"
    FAILED = "Failed"

    # Groups of phases, so that the operator, its metrics and the plugin never
    # keep sets of their own.

    @property
    def runs_mover(self) -> bool:
        """A mover of this phase's step may be running (Gating, Pushing, Verifying, Cleaning)."""
        return self in _RUNS_MOVER

    @property
    def needs_person(self) -> bool:
        """Nothing moves until a person acts (a retry annotation re-arms it): Blocked, Failed."""
        return self in NEEDS_PERSON

    @property
    def is_terminal(self) -> bool:
        """The job is done, for good or until a retry: Cleaned, Failed."""
        return self in (Phase.CLEANED, Phase.FAILED)

    @property
    def is_queued(self) -> bool:
        """Waiting for its first mover (queue depth): Pending, Queued."""
        return self in (Phase.PENDING, Phase.QUEUED)

    @property
    def nas_copy_proven(self) -> bool:
        """The NAS copy was verified against the manifest: Verified, Cleaning, Cleaned."""
        return self in (Phase.VERIFIED, Phase.CLEANING, Phase.CLEANED)


_RUNS_MOVER = frozenset({Phase.GATING, Phase.PUSHING, Phase.VERIFYING, Phase.CLEANING})
NEEDS_PERSON = (Phase.FAILED, Phase.BLOCKED)


def check_run_path(value: str) -> list[str]:
    """Every rule `value` breaks as a runPath, in CRD order; empty when valid.

    The same messages appear in the CRD's x-kubernetes-validations, so a user
    sees one wording whichever layer catches the mistake.
    """
    problems: list[str] = []
    if not value:
        return ["spec.runPath must not be empty"]
    if len(value) > RUN_PATH_MAX_LENGTH:
        problems.append(f"spec.runPath must be at most {RUN_PATH_MAX_LENGTH} characters")
    if value.startswith("/"):
        problems.append("spec.runPath must be relative to the target's source root (no leading '/')")
    segments = value.split("/")
    if ".." in segments:
        problems.append("spec.runPath must not contain '..' segments")
    # A leading '/' already produced an empty first segment; report it only once.
    inner = segments[1:] if value.startswith("/") else segments
    if "" in inner or "." in inner:
        problems.append("spec.runPath must not contain empty or '.' segments (no '//', trailing '/' or '/./')")
    if has_control_character(value):
        problems.append("spec.runPath must not contain control characters")
    if has_invisible_character(value):
        problems.append(
            "spec.runPath must not contain invisible Unicode characters (control, format such as U+200B or "
            "U+202E, or line separators such as U+0085 or U+2028)")
    return problems


# --- spec -------------------------------------------------------------------


class Override(ApiModel):
    """An acknowledged gate finding; same JSON shape as mover_io.Override."""

    rule: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=1024)
    expires_at: Timestamp | None = None

    def to_mover(self) -> mover_io.Override:
        return mover_io.Override.model_validate(self.to_api())


class JobCleanup(ApiModel):
    """Per-run cleanup switch; the target's policy decides the rest."""

    hold: StrictBool = False  # true: never delete this run locally


class SyncJobSpec(ApiModel):
    target_ref: LocalObjectReference
    run_path: str = Field(min_length=1, max_length=RUN_PATH_MAX_LENGTH)
    overrides: list[Override] = Field(default_factory=list, max_length=MAX_OVERRIDES)
    suspend: StrictBool = False
    cleanup: JobCleanup = Field(default_factory=JobCleanup)

    @field_validator("run_path")
    @classmethod
    def _run_path(cls, value: str) -> str:
        problems = check_run_path(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value


# --- status -----------------------------------------------------------------


class LastError(ApiModel):
    """The most recent failure, in words a lab admin understands (never a secret)."""

    # Usually a mover_io.ErrorKind value; a plain string so the operator can
    # add its own kinds (e.g. a missing target) without a CRD change.
    kind: str = Field(max_length=64)
    message: str = Field(default="", max_length=4096)
    at: Timestamp | None = None


class GateFinding(ApiModel):
    rule: str = Field(max_length=64)
    tier: Literal["hard", "soft"]
    path: str = Field(max_length=4096)
    message: str = Field(max_length=1024)
    overridden: bool = False


class GateStatus(ApiModel):
    checked_at: Timestamp | None = None
    quiet: bool | None = None
    quiet_remaining_seconds: int | None = Field(default=None, ge=0)
    findings: list[GateFinding] = Field(default_factory=list, max_length=MAX_FINDINGS)
    findings_truncated: int = Field(default=0, ge=0)


class ManifestStatus(ApiModel):
    files: int = Field(default=0, ge=0)
    bytes: int = Field(default=0, ge=0)
    sha256: str = Field(default="", max_length=64)  # sha256 of the canonical manifest


class Progress(ApiModel):
    bytes: int = Field(default=0, ge=0)
    total_bytes: int = Field(default=0, ge=0)
    percent: int = Field(default=0, ge=0, le=100)
    bytes_per_second: int = Field(default=0, ge=0)
    eta_seconds: int | None = Field(default=None, ge=0)


class TransferStatus(ApiModel):
    started_at: Timestamp | None = None
    finished_at: Timestamp | None = None
    bytes: int = Field(default=0, ge=0)
    files: int = Field(default=0, ge=0)
    bandwidth_limit_kibps: int = Field(default=0, alias="bandwidthLimitKiBps", ge=0)
    progress: Progress | None = None


# The state of a mover Job: recorded in status.moverJob and observed on the Job.
MoverJobState = Literal["Running", "Succeeded", "Failed"]


class MoverJobStatus(ApiModel):
    """The mover Job currently (or last) run for this SyncJob.

    `step` is what the decision core reads; `phase` is the same value under
    the name docs/api.md gives it (`moverJob: {name, phase: push}`), kept so
    the documented contract holds. Whichever one is given fills the other.
    """

    name: str = Field(min_length=1, max_length=63)
    step: mover_io.Step | None = None
    phase: mover_io.Step | None = None
    state: MoverJobState = "Running"
    started_at: Timestamp | None = None
    replica: str | None = Field(default=None, max_length=63)  # the replica it works on; None: the primary

    @model_validator(mode="after")
    def _step_and_phase_agree(self) -> MoverJobStatus:
        # Assigning through __dict__ avoids re-running validation (validate_assignment).
        if self.step is None and self.phase is not None:
            self.__dict__["step"] = self.phase
        elif self.phase is None and self.step is not None:
            self.__dict__["phase"] = self.step
        elif self.step != self.phase:
            raise ValueError("moverJob.step and moverJob.phase must be equal")
        return self


class RunOwner(ApiModel):
    uid: int = Field(ge=0)
    gid: int = Field(ge=0)


class Deleted(ApiModel):
    files: int = Field(ge=0)
    bytes: int = Field(ge=0)


# Where one copy stands. The primary's entry mirrors the top-level fields (the
# phase machine's own); a replica's entry is that replica's whole memory.
CopyState = Literal["Pending", "Pushing", "Pushed", "Verifying", "Verified", "Failed", "Skipped"]


class DestinationStatus(ApiModel):
    """One copy of the run: status.destinations[] (only on targets with spec.replicas)."""

    name: str = Field(min_length=1, max_length=63)
    type: Literal["rclone", "rsync", "volume"] | None = None
    required_for_cleanup: bool = True
    state: CopyState = "Pending"
    message: str = Field(default="", max_length=1024)
    remote_path: str | None = Field(default=None, max_length=4096)
    # The manifest this copy was pushed and verified against; a new one (the
    # run was pushed again) makes the copy Pending again.
    manifest_sha256: str = Field(default="", max_length=64)
    transfer: TransferStatus | None = None
    verify_passes: int = Field(default=0, ge=0)
    verified_at: Timestamp | None = None
    last_verified_at: Timestamp | None = None
    attempts: int = Field(default=0, ge=0)
    last_error: LastError | None = None
    next_attempt_at: Timestamp | None = None


MAX_DESTINATIONS = 5  # the primary and at most four replicas


class SyncJobStatus(ApiModel):
    phase: Phase = Phase.PENDING
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[Condition] = Field(default_factory=list, max_length=MAX_CONDITIONS)
    attempts: int = Field(default=0, ge=0)
    last_error: LastError | None = None
    next_attempt_at: Timestamp | None = None
    remote_path: str | None = Field(default=None, max_length=4096)
    gate: GateStatus | None = None
    manifest: ManifestStatus | None = None
    transfer: TransferStatus | None = None
    verify_passes: int = Field(default=0, ge=0)
    verified_at: Timestamp | None = None
    last_verified_at: Timestamp | None = None
    cleaned_at: Timestamp | None = None
    mover_job: MoverJobStatus | None = None
    # The decision core's bookkeeping (docs/api.md lists them too).
    mover_runs: int = Field(default=0, ge=0)  # mover Jobs created so far: the <n> in <syncjob>-<step>-<n>
    handled_retry: str | None = Field(default=None, max_length=1024)  # last nassync.dev/retry acted on
    handled_verify: str | None = Field(default=None, max_length=1024)  # last nassync.dev/verify acted on
    last_revocation_at: Timestamp | None = None  # newest override tombstone seen by a mover
    run_owner: RunOwner | None = None  # uid:gid of the run directory, as the gate found it
    deleted: Deleted | None = None  # local data deleted so far by cleanup
    # None (absent) unless the target has spec.replicas: single-copy SyncJobs read as they always did.
    destinations: list[DestinationStatus] | None = Field(default=None, max_length=MAX_DESTINATIONS)
    copies: str | None = Field(default=None, max_length=16)  # "<verified>/<all>" copies (the Copies column)

    def destination(self, name: str) -> DestinationStatus | None:
        return next((d for d in self.destinations or () if d.name == name), None)

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)


class SyncJob(ResourceModel):
    """A whole SyncJob object as the apiserver returns it."""

    kind: Literal["SyncJob"] = "SyncJob"
    spec: SyncJobSpec
    status: SyncJobStatus = Field(default_factory=SyncJobStatus)

    @property
    def uid(self) -> str:
        return str(self.metadata.get("uid", ""))

    @property
    def generation(self) -> int:
        return int(self.metadata.get("generation") or 0)

    @property
    def annotations(self) -> dict[str, str]:
        value = self.metadata.get("annotations")
        return dict(value) if isinstance(value, dict) else {}

    @property
    def owner(self) -> str:
        """`<namespace>/<name>/<uid>`: the owner marker a push records on the NAS."""
        return f"{self.namespace}/{self.name}/{self.uid}"
