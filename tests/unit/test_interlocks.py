"""Cleanup interlocks: each one alone, missing values, permits, recheck times."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nassync.core import interlocks
from nassync.core.interlocks import CleanupFacts, CleanupPermit

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DAY = 86400.0

ALL_MET = CleanupFacts(
    enabled=True,
    hold=False,
    verify_passes=2,
    min_verify_passes=2,
    verified_at=NOW - timedelta(days=2),
    min_age_after_verify=DAY,
    last_revocation_at=None,
)


def unmet_names(facts: CleanupFacts) -> list[str]:
    return [check.name for check in interlocks.unmet(facts, now=NOW)]


def test_all_met_allows_cleanup_and_gives_a_permit() -> None:
    assert interlocks.cleanup_allowed(ALL_MET, now=NOW)
    permit = interlocks.permit(ALL_MET, now=NOW)
    assert permit is not None and all(check.ok for check in permit.checks)


@pytest.mark.parametrize(
    ("change", "name", "reason"),
    [
        ({"enabled": False}, "CleanupEnabled", "CleanupDisabled"),
        ({"enabled": None}, "CleanupEnabled", "CleanupDisabled"),
        ({"hold": True}, "NotOnHold", "OnHold"),
        ({"hold": None}, "NotOnHold", "OnHold"),
        ({"verify_passes": 1}, "VerifyPasses", "NotEnoughVerifyPasses"),
        ({"verify_passes": None}, "VerifyPasses", "VerifyPassesUnknown"),
        ({"min_verify_passes": None}, "VerifyPasses", "VerifyPassesUnknown"),
        ({"verify_passes": 0, "min_verify_passes": 0}, "VerifyPasses", "NotEnoughVerifyPasses"),
        ({"verified_at": NOW - timedelta(hours=23)}, "AgeAfterVerify", "TooSoonAfterVerify"),
        ({"verified_at": NOW + timedelta(hours=1)}, "AgeAfterVerify", "TooSoonAfterVerify"),
        ({"verified_at": None}, "AgeAfterVerify", "NotVerified"),
        ({"verified_at": "yesterday"}, "AgeAfterVerify", "VerifiedAtInvalid"),
        (
            {"last_revocation_at": NOW - timedelta(hours=2)},
            "NoRecentRevocation",
            "RecentRevocation",
        ),
        ({"last_revocation_at": "garbage"}, "NoRecentRevocation", "RevocationTimeInvalid"),
    ],
)
def test_each_interlock_alone_blocks(change: dict[str, object], name: str, reason: str) -> None:
    facts = replace(ALL_MET, **change)  # type: ignore[arg-type]
    unmet = interlocks.unmet(facts, now=NOW)
    assert [(c.name, c.reason) for c in unmet] == [(name, reason)]
    assert unmet[0].message
    assert not interlocks.cleanup_allowed(facts, now=NOW)
    assert interlocks.permit(facts, now=NOW) is None


def test_min_age_missing_blocks_both_time_checks() -> None:
    facts = replace(ALL_MET, min_age_after_verify=None, last_revocation_at=NOW)
    assert unmet_names(facts) == ["AgeAfterVerify", "NoRecentRevocation"]


def test_strings_are_parsed_like_kubernetes_writes_them() -> None:
    facts = replace(ALL_MET, verified_at="2026-11-28T12:00:00Z", last_revocation_at="2026-11-01T00:00:00Z")
    assert interlocks.cleanup_allowed(facts, now=NOW)


def test_old_revocation_is_fine_and_boundary_is_inclusive() -> None:
    facts = replace(ALL_MET, verified_at=NOW - timedelta(days=1), last_revocation_at=NOW - timedelta(days=1))
    assert interlocks.cleanup_allowed(facts, now=NOW)


def test_message_names_the_wait() -> None:
    facts = replace(ALL_MET, verified_at=NOW - timedelta(hours=20))
    (check,) = interlocks.unmet(facts, now=NOW)
    assert check.message.endswith("cleanup waits 1d (minAgeAfterVerify), until 2026-11-30T16:00:00Z")


def test_earliest_recheck_is_when_time_alone_satisfies_all() -> None:
    facts = replace(
        ALL_MET,
        verified_at=NOW - timedelta(hours=20),
        last_revocation_at=NOW - timedelta(hours=10),
    )
    assert interlocks.earliest_recheck(facts, now=NOW) == NOW + timedelta(hours=14)
    assert interlocks.earliest_recheck(ALL_MET, now=NOW) is None
    assert interlocks.earliest_recheck(replace(ALL_MET, verified_at=None), now=NOW) is None


def test_permit_cannot_be_forged() -> None:
    checks = interlocks.evaluate(replace(ALL_MET, hold=True), now=NOW)
    with pytest.raises(ValueError):
        CleanupPermit(checks=checks, now=NOW)
    with pytest.raises(ValueError):
        CleanupPermit(checks=(), now=NOW)


OPTIONAL_TIME = st.one_of(
    st.none(),
    st.just("not a time"),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)),
)


@given(
    enabled=st.one_of(st.none(), st.booleans()),
    hold=st.one_of(st.none(), st.booleans()),
    passes=st.one_of(st.none(), st.integers(-1, 5)),
    minimum=st.one_of(st.none(), st.integers(-1, 5)),
    verified_at=OPTIONAL_TIME,
    min_age=st.one_of(st.none(), st.floats(-10, 5 * DAY, allow_nan=False)),
    revoked_at=OPTIONAL_TIME,
)
def test_allowed_means_every_condition_holds(
    enabled: bool | None,
    hold: bool | None,
    passes: int | None,
    minimum: int | None,
    verified_at: datetime | str | None,
    min_age: float | None,
    revoked_at: datetime | str | None,
) -> None:
    facts = CleanupFacts(enabled, hold, passes, minimum, verified_at, min_age, revoked_at)
    if not interlocks.cleanup_allowed(facts, now=NOW):
        return
    assert enabled is True and hold is False
    assert passes is not None and minimum is not None and passes >= max(1, minimum)
    assert isinstance(verified_at, datetime) and min_age is not None and min_age >= 0
    assert NOW - verified_at >= timedelta(seconds=min_age)
    assert revoked_at is None or (isinstance(revoked_at, datetime) and NOW - revoked_at >= timedelta(seconds=min_age))
