"""Cleanup interlocks: the conditions under which local run data may be deleted.

Deleting instrument data cannot be undone, so cleanup runs only when *every*
interlock holds (docs/concepts.md, "Cleanup and its interlocks"):

1. cleanup is enabled on the SyncTarget (it is opt-in);
2. the SyncJob is not on hold (`spec.cleanup.hold`);
3. `verifyPasses >= minVerifyPasses` (at least one, whatever the target says);
4. `now - verifiedAt >= minAgeAfterVerify`;
5. no override was revoked within `minAgeAfterVerify` (a revocation means
   someone changed their mind about data that was let through the gate);
6. every replica that is `requiredForCleanup` is verified, as often and as
   long ago as the primary must be (core/replicas.py).

Each interlock is a named check with a message a lab admin understands, so the
operator can say exactly *which* one defers cleanup. A missing or unparseable
value never counts as met: any doubt means no delete. (The reference
implementation parked a job forever once an interlock failed; here the time
based ones report when they could next change, see `earliest_recheck`.)

The last line of defence, a final remote verify right before deleting, runs in
the cleanup pod and is not part of this module.

`permit()` is the only way to obtain a `CleanupPermit`, and a permit cannot be
constructed with an unmet check; a cleanup mover action requires one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from nassync.api.common import InvalidTime, format_time, parse_time
from nassync.core.humanize import human_seconds


@dataclass(frozen=True)
class ReplicaFacts:
    """One required replica, as the interlocks see it."""

    name: str
    verified: bool  # its current state is Verified
    verify_passes: int
    verified_at: datetime | str | None
    standing: str = ""  # where it stands, in words, for the message


@dataclass(frozen=True)
class CleanupFacts:
    """Everything the interlocks look at, as plain values.

    Durations are seconds; None means "not configured / not known" and so
    "not met" (except `last_revocation_at`, where None means "never revoked").
    """

    enabled: bool | None
    hold: bool | None
    verify_passes: int | None
    min_verify_passes: int | None
    verified_at: datetime | str | None
    min_age_after_verify: float | None
    last_revocation_at: datetime | str | None = None
    replicas: tuple[ReplicaFacts, ...] = ()  # the required ones only


@dataclass(frozen=True)
class Check:
    """One interlock's verdict. `reason` is CamelCase, for conditions and events."""

    name: str
    ok: bool
    reason: str
    message: str


def check_enabled(facts: CleanupFacts) -> Check:
    if facts.enabled is True:
        return Check("CleanupEnabled", True, "CleanupEnabled", "cleanup is enabled on the target")
    return Check(
        "CleanupEnabled",
        False,
        "CleanupDisabled",
        "cleanup is disabled on the SyncTarget (spec.cleanup.enabled); local data is kept",
    )


def check_not_on_hold(facts: CleanupFacts) -> Check:
    if facts.hold is False:
        return Check("NotOnHold", True, "NotOnHold", "the run is not on hold")
    return Check(
        "NotOnHold",
        False,
        "OnHold",
        "the SyncJob is on hold (spec.cleanup.hold); local data is kept",
    )


def check_verify_passes(facts: CleanupFacts) -> Check:
    passes, minimum = facts.verify_passes, facts.min_verify_passes
    if passes is None or minimum is None:
        return Check("VerifyPasses", False, "VerifyPassesUnknown", "verify pass count is unknown")
    # A target configured with 0 passes still needs one verified copy.
    needed = max(1, minimum)
    if passes >= needed:
        return Check("VerifyPasses", True, "EnoughVerifyPasses", f"{passes} of {needed} passes")
    return Check(
        "VerifyPasses",
        False,
        "NotEnoughVerifyPasses",
        f"{passes} of {needed} verify passes done; the next audit verify adds one",
    )


def _age_check(*, name: str, since: datetime, min_age: float, now: datetime, what: str, bad_reason: str) -> Check:
    # Absolute times, not "in 3h": the message stays the same between calls, so
    # the operator can tell a changed reason from a clock that moved.
    ready = since + timedelta(seconds=min_age)
    if now >= ready:
        return Check(name, True, name, f"{what} at {format_time(since)}")
    return Check(
        name,
        False,
        bad_reason,
        f"{what} at {format_time(since)}; cleanup waits {human_seconds(min_age)} "
        f"(minAgeAfterVerify), until {format_time(ready)}",
    )


def check_age_after_verify(facts: CleanupFacts, *, now: datetime) -> Check:
    name = "AgeAfterVerify"
    try:
        verified_at = parse_time(facts.verified_at)
    except InvalidTime:
        return Check(name, False, "VerifiedAtInvalid", "verifiedAt is unreadable")
    if verified_at is None:
        return Check(name, False, "NotVerified", "the run has no verifiedAt")
    if facts.min_age_after_verify is None or facts.min_age_after_verify < 0:
        return Check(name, False, "MinAgeInvalid", "minAgeAfterVerify is not a valid duration")
    return _age_check(
        name=name,
        since=verified_at,
        min_age=facts.min_age_after_verify,
        now=now,
        what="first verified",
        bad_reason="TooSoonAfterVerify",
    )


