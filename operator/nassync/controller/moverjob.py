"""The mover Job a step runs as, built from the SyncTarget and the SyncJob.

This is where the security model (docs/concepts.md, "Security model") becomes a pod spec. Only the
SyncTarget (admin-owned) contributes host paths, volumes, nodes, secrets and
the image; the SyncJob contributes its relative run path and acknowledged
overrides, and those travel only inside `NASSYNC_PARAMS`, never as volumes,
argv or pod fields. Secrets are mounted as files; the command line carries the
step name and nothing else. The pod is non-root by default, cannot escalate,
has no capabilities and a read-only root filesystem.
"""

from __future__ import annotations

import json
from typing import Any

from nassync.api import mover_io
from nassync.api.common import API_VERSION
from nassync.api.syncjob import SyncJob
from nassync.api.target import PRIMARY_SLOT, DestinationModel, PodSlot, SyncTarget
from nassync.core import names

DEFAULT_IMAGE = "ghcr.io/nassync/nassync:0.1.0"
DEFAULT_UID = 65532
JOB_TTL_SECONDS = 7 * 24 * 3600  # keep finished movers a week: `kubectl logs` for post-mortems
SOURCE_VOLUME = "source"


def mover_params(*, job: SyncJob, target: SyncTarget, step: mover_io.Step,
                 replica: str | None = None) -> mover_io.MoverParams:
    """The mover's parameters; with `replica`, a push or verify of that copy instead of the primary."""
    spec = target.spec
    copy = spec.replica(replica) if replica is not None else None
    if replica is not None and copy is None:
        raise ValueError(f"SyncTarget has no replica {replica!r}")
    last_error = job.status.last_error
    if copy is not None:
        entry = job.status.destination(copy.name)
        last_error = entry.last_error if entry is not None else None
    after_mismatch = last_error is not None and last_error.kind == mover_io.ErrorKind.HASH_MISMATCH
    marker = spec.gate.completion_marker
    destination = (copy.destination if copy is not None else spec.destination).chosen
    bandwidth = (copy.bandwidth if copy is not None else None) or spec.bandwidth
    checks = [] if step != "cleanup" else [
        mover_io.ReplicaCheck(name=r.name, destination=r.destination.chosen.to_mover(PodSlot.for_replica(r.name)),
                              verifyMethod=r.verify.method)
        for r in spec.required_replicas]
    return mover_io.MoverParams(
        step=step,
        runPath=job.spec.run_path,
        cacheDirName=spec.source.cache_dir_name,
        destination=destination.to_mover(PRIMARY_SLOT),
        verifyMethod=(copy.verify if copy is not None else spec.verify).method,
        bandwidth=bandwidth.to_mover(),
        quietPeriodSeconds=spec.gate.quiet_period_seconds,
        overrides=[o.to_mover() for o in job.spec.overrides],
        retainCache=spec.cleanup.retain_cache,
        cleanupEnabled=spec.cleanup.enabled and not job.spec.cleanup.hold,
        minAgeAfterVerifySeconds=spec.cleanup.min_age_after_verify_seconds,
        identifyOwner=step == "gate" and spec.mover.run_as_run_owner is not None and job.status.run_owner is None,
        # After a mismatch the NAS holds a file that looks right and is not.
        compareContent=step == "push" and after_mismatch,
        completionMarker=marker.to_mover() if marker is not None else None,
        expectedManifestSha256=(job.status.manifest.sha256 or None) if job.status.manifest else None,
        owner=job.owner,
        replica=replica,
        replicas=checks,
    )


def _security(target: SyncTarget, job: SyncJob) -> tuple[dict[str, Any], dict[str, Any]]:
    sc = target.spec.mover.security_context
    owner = job.status.run_owner if target.spec.mover.run_as_run_owner is not None else None
    uid = sc.run_as_user if sc and sc.run_as_user is not None else DEFAULT_UID
    if owner is not None:
        uid = owner.uid  # the gate found it, decide() checked it against minUID..maxUID
    pod: dict[str, Any] = {"runAsUser": uid, "runAsNonRoot": uid != 0,
                           "seccompProfile": {"type": "RuntimeDefault"}}
    if owner is not None:
        pod["runAsGroup"] = owner.gid
    if sc is not None:
        if sc.run_as_group is not None and owner is None:
            pod["runAsGroup"] = sc.run_as_group
        if sc.fs_group is not None:
            pod["fsGroup"] = sc.fs_group
        if sc.supplemental_groups:
            pod["supplementalGroups"] = list(sc.supplemental_groups)
    container = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                 "privileged": False, "capabilities": {"drop": ["ALL"]}}
    return pod, container


def _secret_mode(target: SyncTarget) -> int:
    # 0440 + fsGroup on a real kubelet, else 0444 so any runAsUser can read it;
    # the rsync transport uses a 0600 copy of its own (ssh refuses a key its
    # user could share, e.g. a root-owned 0444 key when running as root).
    sc = target.spec.mover.security_context
    return 0o440 if sc is not None and sc.fs_group is not None else 0o444


