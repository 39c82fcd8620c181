"""The Argo CD health check (manifests/argocd/syncjob-health.lua), run by a real Lua interpreter.

Argo CD runs a health script with the object bound to `obj` and expects a
table `{status, message}` back. Here the script is wrapped as
`local function health(obj) <script> end`, each sample SyncJob is written as a
Lua table literal, and `lua5.4` prints the result; so what is asserted is what
the script really returns, not what a re-implementation thinks it returns.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "manifests" / "argocd" / "syncjob-health.lua"
CM_PATCH = REPO / "manifests" / "argocd" / "argocd-cm-patch.yaml"
HEALTH_KEY = "resource.customizations.health.nassync.dev_SyncJob"
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}


def lua_literal(value: Any) -> str:
    """A Lua expression for a JSON-like value; None fields are left out, as Argo's JSON→Lua does."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = "".join(f"\\{ord(ch):03d}" if ch in '"\\' or ord(ch) < 0x20 else ch for ch in value)
        return f'"{escaped}"'
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        items = (f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot express {type(value).__name__} in Lua")


def lua() -> str:
    found = shutil.which("lua5.4")
    assert found, "lua5.4 is missing: apt-get install -y lua5.4 (it is in the Makefile's APT_PACKAGES)"
    return found


def health(obj: dict[str, Any]) -> tuple[str, str]:
    program = (
        f"local function health(obj)\n{SCRIPT.read_text()}\nend\n"
        f"local hs = health({lua_literal(obj)})\n"
        'io.write(tostring(hs.status), "\\n", tostring(hs.message))\n'
    )
    result = subprocess.run([lua(), "-"], input=program, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    status, _, message = result.stdout.partition("\n")
    assert status in ARGO_STATUSES
    return status, message


def syncjob(*, spec: dict[str, Any] | None = None, generation: int = 1, **status: Any) -> dict[str, Any]:
    status.setdefault("observedGeneration", generation)
    return {
        "apiVersion": "nassync.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": "run", "namespace": "lab", "generation": generation},
        "spec": {"targetRef": {"name": "microscope-01"}, "runPath": "P/Run_1", **(spec or {})},
        "status": status,
    }


def cond(type_: str, status: str, message: str = "", reason: str = "R") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-11-28T10:00:00Z"}


VERIFIED = [cond("Gated", "True"), cond("Pushed", "True"), cond("Verified", "True", "matches")]


def test_lua_literal_round_trips_awkward_strings() -> None:
    text = 'quote " backslash \\ newline \n tab \t ünïcode'
    program = f"io.write(({lua_literal({'a': [text]})}).a[1])"
    out = subprocess.run([lua(), "-"], input=program, capture_output=True, text=True, check=True).stdout
    assert out == text


@pytest.mark.parametrize("phase", ["Verified", "Cleaned"])
def test_verified_or_cleaned_with_verified_condition_is_healthy(phase: str) -> None:
    status, message = health(syncjob(phase=phase, conditions=VERIFIED, verifyPasses=2))
    assert status == "Healthy"
    assert "2 passes" in message
    assert ("cleaned" in message) == (phase == "Cleaned")


def test_verified_phase_without_a_true_verified_condition_is_not_healthy() -> None:
    status, _ = health(syncjob(phase="Verified", conditions=[cond("Verified", "False")]))
    assert status == "Progressing"


def test_audit_verify_of_a_proven_run_stays_healthy() -> None:
    status, message = health(syncjob(phase="Verifying", conditions=VERIFIED, verifyPasses=1,
                                     moverJob={"name": "run-verify-3", "step": "verify", "state": "Running"}))
    assert (status, message) == ("Healthy", "Verified on the NAS (1 passes); Verifying now")


def test_failed_is_degraded_with_the_last_error_message() -> None:
    text = "rsync: the NAS refused the credentials in the target's secret: Permission denied (publickey)"
    status, message = health(syncjob(phase="Failed", lastError={"kind": "Auth", "message": text},
                                     conditions=[cond("Failed", "True", "Auth: ...")]))
    assert (status, message) == ("Degraded", text)


def test_failed_without_last_error_uses_the_failed_condition() -> None:
    status, message = health(syncjob(phase="Failed", conditions=[cond("Failed", "True", "gave up after 5 attempts")]))
    assert (status, message) == ("Degraded", "gave up after 5 attempts")


def test_blocked_is_degraded_with_the_gate_message() -> None:
    text = "the gate blocked this run: illegal_filesystem_character (1, e.g. 'a:b')"
    status, message = health(syncjob(phase="Blocked", conditions=[cond("Gated", "False", text, "HardFindings")]))
    assert (status, message) == ("Degraded", text)


def test_pushing_is_progressing_with_percent() -> None:
    status, message = health(syncjob(phase="Pushing", transfer={"progress": {"percent": 42, "bytes": 42}},
                                     moverJob={"name": "run-push-2", "step": "push", "state": "Running"}))
    assert (status, message) == ("Progressing", "Pushing 42%")


@pytest.mark.parametrize("phase", ["Pending", "Gating", "Queued", "Verifying"])
def test_other_phases_are_progressing_with_the_phase(phase: str) -> None:
    # A finished push's percent is not shown once the job has moved on.
    assert health(syncjob(phase=phase, transfer={"progress": {"percent": 100}})) == ("Progressing", phase)


def test_retrying_job_says_why() -> None:
    status, message = health(syncjob(phase="Queued", attempts=1, nextAttemptAt="2026-11-28T10:02:00Z",
                                     lastError={"kind": "Network", "message": "the NAS could not be reached"}))
    assert status == "Progressing"
    assert message == "Queued (last error: the NAS could not be reached)"


def test_new_syncjob_without_status_is_progressing() -> None:
    obj = syncjob()
    del obj["status"]
    status, message = health(obj)
    assert status == "Progressing" and "operator" in message


def test_unobserved_spec_change_is_progressing_even_when_blocked() -> None:
    # The user just added spec.overrides: until the operator re-gates, "Degraded" would be stale.
    obj = syncjob(phase="Blocked", generation=3, observedGeneration=2, conditions=[cond("Gated", "False", "x")])
    status, message = health(obj)
    assert status == "Progressing" and "generation 3" in message


def test_suspended_without_running_mover_is_suspended() -> None:
    status, message = health(syncjob(spec={"suspend": True}, phase="Queued"))
    assert (status, message) == ("Suspended", "spec.suspend is true; the run waits in phase Queued")


def test_suspended_with_a_running_mover_is_still_progressing() -> None:
    obj = syncjob(spec={"suspend": True}, phase="Pushing",
                  moverJob={"name": "run-push-1", "step": "push", "state": "Running"})
    assert health(obj)[0] == "Progressing"
    finished = syncjob(spec={"suspend": True}, phase="Pushing",
                       moverJob={"name": "run-push-1", "step": "push", "state": "Succeeded"})
    assert health(finished)[0] == "Suspended"


def test_suspend_does_not_hide_a_failure() -> None:
    obj = syncjob(spec={"suspend": True}, phase="Failed", lastError={"kind": "Config", "message": "bad"})
    assert health(obj) == ("Degraded", "bad")


def test_configmap_patch_embeds_the_script_verbatim() -> None:
    patch = yaml.safe_load(CM_PATCH.read_text())
    assert patch["kind"] == "ConfigMap" and patch["metadata"]["name"] == "argocd-cm"
    assert patch["data"][HEALTH_KEY] == SCRIPT.read_text()


REPLICAS_PENDING = [{"name": "primary", "state": "Verified"},
                    {"name": "offsite", "state": "Pending", "message": "Network: connection refused"}]


def test_a_replica_still_being_made_keeps_a_verified_run_progressing() -> None:
    replicated = cond("Replicated", "False", "0 of 1 replica(s) verified; offsite (Pending: Network: refused)")
    status, message = health(syncjob(phase="Verified", conditions=[*VERIFIED, replicated], verifyPasses=1,
                                     destinations=REPLICAS_PENDING, copies="1/2"))
    assert status == "Progressing"
    assert message.startswith("Verified on the NAS (1 passes); copies 1/2: 0 of 1 replica(s) verified; offsite")


def test_a_replica_given_up_is_degraded() -> None:
    failed = [{"name": "primary", "state": "Verified"},
              {"name": "offsite", "state": "Failed", "message": "Auth: the NAS refused the credentials"}]
    status, message = health(syncjob(phase="Verified", conditions=VERIFIED, destinations=failed, copies="1/2"))
    assert (status, message) == ("Degraded", "replica offsite was given up: Auth: the NAS refused the credentials")


def test_every_copy_verified_is_healthy_and_says_so() -> None:
    done = [{"name": "primary", "state": "Verified"}, {"name": "offsite", "state": "Verified"}]
    status, message = health(syncjob(phase="Verified", conditions=[*VERIFIED, cond("Replicated", "True")],
                                     verifyPasses=2, destinations=done, copies="2/2"))
    assert (status, message) == ("Healthy", "Verified on the NAS (2 passes); copies 2/2 verified")
