"""The contract between the operator and a mover pod.

The operator renders `MoverParams` into the pod's `NASSYNC_PARAMS` env var; the
mover answers with one `MoverResult` in its termination message. Both sides
import these models, so a field renamed here breaks loudly on both sides
instead of silently at run time. Nothing secret ever goes into either: secrets
are files under `SECRET_DIR`, named here only by path.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PARAMS_ENV = "NASSYNC_PARAMS"
RESULT_PATH_ENV = "NASSYNC_RESULT_PATH"
DEFAULT_RESULT_PATH = "/dev/termination-log"
SECRET_DIR = "/var/run/nassync/secret"
SOURCE_MOUNT = "/data/source"
DESTINATION_MOUNT = "/var/run/nassync/destination"  # a volume destination's claim
# A cleanup pod proves every required replica: each one's Secret and volume sit
# under REPLICA_DIR/<name>/ (the primary's stay where they always are).
REPLICA_DIR = "/var/run/nassync/replicas"
MAX_RESULT_BYTES = 4096

Step = Literal["gate", "push", "verify", "cleanup"]


class ErrorKind(StrEnum):
    """Failure classes; the operator's retry policy is keyed on these."""

    AUTH = "Auth"  # credentials or host key refused: retrying cannot help
    NETWORK = "Network"  # NAS unreachable or connection dropped: retry with backoff
    HASH_MISMATCH = "HashMismatch"  # remote bytes differ from the manifest
    LOCAL_VANISHED = "LocalVanished"  # the run (or files in it) disappeared locally
    CONFIG = "Config"  # broken secret / rclone config / parameters
    PERMISSION = "Permission"  # the mover's uid/gid may not read, write or delete what the run needs
    NO_SPACE = "NoSpace"  # the NAS (or its quota) is full: retry with backoff once space is freed
    # Set by the operator, not by a mover: the mover Job ran past its deadline
    # (activeDeadlineSeconds), or its pod never started within startTimeout.
    TIMEOUT = "Timeout"
    NOT_STARTED = "NotStarted"
    UNKNOWN = "Unknown"


