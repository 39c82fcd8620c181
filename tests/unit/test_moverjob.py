"""The mover Job spec: what a SyncJob can and cannot put into a pod (docs/concepts.md, "Security model")."""

from __future__ import annotations

import json
from typing import Any

from nassync.api.mover_io import MoverParams
from nassync.api.syncjob import SyncJob
from nassync.api.target import SyncTarget
from nassync.controller.moverjob import build_mover_job
from nassync.controller.observe import child_jobs, latest_progress, parse_result

TARGET = {
    "apiVersion": "nassync.dev/v1alpha1", "kind": "SyncTarget",
    "metadata": {"name": "scope", "namespace": "lab"},
    "spec": {
        "source": {"volume": {"hostPath": {"path": "/data/microscope-01"}},
                   "nodeSelector": {"kubernetes.io/hostname": "acq-pc-1"}},
        "destination": {"rclone": {"remote": "nas", "path": "/volume1/runs",
                                   "configSecretRef": {"name": "nas-rclone", "key": "rclone.conf"}}},
    },
}


def _job(run_path: str = "PROJ-0001/Runs/Run_1", **spec: Any) -> SyncJob:
    return SyncJob.from_body({
        "apiVersion": "nassync.dev/v1alpha1", "kind": "SyncJob",
        "metadata": {"name": "run-1", "namespace": "lab", "uid": "u-1", "generation": 1},
        "spec": {"targetRef": {"name": "scope"}, "runPath": run_path, **spec}})


def _build(job: SyncJob | None = None, target: dict[str, Any] | None = None) -> dict[str, Any]:
    return build_mover_job(job=job or _job(), target=SyncTarget.from_body(target or TARGET),
                           step="push", name="run-1-push-1", n=1)


def test_pod_is_restricted_and_non_root_by_default() -> None:
    pod = _build()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = pod["containers"][0]["securityContext"]
    assert sc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                  "privileged": False, "capabilities": {"drop": ["ALL"]}}


