"""Runs as labs have them: owned by an instrument user with private modes, creation.json
written by the lab app (0600, its user), completion markers, revocations after verify.

The mover runs as a non-root uid here, exactly as in a pod (`setpriv` on the
subprocess), against the real rclone/rsync/sshd on loopback.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from moverlib import CACHE, MOVER, MoverRun, Nas, Run, RunFactory, params_for, remote_run_dir, sha256_tree

from nassync.api.mover_io import PARAMS_ENV, RESULT_PATH_ENV, MoverParams
from nassync_dev.labapp import creation_document, own_tree, read_creation, write_creation
from nassync_dev.nas import RcloneSftpNas, SshNas
from nassync_dev.scenario import reachable_tmpdir

pytestmark = pytest.mark.nas

LAB_UID = 1000  # the instrument / lab app user
STRANGER = 4242  # a uid with no passwd entry anywhere (nss_wrapper must give it one)
MOVER_UID = 65532  # the image's default
FILES = {"raw/frame_0001.tif": os.urandom(20_000), "raw/frame_0002.tif": os.urandom(10_000), "notes.txt": b"n\n"}

AsUser = Callable[..., MoverRun]


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A per-test directory other uids can reach, outside pytest's base directory (scenario.reachable_tmpdir)."""
    with reachable_tmpdir("nassync-as-user-") as path:
        yield path


@pytest.fixture
def as_user(tmp_path: Path) -> AsUser:
    """Run the real mover CLI as `uid`, with the NAS credentials readable by it (as a Secret volume makes them)."""
    counter = iter(range(1_000_000))

    def secrets_for(nas: Nas, uid: int) -> dict[str, Any]:
        secrets = tmp_path / f"secret-{uid}-{next(counter)}"
        secrets.mkdir(mode=0o755)
        key = secrets / "ssh-privatekey"
        shutil.copy(nas.client_key.private_path, key)
        known_hosts = secrets / "known_hosts"
        shutil.copy(nas.known_hosts, known_hosts)
        for path in (key, known_hosts):
            path.chmod(0o444)  # a Secret volume's files: root-owned, world-readable
        if isinstance(nas, RcloneSftpNas):
            conf = secrets / "rclone.conf"
            text = nas.config_path.read_text()
            text = text.replace(str(nas.client_key.private_path), str(key))
            conf.write_text(text.replace(str(nas.known_hosts), str(known_hosts)))
            conf.chmod(0o444)
            return {"destination": nas.destination(config_file=conf)}
        assert isinstance(nas, SshNas)
        return {"destination": nas.destination(key_file=key).model_copy(update={"known_hosts_file": str(known_hosts)})}

    def run(nas: Nas, the_run: Run, step: str, *, uid: int, gid: int | None = None, **extra: Any) -> MoverRun:
        params = params_for(nas, the_run, step, **secrets_for(nas, uid), **extra)
        results = tmp_path / f"results-{next(counter)}"
        results.mkdir()
        results.chmod(0o777)
        result_path = results / "result.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NSS_WRAPPER", "LD_PRELOAD"))}
        env.update({PARAMS_ENV: params.model_dump_json(by_alias=True), RESULT_PATH_ENV: str(result_path),
                    "HOME": "/tmp"})
        # setpriv, as the process node runs a container's command as its runAsUser.
        identity = ["setpriv", f"--reuid={uid}", f"--regid={gid if gid is not None else uid}", "--clear-groups"]
        proc = subprocess.run([*identity, MOVER, step], env=env, capture_output=True, text=True, timeout=300,
                              cwd="/tmp", check=False)
        assert result_path.exists(), f"the mover wrote no result (exit {proc.returncode}): {proc.stderr[-3000:]}"
        text = result_path.read_text()
        return MoverRun(returncode=proc.returncode, result=json.loads(text), result_text=text,
                        stdout=proc.stdout, stderr=proc.stderr)

    return run


def _instrument_run(make_run: RunFactory, uid: int, *, private: bool = True) -> Run:
    run = make_run(FILES)
    # The source root and the project above the run are the instrument's too; only the run is private.
    own_tree(run.source_root, uid, uid, file_mode=0o644, dir_mode=0o755)
    if private:
        own_tree(run.dir, uid, uid, file_mode=0o600, dir_mode=0o700)
    write_creation(run.dir, creation_document(run.run_path), uid=uid, gid=uid)
    old = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    for dirpath, dirnames, filenames in os.walk(run.dir):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (old, old), follow_symlinks=False)
    return run


