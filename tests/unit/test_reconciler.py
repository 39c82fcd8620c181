"""The reconcile loop against a fake cluster: readiness policy, queueing, progress.

The pure parts (decide, readiness) have their own tables; these tests check
what the shell does with them: which objects it creates and writes, in which
order, and that it asks the core rather than deciding on its own.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fake_kube import FakeKube

from nassync.api.mover_io import MoverResult
from nassync.controller.kube import Body
from nassync.controller.reconciler import Reconciler, TargetKey

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
KEY = TargetKey("lab", "scope")


def _target(**spec: Any) -> Body:
    body: dict[str, Any] = {
        "apiVersion": "nassync.dev/v1alpha1", "kind": "SyncTarget",
        "metadata": {"name": "scope", "namespace": "lab"},
        "spec": {"source": {"volume": {"hostPath": {"path": "/data/scope"}}},
                 "destination": {"rclone": {"remote": "nas", "path": "/runs",
                                            "configSecretRef": {"name": "nas-rclone", "key": "rclone.conf"}}},
                 "gate": {"quietPeriod": "0s"}},
    }
    body["spec"].update(spec)
    return body  # type: ignore[return-value]


def _syncjob(name: str, run_path: str = "P/Runs/R1") -> Body:
    return {"apiVersion": "nassync.dev/v1alpha1", "kind": "SyncJob",  # type: ignore[return-value]
            "metadata": {"name": name, "namespace": "lab"},
            "spec": {"targetRef": {"name": "scope"}, "runPath": run_path}}


@pytest.fixture
def kube() -> FakeKube:
    k = FakeKube()
    k.add(_target())
    k.secrets[("lab", "nas-rclone")] = frozenset({"rclone.conf"})
    return k


def _reconciler(kube: FakeKube) -> Reconciler:
    return Reconciler(kube, default_image="example/nassync:test", clock=lambda: NOW)


def _ready(kube: FakeKube) -> dict[str, Any]:
    status = kube.targets[("lab", "scope")].get("status") or {}
    return next(c for c in status.get("conditions", []) if c["type"] == "Ready")


def test_a_ready_target_starts_the_gate_once(kube: FakeKube) -> None:
    kube.add(_syncjob("run-1"))
    loop = _reconciler(kube)
    loop.reconcile(KEY)
    loop.reconcile(KEY)
    assert list(kube.jobs) == [("lab", "run-1-gate-1")]
    assert kube.status("run-1")["phase"] == "Gating"
    assert _ready(kube)["status"] == "True"
    assert kube.targets[("lab", "scope")]["status"]["activeMovers"] == 1


@pytest.mark.parametrize(
    ("secret", "reason", "says"),
    [(None, "SecretMissing", "Secret 'nas-rclone' not found"),
     (frozenset({"other"}), "SecretKeyMissing", "lacks key(s) rclone.conf")],
)
def test_a_target_without_its_secret_starts_nothing_and_says_why(
        kube: FakeKube, secret: frozenset[str] | None, reason: str, says: str) -> None:
    if secret is None:
        del kube.secrets[("lab", "nas-rclone")]
    else:
        kube.secrets[("lab", "nas-rclone")] = secret
    kube.add(_syncjob("run-1"))
    delay = _reconciler(kube).reconcile(KEY)
    assert not kube.jobs
    ready = _ready(kube)
    assert (ready["status"], ready["reason"]) == ("False", reason) and says in ready["message"]
    assert [(e.kind, e.reason) for e in kube.events if e.kind == "SyncTarget"] == [("SyncTarget", reason)]
    error = kube.status("run-1")["lastError"]
    assert error["kind"] == "Config" and says in error["message"] and reason in error["message"]
    assert "TargetNotReady" in kube.reasons("run-1")
    assert delay is not None and delay <= 30, "a Secret is not watched: look again soon"

    kube.secrets[("lab", "nas-rclone")] = frozenset({"rclone.conf"})
    _reconciler(kube).reconcile(KEY)
    assert list(kube.jobs) == [("lab", "run-1-gate-1")]
    assert "lastError" not in kube.status("run-1"), "the target error is gone once the target is ready"
    assert _ready(kube)["status"] == "True"


def test_an_invalid_target_is_reported_as_invalid_not_as_missing(kube: FakeKube) -> None:
    body = _target(concurrency=0)  # below the CRD minimum: admitted by an older CRD, say
    kube.targets[("lab", "scope")] = body
    kube.add(_syncjob("run-1"))
    _reconciler(kube).reconcile(KEY)
    assert not kube.jobs
    ready = _ready(kube)
    assert ready["reason"] == "InvalidSpec" and "concurrency" in ready["message"]
    error = kube.status("run-1")["lastError"]["message"]
    assert "InvalidSpec" in error and "not found" not in error


def test_a_missing_target_is_reported_on_the_syncjob_only(kube: FakeKube) -> None:
    del kube.targets[("lab", "scope")]
    kube.add(_syncjob("run-1"))
    _reconciler(kube).reconcile(KEY)
    assert not kube.jobs and not kube.target_patches
    assert kube.status("run-1")["lastError"]["message"] == 'SyncTarget "scope" not found in namespace "lab"'
    assert kube.reasons("run-1")[-1] == "TargetMissing"


def test_concurrency_is_exact_and_fifo(kube: FakeKube) -> None:
    for name in ("run-a", "run-b", "run-c"):
        kube.add(_syncjob(name, run_path=f"P/Runs/{name}"))
    loop = _reconciler(kube)
    loop.reconcile(KEY)
    assert list(kube.jobs) == [("lab", "run-a-gate-1")]
    assert kube.targets[("lab", "scope")]["status"]["queued"] == 2
    kube.finish("run-a-gate-1", MoverResult.model_validate({"step": "gate", "ok": True, "gate": {"quiet": True}}))
    loop.reconcile(KEY)
    # run-a's gate finished: its push takes the slot before the younger jobs start.
    assert ("lab", "run-a-push-2") in kube.jobs and ("lab", "run-b-gate-1") not in kube.jobs


def test_progress_of_the_running_push_reaches_the_status(kube: FakeKube) -> None:
    kube.add(_syncjob("run-1"))
    loop = _reconciler(kube)
    loop.reconcile(KEY)
    kube.finish("run-1-gate-1", MoverResult.model_validate({"step": "gate", "ok": True, "gate": {"quiet": True}}))
    loop.reconcile(KEY)
    kube.start_pod("run-1-push-2", log='{"event":"progress","step":"push","bytes":512,"totalBytes":2048,'
                                       '"bytesPerSecond":100,"etaSeconds":15}\n')
    loop._progress_read.clear()
    delay = loop.reconcile(KEY)
    progress = kube.status("run-1")["transfer"]["progress"]
    assert progress == {"bytes": 512, "totalBytes": 2048, "percent": 25, "bytesPerSecond": 100, "etaSeconds": 15}
    assert delay is not None and delay <= 10


def test_a_volume_destination_is_ready_without_a_secret() -> None:
    kube = FakeKube()
    kube.add(_target(destination={"volume": {"claimName": "nas-share"}}))
    kube.add(_syncjob("run-1"))
    _reconciler(kube).reconcile(KEY)
    assert _ready(kube)["status"] == "True"
    assert list(kube.jobs) == [("lab", "run-1-gate-1")]
    assert kube.targets[("lab", "scope")]["status"]["destinationType"] == "volume"


def test_a_mover_pod_that_never_starts_is_explained_then_removed_and_retried(kube: FakeKube) -> None:
    kube.add(_syncjob("run-1"))
    now = [NOW]
    loop = Reconciler(kube, default_image="example/nassync:test", clock=lambda: now[0])
    loop.reconcile(KEY)
    assert list(kube.jobs) == [("lab", "run-1-gate-1")]
    kube.job_events[("lab", "run-1-gate-1")] = [{
        "type": "Warning", "reason": "FailedCreate", "lastTimestamp": "2026-11-30T12:00:05Z",
        "message": 'Error creating: pods "run-1-gate-1-x" is forbidden: violates PodSecurity "baseline:latest": '
                   'hostPath volumes (volume "source")'}]
    now[0] = NOW + timedelta(seconds=30)
    loop.reconcile(KEY)
    gated = {c["type"]: c for c in kube.status("run-1")["conditions"]}["Gated"]
    assert gated["reason"] == "MoverNotStarted" and "PodSecurity" in gated["message"]
    assert not kube.deleted_jobs
    now[0] = NOW + timedelta(minutes=4)
    loop.reconcile(KEY)
    assert kube.deleted_jobs == ["run-1-gate-1"]
    status = kube.status("run-1")
    assert status["lastError"]["kind"] == "NotStarted" and "hostPath volumes" in status["lastError"]["message"]
    loop.reconcile(KEY)  # the Job is gone (foreground deletion done): its slot is free
    assert kube.targets[("lab", "scope")]["status"]["activeMovers"] == 0


def test_history_deletes_only_old_finished_syncjobs_and_says_so(kube: FakeKube) -> None:
    kube.targets[("lab", "scope")]["spec"]["history"] = {"keepFinished": 1}
    for i, phase in enumerate(("Cleaned", "Cleaned", "Failed", "Cleaned")):
        body = _syncjob(f"run-{i}", f"P/Runs/R{i}")
        body["status"] = {"phase": phase, "observedGeneration": 1,
                          "cleanedAt": f"2026-11-30T10:0{i}:00Z" if phase == "Cleaned" else None}
        body["status"] = {k: v for k, v in body["status"].items() if v is not None}
        kube.add(body)
    loop = _reconciler(kube)
    assert loop.reconcile(KEY) == 2.0  # statuses written this round: judged on the next one
    loop._pruned_at.clear()  # (judged at most every PRUNE_INTERVAL)
    loop.reconcile(KEY)
    assert sorted(name for _ns, name in kube.syncjobs) == ["run-2", "run-3"]  # Failed stays; newest Cleaned stays
    pruned = [e for e in kube.events if e.reason == "HistoryPruned"]
    assert len(pruned) == 1 and pruned[0].kind == "SyncTarget" and "untouched" in pruned[0].message


def _ok(step: str, **fields: Any) -> MoverResult:
    return MoverResult.model_validate({"step": step, "ok": True, **fields})


MANIFEST = {"files": 2, "bytes": 20, "sha256": "c" * 64}


def test_a_replica_needs_its_secret_and_gets_movers_of_its_own(kube: FakeKube) -> None:
    kube.targets[("lab", "scope")] = _target(replicas=[{"name": "offsite", "destination": {"rclone": {
        "remote": "s3", "path": "bucket", "configSecretRef": {"name": "s3-rclone"}}}}])
    kube.add(_syncjob("run-1"))
    loop = _reconciler(kube)
    loop.reconcile(KEY)
    assert not kube.jobs
    ready = _ready(kube)
    assert ready["reason"] == "SecretMissing" and "'s3-rclone' (replica offsite) not found" in ready["message"]

    kube.secrets[("lab", "s3-rclone")] = frozenset({"rclone.conf"})
    loop.reconcile(KEY)
    kube.finish("run-1-gate-1", _ok("gate", gate={"quiet": True}))
    loop.reconcile(KEY)
    kube.finish("run-1-push-2", _ok("push", manifest=MANIFEST))
    loop.reconcile(KEY)
    kube.finish("run-1-verify-3", _ok("verify", verify={"method": "RemoteHash"}))
    loop.reconcile(KEY)
    assert ("lab", "run-1-push-4-offsite") in kube.jobs
    job = kube.jobs[("lab", "run-1-push-4-offsite")]
    assert job["metadata"]["labels"]["nassync.dev/replica"] == "offsite"
    status = kube.status("run-1")
    assert status["phase"] == "Verified" and status["moverJob"]["replica"] == "offsite"
    assert [d["name"] for d in status["destinations"]] == ["primary", "offsite"]
    assert status["destinations"][1]["state"] == "Pushing" and status["copies"] == "1/2"

    kube.start_pod("run-1-push-4-offsite", log='{"event":"progress","step":"push","bytes":5,"totalBytes":20}\n')
    loop._progress_read.clear()
    loop.reconcile(KEY)
    status = kube.status("run-1")
    assert status["destinations"][1]["transfer"]["progress"]["percent"] == 25
    assert status["transfer"].get("progress") is None, "the primary's finished push keeps its own record"

    kube.finish("run-1-push-4-offsite", _ok("push", manifest=MANIFEST))
    loop.reconcile(KEY)
    kube.finish("run-1-verify-5-offsite", _ok("verify", verify={"method": "Download", "replica": "offsite"}))
    loop.reconcile(KEY)
    status = kube.status("run-1")
    assert status["copies"] == "2/2" and status["destinations"][1]["state"] == "Verified"
    assert "ReplicaVerified" in kube.reasons("run-1")


def _params(kube: FakeKube, job: str) -> dict[str, Any]:
    env = kube.jobs[("lab", job)]["spec"]["template"]["spec"]["containers"][0]["env"]
    return dict(json.loads(next(e["value"] for e in env if e["name"] == "NASSYNC_PARAMS")))


def test_a_mover_started_in_the_round_that_judged_the_last_one_carries_what_it_learned(kube: FakeKube) -> None:
    """The verify that follows a push in the same round checks the manifest that push recorded; a replica
    pushed again in the round its cleanup refusal was judged compares content (rsync's quick check would
    otherwise skip a corrupted copy whose size and mtime match, and the copy would never heal)."""
    kube.targets[("lab", "scope")] = _target(replicas=[{"name": "offsite", "destination": {"rclone": {
        "remote": "s3", "path": "bucket", "configSecretRef": {"name": "s3-rclone"}}}}],
        cleanup={"enabled": True, "minVerifyPasses": 1, "minAgeAfterVerify": "0s"})
    kube.secrets[("lab", "s3-rclone")] = frozenset({"rclone.conf"})
    kube.add(_syncjob("run-1"))
    loop = _reconciler(kube)
    loop.reconcile(KEY)
    kube.finish("run-1-gate-1", _ok("gate", gate={"quiet": True}))
    loop.reconcile(KEY)
    kube.finish("run-1-push-2", _ok("push", manifest=MANIFEST))
    loop.reconcile(KEY)
    assert _params(kube, "run-1-verify-3")["expectedManifestSha256"] == MANIFEST["sha256"]
    kube.finish("run-1-verify-3", _ok("verify", verify={"method": "RemoteHash"}))
    loop.reconcile(KEY)
    kube.finish("run-1-push-4-offsite", _ok("push", manifest=MANIFEST))
    loop.reconcile(KEY)
    kube.finish("run-1-verify-5-offsite", _ok("verify", verify={"method": "Download", "replica": "offsite"}))
    loop.reconcile(KEY)
    assert ("lab", "run-1-cleanup-6") in kube.jobs
    refused = MoverResult.model_validate({
        "step": "cleanup", "ok": False,
        "error": {"kind": "HashMismatch", "message": "replica offsite: 1 file(s) differ; nothing deleted"},
        "verify": {"method": "Download", "replica": "offsite", "differing": 1}})
    kube.finish("run-1-cleanup-6", refused)
    loop.reconcile(KEY)
    assert "ReplicaMismatch" in kube.reasons("run-1")
    repush = [name for (_ns, name) in kube.jobs if name.startswith("run-1-push-") and name.endswith("-offsite")]
    assert repush[-1] != "run-1-push-4-offsite", repush
    assert _params(kube, repush[-1])["compareContent"] is True
