"""SyncTarget: "an instrument's storage and its NAS destination" (admin-owned).

A SyncTarget is the only object that names host paths, volumes, nodes,
secrets and images (docs/concepts.md, "Security model"): users who may create SyncJobs only pick a
target by name and a relative run path, so nothing they write reaches a pod
spec. These models mirror `crds/nassync.dev_synctargets.yaml` field for field
(tests/unit/test_crd_schema.py keeps the two in lockstep) and enforce the same
structural rules the CRD enforces, so `SyncTarget.from_body` succeeds on every
object the apiserver admitted. Semantic checks that need the outside world
(does the time zone exist? is a window empty?) live in
`nassync.api.validation`, not here, because a model that refuses to load an
already-stored object would wedge the operator instead of reporting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from nassync.api import mover_io
from nassync.api.common import (
    DNS1123_SUBDOMAIN_MAX,
    DNS1123_SUBDOMAIN_PATTERN,
    MAX_CONDITIONS,
    SECRET_KEY_MAX,
    SECRET_KEY_PATTERN,
    ApiModel,
    Condition,
    Duration,
    LocalObjectReference,
    ResourceModel,
    find_condition,
    has_control_character,
)
from nassync.api.durations import parse_duration

KIND = "SyncTarget"
PLURAL = "synctargets"

Day = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
HHMM_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
# Hostnames, IPv4 and bare IPv6; never starting with '-', so that a host can
# not be smuggled into ssh's argv as an option.
RSYNC_HOST_PATTERN = r"^[A-Za-z0-9][-A-Za-z0-9.:]*$"
RSYNC_USER_PATTERN = r"^[A-Za-z0-9_][-A-Za-z0-9_.]*$"
# rclone config section names; ':' and '/' would make it a path or an on-the-fly remote.
# A leading '-' would make the remote name read as an rclone option.
RCLONE_REMOTE_PATTERN = r"^[_.+@ A-Za-z0-9][-_.+@ A-Za-z0-9]*$"
# A Kubernetes resource quantity (resource.Quantity), as the CRD's pattern says.
QUANTITY_PATTERN = re.compile(
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
MARKER_PATTERN = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"
MAX_MARKERS = 8
MAX_PATH_LENGTH = 1024
MAX_WINDOWS = 32
MAX_BACKOFF_STEPS = 32
MAX_TOLERATIONS = 32


def _no_control_characters(value: str, what: str) -> str:
    if has_control_character(value):
        raise ValueError(f"{what} must not contain control characters")
    return value


# --- source -----------------------------------------------------------------


class HostPathSource(ApiModel):
    """A directory on the node (the instrument PC's disk); runs are below it."""

    path: str = Field(min_length=1, max_length=MAX_PATH_LENGTH)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("hostPath.path must be an absolute path (start with '/')")
        return _no_control_characters(value, "hostPath.path")


class PersistentVolumeClaimSource(ApiModel):
    """A PVC in the target's namespace holding the runs."""

    claim_name: str = Field(min_length=1, max_length=DNS1123_SUBDOMAIN_MAX, pattern=DNS1123_SUBDOMAIN_PATTERN)


class SourceVolume(ApiModel):
    """Exactly one of `hostPath` or `persistentVolumeClaim`."""

    host_path: HostPathSource | None = None
    persistent_volume_claim: PersistentVolumeClaimSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceVolume:
        if (self.host_path is None) == (self.persistent_volume_claim is None):
            raise ValueError(
                "exactly one of spec.source.volume.hostPath or spec.source.volume.persistentVolumeClaim must be set"
            )
        return self


class Toleration(ApiModel):
    """A pod toleration (core/v1 Toleration) for node-local instrument disks."""

    key: str | None = Field(default=None, max_length=316)
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = Field(default=None, max_length=63)
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Source(ApiModel):
    """Where runs live and where a mover pod must run to see them."""

    volume: SourceVolume
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(default_factory=dict, max_length=32)
    tolerations: list[Toleration] = Field(default_factory=list, max_length=MAX_TOLERATIONS)
    cache_dir_name: str = Field(default=".exlab-wizard", min_length=1, max_length=255)

    @field_validator("cache_dir_name")
    @classmethod
    def _single_segment(cls, value: str) -> str:
        if "/" in value or value in (".", ".."):
            raise ValueError("spec.source.cacheDirName must be a single directory name (no '/', not '.' or '..')")
        return _no_control_characters(value, "spec.source.cacheDirName")


# --- destination ------------------------------------------------------------


class SecretKeyRef(ApiModel):
    """A key of a Secret in the target's namespace."""

    name: str = Field(min_length=1, max_length=DNS1123_SUBDOMAIN_MAX, pattern=DNS1123_SUBDOMAIN_PATTERN)
    key: str = Field(default="rclone.conf", min_length=1, max_length=SECRET_KEY_MAX, pattern=SECRET_KEY_PATTERN)


# Each destination model carries what the operator needs to know about its
# transport: which Secret and keys it needs (target readiness), which of them
# the mover pod mounts, and the mover contract's view of it (`to_mover`). The
# pod side of the transport is in nassync/transports/, mapped by type in
# transports/catalog.py.


@dataclass(frozen=True)
class PodSlot:
    """Where one destination's Secret and volume sit in a mover pod.

    A push or verify pod holds one destination, in the primary slot: its
    Secret at SECRET_DIR, where the rclone configs admins write expect their
    companion files. A cleanup pod proves every required destination, so each
    replica gets a slot of its own under REPLICA_DIR.
    """

    secret_dir: str = mover_io.SECRET_DIR
    mount: str = mover_io.DESTINATION_MOUNT
    secret_volume: str = "nas-secret"
    volume_name: str = "destination"

    @classmethod
    def for_replica(cls, name: str) -> PodSlot:
        base = f"{mover_io.REPLICA_DIR}/{name}"
        return cls(secret_dir=f"{base}/secret", mount=f"{base}/destination",
                   secret_volume=f"replica-{name}-secret", volume_name=f"replica-{name}-destination")


PRIMARY_SLOT = PodSlot()


class RcloneDestination(ApiModel):
    """An rclone remote; the Secret holds the rclone config file."""

    remote: str = Field(min_length=1, max_length=128, pattern=RCLONE_REMOTE_PATTERN)
    path: str = Field(min_length=1, max_length=MAX_PATH_LENGTH)
    config_secret_ref: SecretKeyRef

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _no_control_characters(value, "spec.destination.rclone.path")

    @property
    def secret_name(self) -> str:
        return self.config_secret_ref.name

    @property
    def required_secret_keys(self) -> frozenset[str]:
        return frozenset({self.config_secret_ref.key})

    @property
    def secret_items(self) -> list[dict[str, str]] | None:
        # The whole Secret: rclone.conf may name companion files (key_file,
        # known_hosts_file) as /var/run/nassync/secret/<key>.
        return None

    def pod_volumes(self, slot: PodSlot) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Volumes (and their mounts) the mover needs besides the source and the Secret."""
        return []

    def to_mover(self, slot: PodSlot) -> mover_io.RcloneDestination:
        return mover_io.RcloneDestination(
            remote=self.remote, path=self.path, configFile=f"{slot.secret_dir}/{self.config_secret_ref.key}")


SSH_KEY = "ssh-privatekey"
SSH_KNOWN_HOSTS = "known_hosts"


class RsyncDestination(ApiModel):
    """rsync over ssh; the Secret holds `ssh-privatekey` and `known_hosts`."""

    host: str = Field(min_length=1, max_length=253, pattern=RSYNC_HOST_PATTERN)
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(min_length=1, max_length=64, pattern=RSYNC_USER_PATTERN)
    path: str = Field(min_length=1, max_length=MAX_PATH_LENGTH)
    ssh_secret_ref: LocalObjectReference

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        return _no_control_characters(value, "spec.destination.rsync.path")

    @property
    def secret_name(self) -> str:
        return self.ssh_secret_ref.name

    @property
    def required_secret_keys(self) -> frozenset[str]:
        return frozenset({SSH_KEY, SSH_KNOWN_HOSTS})

    @property
    def secret_items(self) -> list[dict[str, str]] | None:
        return [{"key": SSH_KEY, "path": SSH_KEY}, {"key": SSH_KNOWN_HOSTS, "path": SSH_KNOWN_HOSTS}]

    def pod_volumes(self, slot: PodSlot) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Volumes (and their mounts) the mover needs besides the source and the Secret."""
        return []

    def to_mover(self, slot: PodSlot) -> mover_io.RsyncDestination:
        return mover_io.RsyncDestination(
            host=self.host, port=self.port, user=self.user, path=self.path,
            keyFile=f"{slot.secret_dir}/{SSH_KEY}", knownHostsFile=f"{slot.secret_dir}/{SSH_KNOWN_HOSTS}")




class VolumeDestination(ApiModel):
    """A NAS mounted into the cluster as a PersistentVolumeClaim; no network credentials."""

    claim_name: str = Field(min_length=1, max_length=DNS1123_SUBDOMAIN_MAX, pattern=DNS1123_SUBDOMAIN_PATTERN)
    path: str = Field(default="/", min_length=1, max_length=MAX_PATH_LENGTH)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if ".." in value.split("/"):
            raise ValueError("spec.destination.volume.path must not contain '..' segments")
        return _no_control_characters(value, "spec.destination.volume.path")

    @property
    def secret_name(self) -> str | None:
        return None

    @property
    def required_secret_keys(self) -> frozenset[str]:
        return frozenset()

    @property
    def secret_items(self) -> list[dict[str, str]] | None:
        return None

    def pod_volumes(self, slot: PodSlot) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return [({"name": slot.volume_name, "persistentVolumeClaim": {"claimName": self.claim_name}},
                 {"name": slot.volume_name, "mountPath": slot.mount})]

    def to_mover(self, slot: PodSlot) -> mover_io.VolumeDestination:
        inside = self.path.strip("/")
        return mover_io.VolumeDestination(mount=slot.mount, path=slot.mount + (f"/{inside}" if inside else ""))


DestinationModel = RcloneDestination | RsyncDestination | VolumeDestination


class Destination(ApiModel):
    """Exactly one transport block; its field name is the destination type."""

    rclone: RcloneDestination | None = None
    rsync: RsyncDestination | None = None
    volume: VolumeDestination | None = None

    where: ClassVar[str] = "spec.destination"  # how messages name this field

    @model_validator(mode="after")
    def _exactly_one(self) -> Destination:
        chosen = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(chosen) != 1:
            names = " or ".join(f"{self.where}.{name}" for name in type(self).model_fields)
            raise ValueError(f"exactly one of {names} must be set")
        return self

    @property
    def type(self) -> str:
        """The destination type: the name of the one block that is set (a transport catalog key)."""
        return next(name for name in type(self).model_fields if getattr(self, name) is not None)

    @property
    def chosen(self) -> DestinationModel:
        """The one transport block that is set."""
        value: DestinationModel = getattr(self, self.type)
        return value

    @property
    def path(self) -> str:
        """The destination root; a run lands at `<path>/<runPath>`."""
        return self.chosen.path

    @property
    def secret_name(self) -> str | None:
        """The Secret holding the destination's credentials; None when it needs none."""
        return self.chosen.secret_name

    def remote_path(self, run_path: str) -> str:
        """Where a run lands on the NAS."""
        return mover_io.remote_run_path(self.path, run_path)


# --- verify / bandwidth / policies ------------------------------------------


class Verify(ApiModel):
    """How the remote copy is hashed (docs/concepts.md, "What verified means")."""

    method: Literal["Auto", "RemoteHash", "Download"] = "Auto"


class BandwidthWindow(ApiModel):
    """A weekly time window with its own limit; same shape as mover_io.BandwidthWindow."""

    days: list[Day] = Field(min_length=1, max_length=7)
    start: str = Field(max_length=5, pattern=HHMM_PATTERN)
    end: str = Field(max_length=5, pattern=HHMM_PATTERN)  # end <= start: the window crosses midnight
    limit_kibps: int = Field(alias="limitKiBps", ge=0)

    @field_validator("days")
    @classmethod
    def _unique_days(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("lists a day twice; name each day once")
        return value


class Bandwidth(ApiModel):
    """Rate limits by time of week; same shape as mover_io.Bandwidth."""

    time_zone: str = Field(default="UTC", min_length=1, max_length=64)
    default_kibps: int = Field(default=0, alias="defaultKiBps", ge=0)  # 0 = unlimited
    windows: list[BandwidthWindow] = Field(default_factory=list, max_length=MAX_WINDOWS)

    def to_mover(self) -> mover_io.Bandwidth:
        """The same timetable in the mover contract's type."""
        return mover_io.Bandwidth.model_validate(self.to_api())


class Retry(ApiModel):
    """Retry policy for transient failures (Network, Unknown)."""

    max_attempts: int = Field(default=5, ge=1, le=100)
    backoff_seconds: list[int] = Field(
        default_factory=lambda: [30, 120, 480, 1800], min_length=1, max_length=MAX_BACKOFF_STEPS
    )

    @field_validator("backoff_seconds")
    @classmethod
    def _non_negative(cls, value: list[int]) -> list[int]:
        if any(v < 0 for v in value):
            raise ValueError("backoffSeconds must all be >= 0")
        return value


def _marker_name(value: str) -> str:
    if any(part in (".", "..") for part in value.split("/")):
        raise ValueError("completionMarker names must not contain '.' or '..' segments")
    return value


MarkerName = Annotated[str, Field(min_length=1, max_length=255, pattern=MARKER_PATTERN),
                       AfterValidator(_marker_name)]


class CompletionMarker(ApiModel):
    """Files the instrument writes when a run is complete; see docs/concepts.md "Gate and overrides"."""

    names: list[MarkerName] = Field(min_length=1, max_length=MAX_MARKERS)
    match: Literal["Any", "All"] = "Any"

    def to_mover(self) -> mover_io.CompletionMarker:
        return mover_io.CompletionMarker(names=list(self.names), match=self.match)


class Gate(ApiModel):
    """Pre-sync gate settings."""

    quiet_period: Duration = "10m"
    completion_marker: CompletionMarker | None = None

    @property
    def quiet_period_seconds(self) -> int:
        return parse_duration(self.quiet_period)


def _positive_duration(value: str) -> str:
    if parse_duration(value) <= 0:
        raise ValueError("reverifyInterval must be longer than 0s")
    return value


class Cleanup(ApiModel):
    """Local deletion policy; every field is an interlock (docs/concepts.md, "Cleanup and its interlocks")."""

    enabled: bool = False
    min_verify_passes: int = Field(default=2, ge=1, le=100)
    min_age_after_verify: Duration = "24h"
    reverify_interval: Duration = "6h"
    retain_cache: bool = True

    @field_validator("reverify_interval")
    @classmethod
    def _reverify_positive(cls, value: str) -> str:
        return _positive_duration(value)

    @property
    def min_age_after_verify_seconds(self) -> int:
        return parse_duration(self.min_age_after_verify)

    @property
    def reverify_interval_seconds(self) -> int:
        return parse_duration(self.reverify_interval)


# --- replicas ---------------------------------------------------------------

PRIMARY = "primary"  # the name spec.destination goes by among the copies
MAX_REPLICAS = 4
REPLICA_NAME_MAX = 20  # leaves room in a mover Job name: <syncjob>-<step>-<n>-<name>
REPLICA_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class ReplicaDestination(Destination):
    where: ClassVar[str] = "spec.replicas[].destination"


class Replica(ApiModel):
    """A further copy of every run, besides spec.destination (docs/concepts.md, "Replicas")."""

    name: str = Field(min_length=1, max_length=REPLICA_NAME_MAX, pattern=REPLICA_NAME_PATTERN)
    destination: ReplicaDestination
    verify: Verify = Field(default_factory=Verify)
    bandwidth: Bandwidth | None = None  # None: the target's spec.bandwidth
    required_for_cleanup: bool = True

    @field_validator("name")
    @classmethod
    def _not_primary(cls, value: str) -> str:
        if value == PRIMARY:
            raise ValueError("spec.replicas[].name must not be 'primary' (that is spec.destination)")
        return value


# --- mover pod --------------------------------------------------------------


def _quantity(value: str | int) -> str | int:
    if isinstance(value, str) and not QUANTITY_PATTERN.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 1Gi)")
    return value


Quantity = Annotated[str | int, AfterValidator(_quantity)]


class ResourceRequirements(ApiModel):
    """core/v1 ResourceRequirements (quantities as strings or integers)."""

    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=16)
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=16)