def test_any_uid_can_push_and_verify_over_ssh_and_rclone(nas: Nas, make_run: RunFactory, as_user: AsUser) -> None:
    """ssh refuses a uid without a passwd entry; the mover gives it one (nss_wrapper)."""
    run = make_run(FILES)
    own_tree(run.source_root, STRANGER, STRANGER, file_mode=0o644, dir_mode=0o755)
    pushed = as_user(nas, run, "push", uid=STRANGER)
    assert pushed.returncode == 0, pushed.result_text + pushed.stderr
    verified = as_user(nas, run, "verify", uid=STRANGER, expectedManifestSha256=pushed.result["manifest"]["sha256"])
    assert verified.returncode == 0, verified.result_text + verified.stderr
    assert sha256_tree(remote_run_dir(nas, run)) == sha256_tree(run.dir)


def test_a_mover_that_cannot_read_the_run_says_who_owns_what_and_what_to_set(
        ssh_nas: SshNas, make_run: RunFactory, as_user: AsUser) -> None:
    run = _instrument_run(make_run, LAB_UID)
    before = sorted(p.name for p in (run.dir / CACHE).iterdir())
    gated = as_user(ssh_nas, run, "gate", uid=MOVER_UID, cleanupEnabled=True)
    assert gated.returncode == 1 and gated.kind == "Permission", gated.result_text
    message = gated.message
    for fragment in ("1000:1000", "drwx------", "65532:65532", "runAsUser", "runAsRunOwner", "Nothing was pushed"):
        assert fragment in message, (fragment, message)
    assert sorted(p.name for p in (run.dir / CACHE).iterdir()) == before, "the gate wrote nothing"
    assert not remote_run_dir(ssh_nas, run).exists()


def test_the_lab_apps_0600_creation_json_alone_is_reported(
        ssh_nas: SshNas, make_run: RunFactory, as_user: AsUser) -> None:
    run = _instrument_run(make_run, LAB_UID, private=False)  # data world-readable, creation.json 0600
    gated = as_user(ssh_nas, run, "gate", uid=MOVER_UID)
    assert gated.kind == "Permission", gated.result_text
    assert ".exlab-wizard/creation.json" in gated.message and "-rw-------" in gated.message


def test_identify_owner_reports_the_owner_without_judging_the_run(
        ssh_nas: SshNas, make_run: RunFactory, as_user: AsUser) -> None:
    run = _instrument_run(make_run, LAB_UID)
    found = as_user(ssh_nas, run, "gate", uid=MOVER_UID, identifyOwner=True)
    assert found.returncode == 0, found.result_text
    gate = found.result["gate"]
    assert gate["ownerOnly"] is True and gate["runOwner"] == {"uid": LAB_UID, "gid": LAB_UID}
    assert gate.get("findings", []) == []


def test_as_the_owner_a_private_run_goes_to_cleaned_and_creation_json_stays_the_lab_apps(
        nas: Nas, make_run: RunFactory, as_user: AsUser) -> None:
    run = _instrument_run(make_run, LAB_UID)
    creation = run.dir / CACHE / "creation.json"
    gated = as_user(nas, run, "gate", uid=LAB_UID, cleanupEnabled=True)
    assert gated.returncode == 0 and not gated.result["gate"]["blocked"], gated.result_text
    pushed = as_user(nas, run, "push", uid=LAB_UID)
    assert pushed.returncode == 0, pushed.result_text + pushed.stderr
    digest = pushed.result["manifest"]["sha256"]
    verified = as_user(nas, run, "verify", uid=LAB_UID, expectedManifestSha256=digest)
    assert verified.returncode == 0, verified.result_text
    assert read_creation(remote_run_dir(nas, run))["sync_status"] == "synced"
    cleaned = as_user(nas, run, "cleanup", uid=LAB_UID, expectedManifestSha256=digest, retainCache=True)
    assert cleaned.returncode == 0, cleaned.result_text
    assert not any((run.dir / rel).exists() for rel in FILES)
    info = creation.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (LAB_UID, LAB_UID, 0o600)
    document = read_creation(run.dir)  # the lab app can still read it
    assert document["sync_status"] == "cleaned"
    assert {k: v for k, v in document.items() if k != "sync_status"} == creation_document(run.run_path)


