"""What goes wrong in a lab, end to end: bad names, bad keys, a NAS that drops out,
a NAS copy that rots, an operator that dies, many runs competing for one link.

Every scenario is driven by `kubectl apply`/`patch`/`annotate` only, and checked
against the ground truth on disk: no test here can pass while local data was
deleted without a verified NAS copy.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.support import events, tree, wait_phase

from nassync_dev.nas import RcloneSftpNas, SshNas, make_keypair
from nassync_dev.scenario import OperatorProcess, rclone_target, rsync_target, syncjob, write_run
from nassync_dev.testing import Kubectl, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.nas]

RUN = "PROJ-0002/Runs/Run_2026-11-29T09-00"


@pytest.fixture
def own_nas(tmp_path: Path) -> Iterator[RcloneSftpNas]:
    """A NAS this test may stop and start without disturbing other tests."""
    with RcloneSftpNas(workdir=tmp_path / "nas") as nas:
        yield nas


def _files(count: int, size: int) -> dict[str, bytes]:
    return {f"raw/frame_{i:04d}.tif": os.urandom(size) for i in range(count)}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _local_intact(run: Path, files: dict[str, bytes]) -> bool:
    return all((run / rel).is_file() and _sha((run / rel).read_bytes()) == _sha(data)
               for rel, data in files.items())


def _movers(ns: Kubectl, step: str | None = None) -> list[dict[str, Any]]:
    selector = "app.kubernetes.io/managed-by=nassync" + (f",nassync.dev/step={step}" if step else "")
    items: list[dict[str, Any]] = json.loads(ns("get", "jobs", "-l", selector, "-o", "json"))["items"]
    return items


def test_blocked_by_a_hard_finding_then_unblocked_by_an_override(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    files = {"sample_{{sample_id}}.csv": b"1,2,3\n", "ok.txt": b"fine\n"}
    run = write_run(source, RUN, files)
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs")
    ns.apply(syncjob("run-b", "scope", RUN))

    blocked = wait_phase(ns, "run-b", "Blocked")
    findings = blocked["status"]["gate"]["findings"]
    assert any(f["rule"] == "leftover_jinja_marker" and f["tier"] == "hard" and not f["overridden"]
               for f in findings)
    assert "GateBlocked" in [e["reason"] for e in events(ns, "run-b")]
    assert not _movers(ns, "push"), "a blocked run must never be pushed"
    assert _local_intact(run, files)

    ns("patch", "syncjob", "run-b", "--type=merge", "-p", json.dumps({"spec": {"overrides": [
        {"rule": "leftover_jinja_marker", "reason": "template name approved by the PI"}]}}))
    done = wait_phase(ns, "run-b", "Cleaned", timeout=120)
    overridden = [f for f in done["status"]["gate"]["findings"] if f["rule"] == "leftover_jinja_marker"]
    assert overridden and all(f["overridden"] for f in overridden)
    nas_run = sftp_nas.root / ns.namespace / "runs" / RUN
    assert tree(nas_run)["sample_{{sample_id}}.csv"] == b"1,2,3\n"


def test_wrong_key_fails_with_auth_and_retry_after_the_fix_completes(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    files = _files(3, 10_000)
    run = write_run(source, RUN, files)
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs")
    # An admin pasted the wrong key into the Secret.
    wrong = tmp_path / "wrong_key"
    make_keypair(wrong)
    ns.apply(json.loads(ns("create", "secret", "generic", "scope-rclone", "--dry-run=client", "-o", "json",
                           f"--from-file=ssh-privatekey={wrong}",
                           f"--from-file=known_hosts={sftp_nas.known_hosts}",
                           f"--from-file=rclone.conf={_rclone_conf(sftp_nas, tmp_path)}")))
    ns.apply(syncjob("run-a", "scope", RUN))

    ns("wait", "--for=condition=Failed", "syncjob/run-a", "--timeout=120s")
    failed = ns.get("syncjob", "run-a")["status"]
    assert failed["phase"] == "Failed"
    assert failed["lastError"]["kind"] == "Auth"
    assert "key" in failed["lastError"]["message"].lower() or "auth" in failed["lastError"]["message"].lower()
    assert wrong.read_text() not in json.dumps(failed)
    assert _local_intact(run, files)
    assert len(_movers(ns, "push")) == 1, "Auth is terminal: no retries"

    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs")  # fixed Secret
    ns("annotate", "syncjob", "run-a", "nassync.dev/retry=fixed-key", "--overwrite")
    wait_phase(ns, "run-a", "Cleaned", timeout=120)
    assert "RetryRequested" in [e["reason"] for e in events(ns, "run-a")]


def _rclone_conf(nas: RcloneSftpNas, tmp: Path) -> Path:
    path = tmp / "rclone.conf"
    path.write_text(f"[nas]\ntype = sftp\nhost = 127.0.0.1\nport = {nas.port}\nuser = root\n"
                    "key_file = /var/run/nassync/secret/ssh-privatekey\n"
                    "known_hosts_file = /var/run/nassync/secret/known_hosts\n")
    return path


def test_nas_down_during_push_retries_with_backoff_then_completes(
        ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    files = _files(6, 256 * 1024)  # 1.5 MiB at 128 KiB/s: ~12 s of pushing
    run = write_run(source, RUN, files)
    rclone_target(ns, own_nas, name="scope", source=source, nas_path="runs",
                  spec={"bandwidth": {"defaultKiBps": 128}, "retry": {"maxAttempts": 6, "backoffSeconds": [3, 6]}})
    ns.apply(syncjob("run-n", "scope", RUN))
    wait_phase(ns, "run-n", "Pushing")
    def push_pod_running() -> bool:
        pods = json.loads(ns("get", "pods", "-l", "nassync.dev/step=push", "-o", "json"))["items"]
        return any((p.get("status") or {}).get("phase") == "Running" for p in pods)
    eventually(push_pod_running, what="push pod running")
    own_nas.stop()

    def retrying() -> dict[str, Any] | None:
        status = ns.get("syncjob", "run-n").get("status") or {}
        err = status.get("lastError") or {}
        return status if err.get("kind") == "Network" and status.get("attempts", 0) >= 1 else None
    status = eventually(retrying, timeout=120, what="a Network failure counted as an attempt")
    assert status["phase"] in ("Pending", "Gating", "Queued", "Pushing")  # a retried push is gated again first
    assert _local_intact(run, files)
    assert "Retrying" in [e["reason"] for e in events(ns, "run-n")]

    own_nas.start()
    done = wait_phase(ns, "run-n", "Cleaned", timeout=180)
    assert done["status"]["verifyPasses"] >= 1
    on_nas = tree(own_nas.root / "runs" / RUN)
    assert all(_sha(on_nas[rel]) == _sha(data) for rel, data in files.items())


def test_nas_copy_corrupted_after_verify_makes_cleanup_refuse(
        ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    files = _files(3, 50_000)
    run = write_run(source, RUN, files)
    rclone_target(ns, own_nas, name="scope", source=source, nas_path="runs",
                  spec={"cleanup": {"minVerifyPasses": 1, "minAgeAfterVerify": "15s", "reverifyInterval": "1h"}})
    ns.apply(syncjob("run-c", "scope", RUN))
    wait_phase(ns, "run-c", "Verified")
    victim = own_nas.root / "runs" / RUN / "raw/frame_0001.tif"
    victim.write_bytes(b"\0" * victim.stat().st_size)  # bit rot on the NAS, same size

    def mismatch_seen() -> bool:
        return "VerifyMismatch" in [e["reason"] for e in events(ns, "run-c")]
    eventually(mismatch_seen, timeout=90, what="cleanup's final verify to report the mismatch")
    status = ns.get("syncjob", "run-c")["status"]
    assert status["lastError"]["kind"] == "HashMismatch"
    assert "raw/frame_0001.tif" in status["lastError"]["message"]
    # Nothing was deleted: every local file is still there with its original bytes.
    assert _local_intact(run, files)
    # The run heals itself: one more push, verify, and only then cleanup.
    wait_phase(ns, "run-c", "Cleaned", timeout=180)
    assert _sha(victim.read_bytes()) == _sha(files["raw/frame_0001.tif"])



def test_rsync_nas_copy_corrupted_with_its_size_and_mtime_kept_is_repaired_before_cleanup(
        ns: Kubectl, operator: OperatorProcess, ssh_nas: SshNas, tmp_path: Path) -> None:
    """rsync's quick check (size + mtime) cannot see this rot: the push that follows the mismatch must compare
    content, or the copy never heals and the run ends Failed after the second mismatch."""
    source = tmp_path / "acq"
    files = _files(3, 50_000)
    run = write_run(source, RUN, files)
    nas_path = f"{ns.namespace}/runs"
    rsync_target(ns, ssh_nas, name="scope", source=source, nas_path=nas_path,
                 spec={"cleanup": {"minVerifyPasses": 1, "minAgeAfterVerify": "15s", "reverifyInterval": "1h"}})
    ns.apply(syncjob("run-r", "scope", RUN))
    wait_phase(ns, "run-r", "Verified")
    victim = ssh_nas.root / nas_path / RUN / "raw/frame_0001.tif"
    before = victim.stat()
    rotten = bytearray(victim.read_bytes())
    rotten[777] ^= 0x01
    victim.write_bytes(bytes(rotten))
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))

    eventually(lambda: "VerifyMismatch" in [e["reason"] for e in events(ns, "run-r")], timeout=90,
               what="cleanup's final verify to report the mismatch")
    assert _local_intact(run, files)
    wait_phase(ns, "run-r", "Cleaned", timeout=180)
    assert _sha(victim.read_bytes()) == _sha(files["raw/frame_0001.tif"])
    pushes = _movers(ns, "push")
    last = max(pushes, key=lambda j: int(j["metadata"]["name"].rsplit("-", 1)[1]))
    repush = json.loads(next(e["value"] for e in last["spec"]["template"]["spec"]["containers"][0]["env"]
                             if e["name"] == "NASSYNC_PARAMS"))
    assert len(pushes) == 2 and repush["compareContent"] is True

def test_operator_killed_during_push_resumes_with_one_push_job(
        ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    files = _files(8, 256 * 1024)  # 2 MiB at 96 KiB/s: ~20 s of pushing, progress visible
    write_run(source, RUN, files)
    rclone_target(ns, own_nas, name="scope", source=source, nas_path="runs",
                  spec={"bandwidth": {"defaultKiBps": 96}})
    ns.apply(syncjob("run-k", "scope", RUN))
    wait_phase(ns, "run-k", "Pushing")

    def progress() -> int | None:
        p = ((ns.get("syncjob", "run-k").get("status") or {}).get("transfer") or {}).get("progress") or {}
        return p.get("percent") if p.get("bytes", 0) > 0 else None
    first = eventually(progress, timeout=60, what="progress in status while pushing")
    assert ns("get", "syncjob", "run-k", "-o", "jsonpath={.status.transfer.progress.totalBytes}") != ""

    operator.kill()
    operator.start()
    later = eventually(lambda: (p := progress()) is not None and p > first and p, timeout=60,
                       what="progress rising after the restart")
    assert later > first
    wait_phase(ns, "run-k", "Cleaned", timeout=180)
    pushes = _movers(ns, "push")
    assert len(pushes) == 1, f"expected one push Job, got {[j['metadata']['name'] for j in pushes]}"


def test_concurrency_one_per_target_never_overlaps(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    names: list[str] = []
    for t in ("scope-a", "scope-b"):
        source = tmp_path / t
        for i in range(5):
            write_run(source, f"P/Runs/Run_{i}", {"data.bin": os.urandom(20_000)})
        rclone_target(ns, sftp_nas, name=t, source=source, nas_path=f"{ns.namespace}/{t}",
                      spec={"concurrency": 1, "cleanup": {"enabled": False}})
    docs = []
    for t in ("scope-a", "scope-b"):
        for i in range(5):
            names.append(f"{t}-run-{i}")
            docs.append(syncjob(f"{t}-run-{i}", t, f"P/Runs/Run_{i}"))
    ns("apply", "-f", "-", input="---\n".join(docs))
    for name in names:
        wait_phase(ns, name, "Verified", timeout=300)
    # Exact check from the Jobs' own start/completion times: per target, no two
    # mover Jobs ever ran at the same time.
    for t in ("scope-a", "scope-b"):
        jobs = json.loads(ns("get", "jobs", "-l", f"nassync.dev/target={t}", "-o", "json"))["items"]
        spans = sorted((datetime.fromisoformat(j["status"]["startTime"].replace("Z", "+00:00")),
                        datetime.fromisoformat(j["status"]["completionTime"].replace("Z", "+00:00")),
                        j["metadata"]["name"]) for j in jobs)
        assert len(spans) >= 15  # gate, push, verify for five runs
        for (_, end1, name1), (start2, _, name2) in itertools.pairwise(spans):
            assert start2 >= end1, f"{name1} and {name2} of {t} overlapped"


def test_suspend_holds_a_job_and_resume_lets_it_finish(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    write_run(source, RUN, {"a.txt": b"a\n"})
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs",
                  spec={"cleanup": {"enabled": False}})
    ns.apply(syncjob("run-s", "scope", RUN, suspend=True))
    eventually(lambda: any(c["type"] == "Suspended" and c["status"] == "True"
                           for c in (ns.get("syncjob", "run-s").get("status") or {}).get("conditions", [])),
               what="Suspended condition")
    assert not _movers(ns), "a suspended job starts no mover"
    ns("patch", "syncjob", "run-s", "--type=merge", "-p", '{"spec": {"suspend": false}}')
    ns("wait", "--for=condition=Verified", "syncjob/run-s", "--timeout=120s")
    status = ns.get("syncjob", "run-s")["status"]
    assert status["phase"] == "Verified"  # cleanup disabled: the run stays, verified
    assert (source / RUN / "a.txt").read_bytes() == b"a\n"

    # A verify pass on request: the annotation, then one more pass.
    passes = status["verifyPasses"]
    ns("annotate", "syncjob", "run-s", "nassync.dev/verify=audit-1", "--overwrite")
    eventually(lambda: ns.get("syncjob", "run-s")["status"]["verifyPasses"] == passes + 1,
               what="a verify pass after the nassync.dev/verify annotation")
    assert len(_movers(ns, "verify")) == passes + 1


def test_deleting_a_syncjob_with_the_operator_down_deletes_no_data(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    files = _files(2, 10_000)
    run = write_run(source, RUN, files)
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs",
                  spec={"cleanup": {"enabled": False}})
    ns.apply(syncjob("run-d", "scope", RUN))
    wait_phase(ns, "run-d", "Verified")
    assert _movers(ns)
    operator.stop()
    try:
        # No finalizer: the delete completes without the operator.
        ns("delete", "syncjob", "run-d", "--timeout=30s")
        assert not ns.exists("syncjob", "run-d")
        eventually(lambda: not _movers(ns), timeout=90, what="mover Jobs garbage-collected with their owner")
    finally:
        operator.start()
    assert _local_intact(run, files)
    on_nas = tree(sftp_nas.root / ns.namespace / "runs" / RUN)
    assert all(_sha(on_nas[rel]) == _sha(data) for rel, data in files.items())


def test_missing_secret_and_missing_run_say_so_and_start_nothing(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    write_run(source, RUN, {"a.txt": b"a"})
    body = rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs")
    ns("delete", "secret", "scope-rclone")  # an admin forgot the Secret
    ns.apply(syncjob("run-m", "scope", RUN))

    def not_ready() -> dict[str, Any] | None:
        target = ns.get("synctarget", "scope").get("status") or {}
        ready = {c["type"]: c for c in target.get("conditions", [])}.get("Ready")
        return ready if ready and ready["status"] == "False" else None
    ready = eventually(not_ready, what="SyncTarget Ready=False")
    assert ready["reason"] == "SecretMissing" and "scope-rclone" in ready["message"]
    err = eventually(lambda: (ns.get("syncjob", "run-m").get("status") or {}).get("lastError"),
                     what="the SyncJob to say why it waits")
    assert err["kind"] == "Config" and "scope-rclone" in err["message"]
    assert "TargetNotReady" in [e["reason"] for e in events(ns, "run-m")]
    assert not _movers(ns), "no mover may start without credentials"

    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs",
                  spec=body["spec"])  # the Secret is back
    wait_phase(ns, "run-m", "Cleaned", timeout=120)

    ns.apply(syncjob("run-gone", "scope", "PROJ-0002/Runs/never-acquired"))
    blocked = wait_phase(ns, "run-gone", "Blocked")
    finding = next(f for f in blocked["status"]["gate"]["findings"] if f["rule"] == "run_missing")
    assert finding["tier"] == "hard" and "never-acquired" in (finding["path"] + finding["message"])
