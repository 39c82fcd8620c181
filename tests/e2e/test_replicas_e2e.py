"""Replicas end to end: the lab NAS (sftp) as primary, a real S3 server and a second sftp NAS as copies.

A run leaves the instrument only when every required copy is proven: these
drive the operator through kubectl only and look at what a lab admin sees
(phase, conditions, status.destinations, Events) and at the bytes on every
server and on the instrument's disk.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.support import events, tree, wait_phase

from nassync_dev.nas import RcloneS3Nas, RcloneSftpNas, SshNas
from nassync_dev.scenario import (
    OperatorProcess,
    rclone_target,
    rsync_replica,
    s3_replica,
    sftp_replica,
    syncjob,
    write_run,
)
from nassync_dev.testing import Kubectl, eventually

pytestmark = [pytest.mark.cluster]

RUN = "PROJ-0013/Runs/Run_2026-12-02T09-00"
FILES = {"raw/frame_0001.tif": os.urandom(60_000), "raw/frame_0002.tif": os.urandom(20_000), "notes.txt": b"n\n"}


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[RcloneS3Nas]:
    with RcloneS3Nas(workdir=tmp_path / "s3") as server:
        yield server


@pytest.fixture
def second_nas(tmp_path: Path) -> Iterator[RcloneSftpNas]:
    with RcloneSftpNas(workdir=tmp_path / "second-nas") as server:
        yield server


def _digests(root: Path) -> dict[str, str]:
    return {rel: hashlib.sha256(data).hexdigest() for rel, data in tree(root).items()
            if not rel.startswith(".exlab-wizard")}


EXPECTED = {rel: hashlib.sha256(data).hexdigest() for rel, data in FILES.items()}


def _entry(obj: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in obj["status"].get("destinations") or [] if d["name"] == name)


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj["status"].get("conditions") or [] if c["type"] == type_), {})


def test_a_run_is_cleaned_only_after_the_nas_and_both_replicas_are_verified(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, s3: RcloneS3Nas,
        second_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    run = write_run(source, RUN, FILES)
    replicas = [s3_replica(ns, s3, name="offsite", path="runs"),
                sftp_replica(ns, second_nas, name="second", nas_path="mirror")]
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs",
                  spec={"replicas": replicas})
    ns.apply(syncjob("three-copies", "scope", RUN))
    done = wait_phase(ns, "three-copies", "Cleaned", timeout=300)

    for where in (sftp_nas.root / ns.namespace / "runs" / RUN, s3.object_path("runs") / RUN,
                  second_nas.root / "mirror" / RUN):
        assert _digests(where) == EXPECTED, where
    assert not any((run / rel).exists() for rel in FILES)
    status = done["status"]
    assert status["copies"] == "3/3"
    assert [(d["name"], d["state"]) for d in status["destinations"]] == [
        ("primary", "Verified"), ("offsite", "Verified"), ("second", "Verified")]
    assert _entry(done, "offsite")["remotePath"] == f"{s3.bucket}/runs/{RUN}"
    replicated = _condition(done, "Replicated")
    assert replicated["status"] == "True"
    # Mover run numbers count up and one SyncJob runs one mover at a time: the
    # cleanup's number says what had finished before it started.
    jobs = [j["metadata"]["name"] for j in ns.get("jobs")["items"]]
    cleanup_n = max(int(n.rsplit("-", 1)[1]) for n in jobs if n.startswith("three-copies-cleanup-"))
    for replica in ("offsite", "second"):
        verify_n = [int(n.split("-")[-2]) for n in jobs
                    if n.startswith("three-copies-verify-") and n.endswith(f"-{replica}")]
        assert verify_n and max(verify_n) < cleanup_n, f"the cleanup started before {replica} was verified"
    assert (s3.object_path("runs") / RUN / ".exlab-wizard" / "checksums.sha256").exists(), \
        "each copy carries the manifest that proves it"


def test_with_the_s3_replica_down_the_run_stays_verified_and_uncleaned_then_completes(
        ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    run = write_run(source, RUN, FILES)
    s3 = RcloneS3Nas(workdir=tmp_path / "s3")  # configured, not started: the endpoint is down
    replicas = [s3_replica(ns, s3, name="offsite", path="runs")]
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs",
                  spec={"replicas": replicas, "retry": {"maxAttempts": 50, "backoffSeconds": [2, 4]}})
    ns.apply(syncjob("s3-down", "scope", RUN))

    def replica_failing() -> dict[str, Any] | None:
        obj = ns.get("syncjob", "s3-down")
        if (obj.get("status") or {}).get("phase") != "Verified":
            return None
        return obj if _entry(obj, "offsite").get("lastError") else None

    try:
        obj = eventually(replica_failing, timeout=300, what="Verified on the NAS with the S3 replica failing")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last status: {ns.get('syncjob', 's3-down').get('status')}") from exc
    assert _entry(obj, "offsite")["lastError"]["kind"] == "Network", _entry(obj, "offsite")
    assert _digests(sftp_nas.root / ns.namespace / "runs" / RUN) == EXPECTED
    assert all((run / rel).read_bytes() == data for rel, data in FILES.items()), "nothing deleted"
    cleaned = _condition(obj, "Cleaned")
    assert (cleaned["status"], cleaned["reason"]) == ("False", "ReplicaNotVerified")
    assert "replica offsite is not verified" in cleaned["message"] and "Network" in cleaned["message"]
    replicated = _condition(obj, "Replicated")
    assert replicated["status"] == "False" and "offsite" in replicated["message"]
    assert obj["status"]["copies"] == "1/2"
    assert "ReplicaFailed" in [e["reason"] for e in events(ns, "s3-down")]

    with s3:  # the endpoint is back (same port)
        wait_phase(ns, "s3-down", "Cleaned", timeout=240)
        assert _digests(s3.object_path("runs") / RUN) == EXPECTED
    assert not any((run / rel).exists() for rel in FILES)


@pytest.mark.parametrize("kind", ["s3", "rsync"])
def test_a_replica_corrupted_after_its_verify_blocks_the_cleanup_until_it_is_repaired(
        kind: str, ns: Kubectl, operator: OperatorProcess, sftp_nas: RcloneSftpNas, request: pytest.FixtureRequest,
        tmp_path: Path) -> None:
    """Same size and the old mtime restored: only a hash sees it, and the repair must compare content (rsync
    would otherwise skip the file as unchanged and the replica would never heal)."""
    source = tmp_path / "acq"
    run = write_run(source, RUN, FILES)
    if kind == "s3":
        s3: RcloneS3Nas = request.getfixturevalue("s3")
        replicas = [s3_replica(ns, s3, name="offsite", path="runs")]
        replica_run = s3.object_path("runs") / RUN
    else:
        ssh_nas: SshNas = request.getfixturevalue("ssh_nas")
        replicas = [rsync_replica(ns, ssh_nas, name="offsite", nas_path=f"{ns.namespace}/offsite")]
        replica_run = ssh_nas.root / ns.namespace / "offsite" / RUN
    # Cleanup waits 20 s after the last copy's verify: the window in which the copy rots.
    rclone_target(ns, sftp_nas, name="scope", source=source, nas_path=f"{ns.namespace}/runs",
                  spec={"replicas": replicas, "cleanup": {"minAgeAfterVerify": "20s"}})
    ns.apply(syncjob("rot", "scope", RUN))

    def replica_verified() -> bool:
        obj = ns.get("syncjob", "rot")
        entries = (obj.get("status") or {}).get("destinations") or []
        return any(d["name"] == "offsite" and d["state"] == "Verified" for d in entries)

    eventually(replica_verified, timeout=240, what="the replica verified")
    victim = replica_run / "raw/frame_0001.tif"
    before = victim.stat()
    data = bytearray(victim.read_bytes())
    data[1234] ^= 0x40  # same size: only a hash sees it
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))

    def mismatch_seen() -> bool:
        return "ReplicaMismatch" in [e["reason"] for e in events(ns, "rot")]

    eventually(mismatch_seen, timeout=120, what="the replica's mismatch seen (re-verify or the cleanup pod)")
    assert all((run / rel).read_bytes() == content for rel, content in FILES.items()), "nothing was deleted"
    refused = [e["message"] for e in events(ns, "rot") if e["reason"] == "ReplicaMismatch"]
    assert "replica offsite" in refused[0] and "raw/frame_0001.tif" in refused[0]

    done = wait_phase(ns, "rot", "Cleaned", timeout=240)
    assert _digests(replica_run) == EXPECTED, "the replica was repaired before anything went"
    assert _entry(done, "offsite")["state"] == "Verified"
    assert not any((run / rel).exists() for rel in FILES)
