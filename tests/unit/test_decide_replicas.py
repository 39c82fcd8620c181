"""decide() with replicas: every required copy proven before any delete, and no copy blocks another.

These drive the phase machine round by round (`Lab`): each mover decide()
asks for is answered by a function of the step and the copy, and the clock
jumps to the next requeue when nothing runs, so days of audit passes and
backoff are walked through in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from decide_support import NOW, PUSHED, SHA_A, SHA_B, VERIFIED, VERIFIED_LONG_AGO, failure, job, result

from nassync.api.mover_io import MoverResult
from nassync.api.syncjob import Phase, SyncJob
from nassync.api.target import SyncTarget
from nassync.core.actions import CreateMoverJob, Decision
from nassync.core.decide import ChildJob, ChildState, decide
from nassync.core.names import job_name

Answer = Callable[[CreateMoverJob, datetime], MoverResult]
S3 = {"rclone": {"remote": "s3", "path": "bucket/runs", "configSecretRef": {"name": "s3"}}}
TAPE = {"rsync": {"host": "tape.example", "user": "lab", "path": "/archive", "sshSecretRef": {"name": "tape"}}}


def replicated(*replicas: dict[str, Any], cleanup: dict[str, Any] | None = None,
               retry: dict[str, Any] | None = None) -> SyncTarget:
    spec: dict[str, Any] = {
        "source": {"volume": {"hostPath": {"path": "/data/mic"}}},
        "destination": {"rclone": {"remote": "nas", "path": "/vol/runs/", "configSecretRef": {"name": "s"}}},
        "replicas": list(replicas),
        "cleanup": {"enabled": True, "minVerifyPasses": 2, "minAgeAfterVerify": "24h", "reverifyInterval": "6h",
                    **(cleanup or {})},
    }
    if retry is not None:
        spec["retry"] = retry
    return SyncTarget.from_body({"metadata": {"name": "mic", "namespace": "lab"}, "spec": spec})


OFFSITE = {"name": "offsite", "destination": S3}


def replica_push(sha: str = SHA_A) -> MoverResult:
    return result("push", manifest={"files": 3, "bytes": 3072, "sha256": sha},
                  transfer={"bytes": 3072, "files": 3, "bandwidthLimitKiBps": 0})


def replica_verify(name: str) -> MoverResult:
    return result("verify", verify={"method": "Download", "replica": name})


CLEANED = result("cleanup", cleanup={"filesDeleted": 3, "bytesFreed": 3072})


def all_good(create: CreateMoverJob, now: datetime) -> MoverResult:
    if create.step == "push":
        return replica_push() if create.replica else PUSHED
    if create.step == "verify":
        return replica_verify(create.replica) if create.replica else VERIFIED
    if create.step == "cleanup":
        return CLEANED
    return result("gate", gate={"quiet": True})


@dataclass
class Lab:
    """One SyncJob driven through decide() until it settles or `until` says stop."""

    tgt: SyncTarget
    answer: Answer = all_good
    now: datetime = NOW
    job: SyncJob = field(default_factory=lambda: job(status=VERIFIED_FIRST))
    created: list[CreateMoverJob] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    pending: dict[str, ChildJob] = field(default_factory=dict)  # the finished mover the next tick consumes

    def step(self, children: dict[str, ChildJob] | None = None) -> Decision:
        decision = decide(job=self.job, target=self.tgt, children=children or {}, slot_available=True, now=self.now)
        self.decisions.append(decision)
        body = self.job.model_dump(by_alias=True, mode="json")
        body["status"] = decision.status.to_api()
        self.job = SyncJob.from_body(body)
        return decision

    def tick(self) -> Decision:
        """One decide() call fed the answer to the mover started last; that mover's answer is prepared."""
        decision = self.step(self.pending)
        self.pending = {}
        if decision.creates:
            create = decision.creates[0]
            self.created.append(create)
            self.now += timedelta(minutes=10)
            outcome = self.answer(create, self.now)
            state: ChildState = "Succeeded" if outcome.ok else "Failed"
            self.pending = {create.name: ChildJob(name=create.name, step=create.step, state=state, result=outcome,
                                                  replica=create.replica)}
        elif decision.requeue_after is not None:
            self.now += timedelta(seconds=max(decision.requeue_after, 1))
        return decision

    def drive(self, *, until: Callable[[Lab], bool] = lambda lab: False, rounds: int = 300) -> Lab:
        """Tick until `until` holds, the job is Cleaned or nothing is left to wait for."""
        for _ in range(rounds):
            if until(self):
                return self
            decision = self.tick()
            if not self.pending and (self.job.status.phase == Phase.CLEANED or decision.requeue_after is None):
                return self
        return self

    @property
    def steps(self) -> list[tuple[str, str | None]]:
        return [(c.step, c.replica) for c in self.created]

    def entry(self, name: str) -> Any:
        found = self.job.status.destination(name)
        assert found is not None, name
        return found


