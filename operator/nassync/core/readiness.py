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

from nassync.api.target import PRIMARY, SyncTarget


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
    secrets: Mapping[str, frozenset[str] | None],
) -> Readiness:
    """Readiness of target `name`.

    `exists` says whether the object is there at all; `target` is its model
    (None when absent or unreadable, `problem` then says why); `secrets` maps
    the name of each Secret a destination names (the primary's and every
    replica's) to its data keys, None when that Secret does not exist. A
    replica's missing Secret stops the whole target: it is the admin's
    configuration, and a copy that can never be made would hold back every
    cleanup anyway.
    """
    if not exists:
        return Readiness(False, "TargetMissing", f'SyncTarget "{name}" not found in namespace "{namespace}"')
    if target is None:
        return Readiness(False, "InvalidSpec", f"SyncTarget spec is invalid: {problem or 'cannot be read'}")
    for copy, destination in target.spec.destinations():
        chosen = destination.chosen
        secret = chosen.secret_name
        if secret is None:
            continue  # a mounted volume needs no credentials; a missing claim shows on the mover pod
        whose = "" if copy == PRIMARY else f" (replica {copy})"
        keys = secrets.get(secret)
        if keys is None:
            return Readiness(False, "SecretMissing", f"Secret {secret!r}{whose} not found in namespace "
                                                     f"{namespace!r}; create it before SyncJobs can push")
        missing = sorted(chosen.required_secret_keys - keys)
        if missing:
            return Readiness(False, "SecretKeyMissing", f"Secret {secret!r}{whose} lacks key(s) {', '.join(missing)}")
    return READY


def secret_names(target: SyncTarget | None) -> list[str]:
    """Every Secret the target's destinations name, each once, the primary's first."""
    if target is None:
        return []
    found = (d.chosen.secret_name for _, d in target.spec.destinations())
    return list(dict.fromkeys(s for s in found if s is not None))
