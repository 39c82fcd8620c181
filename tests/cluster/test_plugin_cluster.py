"""`kubectl nassync` as kubectl runs it: found on PATH, talking to the real apiserver.

No operator is needed: the plugin only reads SyncJobs and writes annotations
and spec fields, and the CRDs alone decide whether the apiserver accepts that.
The SyncJob's target does not exist; the status is written through the status
subresource the way the operator writes it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from nassync_dev.binaries import REPO, locate
from nassync_dev.testing import Kubectl

pytestmark = pytest.mark.cluster

VENV_BIN = REPO / ".venv" / "bin"





def plugin(ns: Kubectl, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`kubectl nassync ARGS`, with .venv/bin (kubectl-nassync) and the pinned kubectl on PATH."""
    env = ns.env()
    env["PATH"] = os.pathsep.join([str(VENV_BIN), str(Path(locate().kubectl).parent), env["PATH"]])
    result = subprocess.run([str(locate().kubectl), "nassync", *args], capture_output=True, text=True, env=env,
                            timeout=60)
    if check:
        assert result.returncode == 0, f"kubectl nassync {' '.join(args)}: {result.stderr}"
    return result


def syncjob(name: str) -> dict[str, object]:
    return {
        "apiVersion": "nassync.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": name},
        "spec": {"targetRef": {"name": "microscope-01"}, "runPath": "PROJ-0001/Runs/Run_2026-11-28T10-15"},
    }


def test_kubectl_finds_the_plugin(crds: Kubectl, ns: Kubectl) -> None:
    listed = plugin(ns, "--help")
    assert "status" in listed.stdout and "retry" in listed.stdout
    env = ns.env()
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env["PATH"]])
    found = subprocess.run([str(locate().kubectl), "plugin", "list"], capture_output=True, text=True, env=env)
    assert str(VENV_BIN / "kubectl-nassync") in found.stdout


def test_status_retry_verify_hold_suspend_against_the_apiserver(crds: Kubectl, ns: Kubectl) -> None:
    assert ns.namespace is not None
    ns.apply(syncjob("run-a"))
    ns(
        "patch", "syncjob", "run-a", "--subresource=status", "--type=merge", "-p",
        json.dumps({"status": {"phase": "Failed", "manifest": {"files": 3, "bytes": 3 * 1024 * 1024},
                               "verifyPasses": 1,
                               "lastError": {"kind": "Auth", "message": "the NAS refused the credentials"}}}),
    )

    table = plugin(ns, "status", "-n", ns.namespace).stdout
    header, *rows = table.splitlines()
    assert header.split()[:4] == ["NAMESPACE", "NAME", "TARGET", "PHASE"]
    row = next(r for r in rows if " run-a " in r)
    assert row.split()[:7] == [ns.namespace, "run-a", "microscope-01", "Failed", "-", "3.0", "MiB"]
    assert "Auth: the NAS refused the credentials" in row

    everywhere = plugin(ns, "status", "-A").stdout
    assert any(r.startswith(ns.namespace + " ") and " run-a " in r for r in everywhere.splitlines())

    out = plugin(ns, "retry", "run-a", "-n", ns.namespace)
    assert "syncjobs.nassync.dev/run-a annotated nassync.dev/retry=" in out.stdout
    retry = ns.get("syncjob", "run-a")["metadata"]["annotations"]["nassync.dev/retry"]
    assert retry == out.stdout.strip().rsplit("=", 1)[1]

    # Retrying again writes a new value: the operator acts on each change once.
    plugin(ns, "retry", "run-a", "-n", ns.namespace)
    assert ns.get("syncjob", "run-a")["metadata"]["annotations"]["nassync.dev/retry"] != retry

    verify = plugin(ns, "verify", "run-a", "-n", ns.namespace)
    assert "nassync.dev/verify" in ns.get("syncjob", "run-a")["metadata"]["annotations"]
    assert "acts on nassync.dev/verify only in Verified" in verify.stderr  # the job is not Verified

    plugin(ns, "hold", "run-a", "-n", ns.namespace)
    assert ns.get("syncjob", "run-a")["spec"]["cleanup"]["hold"] is True
    plugin(ns, "hold", "run-a", "--release", "-n", ns.namespace)
    assert ns.get("syncjob", "run-a")["spec"]["cleanup"]["hold"] is False

    plugin(ns, "suspend", "run-a", "-n", ns.namespace)
    assert ns.get("syncjob", "run-a")["spec"]["suspend"] is True
    plugin(ns, "resume", "run-a", "-n", ns.namespace)
    assert ns.get("syncjob", "run-a")["spec"]["suspend"] is False


def test_unknown_syncjob_and_empty_namespace(crds: Kubectl, ns: Kubectl) -> None:
    assert ns.namespace is not None
    missing = plugin(ns, "retry", "nope", "-n", ns.namespace, check=False)
    assert missing.returncode == 1
    assert 'syncjobs.nassync.dev "nope" not found' in missing.stderr
    empty = plugin(ns, "status", "-n", ns.namespace)
    assert empty.stdout == "" and f"No resources found in {ns.namespace} namespace." in empty.stderr
