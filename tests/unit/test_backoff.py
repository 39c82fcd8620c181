"""Retry schedule and failure policy."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nassync.api.mover_io import ErrorKind
from nassync.core.backoff import Verdict, backoff_delay, failure_outcome
from nassync.core.humanize import human_seconds

SCHEDULE = (30, 120, 480, 1800)


@pytest.mark.parametrize(
    ("attempts", "delay"), [(0, 30), (1, 30), (2, 120), (3, 480), (4, 1800), (5, 1800), (99, 1800)]
)
def test_backoff_delay_indexes_attempts_minus_one(attempts: int, delay: int) -> None:
    assert backoff_delay(attempts, SCHEDULE) == delay


def test_empty_schedule_retries_at_once() -> None:
    assert backoff_delay(3, ()) == 0


@pytest.mark.parametrize("kind", [ErrorKind.AUTH, ErrorKind.LOCAL_VANISHED, ErrorKind.CONFIG])
def test_terminal_kinds_fail_at_once(kind: ErrorKind) -> None:
    out = failure_outcome(kind=kind, attempts=0, max_attempts=5, schedule=SCHEDULE, mismatch_since_success=False)
    assert (out.verdict, out.attempts) == (Verdict.FAIL, 0)


def test_first_mismatch_repushes_without_counting() -> None:
    out = failure_outcome(
        kind=ErrorKind.HASH_MISMATCH,
        attempts=2,
        max_attempts=5,
        schedule=SCHEDULE,
        mismatch_since_success=False,
    )
    assert (out.verdict, out.attempts, out.delay_seconds) == (Verdict.REPUSH, 2, 0)


def test_second_mismatch_fails() -> None:
    out = failure_outcome(
        kind=ErrorKind.HASH_MISMATCH,
        attempts=0,
        max_attempts=5,
        schedule=SCHEDULE,
        mismatch_since_success=True,
    )
    assert out.verdict is Verdict.FAIL


def test_network_backs_off_then_fails() -> None:
    verdicts = []
    attempts = 0
    for _ in range(5):
        out = failure_outcome(
            kind=ErrorKind.NETWORK,
            attempts=attempts,
            max_attempts=5,
            schedule=SCHEDULE,
            mismatch_since_success=False,
        )
        attempts = out.attempts
        verdicts.append((out.verdict, out.attempts, out.delay_seconds))
    assert verdicts == [
        (Verdict.RETRY, 1, 30),
        (Verdict.RETRY, 2, 120),
        (Verdict.RETRY, 3, 480),
        (Verdict.RETRY, 4, 1800),
        (Verdict.FAIL, 5, 0),
    ]


def test_retry_message_names_next_attempt() -> None:
    out = failure_outcome(
        kind=ErrorKind.UNKNOWN,
        attempts=1,
        max_attempts=5,
        schedule=SCHEDULE,
        mismatch_since_success=False,
    )
    assert out.why == "attempt 3 of 5 in 2m"


@given(
    kind=st.sampled_from(list(ErrorKind)),
    attempts=st.integers(-3, 20),
    max_attempts=st.integers(-1, 10),
    mismatch=st.booleans(),
)
def test_attempts_never_exceed_limit(kind: ErrorKind, attempts: int, max_attempts: int, mismatch: bool) -> None:
    out = failure_outcome(
        kind=kind,
        attempts=attempts,
        max_attempts=max_attempts,
        schedule=SCHEDULE,
        mismatch_since_success=mismatch,
    )
    assert 0 <= out.attempts <= max(1, max_attempts)
    if out.verdict is Verdict.RETRY:
        assert out.attempts < max(1, max_attempts)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (120, "2m"),
        (90, "1m30s"),
        (5400, "1h30m"),
        (86400, "1d"),
        (90000, "1d1h"),
    ],
)
def test_human_seconds(seconds: int, text: str) -> None:
    assert human_seconds(seconds) == text
