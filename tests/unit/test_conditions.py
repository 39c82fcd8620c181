"""Conditions: lastTransitionTime moves only when status changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nassync.api.common import Condition
from nassync.core import conditions as cond

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def test_new_condition_gets_now() -> None:
    out = cond.set_condition([], type="Gated", status="True", reason="Passed", message="ok", now=T0, generation=3)
    assert out == [
        Condition(
            type="Gated",
            status="True",
            reason="Passed",
            message="ok",
            last_transition_time=T0,
            observed_generation=3,
        )
    ]


def test_same_status_keeps_transition_time_but_updates_text() -> None:
    first = cond.set_condition(
        [],
        type="Verified",
        status="True",
        reason="Verified",
        message="1 pass",
        now=T0,
        generation=1,
    )
    second = cond.set_condition(
        first,
        type="Verified",
        status="True",
        reason="Reverified",
        message="2 passes",
        now=T1,
        generation=2,
    )
    (c,) = second
    assert c.last_transition_time == T0
    assert (c.reason, c.message, c.observed_generation) == ("Reverified", "2 passes", 2)


def test_status_change_moves_transition_time() -> None:
    first = cond.set_condition([], type="Verified", status="True", reason="Verified", message="", now=T0, generation=1)
    (c,) = cond.set_condition(
        first,
        type="Verified",
        status="False",
        reason="RemoteMismatch",
        message="",
        now=T1,
        generation=1,
    )
    assert c.last_transition_time == T1


def test_order_is_kept_and_input_not_mutated() -> None:
    start = cond.set_condition([], type="Gated", status="True", reason="Passed", message="", now=T0, generation=1)
    start = cond.set_condition(
        start,
        type="Pushed",
        status="False",
        reason="WaitingForSlot",
        message="",
        now=T0,
        generation=1,
    )
    before = [c.model_copy() for c in start]
    out = cond.set_condition(
        start,
        type="Gated",
        status="False",
        reason="HardFindings",
        message="",
        now=T1,
        generation=1,
    )
    assert [c.type for c in out] == ["Gated", "Pushed"]
    assert start == before
    assert cond.is_true(start, "Gated") and not cond.is_true(out, "Gated")
    assert [c.type for c in cond.remove_condition(out, "Gated")] == ["Pushed"]


def test_types() -> None:
    assert cond.TYPES == ("Gated", "Pushed", "Verified", "Cleaned", "Failed", "Suspended", "Replicated")