# Verified once just now: the primary still needs a second pass and a day.
VERIFIED_FIRST: dict[str, Any] = {
    "phase": "Verified", "moverRuns": 3, "manifest": {"files": 3, "bytes": 3072, "sha256": SHA_A},
    "verifyPasses": 1, "verifiedAt": NOW, "lastVerifiedAt": NOW,
}


def test_a_run_is_cleaned_only_after_every_required_copy_is_verified_enough() -> None:
    lab = Lab(replicated(OFFSITE)).drive()
    assert lab.job.status.phase == Phase.CLEANED
    steps = lab.steps
    cleanup_at = steps.index(("cleanup", None))
    before = steps[:cleanup_at]
    assert before.count(("push", "offsite")) == 1
    assert before.count(("verify", "offsite")) == 2, "the replica needs minVerifyPasses too"
    assert before.count(("verify", None)) == 1, "and the primary its second pass"
    assert steps.index(("push", "offsite")) == 0, "the replica starts once the primary copy is verified"
    offsite = lab.entry("offsite")
    assert (offsite.state, offsite.verify_passes, offsite.manifest_sha256) == ("Verified", 2, SHA_A)
    assert offsite.remote_path == "bucket/runs/P1/Runs/R1"
    assert lab.job.status.copies == "2/2"
    primary = lab.entry("primary")
    assert (primary.state, primary.verify_passes) == ("Verified", 2)
    names = [c.name for c in lab.created if c.replica]
    assert names and all(n.endswith("-offsite") for n in names)
    assert names[0] == job_name(syncjob="run1", step="push", n=4, replica="offsite")


def test_without_replicas_the_status_is_as_it_always_was() -> None:
    lab = Lab(replicated()).drive()
    assert lab.job.status.phase == Phase.CLEANED
    assert lab.job.status.destinations is None and lab.job.status.copies == "1/1"
    assert lab.job.status.condition("Replicated") is None
    assert all(c.replica is None for c in lab.created)


def test_a_replica_that_is_down_holds_back_cleanup_only_and_says_why() -> None:
    def s3_down(create: CreateMoverJob, now: datetime) -> MoverResult:
        if create.replica:
            return failure(create.step, "Network", "dial tcp 127.0.0.1:9000: connect: connection refused")
        return all_good(create, now)

    lab = Lab(replicated(OFFSITE, retry={"maxAttempts": 100, "backoffSeconds": [60, 3600]}), s3_down)
    lab.drive(until=lambda lab: lab.now > NOW + timedelta(hours=30))
    status = lab.job.status
    assert status.phase == Phase.VERIFIED, "the primary copy stays verified; the run stays"
    assert ("cleanup", None) not in lab.steps
    assert status.verify_passes == 2, "the primary's own audit is not held back by the replica"
    cleaned = status.condition("Cleaned")
    assert cleaned is not None and cleaned.reason == "ReplicaNotVerified"
    assert "replica offsite is not verified" in cleaned.message and "connection refused" in cleaned.message
    replicated_ = status.condition("Replicated")
    assert replicated_ is not None and (replicated_.status, replicated_.reason) == ("False", "ReplicaRetrying")
    offsite = lab.entry("offsite")
    assert offsite.state == "Pending" and offsite.last_error.kind == "Network"
    assert offsite.next_attempt_at is not None, "retried on its own backoff"
    assert status.copies == "1/2"
    assert status.attempts == 0 and status.last_error is None, "the primary's retry budget is untouched"

    lab.answer = all_good  # S3 is back
    lab.drive()
    assert lab.job.status.phase == Phase.CLEANED
    assert lab.entry("offsite").state == "Verified"


