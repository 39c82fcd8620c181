"""Deterministic names and labels for mover Jobs.

The operator keeps no state of its own: a SyncJob's status plus the *names* of
its mover Jobs are the whole state (docs/operations.md, "Operator restarts"). If the operator
dies after creating a Job but before recording it in the status, the restarted
operator computes the same name again and finds the Job instead of starting a
second mover on the same run. So a name must be a pure function of
(syncjob, step, run number) and must never collide with the name of another
(syncjob, step, run number).

Kubernetes limits a Job name to 63 characters in practice (the Job controller
copies it into the `job-name` label, whose values are capped at 63), and it must
be a DNS-1123 label. SyncJob names may be DNS subdomains of up to 253
characters, so a long or dotted name is shortened: the SyncJob part is truncated
and an 8-hex digest of the full plain name is added, which keeps the result
unique (up to a 32-bit hash collision between two SyncJobs with the same long
prefix in one namespace) and still readable.
"""

from __future__ import annotations

import hashlib
import re

from nassync.api.common import GROUP
from nassync.api.mover_io import Step

MAX_NAME_LENGTH = 63
HASH_LENGTH = 8

# Labels on every mover Job (and, through the pod template, its pod). The shell
# finds a SyncJob's children by LABEL_SYNCJOB plus the owner reference.
LABEL_SYNCJOB = f"{GROUP}/syncjob"
LABEL_STEP = f"{GROUP}/step"
LABEL_TARGET = f"{GROUP}/target"
LABEL_RUN = f"{GROUP}/run"  # the mover run number n, as a string
LABEL_REPLICA = f"{GROUP}/replica"  # only on the Jobs of a replica (spec.replicas[].name)
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "nassync"

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_NOT_LABEL_CHAR = re.compile(r"[^a-z0-9-]+")


def is_dns1123_label(value: str) -> bool:
    """True when `value` is usable as a Job name (and therefore a pod name prefix)."""
    return len(value) <= MAX_NAME_LENGTH and bool(_DNS1123_LABEL.match(value))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def job_name(*, syncjob: str, step: Step, n: int, replica: str | None = None) -> str:
    """The name of the n-th mover Job of `syncjob`, running `step` (on `replica`, if given).

    `<syncjob>-<step>-<n>` (`<syncjob>-<step>-<n>-<replica>` for a replica) when
    that is a valid DNS-1123 label; otherwise the SyncJob part is sanitised,
    truncated and followed by a hash of the plain name, so every Job name still
    ends in `-<step>-<n>` (or `-<step>-<n>-<replica>`). A replica name starts
    with a letter, so a replica's Job never reads as another SyncJob's
    `-<step>-<n>`.
    """
    if n < 1:
        raise ValueError(f"mover run numbers start at 1, got {n}")
    tail = f"-{step}-{n}" + (f"-{replica}" if replica else "")
    plain = f"{syncjob}{tail}"
    if is_dns1123_label(plain):
        return plain
    suffix = f"-{_digest(plain)}{tail}"
    room = MAX_NAME_LENGTH - len(suffix)
    prefix = _NOT_LABEL_CHAR.sub("-", syncjob.lower())[:room].strip("-")
    name = f"{prefix}{suffix}" if prefix else suffix.lstrip("-")
    assert is_dns1123_label(name), name  # pragma: no cover - guaranteed by construction
    return name


def label_value(value: str) -> str:
    """`value` made safe as a label value (63 chars max), hashed when shortened.

    SyncJob names can be longer than a label value may be; selectors must use
    this same function so that they match what was written.
    """
    if len(value) <= MAX_NAME_LENGTH and _LABEL_VALUE.match(value):
        return value
    suffix = f"-{_digest(value)}"
    prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", value)[: MAX_NAME_LENGTH - len(suffix)]
    prefix = prefix.rstrip("-_.").lstrip("-_.")
    return f"{prefix}{suffix}" if prefix else suffix[1:]


def mover_labels(*, syncjob: str, target: str, step: Step, n: int, replica: str | None = None) -> dict[str, str]:
    """The labels every mover Job of `syncjob` carries."""
    labels = {
        LABEL_SYNCJOB: label_value(syncjob),
        LABEL_TARGET: label_value(target),
        LABEL_STEP: step,
        LABEL_RUN: str(n),
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    if replica:
        labels[LABEL_REPLICA] = replica
    return labels


def children_selector(*, syncjob: str) -> str:
    """A label selector (string form) for the mover Jobs of one SyncJob."""
    return f"{LABEL_SYNCJOB}={label_value(syncjob)},{LABEL_MANAGED_BY}={MANAGED_BY}"


def target_selector(*, target: str) -> str:
    """A label selector for all mover Jobs of one SyncTarget (concurrency counting)."""
    return f"{LABEL_TARGET}={label_value(target)},{LABEL_MANAGED_BY}={MANAGED_BY}"
