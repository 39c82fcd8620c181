"""decide() on the faults of #12: a mover pod that never starts, a mover past its deadline, a lost pod."""

from __future__ import annotations

from datetime import timedelta

from decide_support import NOW, job, run, running

from nassync.core.actions import DeleteMoverJob
from nassync.core.decide import ChildJob
from nassync.core.names import job_name

PUSH_1 = job_name(syncjob="run1", step="push", n=1)


def _stuck(age: float, waiting: str | None = "0/1 nodes are available: node(s) didn't match "
                                            "Pod's node affinity/selector (Unschedulable)") -> dict[str, ChildJob]:
    return {PUSH_1: ChildJob(name=PUSH_1, step="push", state="Running", started=False,
                             created_at=NOW - timedelta(seconds=age), waiting=waiting)}


def test_a_pod_starting_normally_costs_no_status_write() -> None:
    j = job(status={"phase": "Pushing", **running("push", 1, started=NOW - timedelta(seconds=2))})
    d = run(j, children=_stuck(2, waiting=None))
    assert d.status.condition("Pushed") is None and not d.actions


def test_a_pod_not_started_yet_says_why_and_holds_nothing_else() -> None:
    j = job(status={"phase": "Pushing", **running("push", 1, started=NOW - timedelta(seconds=40))})
    d = run(j, children=_stuck(40))
    assert not d.creates and not d.deletes
    pushed = d.status.condition("Pushed")
    assert pushed is not None and pushed.reason == "MoverNotStarted" and "Unschedulable" in pushed.message
    assert d.requeue_after is not None and d.requeue_after <= 5
    assert d.status.phase == "Pushing"


def test_after_the_start_timeout_the_job_is_removed_and_the_step_retried_as_not_started() -> None:
    j = job(status={"phase": "Pushing", **running("push", 1, started=NOW - timedelta(minutes=4))})
    d = run(j, children=_stuck(240))
    assert d.deletes == (DeleteMoverJob(name=PUSH_1, reason="NotStarted"),)
    assert not d.creates
    assert d.status.last_error is not None and d.status.last_error.kind == "NotStarted"
    assert "did not start within 3m" in d.status.last_error.message
    assert "Unschedulable" in d.status.last_error.message
    # a failed push goes back through the gate (main: retries re-gate)
    assert d.status.phase == "Pending" and d.status.attempts == 1 and d.status.next_attempt_at is not None
    assert d.status.mover_job is not None and d.status.mover_job.state == "Failed"
    assert "PushFailed" in [e.reason for e in d.events]


def test_no_new_mover_while_the_removed_one_is_still_there() -> None:
    j = job(status={"phase": "Queued", "moverRuns": 1, "attempts": 1,
                    "moverJob": {"name": PUSH_1, "step": "push", "state": "Failed"}})
    d = run(j, children=_stuck(300))
    assert not d.creates, "the old Job (being deleted) still exists: no second mover"
    pushed = d.status.condition("Pushed")
    assert pushed is not None and pushed.reason == "WaitingForOldMover"
    d = run(j, children={})
    assert [c.name for c in d.creates] == [job_name(syncjob="run1", step="push", n=2)]


def test_a_mover_stopped_at_its_deadline_is_a_timeout_and_retried() -> None:
    j = job(status={"phase": "Pushing", **running("push", 1)})
    kids = {PUSH_1: ChildJob(name=PUSH_1, step="push", state="Failed", deadline_exceeded=True,
                             failure="DeadlineExceeded: Job was active longer than specified deadline")}
    d = run(j, children=kids)
    assert d.status.last_error is not None and d.status.last_error.kind == "Timeout"
    assert "spec.mover.deadlines.push" in d.status.last_error.message
    assert d.status.phase == "Pending" and d.status.next_attempt_at is not None


def test_a_lost_pod_says_how_it_ended() -> None:
    j = job(status={"phase": "Pushing", **running("push", 1)})
    kids = {PUSH_1: ChildJob(name=PUSH_1, step="push", state="Failed",
                             failure="container mover: ContainerStatusUnknown, exit code 137")}
    d = run(j, children=kids)
    assert d.status.last_error is not None and d.status.last_error.kind == "Unknown"
    assert "ContainerStatusUnknown" in d.status.last_error.message