def test_a_replica_that_keeps_failing_is_given_up_and_a_retry_rearms_it() -> None:
    def refused(create: CreateMoverJob, now: datetime) -> MoverResult:
        if create.replica:
            return failure("push", "Auth", "the NAS refused the credentials")
        return all_good(create, now)

    lab = Lab(replicated(OFFSITE), refused).drive()
    offsite = lab.entry("offsite")
    assert offsite.state == "Failed" and "nassync.dev/retry" in offsite.message
    assert lab.job.status.phase == Phase.VERIFIED
    assert ("cleanup", None) not in lab.steps
    replicated_ = lab.job.status.condition("Replicated")
    assert replicated_ is not None and replicated_.reason == "ReplicaFailed"
    pushes = lab.steps.count(("push", "offsite"))
    assert pushes == 1, "Auth is not retried"

    lab.job = lab.job.model_copy(update={"metadata": {**lab.job.metadata,
                                                      "annotations": {"nassync.dev/retry": "1"}}})
    lab.answer = all_good
    lab.drive()
    assert lab.job.status.phase == Phase.CLEANED
    assert lab.steps.count(("push", "offsite")) == 2


def test_an_optional_replica_never_holds_back_cleanup_and_is_marked_skipped() -> None:
    def tape_down(create: CreateMoverJob, now: datetime) -> MoverResult:
        if create.replica == "tape":
            return failure(create.step, "Network", "no route to host")
        return all_good(create, now)

    tape = {"name": "tape", "destination": TAPE, "requiredForCleanup": False}
    lab = Lab(replicated(OFFSITE, tape, retry={"maxAttempts": 100, "backoffSeconds": [60]}), tape_down).drive()
    assert lab.job.status.phase == Phase.CLEANED
    assert lab.entry("offsite").state == "Verified"
    tape_entry = lab.entry("tape")
    assert tape_entry.state == "Skipped" and "requiredForCleanup: false" in tape_entry.message
    assert lab.job.status.copies == "2/3"
    events = [e.reason for d in lab.decisions for e in d.events]
    assert "ReplicaSkipped" in events


def test_a_replica_corrupted_after_verify_blocks_the_cleanup_and_is_made_again() -> None:
    corrupt = {"on": True}

    def answer(create: CreateMoverJob, now: datetime) -> MoverResult:
        if create.step == "cleanup" and corrupt["on"]:
            corrupt["on"] = False  # found by the cleanup pod's last look; the re-push repairs it
            return failure("cleanup", "HashMismatch", "replica offsite: the copy at s3:bucket/runs/P1/Runs/R1 does "
                           "not match the manifest: 1 file(s) differ; nothing deleted",
                           verify={"differing": 1, "examples": ["raw/a.tif"], "replica": "offsite"})
        return all_good(create, now)

    lab = Lab(replicated(OFFSITE), answer)
    lab.drive(until=lambda lab: bool(lab.created) and lab.created[-1].step == "cleanup")
    consumed = lab.tick()
    assert [(c.step, c.replica) for c in consumed.creates] == [("push", "offsite")], "the copy is made again at once"
    status = lab.job.status
    assert status.phase == Phase.VERIFIED, "not Pending: the primary copy is fine and is not pushed again"
    assert status.deleted is None
    assert status.verify_passes == 2, "the primary keeps its passes"
    offsite = lab.entry("offsite")
    assert (offsite.state, offsite.verify_passes) == ("Pushing", 0)
    assert offsite.last_error is not None and offsite.last_error.kind == "HashMismatch"
    cleaned = status.condition("Cleaned")
    assert cleaned is not None and cleaned.reason == "ReplicaMismatch"
    assert cleaned.message.startswith("cleanup refused: replica offsite: ") and "nothing deleted" in cleaned.message
    assert "VerifyMismatch" in [e.reason for e in consumed.events]

    lab.drive()
    assert lab.job.status.phase == Phase.CLEANED
    after = lab.steps[lab.steps.index(("cleanup", None)) + 1:]
    assert after[:3] == [("push", "offsite"), ("verify", "offsite"), ("verify", "offsite")]
    assert ("push", None) not in lab.steps and ("gate", None) not in lab.steps