def check_no_recent_revocation(facts: CleanupFacts, *, now: datetime) -> Check:
    name = "NoRecentRevocation"
    try:
        revoked_at = parse_time(facts.last_revocation_at)
    except InvalidTime:
        return Check(name, False, "RevocationTimeInvalid", "the last revocation time is unreadable")
    if revoked_at is None:
        return Check(name, True, name, "no override was ever revoked")
    if facts.min_age_after_verify is None or facts.min_age_after_verify < 0:
        return Check(name, False, "MinAgeInvalid", "minAgeAfterVerify is not a valid duration")
    return _age_check(
        name=name,
        since=revoked_at,
        min_age=facts.min_age_after_verify,
        now=now,
        what="an override was revoked",
        bad_reason="RecentRevocation",
    )


def _replica_problem(replica: ReplicaFacts, facts: CleanupFacts, *, now: datetime) -> tuple[str, str] | None:
    """Why `replica` does not allow cleanup yet (reason, words), or None."""
    if not replica.verified:
        return "ReplicaNotVerified", f"replica {replica.name} is not verified: {replica.standing or 'not yet'}"
    passes = check_verify_passes(CleanupFacts(
        enabled=True, hold=False, verify_passes=replica.verify_passes,
        min_verify_passes=facts.min_verify_passes, verified_at=None, min_age_after_verify=None))
    if not passes.ok:
        return "ReplicaNotEnoughVerifyPasses", f"replica {replica.name}: {passes.message}"
    age = check_age_after_verify(CleanupFacts(
        enabled=True, hold=False, verify_passes=None, min_verify_passes=None,
        verified_at=replica.verified_at, min_age_after_verify=facts.min_age_after_verify), now=now)
    if not age.ok:
        return "ReplicaTooSoonAfterVerify", f"replica {replica.name}: {age.message}"
    return None


def check_replicas(facts: CleanupFacts, *, now: datetime) -> Check:
    name = "ReplicasVerified"
    problems = [p for p in (_replica_problem(r, facts, now=now) for r in facts.replicas) if p is not None]
    if not problems:
        verified = len(facts.replicas)
        return Check(name, True, name, f"{verified} required replica(s) verified" if verified else "no replicas")
    return Check(name, False, problems[0][0], "; ".join(message for _, message in problems))


INTERLOCKS = (
    "CleanupEnabled",
    "NotOnHold",
    "VerifyPasses",
    "AgeAfterVerify",
    "NoRecentRevocation",
    "ReplicasVerified",
)


def evaluate(facts: CleanupFacts, *, now: datetime) -> tuple[Check, ...]:
    """All interlocks, in the order an admin would fix them."""
    return (
        check_enabled(facts),
        check_not_on_hold(facts),
        check_verify_passes(facts),
        check_age_after_verify(facts, now=now),
        check_no_recent_revocation(facts, now=now),
        check_replicas(facts, now=now),
    )


def unmet(facts: CleanupFacts, *, now: datetime) -> tuple[Check, ...]:
    return tuple(check for check in evaluate(facts, now=now) if not check.ok)


def cleanup_allowed(facts: CleanupFacts, *, now: datetime) -> bool:
    """True only when every interlock holds."""
    return not unmet(facts, now=now)


@dataclass(frozen=True)
class CleanupPermit:
    """Proof that every interlock held at `now`; required to start a cleanup mover."""

    checks: tuple[Check, ...]
    now: datetime

    def __post_init__(self) -> None:
        names = tuple(check.name for check in self.checks)
        if names != INTERLOCKS or not all(check.ok for check in self.checks):
            raise ValueError("a cleanup permit needs every interlock to hold")


def permit(facts: CleanupFacts, *, now: datetime) -> CleanupPermit | None:
    """A permit when all interlocks hold, else None."""
    checks = evaluate(facts, now=now)
    if all(check.ok for check in checks):
        return CleanupPermit(checks=checks, now=now)
    return None


def earliest_recheck(facts: CleanupFacts, *, now: datetime) -> datetime | None:
    """When the unmet *time-based* interlocks will all hold by time alone.

    None when none of them is waiting on time (they hold already, or a value is
    missing/invalid, which time does not fix). The other interlocks change only
    through a spec edit or a verify pass, which wake the operator themselves.
    """
    due: list[datetime] = []
    min_age = facts.min_age_after_verify
    if min_age is None or min_age < 0:
        return None
    stamps = (facts.verified_at, facts.last_revocation_at, *(r.verified_at for r in facts.replicas if r.verified))
    for stamp in stamps:
        try:
            since = parse_time(stamp)
        except InvalidTime:
            continue
        if since is not None:
            ready = since + timedelta(seconds=min_age)
            if ready > now:
                due.append(ready)
    return max(due) if due else None
