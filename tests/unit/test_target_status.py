"""The SyncTarget's status and its Events (core/target_status.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nassync.api.target import SyncTargetStatus
from nassync.core.readiness import READY, Readiness
from nassync.core.target_status import target_status

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def _status(generation: int, *, active: int, readiness: Readiness = READY) -> SyncTargetStatus:
    new, _ = target_status(old=SyncTargetStatus(), readiness=readiness, target=None, generation=generation,
                           active=active, queued=0, now=NOW - timedelta(minutes=5))
    return new


def _reasons(old: SyncTargetStatus, generation: int, readiness: Readiness = READY) -> list[str]:
    _, events = target_status(old=old, readiness=readiness, target=None, generation=generation, active=0,
                              queued=0, now=NOW)
    return [e.reason for e in events]


def test_a_new_target_gets_its_readiness_event() -> None:
    _, events = target_status(old=SyncTargetStatus(), readiness=READY, target=None, generation=1, active=0,
                              queued=0, now=NOW)
    assert [(e.type, e.reason) for e in events] == [("Normal", "Ready")]


def test_readiness_unchanged_no_event() -> None:
    assert _reasons(_status(1, active=0), 1) == []


def test_readiness_flip_is_a_warning() -> None:
    broken = Readiness(False, "SecretMissing", "Secret nas is missing")
    _, events = target_status(old=_status(1, active=0), readiness=broken, target=None, generation=1, active=0,
                              queued=0, now=NOW)
    assert [(e.type, e.reason) for e in events] == [("Warning", "SecretMissing")]


def test_an_edit_under_running_movers_says_they_keep_their_settings() -> None:
    _, events = target_status(old=_status(3, active=2), readiness=READY, target=None, generation=4, active=2,
                              queued=0, now=NOW)
    assert [e.reason for e in events] == ["SettingsChanged"]
    assert "generation 4" in events[0].message and "2 running movers keep the settings" in events[0].message


def test_an_edit_with_no_mover_running_is_quiet() -> None:
    assert _reasons(_status(3, active=0), 4) == []


def test_no_edit_no_settings_event_even_with_movers() -> None:
    assert _reasons(_status(3, active=1), 3) == []


def test_an_edit_that_breaks_readiness_gets_both_events() -> None:
    broken = Readiness(False, "SecretKeyMissing", "key ssh-privatekey missing")
    assert _reasons(_status(3, active=1), 4, broken) == ["SecretKeyMissing", "SettingsChanged"]
