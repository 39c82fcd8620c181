"""The validating admission webhook: what the CRD's CEL rules cannot know.

CEL sees one object; these checks need the cluster: the referenced SyncTarget
exists in the namespace, its Secret exists, no other SyncJob of the target has
a runPath equal to, above or below this one (two owners would write into one
NAS directory, or one run's copy over another's).
Imported only when the operator runs with a webhook server, because kopf
refuses to start with admission handlers and no server.
"""

from __future__ import annotations

from typing import Any

import kopf

from nassync.api import validation
from nassync.api.common import GROUP, VERSION
from nassync.controller.kube import ApiKube

_kube: ApiKube | None = None


def _client() -> ApiKube:
    global _kube
    if _kube is None:
        _kube = ApiKube()
    return _kube


@kopf.on.validate(GROUP, VERSION, "syncjobs", id="syncjob-policy", operations=["CREATE", "UPDATE"])
def validate_syncjob(body: kopf.Body, **kwargs: Any) -> None:
    old = kwargs.get("old")  # immutability itself is enforced by the CRD's CEL rules
    kube = _client()
    namespace = body.get("metadata", {}).get("namespace") or ""
    spec = body.get("spec") or {}
    target_name = (spec.get("targetRef") or {}).get("name") or ""
    target = kube.get_target(namespace, target_name) if target_name else None
    secret_exists: bool | None = None
    if target is not None:
        secret = validation.target_secret_name(target)
        # A destination without credentials (a mounted volume) names no Secret.
        secret_exists = kube.secret_keys(namespace, secret) is not None if secret else None
    name = body.get("metadata", {}).get("name") or ""
    target_jobs = {
        other["metadata"]["name"]: str((other.get("spec") or {}).get("runPath") or "")
        for other in kube.list_syncjobs(namespace)
        if other["metadata"]["name"] != name
        and (other.get("spec") or {}).get("targetRef", {}).get("name") == target_name
    }
    errors = validation.validate_syncjob(
        dict(body), old=dict(old) if old else None, target=target,
        target_secret_exists=secret_exists, target_jobs=target_jobs)
    if errors:
        raise kopf.AdmissionError("; ".join(f"{e.field}: {e.message}" for e in errors), code=422)
