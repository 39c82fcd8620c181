"""decide(): one row per transition of the phase machine (docs/concepts.md, "Phases").

Each row gives the job's status, the observed children, the slot and the
target, and states the phase, the mover Job created (if any), the Events in
order, the conditions and status fields that must result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from decide_support import (
    CLEANED,
    GATE_PASSED,
    NOW,
    PUSHED,
    SHA_B,
    VERIFIED,
    VERIFIED_LONG_AGO,
    ago,
    child,
    failure,
    job,
    result,
    run,
    running,
    target,
)

from nassync.api.syncjob import SyncJob
from nassync.api.target import SyncTarget
from nassync.core.actions import CreateMoverJob, Decision
from nassync.core.decide import ChildJob

HARD = {
    "quiet": True,
    "blocked": True,
    "findings": [
        {"rule": "illegal_filesystem_character", "tier": "hard", "path": "a:b.tif", "message": "':'"},
        {"rule": "orphan", "tier": "soft", "path": "x", "message": "soft"},
    ],
}


@dataclass(frozen=True)
class Row:
    id: str
    job: SyncJob
    phase: str
    create: tuple[str, str] | None = None  # (step, name)
    events: tuple[str, ...] = ()
    conditions: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    fields: Mapping[str, Any] = field(default_factory=dict)
    children: Mapping[str, ChildJob] = field(default_factory=dict)
    tgt: SyncTarget | None = None
    slot: bool = True
    no_target: bool = False
    requeue: float | str | None = "any"
    check: Callable[[Decision], None] | None = None


ROWS = [
    # --- Pending / Gating -----------------------------------------------------
    Row(
        "pending-slot-starts-gate",
        job(),
        "Gating",
        create=("gate", "run1-gate-1"),
        events=("GateStarted",),
        fields={"mover_runs": 1, "mover_job.state": "Running", "mover_job.name": "run1-gate-1"},
    ),
    Row(
        "pending-without-slot-waits",
        job(),
        "Pending",
        slot=False,
        conditions={"Gated": ("False", "WaitingForSlot")},
        requeue=15.0,
        check=lambda d: _condition_message(d, "Gated", "waiting for a mover slot (concurrency 1)"),
    ),
    Row(
        "pending-suspended-holds",
        job(suspend=True),
        "Pending",
        conditions={"Suspended": ("True", "Suspended")},
        requeue=None,
    ),
    Row(
        "gate-hard-findings-block",
        job(status={"phase": "Gating", **running("gate", 1)}),
        "Blocked",
        children=child("gate", 1, result("gate", gate=HARD)),
        events=("GateBlocked",),
        conditions={"Gated": ("False", "HardFindings")},
        fields={"gate.checked_at": NOW, "mover_job.state": "Succeeded"},
        check=lambda d: _blocked_event_names_rule_and_override(d),
    ),
    Row(
        "gate-not-quiet-waits-and-regates-later",
        job(status={"phase": "Gating", **running("gate", 1)}),
        "Gating",
        children=child("gate", 1, result("gate", gate={"quiet": False, "quietRemainingSeconds": 300})),
        conditions={"Gated": ("False", "NotQuiet")},
        fields={"next_attempt_at": NOW + timedelta(seconds=300)},
        requeue=300.0,
    ),
    Row(
        "gating-regate-when-due",
        job(status={"phase": "Gating", "moverRuns": 1, "nextAttemptAt": ago(seconds=1)}),
        "Gating",
        create=("gate", "run1-gate-2"),
        fields={"next_attempt_at": None},
    ),
    Row(
        "gate-passed-queues-and-pushes",
        job(status={"phase": "Gating", **running("gate", 1)}),
        "Pushing",
        children=child("gate", 1, GATE_PASSED),
        create=("push", "run1-push-2"),
        events=("Gated", "PushStarted"),
        conditions={"Gated": ("True", "Passed")},
        fields={"transfer.started_at": NOW},
    ),
    Row(
        "gate-passed-without-slot-queues",
        job(status={"phase": "Gating", **running("gate", 1)}),
        "Queued",
        children=child("gate", 1, GATE_PASSED),
        slot=False,
        events=("Gated",),
        conditions={"Gated": ("True", "Passed"), "Pushed": ("False", "WaitingForSlot")},
    ),
    # --- Queued / Pushing -----------------------------------------------------------
    Row(
        "queued-waits-for-backoff",
        job(status={"phase": "Queued", "moverRuns": 2, "nextAttemptAt": NOW + timedelta(seconds=90)}),
        "Queued",
        requeue=90.0,
    ),
    Row(
        "queued-due-pushes",
        job(status={"phase": "Queued", "moverRuns": 2, "nextAttemptAt": ago(seconds=5)}),
        "Pushing",
        create=("push", "run1-push-3"),
        events=("PushStarted",),
    ),
    Row(
        "push-success-records-and-verifies",
        job(status={"phase": "Pushing", **running("push", 2), "transfer": {"startedAt": ago(minutes=5)}}),
        "Verifying",
        children=child("push", 2, PUSHED),
        create=("verify", "run1-verify-3"),
        events=("Pushed",),
        conditions={"Pushed": ("True", "Pushed")},
        fields={
            "manifest.files": 3,
            "manifest.sha256": "a" * 64,
            "transfer.bytes": 3072,
            "transfer.files": 3,
            "transfer.finished_at": NOW,
            "transfer.started_at": ago(minutes=5),
            "transfer.bandwidth_limit_kibps": 6400,
            "remote_path": "/vol/runs/P1/Runs/R1",
        },
    ),
    Row(
        "push-success-with-new-manifest-forgets-old-passes",
        job(
            status={
                "phase": "Pushing",
                **running("push", 6),
                "manifest": {"files": 1, "bytes": 1, "sha256": SHA_B},
                "verifyPasses": 1,
                "verifiedAt": ago(days=3),
                "conditions": [{"type": "Verified", "status": "True", "reason": "Verified"}],
            }
        ),
        "Verifying",
        children=child("push", 6, PUSHED),
        create=("verify", "run1-verify-7"),
        events=("Pushed",),
        conditions={"Verified": ("False", "ManifestChanged")},
        fields={"verify_passes": 0, "verified_at": None},
    ),
    # --- Verifying -------------------------------------------------------------------------
    Row(
        "verify-ok-verifies",
        job(
            status={
                "phase": "Verifying",
                **running("verify", 3),
                "attempts": 2,
                "lastError": {"kind": "Network", "message": "x"},
            }
        ),
        "Verified",
        children=child("verify", 3, VERIFIED),
        tgt=target(cleanup={"enabled": False}),
        events=("Verified",),
        conditions={"Verified": ("True", "Verified"), "Cleaned": ("False", "CleanupDisabled")},
        fields={
            "verify_passes": 1,
            "verified_at": NOW,
            "last_verified_at": NOW,
            "attempts": 0,
            "last_error": None,
        },
        requeue=None,
    ),
    Row(
        "verify-local-changed-gates-and-pushes-again",
        job(status={"phase": "Verifying", **running("verify", 3)}),
        "Gating",
        children=child("verify", 3, result("verify", verify={"localChanged": True})),
        create=("gate", "run1-gate-4"),
        events=("LocalChanged", "GateStarted"),
        fields={"attempts": 0, "last_error": None},
    ),
    Row(
        "verify-first-mismatch-repushes-at-once-through-the-gate",
        job(status={"phase": "Verifying", **running("verify", 3), "attempts": 1}),
        "Gating",
        children=child(
            "verify",
            3,
            failure("verify", "HashMismatch", verify={"missing": 1, "differing": 2, "examples": ["a.tif"]}),
        ),
        create=("gate", "run1-gate-4"),
        events=("VerifyMismatch", "VerifyFailed", "Retrying", "GateStarted"),
        conditions={"Verified": ("False", "RemoteMismatch"), "Failed": ("False", "Retrying")},
        fields={"attempts": 1, "last_error.kind": "HashMismatch", "verify_passes": 0},
    ),
    Row(
        "verify-second-mismatch-fails",
        job(
            status={
                "phase": "Verifying",
                **running("verify", 5),
                "lastError": {"kind": "HashMismatch", "message": "first"},
            }
        ),
        "Failed",
        children=child("verify", 5, failure("verify", "HashMismatch")),
        events=("VerifyMismatch", "VerifyFailed", "Failed"),
        conditions={"Failed": ("True", "HashMismatch")},
        requeue=None,
    ),
    # --- failure policy ------------------------------------------------------------------
    Row(
        "network-failure-backs-off-then-gates-again",
        job(status={"phase": "Pushing", **running("push", 2)}),
        "Pending",
        children=child("push", 2, failure("push", "Network", "NAS unreachable")),
        events=("PushFailed", "Retrying"),
        conditions={"Failed": ("False", "Retrying")},
        fields={
            "attempts": 1,
            "next_attempt_at": NOW + timedelta(seconds=30),
            "last_error.kind": "Network",
            "last_error.message": "NAS unreachable",
            "last_error.at": NOW,
        },
        requeue=30.0,
        check=lambda d: _event_message(d, "Retrying", "attempt 2 of 5 in 30s"),
    ),
    Row(
        "network-failure-uses-schedule-index",
        job(status={"phase": "Pushing", **running("push", 4), "attempts": 1}),
        "Pending",
        children=child("push", 4, failure("push", "Network")),
        events=("PushFailed", "Retrying"),
        fields={"attempts": 2, "next_attempt_at": NOW + timedelta(seconds=120)},
        check=lambda d: _event_message(d, "Retrying", "attempt 3 of 5 in 2m"),
    ),
    Row(
        "last-attempt-fails",
        job(status={"phase": "Pushing", **running("push", 9), "attempts": 4}),
        "Failed",
        children=child("push", 9, failure("push", "Unknown")),
        events=("PushFailed", "Failed"),
        conditions={"Failed": ("True", "Unknown")},
        fields={"attempts": 5, "next_attempt_at": None},
    ),
    Row(
        "gate-network-failure-regates-not-pushes",
        job(status={"phase": "Gating", **running("gate", 1)}),
        "Pending",
        children=child("gate", 1, failure("gate", "Network")),
        events=("GateFailed", "Retrying"),
        fields={"attempts": 1},
        requeue=30.0,
    ),
    Row(
        "missing-result-is-unknown",
        job(status={"phase": "Pushing", **running("push", 2)}),
        "Pending",
        children=child("push", 2, None, state="Failed"),
        events=("PushFailed", "Retrying"),
        fields={"last_error.kind": "Unknown", "attempts": 1},
        check=lambda d: _last_error_contains(d, "mover pod ended without a result"),
    ),
    Row(
        "vanished-mover-is-unknown",
        job(status={"phase": "Pushing", **running("push", 2, started=ago(minutes=10))}),
        "Pending",
        events=("PushFailed", "Retrying"),
        fields={"last_error.kind": "Unknown", "mover_job.state": "Failed", "attempts": 1},
        check=lambda d: _last_error_contains(d, "disappeared"),
    ),
    Row(
        "just-created-mover-not-yet-visible-waits",
        job(status={"phase": "Pushing", **running("push", 2, started=ago(seconds=10))}),
        "Pushing",
        fields={"mover_job.state": "Running", "attempts": 0},
        requeue=50.0,
    ),
    Row(
        "running-mover-is-left-alone",
        job(status={"phase": "Pushing", **running("push", 2)}),
        "Pushing",
        children=child("push", 2),
        requeue=None,
    ),
    Row(
        "restart-adopts-existing-job",
        job(status={"phase": "Queued", "moverRuns": 1}),
        "Pushing",
        children=child("push", 2),
        events=("MoverAdopted",),
        fields={"mover_runs": 2, "mover_job.name": "run1-push-2", "mover_job.state": "Running"},
    ),
    Row(
        "restart-adopts-finished-job-and-consumes-it",
        job(status={"phase": "Queued", "moverRuns": 1}),
        "Verifying",
        children=child("push", 2, PUSHED),
        create=("verify", "run1-verify-3"),
        events=("MoverAdopted", "Pushed"),
        fields={"mover_runs": 3, "manifest.files": 3},
    ),
    # --- Verified: audit and cleanup -----------------------------------------------------
    Row(
        "verified-on-hold-stays",
        job(status=VERIFIED_LONG_AGO, hold=True),
        "Verified",
        conditions={"Cleaned": ("False", "OnHold")},
        requeue=None,
    ),
    Row(
        "verified-audit-verify-when-due",
        job(status={**VERIFIED_LONG_AGO, "verifyPasses": 1, "lastVerifiedAt": ago(hours=7)}),
        "Verifying",
        create=("verify", "run1-verify-5"),
        events=("VerifyStarted",),
    ),
    Row(
        "verified-audit-not-due-defers",
        job(
            status={**VERIFIED_LONG_AGO, "verifyPasses": 1, "verifiedAt": ago(hours=2), "lastVerifiedAt": ago(hours=2)}
        ),
        "Verified",
        events=("CleanupDeferred",),
        conditions={"Cleaned": ("False", "NotEnoughVerifyPasses")},
        requeue=4 * 3600.0,
    ),
    Row(
        "verified-too-young-defers-until-age",
        job(status={**VERIFIED_LONG_AGO, "verifiedAt": ago(hours=20), "lastVerifiedAt": ago(hours=14)}),
        "Verified",
        events=("CleanupDeferred",),
        conditions={"Cleaned": ("False", "TooSoonAfterVerify")},
        requeue=4 * 3600.0,
    ),
    Row(
        "verified-recent-revocation-defers",
        job(status={**VERIFIED_LONG_AGO, "lastRevocationAt": ago(hours=1)}),
        "Verified",
        events=("CleanupDeferred",),
        conditions={"Cleaned": ("False", "RecentRevocation")},
        requeue=23 * 3600.0,
    ),
    Row(
        "verified-all-interlocks-clean",
        job(status=VERIFIED_LONG_AGO),
        "Cleaning",
        create=("cleanup", "run1-cleanup-5"),
        events=("CleanupStarted",),
    ),
    Row(
        "verified-all-interlocks-but-no-slot-waits",
        job(status=VERIFIED_LONG_AGO),
        "Verified",
        slot=False,
        conditions={"Cleaned": ("False", "WaitingForSlot")},
        requeue=15.0,
    ),
    Row(
        "verified-suspended-does-not-clean",
        job(status=VERIFIED_LONG_AGO, suspend=True),
        "Verified",
        conditions={"Suspended": ("True", "Suspended")},
    ),
    Row(
        "cleanup-success-cleans",
        job(status={**VERIFIED_LONG_AGO, "phase": "Cleaning", **running("cleanup", 5)}),
        "Cleaned",
        children=child("cleanup", 5, CLEANED),
        events=("Cleaned",),
        conditions={"Cleaned": ("True", "Cleaned")},
        fields={"cleaned_at": NOW},
        requeue=None,
        check=lambda d: _event_message(d, "Cleaned", "deleted 3 local files, freed 3.0 KiB"),
    ),
    Row(
        "cleanup-mismatch-keeps-data-and-pushes-again",
        job(status={**VERIFIED_LONG_AGO, "phase": "Cleaning", **running("cleanup", 5)}),
        "Gating",
        children=child(
            "cleanup",
            5,
            failure("cleanup", "HashMismatch", verify={"missing": 1, "differing": 1, "examples": ["x.tif"]}),
        ),
        create=("gate", "run1-gate-6"),
        events=("VerifyMismatch", "CleanupFailed", "Retrying", "GateStarted"),
        conditions={"Verified": ("False", "RemoteMismatch")},
        fields={"verify_passes": 0, "verified_at": None, "last_error.kind": "HashMismatch"},
        check=lambda d: _last_error_contains(
            d,
            "cleanup refused: the NAS copy no longer matches the manifest "
            "(1 missing, 1 differing, e.g. x.tif); local data kept; pushing again",
        ),
    ),
    Row(
        # Retried as a cleanup after the backoff, never as a push: a cleanup
        # killed part way must not rewrite the manifest from a partly deleted run.
        "cleanup-network-failure-retries-the-cleanup",
        job(status={**VERIFIED_LONG_AGO, "phase": "Cleaning", **running("cleanup", 5)}),
        "Verified",
        children=child("cleanup", 5, failure("cleanup", "Network")),
        events=("CleanupFailed", "Retrying"),
        fields={"verify_passes": 2, "attempts": 1},
    ),
    # --- requests and spec changes ----------------------------------------------------------
    Row(
        "verify-annotation-runs-a-pass",
        job(status=VERIFIED_LONG_AGO, annotations={"nassync.dev/verify": "now"}),
        "Verifying",
        create=("verify", "run1-verify-5"),
        events=("VerifyStarted",),
        fields={"handled_verify": "now"},
    ),
    Row(
        "verify-annotation-waits-for-slot",
        job(status=VERIFIED_LONG_AGO, annotations={"nassync.dev/verify": "now"}),
        "Verified",
        slot=False,
        fields={"handled_verify": None},
    ),
    Row(
        "verify-annotation-outside-verified-is-recorded-only",
        job(status={"phase": "Pushing", **running("push", 2)}, annotations={"nassync.dev/verify": "v1"}),
        "Pushing",
        children=child("push", 2),
        fields={"handled_verify": "v1"},
    ),
    Row(
        "retry-annotation-rearms-failed",
        job(
            status={
                "phase": "Failed",
                "moverRuns": 3,
                "attempts": 5,
                "lastError": {"kind": "Auth", "message": "denied"},
                "conditions": [{"type": "Failed", "status": "True", "reason": "Auth"}],
            },
            annotations={"nassync.dev/retry": "2"},
        ),
        "Gating",
        create=("gate", "run1-gate-4"),
        events=("RetryRequested", "GateStarted"),
        conditions={"Failed": ("False", "RetryRequested")},
        fields={"attempts": 0, "last_error": None, "handled_retry": "2"},
    ),
    Row(
        "retry-annotation-already-handled-does-nothing",
        job(status={"phase": "Failed", "moverRuns": 3, "handledRetry": "2"}, annotations={"nassync.dev/retry": "2"}),
        "Failed",
        requeue=None,
    ),
    Row(
        "blocked-stays-blocked",
        job(status={"phase": "Blocked", "moverRuns": 1}),
        "Blocked",
        requeue=None,
    ),
    Row(
        "blocked-regates-on-spec-change",
        job(status={"phase": "Blocked", "moverRuns": 1, "observedGeneration": 1}, generation=2),
        "Gating",
        create=("gate", "run1-gate-2"),
        events=("SpecChanged", "GateStarted"),
        fields={"observed_generation": 2},
    ),
    Row(
        "blocked-regates-on-retry",
        job(status={"phase": "Blocked", "moverRuns": 1}, annotations={"nassync.dev/retry": "x"}),
        "Gating",
        create=("gate", "run1-gate-2"),
        events=("RetryRequested", "GateStarted"),
    ),
    Row(
        "cleaned-is-terminal",
        job(status={**VERIFIED_LONG_AGO, "phase": "Cleaned"}),
        "Cleaned",
        requeue=None,
    ),
    # --- target missing / suspend with a running mover -------------------------------------
    Row(
        "target-missing-reports-once",
        job(),
        "Pending",
        no_target=True,
        events=("TargetMissing",),
        conditions={"Gated": ("False", "TargetMissing")},
        fields={"last_error.kind": "Config", "last_error.message": 'SyncTarget "mic" not found in namespace "lab"'},
        requeue=30.0,
    ),
    Row(
        "target-missing-second-call-is-quiet",
        job(status={"lastError": {"kind": "Config", "message": 'SyncTarget "mic" not found in namespace "lab"'}}),
        "Pending",
        no_target=True,
        requeue=30.0,
    ),
    Row(
        "target-back-clears-its-error",
        job(status={"lastError": {"kind": "Config", "message": 'SyncTarget "mic" not found in namespace "lab"'}}),
        "Gating",
        create=("gate", "run1-gate-1"),
        events=("GateStarted",),
        fields={"last_error": None},
    ),
    Row(
        "target-missing-still-consumes-running-mover",
        job(status={"phase": "Pushing", **running("push", 2)}),
        "Verifying",
        children=child("push", 2, PUSHED),
        no_target=True,
        events=("Pushed", "TargetMissing"),
        fields={"manifest.files": 3, "mover_job.state": "Succeeded"},
        requeue=30.0,
    ),
    Row(
        "suspend-consumes-result-but-starts-nothing",
        job(status={"phase": "Pushing", **running("push", 2)}, suspend=True),
        "Verifying",
        children=child("push", 2, PUSHED),
        events=("Pushed",),
        conditions={"Suspended": ("True", "Suspended")},
    ),
    Row(
        "unsuspend-resumes",
        job(status={"phase": "Verifying", "moverRuns": 2, "conditions": [{"type": "Suspended", "status": "True"}]}),
        "Verifying",
        create=("verify", "run1-verify-3"),
        conditions={"Suspended": ("False", "Resumed")},
    ),
    Row(
        "revocation-time-is-taken-from-results",
        job(status={"phase": "Verifying", **running("verify", 3)}),
        "Verified",
        children=child("verify", 3, result("verify", lastRevocationAt="2026-11-30T11:00:00Z")),
        events=("Verified", "CleanupDeferred"),
        conditions={"Cleaned": ("False", "NotEnoughVerifyPasses")},
        fields={"last_revocation_at": ago(hours=1)},
    ),
    Row(
        "lowered-max-attempts-clamps",
        job(status={"phase": "Queued", "moverRuns": 2, "attempts": 4, "nextAttemptAt": NOW + timedelta(hours=1)}),
        "Queued",
        tgt=target(retry={"maxAttempts": 2}),
        fields={"attempts": 2},
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_transition(row: Row) -> None:
    before = row.job.model_copy(deep=True)
    decision = run(row.job, tgt=row.tgt, children=row.children, slot=row.slot, no_target=row.no_target)
    assert row.job == before, "decide() must not modify its input"
    assert decision.status.phase == row.phase
    creates = [(a.step, a.name) for a in decision.actions if isinstance(a, CreateMoverJob)]
    assert creates == ([row.create] if row.create else [])
    assert tuple(e.reason for e in decision.events) == row.events
    for type_, (status, reason) in row.conditions.items():
        found = decision.status.condition(type_)
        assert found is not None, type_
        assert (found.status, found.reason) == (status, reason), type_
    for path, expected in row.fields.items():
        assert _get(decision.status, path) == expected, path
    assert decision.status.observed_generation == row.job.generation
    if row.requeue != "any":
        assert decision.requeue_after == row.requeue
    if row.check is not None:
        row.check(decision)


def _get(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def _condition_message(d: Decision, type_: str, text: str) -> None:
    found = d.status.condition(type_)
    assert found is not None and text in found.message


def _event_message(d: Decision, reason: str, text: str) -> None:
    messages = [e.message for e in d.events if e.reason == reason]
    assert messages and text in messages[0], messages


def _last_error_contains(d: Decision, text: str) -> None:
    assert d.status.last_error is not None and text in d.status.last_error.message


def _blocked_event_names_rule_and_override(d: Decision) -> None:
    (event,) = d.events
    assert event.type == "Warning"
    assert "illegal_filesystem_character (1, e.g. 'a:b.tif')" in event.message
    assert "spec.overrides" in event.message and "orphan" not in event.message
    assert d.status.gate is not None and len(d.status.gate.findings) == 2


# --- a few things that are clearer outside the table ---------------------------------------


def test_cleanup_deferred_is_not_repeated() -> None:
    j = job(status={**VERIFIED_LONG_AGO, "verifiedAt": ago(hours=20), "lastVerifiedAt": ago(hours=14)})
    first = run(j)
    assert [e.reason for e in first.events] == ["CleanupDeferred"]
    again = run(j.model_copy(update={"status": first.status}), now=NOW + timedelta(minutes=10))
    assert again.events == ()
    assert again.requeue_after == 4 * 3600.0 - 600


def test_cleanup_disabled_verified_job_sleeps() -> None:
    decision = run(job(status=VERIFIED_LONG_AGO), tgt=target(cleanup={"enabled": False}))
    assert decision.actions == () and decision.requeue_after is None


def test_every_phase_change_emits_an_event() -> None:
    for row in ROWS:
        decision = run(row.job, tgt=row.tgt, children=row.children, slot=row.slot, no_target=row.no_target)
        if decision.status.phase != row.job.status.phase:
            assert decision.events, row.id


def test_condition_transition_time_kept_across_calls() -> None:
    j = job(status={"phase": "Gating", **running("gate", 1)})
    first = run(j, children=child("gate", 1, result("gate", gate={"quiet": False, "quietRemainingSeconds": 60})))
    gated = first.status.condition("Gated")
    assert gated is not None and gated.last_transition_time == NOW
    later = NOW + timedelta(seconds=61)
    second = run(j.model_copy(update={"status": first.status}), now=later)
    regate = second.creates[0]
    third = run(
        j.model_copy(update={"status": second.status}),
        children=child("gate", 2, result("gate", gate={"quiet": False, "quietRemainingSeconds": 30})),
        now=later + timedelta(seconds=5),
    )
    assert regate.name == "run1-gate-2"
    again = third.status.condition("Gated")
    assert again is not None and again.last_transition_time == NOW


def test_cleanup_action_carries_a_permit() -> None:
    decision = run(job(status=VERIFIED_LONG_AGO))
    (create,) = decision.creates
    assert create.step == "cleanup" and create.permit is not None
    with pytest.raises(ValueError):
        CreateMoverJob(step="cleanup", name="x", attempt=1)