class MoverSecurityContext(ApiModel):
    """The identity mover pods run as (to read and delete the instrument's files).

    Everything else about pod security is fixed by the operator (non-root by
    default, no privilege escalation, all capabilities dropped, read-only root,
    seccomp RuntimeDefault) and deliberately not configurable here.
    """

    run_as_user: int | None = Field(default=None, ge=0)
    run_as_group: int | None = Field(default=None, ge=0)
    fs_group: int | None = Field(default=None, ge=0)
    supplemental_groups: list[int] = Field(default_factory=list, max_length=32)


class RunAsRunOwner(ApiModel):
    """Run movers as the owner of each run directory, within an admin-set uid range (never 0)."""

    min_uid: int = Field(default=1000, alias="minUID", ge=1)
    max_uid: int = Field(default=65533, alias="maxUID", ge=1, le=2**31 - 1)

    @model_validator(mode="after")
    def _ordered(self) -> RunAsRunOwner:
        if self.min_uid > self.max_uid:
            raise ValueError("spec.mover.runAsRunOwner.minUID must not be above maxUID")
        return self

    def allows(self, uid: int) -> bool:
        return uid != 0 and self.min_uid <= uid <= self.max_uid


# Per-step default of a mover Job's activeDeadlineSeconds: long enough for a
# big run at a throttled rate, short enough that a hung NAS frees the slot.
DEFAULT_DEADLINES: dict[str, int] = {"gate": 30 * 60, "push": 24 * 3600, "verify": 12 * 3600, "cleanup": 12 * 3600}
DEFAULT_START_TIMEOUT = "3m"


