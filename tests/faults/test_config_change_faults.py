"""#12 item 8: the admin changes things under a running SyncJob.

- The NAS credentials are rotated mid-push: the running mover keeps the
  Secret it started with, every later mover mounts the new one (the old key
  is refused by the NAS by then).
- The SyncTarget is edited mid-push (bandwidth, retry): the running mover is
  not restarted or duplicated; the next mover carries the new settings; an
  Event SettingsChanged on the SyncTarget tells the admin so.
- The SyncTarget is deleted mid-push: the push finishes, the SyncJob says
  TargetMissing, nothing new starts and no data is touched; re-created, the
  run continues to Cleaned.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from faultlib import (
    RUN,
    assert_decided_once,
    deleted_locally_are_on_nas,
    files,
    local_intact,
    movers,
    movers_per_step,
    nas_holds,
    reasons,
    start_run,
    status,
    wait_mover_process,
    wait_phase,
    wait_rounds,
)

from nassync_dev import faults
from nassync_dev.nas import RcloneSftpNas, make_keypair
from nassync_dev.scenario import OperatorProcess, rclone_target
from nassync_dev.testing import Kubectl, eventually

SLOW = {"bandwidth": {"defaultKiBps": 128}}


def _params(job: dict[str, Any]) -> dict[str, Any]:
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return dict(json.loads(next(e["value"] for e in env if e["name"] == "NASSYNC_PARAMS")))


def test_secret_rotated_mid_push_later_movers_use_the_new_key(
        ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    new_key = make_keypair(tmp_path / "rotated_ed25519")
    own_nas.stop()  # both keys valid during the rotation
    own_nas.authorized_keys.write_text(own_nas.client_key.public_line + "\n" + new_key.public_line + "\n")
    own_nas.start()
    data = files(6, 128 * 1024)
    run = start_run(ns, own_nas, tmp_path, "run-s", data, spec=SLOW)
    wait_mover_process(ns, "push")

    own_nas.client_key = new_key  # the admin rotates the Secret mid-push
    rclone_target(ns, own_nas, name="scope", source=tmp_path / "acq", nas_path="runs", spec=SLOW)
    _job, pod, _pid = wait_mover_process(ns, "verify")
    namespace = ns.namespace or ""
    faults.signal_pod(namespace, pod, signal.SIGSTOP)
    own_nas.stop()  # ... and the NAS stops accepting the old key
    own_nas.authorized_keys.write_text(new_key.public_line + "\n")
    own_nas.start()
    faults.signal_pod(namespace, pod, signal.SIGCONT)

    wait_phase(ns, "run-s", "Cleaned", timeout=240)
    assert movers_per_step(ns) == {"gate": 1, "push": 1, "verify": 1, "cleanup": 1}
    assert "Auth" not in json.dumps(status(ns, "run-s"))
    nas_run = own_nas.root / "runs" / RUN
    assert nas_holds(nas_run, data)
    deleted_locally_are_on_nas(run, nas_run, data)
    assert new_key.private_path.read_text() not in json.dumps(ns.get("events"))


def test_target_edited_mid_push_applies_to_the_next_mover_only(
        ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    data = files(6, 128 * 1024)
    run = start_run(ns, own_nas, tmp_path, "run-e", data, spec=SLOW)
    push_job, _pod, _pid = wait_mover_process(ns, "push")
    ns("patch", "synctarget", "scope", "--type=merge", "-p", json.dumps(
        {"spec": {"bandwidth": {"defaultKiBps": 0}, "retry": {"maxAttempts": 3, "backoffSeconds": [1]}}}))
    generation = ns.get("synctarget", "scope")["metadata"]["generation"]

    def ready_observed() -> bool:
        conditions = (ns.get("synctarget", "scope").get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c.get("observedGeneration") == generation for c in conditions)
    eventually(ready_observed, what="the SyncTarget's Ready condition to observe the edit")

    def told() -> list[str]:
        return [e["message"] for e in ns.get("events")["items"] if e["reason"] == "SettingsChanged"
                and e["involvedObject"]["kind"] == "SyncTarget" and e["involvedObject"]["name"] == "scope"]
    messages = " ".join(eventually(told, what="a SettingsChanged Event on the SyncTarget"))
    assert "1 running mover keeps the settings it started with" in messages

    wait_phase(ns, "run-e", "Cleaned", timeout=240)
    assert [j["metadata"]["name"] for j in movers(ns, "push")] == [push_job], "the running push was not redone"
    assert _params(movers(ns, "push")[0])["bandwidth"]["defaultKiBps"] == 128
    assert _params(movers(ns, "verify")[0])["bandwidth"].get("defaultKiBps", 0) == 0
    assert movers_per_step(ns) == {"gate": 1, "push": 1, "verify": 1, "cleanup": 1}
    assert_decided_once(ns, "run-e")
    nas_run = own_nas.root / "runs" / RUN
    assert nas_holds(nas_run, data)
    deleted_locally_are_on_nas(run, nas_run, data)


def test_target_deleted_mid_push_says_target_missing_touches_nothing_and_continues_when_recreated(
        ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    data = files(4, 50_000)
    run = start_run(ns, own_nas, tmp_path, "run-d", data)
    namespace = ns.namespace or ""
    push_job, pod, _pid = wait_mover_process(ns, "push")
    faults.signal_pod(namespace, pod, signal.SIGSTOP)
    ns("delete", "synctarget", "scope")
    faults.signal_pod(namespace, pod, signal.SIGCONT)

    def says_missing() -> dict[str, Any] | None:
        got = status(ns, "run-d")
        err = got.get("lastError") or {}
        return got if "not found" in err.get("message", "") and got.get("moverJob", {}).get("state") != "Running" \
            else None
    missing = eventually(says_missing, timeout=120, what="the SyncJob to say its target is missing")
    assert missing["lastError"]["kind"] == "Config"
    assert "TargetMissing" in reasons(ns, "run-d")
    wait_rounds(operator, 2)
    assert movers_per_step(ns) == {"gate": 1, "push": 1}, "nothing may start without the target"
    assert local_intact(run, data), "no data touched while the target is missing"

    rclone_target(ns, own_nas, name="scope", source=tmp_path / "acq", nas_path="runs")
    wait_phase(ns, "run-d", "Cleaned", timeout=180)
    assert movers_per_step(ns) == {"gate": 1, "push": 1, "verify": 1, "cleanup": 1}
    assert [j["metadata"]["name"] for j in movers(ns, "push")] == [push_job]
    nas_run = own_nas.root / "runs" / RUN
    assert nas_holds(nas_run, data)
    deleted_locally_are_on_nas(run, nas_run, data)
