"""Retry schedule and failure policy, over plain values.

A mover reports *why* it failed as an `ErrorKind`; what the operator does next
depends only on that kind and on the job's retry history (docs/concepts.md,
"Failure classes"):

- `Auth`, `LocalVanished`, `Config`, `Permission`: retrying cannot help (a
  refused key, a run that is gone, a broken secret, a mover that may not read
  the run), so the job fails at once and waits for a human (`nassync.dev/retry`).
- `HashMismatch`: the NAS copy differs from the manifest. One more push usually
  repairs it (an interrupted upload, a NAS that lost a file); a second mismatch
  since the last successful verify means something keeps corrupting the data,
  and the job fails. The extra push does not count as an attempt.
- `Network`, `Unknown`, `NoSpace` (a full NAS is freed by a person, but the
  run must not need a second person to resume), `Timeout` (a mover ran past its
  deadline: a hung NAS) and `NotStarted` (its pod never started: node down,
  image, volume, Pod Security): transient until proven otherwise; retried with
  the target's `backoffSeconds` schedule until `maxAttempts` attempts are spent.

Keeping this apart from `decide()` lets the policy be read, and tested, as the
small table it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from nassync.api.mover_io import ErrorKind
from nassync.core.humanize import human_seconds

DEFAULT_BACKOFF_SECONDS: tuple[int, ...] = (30, 120, 480, 1800)
DEFAULT_MAX_ATTEMPTS = 5

_TERMINAL_KINDS = frozenset({ErrorKind.AUTH, ErrorKind.LOCAL_VANISHED, ErrorKind.CONFIG, ErrorKind.PERMISSION})


def backoff_delay(attempts: int, schedule: Sequence[int]) -> int:
    """Seconds to wait before attempt `attempts + 1`, after `attempts` failures.

    `schedule[attempts - 1]`; the last entry repeats once the schedule runs out,
    and an empty schedule means "retry at once". Negative entries count as 0.
    """
    if not schedule:
        return 0
    index = min(max(attempts, 1), len(schedule)) - 1
    return max(0, int(schedule[index]))


class Verdict(StrEnum):
    """What to do with a job after a failed mover step."""

    FAIL = "Fail"  # terminal until a human asks for a retry
    REPUSH = "Repush"  # push again now, no attempt counted (first hash mismatch)
    RETRY = "Retry"  # retry after `delay_seconds`


@dataclass(frozen=True)
class FailureOutcome:
    """The policy's answer for one failure."""

    verdict: Verdict
    attempts: int  # the job's attempt count after this failure
    delay_seconds: int  # 0 unless verdict is RETRY
    why: str  # one short phrase for events and messages


def failure_outcome(
    *,
    kind: ErrorKind,
    attempts: int,
    max_attempts: int,
    schedule: Sequence[int],
    mismatch_since_success: bool,
) -> FailureOutcome:
    """Apply the failure policy to one failure of `kind`.

    `attempts` is the count before this failure; `mismatch_since_success` says
    whether a hash mismatch was already seen since the last successful verify.
    The returned attempt count never exceeds `max_attempts` (at least 1).
    """
    limit = max(1, max_attempts)
    attempts = min(max(attempts, 0), limit)
    if kind in _TERMINAL_KINDS:
        return FailureOutcome(Verdict.FAIL, attempts, 0, f"{kind} errors are not retried")
    if kind is ErrorKind.HASH_MISMATCH:
        if mismatch_since_success:
            return FailureOutcome(Verdict.FAIL, attempts, 0, "second hash mismatch since the last good verify")
        return FailureOutcome(Verdict.REPUSH, attempts, 0, "first hash mismatch: pushing again")
    attempts += 1
    if attempts >= limit:
        return FailureOutcome(Verdict.FAIL, limit, 0, f"gave up after {limit} attempts")
    delay = backoff_delay(attempts, schedule)
    why = f"attempt {attempts + 1} of {limit} in {human_seconds(delay)}"
    return FailureOutcome(Verdict.RETRY, attempts, delay, why)
