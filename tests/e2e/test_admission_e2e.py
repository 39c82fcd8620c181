"""Bad input is rejected at admission with a message naming the field, and changes nothing.

Two layers, both through the real apiserver: the CRD's CEL rules (always on)
and the operator's validating webhook (kopf `on.validate`, served on loopback
with a self-signed certificate, registered by the operator itself here; the
Helm chart registers a Service-referenced one instead).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from nassync_dev.cluster import free_port
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, rclone_target, syncjob, target_body, write_run
from nassync_dev.testing import Kubectl, KubectlError, eventually

pytestmark = [pytest.mark.cluster]

WEBHOOK_CONFIG = "nassync.dev"


def _rejected(ns: Kubectl, manifest: str) -> str:
    with pytest.raises(KubectlError) as err:
        ns("apply", "-f", "-", input=manifest)
    return err.value.stderr


@pytest.mark.parametrize(("run_path", "message"), [
    ("/etc/shadow", "relative"),
    ("PROJ/../../etc", ".."),
    ("PROJ//Run_1", "empty"),
    ("PROJ/./Run_1", "."),
    ("PROJ/Run\x07bell", "control"),
    ("PROJ/Run_\u202e1", "invisible Unicode"),  # right-to-left override: the name reads as another
    ("PROJ/Run_\u200b1", "invisible Unicode"),  # zero-width space
    ("PROJ/Run_\u00851", "invisible Unicode"),  # NEXT LINE, a C1 control
    ("PROJ/Run_\u20281", "invisible Unicode"),  # LINE SEPARATOR
])
def test_cel_rejects_unsafe_run_paths(crds: Kubectl, ns: Kubectl, run_path: str, message: str) -> None:
    stderr = _rejected(ns, syncjob("bad", "scope", run_path))
    assert "spec.runPath" in stderr and message in stderr, stderr
    assert not ns.exists("syncjob", "bad")


def test_cel_keeps_target_and_run_path_immutable(crds: Kubectl, ns: Kubectl) -> None:
    ns.apply(syncjob("keep", "scope", "PROJ/Runs/Run_1"))
    stderr = _rejected(ns, syncjob("keep", "scope", "PROJ/Runs/Run_2"))
    assert "spec.runPath is immutable" in stderr
    stderr = _rejected(ns, syncjob("keep", "other", "PROJ/Runs/Run_1"))
    assert "targetRef" in stderr and "immutable" in stderr
    assert ns.get("syncjob", "keep")["spec"]["runPath"] == "PROJ/Runs/Run_1"


def test_crd_refuses_a_non_boolean_suspend(crds: Kubectl, ns: Kubectl) -> None:
    doc = yaml.safe_load(syncjob("yes", "scope", "PROJ/Runs/Run_1"))
    doc["spec"]["suspend"] = "yes"
    stderr = _rejected(ns, yaml.safe_dump(doc))
    assert "spec.suspend" in stderr and "boolean" in stderr
    assert not ns.exists("syncjob", "yes")


@pytest.mark.parametrize(("mutate", "field", "message"), [
    (lambda spec: spec["destination"]["rclone"].update(remote="-vv"), "spec.destination.rclone.remote",
     "should match"),
    (lambda spec: spec.update(mover={"resources": {"requests": {"memory": "lots"}}}),
     "spec.mover.resources.requests.memory", "should match"),
    (lambda spec: spec.update(mover={"runAsRunOwner": {"minUID": 0}}), "spec.mover.runAsRunOwner.minUID",
     "greater than or equal to 1"),
    (lambda spec: spec.update(mover={"runAsRunOwner": {}, "securityContext": {"runAsUser": 1000}}),
     "spec.mover", "exclude each other"),
    (lambda spec: spec.update(gate={"completionMarker": {"names": ["../done.txt"]}}),
     "spec.gate.completionMarker.names[0]", "'.' or '..'"),
])
def test_crd_refuses_unsafe_target_settings(crds: Kubectl, ns: Kubectl, tmp_path: Path, mutate: Any, field: str,
                                            message: str) -> None:
    body = target_body("bad", tmp_path, {"rclone": {"remote": "nas", "path": "/x",
                                                   "configSecretRef": {"name": "s", "key": "rclone.conf"}}}, None)
    mutate(body["spec"])
    stderr = _rejected(ns, yaml.safe_dump(body))
    assert field in stderr and message in stderr, stderr
    assert not ns.exists("synctarget", "bad")


def test_syncjob_cannot_smuggle_pod_fields(crds: Kubectl, ns: Kubectl) -> None:
    doc = yaml.safe_load(syncjob("smuggle", "scope", "PROJ/Runs/Run_1"))
    doc["spec"]["volumes"] = [{"name": "etc", "hostPath": {"path": "/etc"}}]
    stderr = _rejected(ns, yaml.safe_dump(doc))
    assert 'unknown field "spec.volumes"' in stderr


def test_cel_alone_admits_what_only_the_cluster_can_judge(crds: Kubectl, ns: Kubectl) -> None:
    # Without the webhook, a SyncJob for a target that does not exist is admitted
    # (CEL cannot look it up); the operator then reports TargetMissing.
    ns.apply(syncjob("orphan", "no-such-target", "PROJ/Runs/Run_1"))
    assert ns.exists("syncjob", "orphan")


@pytest.fixture
def webhook_operator(operator: OperatorProcess, cluster: Kubectl,
                     tmp_path: Path) -> Iterator[OperatorProcess]:
    """Swap the session operator for one that serves the admission webhook."""
    operator.stop()
    hooked = OperatorProcess(cluster.kubeconfig, tmp_path / "operator-webhook.log",
                             extra_args=("--webhook-port", str(free_port()), "--webhook-address", "127.0.0.1",
                                         "--webhook-host", "127.0.0.1", "--webhook-manage"))
    hooked.start()
    try:
        eventually(lambda: cluster.exists("validatingwebhookconfiguration", WEBHOOK_CONFIG),
                   what="the operator to register its webhook")
        yield hooked
    finally:
        hooked.stop()
        cluster.run("delete", "validatingwebhookconfiguration", WEBHOOK_CONFIG, "--ignore-not-found", check=False)
        operator.start()


def _webhook_says(ns: Kubectl, manifest: str) -> str:
    def rejected() -> str | None:
        result = ns.run("apply", "-f", "-", input=manifest, check=False)
        # Until the apiserver has loaded the new configuration, objects slip through;
        # remove them and try again.
        if result.returncode == 0:
            doc = yaml.safe_load(manifest)
            ns.run("delete", "syncjob", doc["metadata"]["name"], "--wait=true", check=False)
            return None
        return result.stderr
    message: str = eventually(rejected, timeout=30, what="the webhook to reject the SyncJob")
    return message


def test_webhook_rejects_what_cel_cannot_check(webhook_operator: OperatorProcess, ns: Kubectl,
                                               sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    message = _webhook_says(ns, syncjob("orphan", "no-such-target", "PROJ/Runs/Run_1"))
    assert "spec.targetRef.name" in message and "no-such-target" in message and "not found" in message
    assert not ns.exists("syncjob", "orphan")

    source = tmp_path / "acq"
    write_run(source, "PROJ/Runs/Run_1", {"a.txt": b"a"})
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs",
                  spec={"cleanup": {"enabled": False}})
    ns.apply(syncjob("first", "scope", "PROJ/Runs/Run_1"))
    message = _webhook_says(ns, syncjob("second", "scope", "PROJ/Runs/Run_1"))
    assert "spec.runPath" in message and "first" in message
    # A run inside, or around, another SyncJob's run: the message names both SyncJobs.
    message = _webhook_says(ns, syncjob("child", "scope", "PROJ/Runs/Run_1/sub"))
    assert "spec.runPath" in message and '"first"' in message and '"child"' in message and "overlap" in message
    message = _webhook_says(ns, syncjob("parent", "scope", "PROJ/Runs"))
    assert '"first"' in message and '"parent"' in message and "overlap" in message
    message = _webhook_says(ns, syncjob("cache", "scope", "PROJ/Runs/Run_2/.exlab-wizard"))
    assert "spec.runPath" in message and "cache directory" in message

    doc = yaml.safe_load(syncjob("override", "scope", "PROJ/Runs/Run_2"))
    doc["spec"]["overrides"] = [{"rule": "no_such_rule", "reason": "because the PI said so"}]
    message = _webhook_says(ns, yaml.safe_dump(doc))
    assert "spec.overrides[0].rule" in message and "no_such_rule" in message

    ns("delete", "secret", "scope-rclone")
    message = _webhook_says(ns, syncjob("nosecret", "scope", "PROJ/Runs/Run_3"))
    assert "scope-rclone" in message
    assert json.loads(ns("get", "syncjobs", "-o", "json"))["items"][0]["metadata"]["name"] == "first"