def test_a_tombstone_written_after_verify_stops_the_delete(
        ssh_nas: SshNas, make_run: RunFactory, run_mover: Callable[[MoverParams], MoverRun]) -> None:
    run = make_run(FILES)
    override = {"id": "o1", "problem_class": "illegal_filesystem_character", "operator": "pi",
                "recorded_at": "2026-11-01T10:00:00Z", "reason": "approved", "revoked": False}
    write_creation(run.dir, creation_document(run.run_path, overrides=[override]))
    pushed = run_mover(params_for(ssh_nas, run, "push"))
    digest = pushed.result["manifest"]["sha256"]
    assert run_mover(params_for(ssh_nas, run, "verify", expectedManifestSha256=digest)).returncode == 0
    # The PI changes their mind between the verify and the cleanup (the lab app's tombstone).
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    tombstone = {"id": "t1", "revokes": "o1", "operator": "pi", "recorded_at": now, "reason": "wrong sample",
                 "revoked": True}
    write_creation(run.dir, creation_document(run.run_path, overrides=[override, tombstone]))
    cleanup = run_mover(params_for(ssh_nas, run, "cleanup", expectedManifestSha256=digest,
                                   minAgeAfterVerifySeconds=3600))
    assert cleanup.returncode == 0, cleanup.result_text
    deferred = cleanup.result["cleanup"]["deferred"]
    assert "override 'o1' (illegal_filesystem_character) was revoked by pi" in deferred
    assert cleanup.result["cleanup"]["filesDeleted"] == 0
    assert all((run.dir / rel).read_bytes() == data for rel, data in FILES.items())
    assert cleanup.result["lastRevocationAt"] == now


def test_an_old_tombstone_does_not_stop_the_delete(
        ssh_nas: SshNas, make_run: RunFactory, run_mover: Callable[[MoverParams], MoverRun]) -> None:
    run = make_run(FILES)
    tombstone = {"id": "t1", "revokes": "o1", "operator": "pi", "recorded_at": "2026-01-01T00:00:00",
                 "reason": "x", "revoked": True}  # no offset: UTC, as the lab app reads it
    write_creation(run.dir, creation_document(run.run_path, overrides=[tombstone]))
    digest = run_mover(params_for(ssh_nas, run, "push")).result["manifest"]["sha256"]
    assert run_mover(params_for(ssh_nas, run, "verify", expectedManifestSha256=digest)).returncode == 0
    cleanup = run_mover(params_for(ssh_nas, run, "cleanup", expectedManifestSha256=digest,
                                   minAgeAfterVerifySeconds=3600))
    assert cleanup.returncode == 0 and cleanup.result["cleanup"]["filesDeleted"] == len(FILES), cleanup.result_text


def test_a_completion_marker_gates_the_push_and_lands_last(
        nas: Nas, make_run: RunFactory, run_mover: Callable[[MoverParams], MoverRun]) -> None:
    run = make_run(FILES)
    old = (datetime.now(UTC) - timedelta(hours=1)).timestamp()
    for rel in FILES:
        os.utime(run.dir / rel, (old, old))
    for directory in (run.dir / "raw", run.dir):
        os.utime(directory, (old, old))
    marker = {"completionMarker": {"names": ["CopyComplete.txt", "RTAComplete.txt"], "match": "Any"},
              "quietPeriodSeconds": 600}
    waiting = run_mover(params_for(nas, run, "gate", **marker))
    assert waiting.returncode == 0 and waiting.result["gate"]["quiet"] is False, waiting.result_text
    assert "CopyComplete.txt" in waiting.result["gate"]["waitingFor"]
    # The instrument finishes well after the quiet period: the wait counts from the marker.
    run.write("CopyComplete.txt", b"done\n")
    fresh = run_mover(params_for(nas, run, "gate", **marker))
    assert fresh.result["gate"]["quiet"] is False and fresh.result["gate"].get("waitingFor") is None
    assert fresh.result["gate"]["quietRemainingSeconds"] > 590
    os.utime(run.dir / "CopyComplete.txt", (old, old))
    os.utime(run.dir, (old, old))
    assert run_mover(params_for(nas, run, "gate", **marker)).result["gate"]["quiet"] is True
    pushed = run_mover(params_for(nas, run, "push", **marker))
    assert pushed.returncode == 0, pushed.result_text
    remote = remote_run_dir(nas, run)
    landed = {rel: (remote / rel).stat().st_ctime_ns for rel in [*FILES, "CopyComplete.txt"]}
    assert landed["CopyComplete.txt"] >= max(v for k, v in landed.items() if k != "CopyComplete.txt")
    assert sha256_tree(remote) == sha256_tree(run.dir)


def test_a_run_without_creation_json_never_gets_one(
        nas: Nas, make_run: RunFactory, run_mover: Callable[[MoverParams], MoverRun]) -> None:
    run = make_run(FILES)
    digest = run_mover(params_for(nas, run, "push")).result["manifest"]["sha256"]
    assert run_mover(params_for(nas, run, "verify", expectedManifestSha256=digest)).returncode == 0
    assert run_mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest)).returncode == 0
    assert not (run.dir / CACHE / "creation.json").exists()
    assert not (remote_run_dir(nas, run) / CACHE / "creation.json").exists()
