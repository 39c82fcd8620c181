"""Is a SyncTarget usable? The policy, as pure functions of what the shell observed.

A target that is missing, that the operator cannot read (an object admitted
by an older CRD, or edited past the webhook), or whose Secret or Secret keys
are missing starts no movers: a pod waiting forever for a Secret would hold a
mover slot and say nothing. Each case has a reason (CamelCase, for the
SyncTarget's Ready condition and Events) and a message that says what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from nassync.api.target import SyncTarget


@dataclass(frozen=True)
class Readiness:
    """Whether movers may start for a target, and why not."""

    ready: bool
    reason: str
    message: str


READY = Readiness(True, "Ready", "source, destination and credentials are configured")


def load_target(body: Mapping[str, Any] | None) -> tuple[SyncTarget | None, str | None]:
    """The target model, or None with what is wrong with the stored object (None if absent)."""
    if body is None:
        return None, None
    try:
        return SyncTarget.from_body(body), None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return None, f"{where}: {first.get('msg', e)}" if where else str(first.get("msg", e))


def assess(
    *,
    namespace: str,
    name: str,
    exists: bool,
    target: SyncTarget | None,
    problem: str | None,
    secret_keys: frozenset[str] | None,
) -> Readiness:
    """Readiness of target `name`.

    `exists` says whether the object is there at all; `target` is its model
    (None when absent or unreadable, `problem` then says why); `secret_keys`
    are the data keys of the Secret the destination names (None when that
    Secret does not exist).
    """
    if not exists:
        return Readiness(False, "TargetMissing", f'SyncTarget "{name}" not found in namespace "{namespace}"')
    if target is None:
        return Readiness(False, "InvalidSpec", f"SyncTarget spec is invalid: {problem or 'cannot be read'}")
    destination = target.spec.destination.chosen
    secret = destination.secret_name
    if secret is None:
        return READY  # a mounted volume needs no credentials; a missing claim shows on the mover pod
    if secret_keys is None:
        return Readiness(False, "SecretMissing", f"Secret {secret!r} not found in namespace {namespace!r}; "
                                                 "create it before SyncJobs can push")
    missing = sorted(destination.required_secret_keys - secret_keys)
    if missing:
        return Readiness(False, "SecretKeyMissing", f"Secret {secret!r} lacks key(s) {', '.join(missing)}")
    return READY