def _destination_volumes(dest: DestinationModel, slot: PodSlot, target: SyncTarget,
                         ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """One destination's credentials and volumes, placed in `slot`."""
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    if dest.secret_name is not None:
        secret: dict[str, Any] = {"secretName": dest.secret_name, "defaultMode": _secret_mode(target)}
        if dest.secret_items is not None:
            secret["items"] = dest.secret_items
        pairs.append(({"name": slot.secret_volume, "secret": secret},
                      {"name": slot.secret_volume, "mountPath": slot.secret_dir, "readOnly": True}))
    pairs.extend(dest.pod_volumes(slot))
    return pairs


def _volumes(target: SyncTarget, step: mover_io.Step,
             replica: str | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the mover container's mounts: source, credentials, destination's own, /tmp.

    A replica's push or verify holds that replica in the primary slot; a
    cleanup holds the primary there and every required replica in its own.
    """
    src = target.spec.source.volume
    source: dict[str, Any]
    if src.host_path is not None:
        source = {"name": SOURCE_VOLUME, "hostPath": {"path": src.host_path.path, "type": "Directory"}}
    elif src.persistent_volume_claim is not None:
        source = {"name": SOURCE_VOLUME,
                  "persistentVolumeClaim": {"claimName": src.persistent_volume_claim.claim_name}}
    else:
        raise ValueError("SyncTarget has no source volume")
    volumes = [source]
    mounts: list[dict[str, Any]] = [{"name": SOURCE_VOLUME, "mountPath": mover_io.SOURCE_MOUNT}]
    copy = target.spec.replica(replica) if replica is not None else None
    pairs = _destination_volumes((copy.destination if copy else target.spec.destination).chosen, PRIMARY_SLOT,
                                 target)
    if step == "cleanup":
        for r in target.spec.required_replicas:
            pairs += _destination_volumes(r.destination.chosen, PodSlot.for_replica(r.name), target)
    for volume, mount in pairs:
        volumes.append(volume)
        mounts.append(mount)
    volumes.append({"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    return volumes, mounts


def build_mover_job(*, job: SyncJob, target: SyncTarget, step: mover_io.Step, name: str, n: int,
                    default_image: str = DEFAULT_IMAGE, replica: str | None = None) -> dict[str, Any]:
    """The batch/v1 Job for one mover step (backoffLimit 0: the operator owns retries)."""
    meta = job.metadata
    labels = names.mover_labels(syncjob=meta["name"], target=target.metadata["name"], step=step, n=n,
                                replica=replica)
    params = mover_params(job=job, target=target, step=step, replica=replica)
    pod_sc, container_sc = _security(target, job)
    mover = target.spec.mover
    volumes, mounts = _volumes(target, step, replica)
    container: dict[str, Any] = {
        "name": "mover",
        "image": mover.image or default_image,
        "command": ["nassync-mover", step],
        "env": [{"name": mover_io.PARAMS_ENV,
                 "value": params.model_dump_json(by_alias=True, exclude_none=True)},
                {"name": "NASSYNC_LOG_FORMAT", "value": "json"}],
        "volumeMounts": mounts,
        "securityContext": container_sc,
        "terminationMessagePath": mover_io.DEFAULT_RESULT_PATH,
        "terminationMessagePolicy": "File",
    }
    if mover.image_pull_policy:
        container["imagePullPolicy"] = mover.image_pull_policy
    if mover.resources is not None:
        container["resources"] = mover.resources.model_dump(by_alias=True, exclude_defaults=True)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        # Movers never talk to the Kubernetes API: no token in the pod.
        "automountServiceAccountToken": False,
        "securityContext": pod_sc,
        "nodeSelector": dict(target.spec.source.node_selector),
        "tolerations": [t.model_dump(by_alias=True, exclude_none=True)
                        for t in target.spec.source.tolerations],
        "volumes": volumes,
        "containers": [container],
    }
    if mover.host_network:
        pod_spec["hostNetwork"] = True
        # Keep cluster DNS names resolvable from the node's network namespace.
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    if mover.service_account_name:
        pod_spec["serviceAccountName"] = mover.service_account_name
    if mover.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s.name} for s in mover.image_pull_secrets]
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "ttlSecondsAfterFinished": JOB_TTL_SECONDS,
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    # Always bounded: a mover hung on a NAS that stopped answering is stopped by the Job
    # controller (DeadlineExceeded) and frees the target's slot; the step fails as Timeout.
    spec["activeDeadlineSeconds"] = mover.deadline_seconds(step)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": labels,
            "annotations": {"nassync.dev/params": json.dumps(
                {"step": step, "runPath": job.spec.run_path} | ({"replica": replica} if replica else {}))},
            "ownerReferences": [{
                "apiVersion": API_VERSION, "kind": "SyncJob", "name": meta["name"],
                "uid": meta["uid"], "controller": True, "blockOwnerDeletion": False,
            }],
        },
        "spec": spec,
    }
