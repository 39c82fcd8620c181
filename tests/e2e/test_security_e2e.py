"""A user who may only create SyncJobs cannot reach host paths, secrets or pod specs through them.

The user is impersonated through the real apiserver's RBAC (`kubectl --as`).
What the SyncJob can name (a target and a relative path) is checked all the way
to the mover pod: the pod's volumes, node and image come from the SyncTarget,
and a run path that resolves outside the source volume (through a symlink the
user may have planted) is blocked by the gate before anything is read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from tests.e2e.support import wait_phase

from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, rclone_target, syncjob, write_run
from nassync_dev.testing import Kubectl

pytestmark = [pytest.mark.cluster, pytest.mark.nas]

USER = "lab-scientist"


@pytest.fixture
def scientist(ns: Kubectl) -> Kubectl:
    ns.apply([
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "syncjob-creator"},
         "rules": [{"apiGroups": ["nassync.dev"], "resources": ["syncjobs"],
                    "verbs": ["create", "get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "scientist"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "syncjob-creator"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}]},
    ])
    return ns


def _can(ns: Kubectl, verb: str, resource: str) -> bool:
    result = ns.run("auth", "can-i", verb, resource, f"--as={USER}", check=False)
    return result.stdout.strip() == "yes"


def test_syncjob_creator_has_no_path_to_secrets_pods_or_targets(
        crds: Kubectl, scientist: Kubectl) -> None:
    assert _can(scientist, "create", "syncjobs.nassync.dev")
    for verb, resource in [("get", "secrets"), ("list", "secrets"), ("create", "pods"), ("create", "jobs"),
                           ("get", "pods/log"), ("create", "synctargets.nassync.dev"),
                           ("update", "syncjobs.nassync.dev/status"), ("create", "pods/exec")]:
        assert not _can(scientist, verb, resource), f"{USER} must not {verb} {resource}"


def test_run_path_escaping_the_source_through_a_symlink_is_blocked(
        scientist: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    ns = scientist
    source = tmp_path / "acq"
    write_run(source, "PROJ/Runs/Run_ok", {"a.txt": b"a"})
    # Relative, so it resolves the same inside the mover pod (source at /data/source): to /etc.
    os.symlink("../../../etc", source / "PROJ" / "escape")
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs")

    # The scientist creates the SyncJob (as themselves, through RBAC).
    ns("apply", "-f", "-", f"--as={USER}", input=syncjob("sneaky", "scope", "PROJ/escape"))
    blocked = wait_phase(ns, "sneaky", "Blocked")
    rules = {f["rule"] for f in blocked["status"]["gate"]["findings"]}
    assert "run_outside_source" in rules, rules
    assert not (sftp_nas.root / ns.namespace).exists(), "nothing may reach the NAS"

    # The gate pod's spec came from the SyncTarget only.
    pods = json.loads(ns("get", "pods", "-l", "nassync.dev/syncjob=sneaky", "-o", "json"))["items"]
    assert pods
    for pod in pods:
        spec = pod["spec"]
        host_paths = [v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v]
        assert host_paths == [str(source)]
        assert spec["containers"][0]["command"] == ["nassync-mover", "gate"]
        assert spec["automountServiceAccountToken"] is False
