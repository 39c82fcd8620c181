"""Replicas through the real CLI: the lab NAS (sftp) as primary and a real S3 server as the replica.

The primary's push writes the manifest; a replica's push copies the run that
manifest describes and never rewrites it; a replica's verify proves that copy
and leaves the lab app's creation.json alone; the cleanup step proves every
required replica right before its first delete and deletes nothing when one
of them does not match.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from moverlib import CACHE, MoverRun, Run, RunFactory, params_for, sha256_tree

from nassync.api.mover_io import MoverParams, ReplicaCheck
from nassync_dev.labapp import creation_document, write_creation
from nassync_dev.nas import RcloneS3Nas, RcloneSftpNas

pytestmark = pytest.mark.nas
Runner = Callable[[MoverParams], MoverRun]
FILES = {"raw/a.tif": os.urandom(50_000), "raw/b.tif": os.urandom(9_000), "notes.txt": b"notes\n"}
REPLICA = "offsite"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RcloneS3Nas]:
    with RcloneS3Nas(workdir=tmp_path_factory.mktemp("s3")) as server:
        yield server


def _primary_verified(rclone_nas: RcloneSftpNas, run: Run, run_mover: Runner) -> str:
    pushed = run_mover(params_for(rclone_nas, run, "push"))
    assert pushed.returncode == 0, pushed.result_text + pushed.stderr
    digest: str = pushed.result["manifest"]["sha256"]
    verified = run_mover(params_for(rclone_nas, run, "verify", expectedManifestSha256=digest))
    assert verified.returncode == 0, verified.result_text
    return digest


def _replica(s3: RcloneS3Nas, run: Run, step: str, digest: str, **extra: object) -> MoverParams:
    return params_for(s3, run, step, destination=s3.destination(), expectedManifestSha256=digest, replica=REPLICA,
                      **extra)


def _manifest_bytes(run: Run) -> bytes:
    return (run.dir / CACHE / "checksums.sha256").read_bytes()


def test_a_replica_gets_the_recorded_run_and_its_manifest_stays_untouched(
        rclone_nas: RcloneSftpNas, s3: RcloneS3Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    write_creation(run.dir, creation_document(run.run_path), uid=4242, gid=4242)  # the lab app's 0600 file
    digest = _primary_verified(rclone_nas, run, run_mover)
    manifest_before = _manifest_bytes(run)
    creation = run.dir / CACHE / "creation.json"
    creation_before = (creation.read_bytes(), creation.stat().st_mtime_ns)

    pushed = run_mover(_replica(s3, run, "push", digest))
    assert pushed.returncode == 0, pushed.result_text + pushed.stderr
    assert pushed.result["manifest"]["sha256"] == digest
    assert pushed.result["manifest"]["bytes"] == sum(len(v) for v in FILES.values())
    copy = s3.object_path() / run.run_path
    assert sha256_tree(copy) == {k: hashlib.sha256(v).hexdigest() for k, v in FILES.items()}
    assert (copy / CACHE / "checksums.sha256").read_bytes() == manifest_before, "the NAS-side proof travels along"
    assert _manifest_bytes(run) == manifest_before, "a replica push never rewrites the manifest"

    verified = run_mover(_replica(s3, run, "verify", digest))
    assert verified.returncode == 0, verified.result_text
    assert verified.result["verify"] == {"localChanged": False, "missing": 0, "differing": 0, "examples": [],
                                         "method": "Download", "replica": REPLICA}
    assert (creation.read_bytes(), creation.stat().st_mtime_ns) == creation_before, \
        "a replica's verify leaves the lab app's creation.json alone"


def test_a_replica_push_refuses_a_manifest_that_is_not_the_recorded_one(
        rclone_nas: RcloneSftpNas, s3: RcloneS3Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    digest = _primary_verified(rclone_nas, run, run_mover)
    manifest = run.dir / CACHE / "checksums.sha256"
    manifest.write_bytes(manifest.read_bytes().replace(b"notes.txt", b"notes.TXT"))
    refused = run_mover(_replica(s3, run, "push", digest))
    assert refused.kind == "HashMismatch" and "changed after the push" in refused.message, refused.result_text
    assert not (s3.object_path() / run.run_path).exists(), "nothing was copied"


def test_a_replica_push_refuses_a_run_missing_a_recorded_file(
        rclone_nas: RcloneSftpNas, s3: RcloneS3Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    digest = _primary_verified(rclone_nas, run, run_mover)
    (run.dir / "raw/b.tif").unlink()
    refused = run_mover(_replica(s3, run, "push", digest))
    assert refused.kind == "LocalVanished" and "raw/b.tif" in refused.message, refused.result_text
    assert not (s3.object_path() / run.run_path).exists()


def test_cleanup_proves_each_required_replica_and_deletes_nothing_when_one_is_corrupt(
        rclone_nas: RcloneSftpNas, s3: RcloneS3Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    digest = _primary_verified(rclone_nas, run, run_mover)
    assert run_mover(_replica(s3, run, "push", digest)).returncode == 0
    assert run_mover(_replica(s3, run, "verify", digest)).returncode == 0
    victim = s3.object_path() / run.run_path / "raw/a.tif"
    good = victim.read_bytes()
    bad = bytearray(good)
    bad[100] ^= 0x01  # same size, one bit: only a real hash sees it
    victim.write_bytes(bytes(bad))
    check = ReplicaCheck(name=REPLICA, destination=s3.destination(), verifyMethod="Auto")
    cleanup = params_for(rclone_nas, run, "cleanup", expectedManifestSha256=digest, replicas=[check],
                         cleanupEnabled=True)
    before = sha256_tree(run.dir)

    refused = run_mover(cleanup)
    assert refused.kind == "HashMismatch", refused.result_text
    assert refused.message.startswith(f"replica {REPLICA}: ") and "raw/a.tif" in refused.message
    assert "nothing deleted" in refused.message
    assert refused.result["verify"]["replica"] == REPLICA
    assert sha256_tree(run.dir) == before, "not one local file was touched"

    victim.write_bytes(good)
    done = run_mover(cleanup)
    assert done.returncode == 0, done.result_text
    assert done.result["cleanup"]["filesDeleted"] == len(FILES)
    assert not (run.dir / "raw/a.tif").exists()


def test_cleanup_deletes_nothing_when_a_required_replica_is_unreachable(
        rclone_nas: RcloneSftpNas, make_run: RunFactory, run_mover: Runner, tmp_path: Path) -> None:
    run = make_run(FILES)
    digest = _primary_verified(rclone_nas, run, run_mover)
    with RcloneS3Nas(workdir=tmp_path / "s3-down") as down:
        assert run_mover(_replica(down, run, "push", digest)).returncode == 0
        destination = down.destination()
    # The server is gone now: its port refuses connections.
    check = ReplicaCheck(name=REPLICA, destination=destination, verifyMethod="Auto")
    refused = run_mover(params_for(rclone_nas, run, "cleanup", expectedManifestSha256=digest, replicas=[check],
                                   cleanupEnabled=True))
    assert refused.returncode != 0 and refused.kind in ("Network", "Unknown"), refused.result_text
    assert refused.message.startswith(f"replica {REPLICA}: ") and "nothing deleted" in refused.message
    assert all((run.dir / relpath).read_bytes() == data for relpath, data in FILES.items())