def test_a_new_manifest_makes_every_replica_start_over() -> None:
    status = {**VERIFIED_LONG_AGO, "manifest": {"files": 3, "bytes": 3072, "sha256": SHA_B},
              "destinations": [{"name": "offsite", "state": "Verified", "manifestSha256": SHA_A, "verifyPasses": 2,
                                "verifiedAt": NOW - timedelta(days=2)}]}
    lab = Lab(replicated(OFFSITE), job=job(status=status))
    decision = lab.step()
    assert decision.creates and (decision.creates[0].step, decision.creates[0].replica) == ("push", "offsite")
    assert lab.entry("offsite").verify_passes == 0


def test_a_verify_request_verifies_every_copy_again_before_cleanup() -> None:
    status = {**VERIFIED_LONG_AGO, "verifyPasses": 1,
              "destinations": [{"name": "offsite", "state": "Verified", "manifestSha256": SHA_A, "verifyPasses": 2,
                                "verifiedAt": NOW - timedelta(days=2), "lastVerifiedAt": NOW - timedelta(days=1)}]}
    lab = Lab(replicated(OFFSITE), job=job(status=status, annotations={"nassync.dev/verify": "1"})).drive()
    assert lab.steps[:2] == [("verify", None), ("verify", "offsite")]
    assert lab.job.status.phase == Phase.CLEANED


def test_a_replica_mover_created_before_a_restart_is_adopted() -> None:
    status = {**VERIFIED_FIRST, "destinations": [{"name": "offsite", "manifestSha256": ""}]}
    orphan = job_name(syncjob="run1", step="push", n=4, replica="offsite")
    lab = Lab(replicated(OFFSITE), job=job(status=status))
    decision = lab.step({orphan: ChildJob(name=orphan, step="push", state="Running", replica="offsite")})
    assert not decision.creates, "no second mover on the same copy"
    assert lab.job.status.mover_job is not None and lab.job.status.mover_job.replica == "offsite"
    assert lab.entry("offsite").state == "Pushing"
    assert lab.job.status.phase == Phase.VERIFIED


def test_replicas_wait_for_the_primary_copy() -> None:
    lab = Lab(replicated(OFFSITE), job=job(status={"phase": "Queued"}))
    decision = lab.step()
    assert [(c.step, c.replica) for c in decision.creates] == [("push", None)]
    replicated_ = lab.job.status.condition("Replicated")
    assert replicated_ is not None and "once the primary copy is verified" in replicated_.message


def test_a_replica_added_after_the_run_was_cleaned_is_skipped_not_pending_forever() -> None:
    cleaned = {**VERIFIED_LONG_AGO, "phase": "Cleaned", "cleanedAt": NOW - timedelta(days=1)}
    lab = Lab(replicated(OFFSITE), job=job(status=cleaned))
    decision = lab.step()
    assert not decision.creates
    offsite = lab.entry("offsite")
    assert offsite.state == "Skipped" and "added to the target later" in offsite.message
    assert lab.job.status.phase == Phase.CLEANED
