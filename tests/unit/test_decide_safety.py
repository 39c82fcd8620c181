"""decide(): the rules that keep data safe across failures, and the run owner.

- a push never runs without a fresh gate;
- once local files were deleted, the run is never pushed again, and no message
  claims local data was kept;
- a revocation found by the cleanup pod defers the delete;
- a Permission failure is terminal;
- with runAsRunOwner, the gate that found the owner is followed by a gate as
  that owner, and an owner outside the admin's range fails the run.
"""

from __future__ import annotations

from typing import Any

from decide_support import (
    VERIFIED_LONG_AGO,
    child,
    failure,
    job,
    result,
    run,
    running,
    target,
)

from nassync.api.syncjob import Phase
from nassync.api.target import SyncTarget


def _owner_target(**mover: Any) -> SyncTarget:
    base = target()
    body = base.model_dump(by_alias=True, mode="json")
    body["spec"]["mover"] = {"runAsRunOwner": {"minUID": 1000, "maxUID": 1999, **mover}}
    return SyncTarget.from_body(body)


def test_a_partial_cleanup_is_recorded_and_retried_as_a_cleanup() -> None:
    stopped = failure("cleanup", "Unknown", "cleanup stopped part way", cleanup={"filesDeleted": 2, "bytesFreed": 20})
    decision = run(job(status={**VERIFIED_LONG_AGO, "phase": "Cleaning", **running("cleanup", 5)}),
                   children=child("cleanup", 5, stopped))
    assert decision.status.phase == Phase.VERIFIED
    assert decision.status.deleted is not None
    assert (decision.status.deleted.files, decision.status.deleted.bytes) == (2, 20)
    assert not decision.creates


def test_a_partly_cleaned_run_is_never_pushed_again() -> None:
    status = {**VERIFIED_LONG_AGO, "phase": "Cleaning", **running("cleanup", 6), "deleted": {"files": 2, "bytes": 20}}
    mismatch = failure("cleanup", "HashMismatch", "the NAS copy changed", verify={"missing": 1, "examples": ["a"]})
    decision = run(job(status=status), children=child("cleanup", 6, mismatch))
    assert decision.status.phase == Phase.FAILED
    assert not decision.creates
    message = decision.status.last_error.message if decision.status.last_error else ""
    assert "local data kept" not in message
    assert "2 file(s) were deleted earlier" in message
    failed = decision.status.condition("Failed")
    assert failed is not None and "never pushed again" in failed.message


def test_a_mismatch_before_any_delete_still_says_data_kept_and_regates() -> None:
    mismatch = failure("cleanup", "HashMismatch", "x", verify={"missing": 1, "examples": ["a"]})
    decision = run(job(status={**VERIFIED_LONG_AGO, "phase": "Cleaning", **running("cleanup", 5)}),
                   children=child("cleanup", 5, mismatch))
    assert decision.status.phase == Phase.GATING
    assert [c.step for c in decision.creates] == ["gate"]
    assert "local data kept" in (decision.status.last_error.message if decision.status.last_error else "")


def test_a_revocation_found_by_the_cleanup_pod_defers_the_delete() -> None:
    deferred = result("cleanup", cleanup={"deferred": "override 'o1' (leftover_jinja_marker) was revoked by pi"},
                      lastRevocationAt="2026-11-30T11:00:00Z")
    decision = run(job(status={**VERIFIED_LONG_AGO, "phase": "Cleaning", **running("cleanup", 5)}),
                   children=child("cleanup", 5, deferred))
    assert decision.status.phase == Phase.VERIFIED
    assert decision.status.cleaned_at is None
    assert decision.status.last_revocation_at is not None
    cleaned = decision.status.condition("Cleaned")
    assert cleaned is not None and (cleaned.status, cleaned.reason) == ("False", "RecentRevocation")
    deferred_events = [e.message for e in decision.events if e.reason == "CleanupDeferred"]
    assert any("override 'o1' (leftover_jinja_marker) was revoked by pi" in m for m in deferred_events)
    assert not decision.creates, "the interlocks now wait out minAgeAfterVerify"


def test_permission_is_terminal() -> None:
    denied = failure("gate", "Permission", "cannot read 'raw/a.tif' (owner 1000:1000, mode -rw-------)")
    decision = run(job(status={"phase": "Gating", **running("gate", 1)}), children=child("gate", 1, denied))
    assert decision.status.phase == Phase.FAILED
    assert decision.status.attempts == 0


def test_not_quiet_says_what_it_waits_for() -> None:
    waiting = result("gate", gate={"quiet": False, "quietRemainingSeconds": 60,
                                   "waitingFor": "a completion marker (CopyComplete.txt) not written yet"})
    decision = run(job(status={"phase": "Gating", **running("gate", 1)}), children=child("gate", 1, waiting))
    gated = decision.status.condition("Gated")
    assert gated is not None and "CopyComplete.txt" in gated.message


def test_owner_found_then_gate_again_as_the_owner() -> None:
    found = result("gate", gate={"ownerOnly": True, "runOwner": {"uid": 1000, "gid": 1001}, "quiet": False})
    decision = run(job(status={"phase": "Gating", **running("gate", 1)}), tgt=_owner_target(),
                   children=child("gate", 1, found))
    assert decision.status.run_owner is not None
    assert (decision.status.run_owner.uid, decision.status.run_owner.gid) == (1000, 1001)
    assert [c.step for c in decision.creates] == ["gate"]
    assert "RunOwnerFound" in [e.reason for e in decision.events]


def test_an_owner_outside_the_range_fails_and_starts_nothing() -> None:
    for uid in (0, 999, 2000):
        found = result("gate", gate={"ownerOnly": True, "runOwner": {"uid": uid, "gid": 0}, "quiet": False})
        decision = run(job(status={"phase": "Gating", **running("gate", 1)}), tgt=_owner_target(),
                       children=child("gate", 1, found))
        assert decision.status.phase == Phase.FAILED, uid
        assert not decision.creates
        error = decision.status.last_error
        assert error is not None and error.kind == "Permission" and f"uid {uid}" in error.message