def test_argv_is_the_step_only_and_params_hold_no_secret_values() -> None:
    container = _build()["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["nassync-mover", "push"]
    assert "args" not in container
    env = {e["name"]: e["value"] for e in container["env"]}
    params = MoverParams.model_validate_json(env["NASSYNC_PARAMS"])
    assert params.run_path == "PROJ-0001/Runs/Run_1"
    assert params.destination.type == "rclone"
    assert params.destination.config_file == "/var/run/nassync/secret/rclone.conf"
    assert params.owner == "lab/run-1/u-1"


def test_only_the_target_decides_volumes_nodes_and_image() -> None:
    job = _build()
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "acq-pc-1"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["source"]["hostPath"] == {"path": "/data/microscope-01", "type": "Directory"}
    assert volumes["nas-secret"]["secret"]["secretName"] == "nas-rclone"
    # The SyncJob's run path reaches the pod only inside NASSYNC_PARAMS.
    text = json.dumps(pod)
    assert text.count("PROJ-0001/Runs/Run_1") == 1


def test_job_is_owned_by_the_syncjob_and_never_retried_by_kubernetes() -> None:
    job = _build()
    assert job["spec"]["backoffLimit"] == 0
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("SyncJob", "run-1", "u-1", True)
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_rsync_target_mounts_key_and_known_hosts() -> None:
    target = json.loads(json.dumps(TARGET))
    target["spec"]["destination"] = {"rsync": {"host": "nas.lab", "user": "sync", "path": "/volume1/runs",
                                               "sshSecretRef": {"name": "nas-ssh"}}}
    target["spec"]["mover"] = {"securityContext": {"runAsUser": 1234, "fsGroup": 1234}}
    pod = _build(target=target)["spec"]["template"]["spec"]
    secret = next(v for v in pod["volumes"] if v["name"] == "nas-secret")["secret"]
    assert {i["key"] for i in secret["items"]} == {"ssh-privatekey", "known_hosts"}
    assert pod["securityContext"]["runAsUser"] == 1234
    assert pod["securityContext"]["fsGroup"] == 1234


def _pod(job: str, message: str | None) -> dict[str, Any]:
    state = {"terminated": {"exitCode": 0, **({"message": message} if message else {})}}
    return {"metadata": {"name": f"{job}-abc", "labels": {"job-name": job}},
            "status": {"containerStatuses": [{"name": "mover", "state": state}]}}


def test_results_come_from_the_termination_message() -> None:
    result = parse_result([_pod("j", '{"step": "push", "ok": true, "manifest": {"files": 2, "bytes": 5}}')])
    assert result is not None and result.ok and result.manifest is not None and result.manifest.files == 2
    assert parse_result([_pod("j", "not json")]) is None
    assert parse_result([_pod("j", None)]) is None


def test_children_are_only_jobs_owned_by_this_syncjob() -> None:
    def job(name: str, uid: str, cond: str | None) -> dict[str, Any]:
        return {"metadata": {"name": name, "labels": {"nassync.dev/step": "push"},
                             "ownerReferences": [{"uid": uid}]},
                "status": {"conditions": [{"type": cond, "status": "True"}] if cond else []}}
    jobs = [job("a-push-1", "u-1", "Complete"), job("a-push-2", "u-1", None), job("b-push-1", "u-2", "Failed")]
    children = child_jobs("u-1", jobs, {"a-push-1": [_pod("a-push-1", '{"step": "push", "ok": true}')]})
    assert set(children) == {"a-push-1", "a-push-2"}
    assert children["a-push-1"].state == "Succeeded" and children["a-push-1"].result is not None
    assert children["a-push-2"].state == "Running" and children["a-push-2"].result is None


def test_latest_progress_line_wins() -> None:
    tail = "\n".join([
        '{"event": "progress", "step": "push", "bytes": 10, "totalBytes": 100}',
        '{"level": "info", "msg": "copying"}',
        '{"event": "progress", "step": "push", "bytes": 60, "totalBytes": 100}',
        "plain text"])
    record = latest_progress(tail)
    assert record is not None and record["bytes"] == 60
    assert latest_progress("nothing here") is None


def test_host_network_only_when_the_target_asks_for_it() -> None:
    pod = _build()["spec"]["template"]["spec"]
    assert "hostNetwork" not in pod
    target = json.loads(json.dumps(TARGET))
    target["spec"]["mover"] = {"hostNetwork": True}
    pod = _build(target=target)["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_a_volume_destination_mounts_its_claim_and_needs_no_secret() -> None:
    target = json.loads(json.dumps(TARGET))
    target["spec"]["destination"] = {"volume": {"claimName": "nas-share", "path": "/runs/scope"}}
    pod = _build(target=target)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["destination"] == {"name": "destination", "persistentVolumeClaim": {"claimName": "nas-share"}}
    assert not any("secret" in v for v in pod["volumes"])
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["destination"] == "/var/run/nassync/destination"
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    params = MoverParams.model_validate_json(env["NASSYNC_PARAMS"])
    assert params.destination.type == "volume"
    assert params.destination.path == "/var/run/nassync/destination/runs/scope"


REPLICATED = {**TARGET, "spec": {**TARGET["spec"], "replicas": [
    {"name": "offsite", "destination": {"rclone": {"remote": "s3", "path": "bucket/runs",
                                                   "configSecretRef": {"name": "s3-rclone"}}},
     "verify": {"method": "Download"}, "bandwidth": {"defaultKiBps": 512}},
    {"name": "nfs", "destination": {"volume": {"claimName": "archive", "path": "/runs"}}},
    {"name": "tape", "destination": {"rsync": {"host": "tape", "user": "lab", "path": "/a",
                                               "sshSecretRef": {"name": "tape-ssh"}}},
     "requiredForCleanup": False},
]}}


def _replica_job(step: str, replica: str | None) -> dict[str, Any]:
    return build_mover_job(job=_job(), target=SyncTarget.from_body(REPLICATED), step=step,  # type: ignore[arg-type]
                           name=f"run-1-{step}-5" + (f"-{replica}" if replica else ""), n=5, replica=replica)


def _params(manifest: dict[str, Any]) -> MoverParams:
    env = {e["name"]: e["value"] for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    return MoverParams.model_validate_json(env["NASSYNC_PARAMS"])


def _mounts(manifest: dict[str, Any]) -> dict[str, str]:
    pod = manifest["spec"]["template"]["spec"]
    return {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}


def test_a_replica_push_pod_holds_that_replica_only_in_the_usual_place() -> None:
    manifest = _replica_job("push", "offsite")
    params = _params(manifest)
    assert params.replica == "offsite" and params.replicas == []
    assert params.destination.type == "rclone" and params.destination.remote == "s3"
    assert params.destination.config_file == "/var/run/nassync/secret/rclone.conf"
    assert (params.verify_method, params.bandwidth.default_kibps) == ("Download", 512)
    pod = manifest["spec"]["template"]["spec"]
    secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert secrets == ["s3-rclone"], "neither the primary's nor another replica's credentials"
    assert manifest["metadata"]["labels"]["nassync.dev/replica"] == "offsite"
    assert json.loads(manifest["metadata"]["annotations"]["nassync.dev/params"])["replica"] == "offsite"


def test_a_replica_without_bandwidth_uses_the_targets() -> None:
    params = _params(_replica_job("push", "nfs"))
    assert params.destination.type == "volume"
    assert params.destination.path == "/var/run/nassync/destination/runs"
    assert params.bandwidth.default_kibps == 0 and params.verify_method == "Auto"


def test_a_cleanup_pod_proves_every_required_replica_each_in_its_own_slot() -> None:
    manifest = _replica_job("cleanup", None)
    params = _params(manifest)
    assert params.replica is None and params.destination.remote == "nas"  # type: ignore[union-attr]
    assert [r.name for r in params.replicas] == ["offsite", "nfs"], "the optional tape copy is not waited for"
    offsite, nfs = params.replicas
    assert offsite.destination.config_file == "/var/run/nassync/replicas/offsite/secret/rclone.conf"  # type: ignore[union-attr]
    assert offsite.verify_method == "Download"
    assert nfs.destination.path == "/var/run/nassync/replicas/nfs/destination/runs"
    mounts = _mounts(manifest)
    assert mounts["/var/run/nassync/secret"] == "nas-secret"
    assert mounts["/var/run/nassync/replicas/offsite/secret"] == "replica-offsite-secret"
    assert mounts["/var/run/nassync/replicas/nfs/destination"] == "replica-nfs-destination"
    pod = manifest["spec"]["template"]["spec"]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["archive"]
    assert not any("tape" in json.dumps(v) for v in pod["volumes"])


def test_a_replica_job_is_observed_as_that_replicas() -> None:
    manifest = _replica_job("verify", "offsite")
    manifest["metadata"]["ownerReferences"][0]["uid"] = "u-1"
    children = child_jobs("u-1", [manifest], {})
    assert children[manifest["metadata"]["name"]].replica == "offsite"