def _positive(value: str | None, what: str) -> str | None:
    if value is not None and parse_duration(value) <= 0:
        raise ValueError(f"{what} must be longer than 0s")
    return value


class StepDeadlines(ApiModel):
    """Per-step upper bound on a mover Job's runtime; unset steps fall back (see Mover.deadline_seconds)."""

    gate: Duration | None = None
    push: Duration | None = None
    verify: Duration | None = None
    cleanup: Duration | None = None

    @field_validator("gate", "push", "verify", "cleanup")
    @classmethod
    def _positive(cls, value: str | None) -> str | None:
        return _positive(value, "spec.mover.deadlines")


class Mover(ApiModel):
    """Pod-level settings of the mover Jobs of this target."""

    image: str | None = Field(default=None, max_length=1024)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    image_pull_secrets: list[LocalObjectReference] = Field(default_factory=list, max_length=16)
    resources: ResourceRequirements | None = None
    security_context: MoverSecurityContext | None = None
    service_account_name: str | None = Field(
        default=None, max_length=DNS1123_SUBDOMAIN_MAX, pattern=DNS1123_SUBDOMAIN_PATTERN
    )
    active_deadline_seconds: int | None = Field(default=None, ge=1)
    run_as_run_owner: RunAsRunOwner | None = None
    deadlines: StepDeadlines | None = None
    start_timeout: Duration = DEFAULT_START_TIMEOUT
    # For a NAS only the node's own network reaches; off by default because it
    # gives the mover the node's network identity.
    host_network: bool = False

    @model_validator(mode="after")
    def _one_identity(self) -> Mover:
        fixed_uid = self.security_context is not None and self.security_context.run_as_user is not None
        if self.run_as_run_owner is not None and fixed_uid:
            raise ValueError("runAsRunOwner and securityContext.runAsUser exclude each other; set one")
        return self

    @field_validator("start_timeout")
    @classmethod
    def _start_positive(cls, value: str) -> str:
        _positive(value, "spec.mover.startTimeout")
        return value

    def deadline_seconds(self, step: str) -> int:
        """The Job's activeDeadlineSeconds for `step`: deadlines.<step>, else activeDeadlineSeconds, else default."""
        explicit = getattr(self.deadlines, step, None) if self.deadlines is not None else None
        if explicit is not None:
            return parse_duration(explicit)
        if self.active_deadline_seconds is not None:
            return self.active_deadline_seconds
        return DEFAULT_DEADLINES[step]

    @property
    def start_timeout_seconds(self) -> int:
        return parse_duration(self.start_timeout)