class _Model(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class RcloneDestination(_Model):
    type: Literal["rclone"] = "rclone"
    remote: str
    path: str
    config_file: str = Field(alias="configFile")  # mounted secret file


class RsyncDestination(_Model):
    type: Literal["rsync"] = "rsync"
    host: str
    port: int = 22
    user: str
    path: str
    key_file: str = Field(alias="keyFile")  # mounted secret file
    known_hosts_file: str = Field(alias="knownHostsFile")


class VolumeDestination(_Model):
    type: Literal["volume"] = "volume"
    mount: str = DESTINATION_MOUNT  # where the destination's claim is mounted in the pod
    path: str  # the destination root: inside `mount`


Destination = RcloneDestination | RsyncDestination | VolumeDestination


def remote_run_path(base: str, run_path: str) -> str:
    """`<destination path>/<runPath>`: the whole relative path, so projects never collide.

    An empty base (an rclone remote's root, e.g. the login's home) gives the runPath alone.
    """
    run = run_path.strip("/")
    if not base.strip("/"):
        return ("/" + run) if base.startswith("/") else run
    return base.rstrip("/") + "/" + run


# Day names of bandwidth windows; the index is datetime.weekday().
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class BandwidthWindow(_Model):
    days: list[str]
    start: str  # "HH:MM"
    end: str  # "HH:MM"; end <= start means the window crosses midnight
    limit_kibps: int = Field(alias="limitKiBps", ge=0)


class Bandwidth(_Model):
    time_zone: str = Field(default="UTC", alias="timeZone")
    default_kibps: int = Field(default=0, alias="defaultKiBps", ge=0)
    windows: list[BandwidthWindow] = Field(default_factory=list)


class Override(_Model):
    rule: str
    reason: str
    expires_at: str | None = Field(default=None, alias="expiresAt")


class Ids(_Model):
    """A uid and gid (the owner of a run, or who a mover ran as)."""

    uid: int = Field(ge=0)
    gid: int = Field(ge=0)


class CompletionMarker(_Model):
    """Files an instrument writes when a run is complete (e.g. Illumina's CopyComplete.txt)."""

    names: list[str] = Field(min_length=1)
    match: Literal["Any", "All"] = "Any"


class ReplicaCheck(_Model):
    """A further copy the cleanup step proves right before deleting, like the primary."""

    name: str
    destination: Destination = Field(discriminator="type")
    verify_method: Literal["Auto", "RemoteHash", "Download"] = Field(default="Auto", alias="verifyMethod")


class MoverParams(_Model):
    step: Step
    source_root: str = Field(default=SOURCE_MOUNT, alias="sourceRoot")
    run_path: str = Field(alias="runPath")
    cache_dir_name: str = Field(default=".exlab-wizard", alias="cacheDirName")
    destination: Destination = Field(discriminator="type")
    verify_method: Literal["Auto", "RemoteHash", "Download"] = Field(default="Auto", alias="verifyMethod")
    bandwidth: Bandwidth = Field(default_factory=Bandwidth)
    quiet_period_seconds: int = Field(default=0, alias="quietPeriodSeconds", ge=0)
    overrides: list[Override] = Field(default_factory=list)
    retain_cache: bool = Field(default=True, alias="retainCache")
    # Cleanup is enabled on the target: the gate also checks that every file can be deleted.
    cleanup_enabled: bool = Field(default=False, alias="cleanupEnabled")
    # The cleanup re-reads creation.json right before deleting: a tombstone
    # younger than this stops the delete (the lab app's rule).
    min_age_after_verify_seconds: int = Field(default=0, alias="minAgeAfterVerifySeconds", ge=0)
    # Gate only: the target runs movers as the run's owner, who is not known yet.
    # The gate reports the owner and judges nothing (it may not even read the run).
    identify_owner: bool = Field(default=False, alias="identifyOwner")
    # Push only: compare file contents, not size and time, with what the NAS holds
    # (set after a hash mismatch, so that a corrupted NAS file is replaced).
    compare_content: bool = Field(default=False, alias="compareContent")
    completion_marker: CompletionMarker | None = Field(default=None, alias="completionMarker")
    # The manifest digest recorded at push; verify/cleanup refuse a manifest
    # that does not match it (someone rewrote checksums.sha256).
    expected_manifest_sha256: str | None = Field(default=None, alias="expectedManifestSha256")
    # "<namespace>/<name>/<uid>" of the SyncJob. Push records it on the NAS in
    # <cacheDir>/nassync-owner and refuses a remote run directory that carries
    # another owner, so two SyncJobs never write into one directory.
    owner: str = ""
    # Push and verify of a replica (spec.replicas[].name): `destination` is that
    # copy's. A replica push copies the run as the recorded manifest describes
    # it and never rewrites the manifest; a replica verify leaves the run's
    # creation.json alone (the primary copy is the one the lab app reads).
    replica: str | None = None
    # Cleanup only: the required replicas, each proven against the manifest
    # before anything is deleted.
    replicas: list[ReplicaCheck] = Field(default_factory=list)

    def for_replica(self, check: ReplicaCheck) -> MoverParams:
        """These parameters aimed at one replica instead of the primary."""
        return self.model_copy(update={"destination": check.destination, "verify_method": check.verify_method,
                                       "replica": check.name, "replicas": []})


class ErrorInfo(_Model):
    kind: ErrorKind
    message: str  # words a lab admin understands; never a secret


class Finding(_Model):
    rule: str
    tier: Literal["hard", "soft"]
    path: str
    message: str
    overridden: bool = False


class GateOutcome(_Model):
    # identifyOwner: the run's owner, found without judging the run.
    owner_only: bool = Field(default=False, alias="ownerOnly")
    run_owner: Ids | None = Field(default=None, alias="runOwner")
    checked_as: Ids | None = Field(default=None, alias="checkedAs")
    quiet: bool = True
    quiet_remaining_seconds: int = Field(default=0, alias="quietRemainingSeconds")
    # What a run that is not quiet waits for besides time (e.g. its completion marker).
    waiting_for: str | None = Field(default=None, alias="waitingFor")
    findings: list[Finding] = Field(default_factory=list)
    findings_truncated: int = Field(default=0, alias="findingsTruncated")
    blocked: bool = False


class ManifestSummary(_Model):
    files: int = 0
    bytes: int = 0
    sha256: str = ""


class TransferSummary(_Model):
    bytes: int = 0
    files: int = 0
    bandwidth_limit_kibps: int = Field(default=0, alias="bandwidthLimitKiBps")


class VerifySummary(_Model):
    local_changed: bool = Field(default=False, alias="localChanged")
    missing: int = 0
    differing: int = 0
    examples: list[str] = Field(default_factory=list)  # a few relpaths, for the message
    method: str = ""
    replica: str | None = None  # the replica this check was about; None: the primary


class CleanupSummary(_Model):
    files_deleted: int = Field(default=0, alias="filesDeleted")
    bytes_freed: int = Field(default=0, alias="bytesFreed")
    # Set when nothing was deleted because an override was revoked recently.
    deferred: str | None = None


class MoverResult(_Model):
    step: Step
    ok: bool
    error: ErrorInfo | None = None
    gate: GateOutcome | None = None
    manifest: ManifestSummary | None = None
    transfer: TransferSummary | None = None
    verify: VerifySummary | None = None
    cleanup: CleanupSummary | None = None
    # Newest revocation tombstone in creation.json (RFC 3339), if any; the
    # operator's cleanup interlock refuses while it is younger than minAgeAfterVerify.
    last_revocation_at: str | None = Field(default=None, alias="lastRevocationAt")

    def dump(self) -> str:
        """Serialise within the termination-message budget: always whole JSON, detail dropped first.

        Strings that are not valid Unicode (a file name of undecodable bytes
        reaching a message) are escaped, never a reason to crash.
        """
        trimmed = _safe(self)
        # Findings are shortened before any is dropped: one finding on a path of
        # 4 KiB would otherwise take every other with it ("blocked", 0 findings).
        for shrink in (_shorten_findings, _shorten_texts):
            if _fits(trimmed):
                break
            shrink(trimmed)
        if not _fits(trimmed):
            error = trimmed.error.model_copy(update={"message": trimmed.error.message[:300]}) if trimmed.error else None
            trimmed = MoverResult(step=trimmed.step, ok=trimmed.ok, error=error)
        return trimmed.model_dump_json(by_alias=True, exclude_none=True)


def _json_size(result: MoverResult) -> int:
    return len(result.model_dump_json(by_alias=True, exclude_none=True).encode())


def _fits(result: MoverResult) -> bool:
    return _json_size(result) <= MAX_RESULT_BYTES


def _text(value: str) -> str:
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")


def _clean(value: object) -> object:
    if isinstance(value, str):
        return _text(value)
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def _safe(result: MoverResult) -> MoverResult:
    return MoverResult.model_validate(_clean(result.model_dump(by_alias=True)))


def _drop_findings(result: MoverResult) -> None:
    gate = result.gate
    while gate is not None and gate.findings and not _fits(result):
        gate.findings.pop()
        gate.findings_truncated += 1


def _shorten_findings(result: MoverResult) -> None:
    if result.gate is None:
        return
    for finding in result.gate.findings:
        finding.path = _cut(finding.path, 200)
        finding.message = _cut(finding.message, 200)
    _drop_findings(result)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shorten_texts(result: MoverResult) -> None:
    if result.verify is not None:
        result.verify.examples = [e[:200] for e in result.verify.examples[:3]]
    if result.error is not None:
        result.error.message = result.error.message[:1000]
