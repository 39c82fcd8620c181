"""The history policy (core/history.py): only finished SyncJobs go, newest kept, opt-outs respected."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from nassync.api.syncjob import SyncJob
from nassync.api.target import History
from nassync.core.history import HISTORY_ANNOTATION, prune

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _job(name: str, phase: str, *, done_ago_h: float | None = None, keep: bool = False,
         running: bool = False) -> SyncJob:
    status: dict[str, Any] = {"phase": phase}
    if done_ago_h is not None:
        at = (NOW - timedelta(hours=done_ago_h)).isoformat()
        status.update(cleanedAt=at, verifiedAt=at)
    if running:
        status["moverJob"] = {"name": f"{name}-verify-3", "step": "verify", "state": "Running"}
    return SyncJob.from_body({"metadata": {"name": name, "namespace": "lab", "uid": f"u-{name}",
                                           "resourceVersion": "7",
                                           "annotations": {HISTORY_ANNOTATION: "keep"} if keep else {}},
                              "spec": {"targetRef": {"name": "mic"}, "runPath": f"P/{name}"}, "status": status})


JOBS = [_job("a", "Cleaned", done_ago_h=50), _job("b", "Cleaned", done_ago_h=30), _job("c", "Cleaned", done_ago_h=1),
        _job("d", "Failed"), _job("e", "Blocked"), _job("f", "Pushing"), _job("g", "Verified", done_ago_h=99),
        _job("h", "Cleaned", done_ago_h=80, keep=True)]


def _names(p: Any) -> list[str]:
    return [name for name, _uid, _rv in p.delete]


def test_off_by_default() -> None:
    assert prune(JOBS, policy=History(), cleanup_enabled=True, now=NOW).delete == ()


def test_keep_finished_deletes_the_oldest_finished_only() -> None:
    p = prune(JOBS, policy=History(keep_finished=1), cleanup_enabled=True, now=NOW)
    assert _names(p) == ["a", "b"]  # c is the newest; d, e, f are not finished; g's cleanup is pending; h is kept
    assert p.delete[0] == ("a", "u-a", "7")


def test_delete_after_an_age_and_when_to_look_again() -> None:
    p = prune(JOBS, policy=History(delete_finished_after="48h"), cleanup_enabled=True, now=NOW)
    assert _names(p) == ["a"]
    assert p.next_check == NOW - timedelta(hours=30) + timedelta(hours=48)


def test_verified_counts_as_finished_only_without_cleanup() -> None:
    p = prune(JOBS, policy=History(keep_finished=0), cleanup_enabled=False, now=NOW)
    assert _names(p) == ["a", "b", "c", "g"]


def test_never_a_running_mover_or_an_unfinished_job() -> None:
    jobs = [_job("x", "Cleaned", done_ago_h=5, running=True), _job("y", "Failed"), _job("z", "Queued")]
    assert prune(jobs, policy=History(keep_finished=0, delete_finished_after="1s"), cleanup_enabled=True,
                 now=NOW).delete == ()