class History(ApiModel):
    """Opt-in removal of finished SyncJobs (core/history.py); never of data."""

    keep_finished: int | None = Field(default=None, ge=0, le=1_000_000)
    delete_finished_after: Duration | None = None

    @property
    def delete_finished_after_seconds(self) -> int | None:
        return parse_duration(self.delete_finished_after) if self.delete_finished_after is not None else None

    @property
    def enabled(self) -> bool:
        return self.keep_finished is not None or self.delete_finished_after is not None


# --- spec / status / object -------------------------------------------------


class SyncTargetSpec(ApiModel):
    source: Source
    destination: Destination
    replicas: list[Replica] = Field(default_factory=list, max_length=MAX_REPLICAS)
    verify: Verify = Field(default_factory=Verify)
    bandwidth: Bandwidth = Field(default_factory=Bandwidth)
    concurrency: int = Field(default=1, ge=1, le=64)
    retry: Retry = Field(default_factory=Retry)
    gate: Gate = Field(default_factory=Gate)
    cleanup: Cleanup = Field(default_factory=Cleanup)
    history: History = Field(default_factory=History)
    mover: Mover = Field(default_factory=Mover)

    @field_validator("replicas")
    @classmethod
    def _unique_names(cls, value: list[Replica]) -> list[Replica]:
        seen: set[str] = set()
        for replica in value:
            if replica.name in seen:
                raise ValueError(f"spec.replicas lists the name {replica.name!r} twice; each copy needs its own name")
            seen.add(replica.name)
        return value

    def replica(self, name: str) -> Replica | None:
        return next((r for r in self.replicas if r.name == name), None)

    @property
    def required_replicas(self) -> list[Replica]:
        return [r for r in self.replicas if r.required_for_cleanup]

    def destinations(self) -> list[tuple[str, Destination]]:
        """Every copy by name, the primary first."""
        return [(PRIMARY, self.destination), *((r.name, r.destination) for r in self.replicas)]

    def source_summary(self) -> str:
        """What the Source printer column shows (`status.source`)."""
        volume = self.source.volume
        if volume.host_path is not None:
            return f"hostPath:{volume.host_path.path}"
        assert volume.persistent_volume_claim is not None
        return f"pvc:{volume.persistent_volume_claim.claim_name}"


class SyncTargetStatus(ApiModel):
    observed_generation: int | None = Field(default=None, ge=0)
    conditions: list[Condition] = Field(default_factory=list, max_length=MAX_CONDITIONS)
    active_movers: int = Field(default=0, ge=0)
    queued: int = Field(default=0, ge=0)
    # Summaries for the printer columns: a printer column's JSONPath cannot
    # choose between hostPath and persistentVolumeClaim, so the operator writes
    # SyncTargetSpec.source_summary() and destination.type here.
    source: str | None = Field(default=None, max_length=1100)
    destination_type: Literal["rclone", "rsync", "volume"] | None = None

    def condition(self, type_: str) -> Condition | None:
        return find_condition(self.conditions, type_)


class SyncTarget(ResourceModel):
    """A whole SyncTarget object as the apiserver returns it."""

    kind: Literal["SyncTarget"] = "SyncTarget"
    spec: SyncTargetSpec
    status: SyncTargetStatus = Field(default_factory=SyncTargetStatus)
