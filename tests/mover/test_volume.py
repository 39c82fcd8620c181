"""The volume transport (a NAS mounted as a PVC), and the rclone remote that only looks like a NAS.

A directory stands in for the mounted claim here (in a pod it is the
PersistentVolumeClaim at /var/run/nassync/destination); everything else is the
real mover CLI and the real rsync.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from moverlib import MOVER, MoverRun, Run, RunFactory, params_for, sha256_tree

from nassync.api.mover_io import PARAMS_ENV, RESULT_PATH_ENV, MoverParams, RcloneDestination, VolumeDestination
from nassync_dev.labapp import own_tree
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import reachable_tmpdir

Runner = Callable[[MoverParams], MoverRun]
FILES = {"raw/a.tif": os.urandom(30_000), "raw/deep/b.tif": os.urandom(5_000), "notes.txt": b"n\n"}


@pytest.fixture
def mount(tmp_path: Path) -> Path:
    share = tmp_path / "nfs-share"
    share.mkdir()
    return share


def _volume(mount: Path) -> VolumeDestination:
    return VolumeDestination(mount=str(mount), path=str(mount / "runs"))


def test_push_verify_cleanup_through_a_mounted_volume(
        rclone_nas: RcloneSftpNas, make_run: RunFactory, run_mover: Runner, mount: Path) -> None:
    run = make_run(FILES)
    destination = _volume(mount)
    pushed = run_mover(params_for(rclone_nas, run, "push", destination=destination))
    assert pushed.returncode == 0, pushed.result_text + pushed.stderr
    copy = mount / "runs" / run.run_path
    assert sha256_tree(copy) == sha256_tree(run.dir)
    digest = pushed.result["manifest"]["sha256"]
    verified = run_mover(params_for(rclone_nas, run, "verify", destination=destination,
                                    expectedManifestSha256=digest))
    assert verified.returncode == 0, verified.result_text
    assert verified.result["verify"]["method"] == "RemoteHash"
    before = sha256_tree(copy)
    cleaned = run_mover(params_for(rclone_nas, run, "cleanup", destination=destination,
                                   expectedManifestSha256=digest))
    assert cleaned.returncode == 0, cleaned.result_text
    assert not any((run.dir / rel).exists() for rel in FILES)
    assert sha256_tree(copy) == before and set(before) == set(FILES)  # the NAS copy is never touched


def test_a_corrupted_file_on_the_volume_is_a_mismatch_and_the_repush_repairs_it(
        rclone_nas: RcloneSftpNas, make_run: RunFactory, run_mover: Runner, mount: Path) -> None:
    run = make_run(FILES)
    destination = _volume(mount)
    digest = run_mover(params_for(rclone_nas, run, "push", destination=destination)).result["manifest"]["sha256"]
    victim = mount / "runs" / run.run_path / "raw/a.tif"
    stamp = victim.stat()
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF  # same size ...
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # ... and same mtime: rsync's quick check sees nothing
    mismatch = run_mover(params_for(rclone_nas, run, "verify", destination=destination, expectedManifestSha256=digest))
    assert mismatch.kind == "HashMismatch" and "raw/a.tif" in mismatch.message
    repaired = run_mover(params_for(rclone_nas, run, "push", destination=destination, compareContent=True,
                                    expectedManifestSha256=digest))
    assert repaired.returncode == 0, repaired.result_text
    again = run_mover(params_for(rclone_nas, run, "verify", destination=destination, expectedManifestSha256=digest))
    assert again.returncode == 0, again.result_text


def test_an_unmounted_volume_is_a_config_error_at_the_gate(
        rclone_nas: RcloneSftpNas, make_run: RunFactory, run_mover: Runner, tmp_path: Path) -> None:
    run = make_run(FILES)
    gated = run_mover(params_for(rclone_nas, run, "gate", destination=_volume(tmp_path / "not-mounted")))
    assert gated.kind == "Config" and "not mounted" in gated.message


@pytest.mark.parametrize("conf", [
    "[nas]\ntype = local\n",
    "[nas]\ntype = alias\nremote = /srv/share\n",
    "[disk]\ntype = local\n\n[nas]\ntype = alias\nremote = disk:/srv/share\n",
])
def test_an_rclone_remote_that_is_a_local_path_is_refused_at_once(
        rclone_nas: RcloneSftpNas, make_run: RunFactory, run_mover: Runner, tmp_path: Path, conf: str) -> None:
    """It would "succeed" writing inside the mover pod, and the next pod would find nothing."""
    config = tmp_path / "rclone.conf"
    config.write_text(conf)
    run = make_run(FILES)
    destination = RcloneDestination(remote="nas", path="/srv/share", configFile=str(config))
    for step in ("gate", "push"):
        refused = run_mover(params_for(rclone_nas, run, step, destination=destination))
        assert refused.returncode == 1 and refused.kind == "Config", refused.result_text
        assert "local path" in refused.message and "spec.destination.volume" in refused.message
    assert not Path("/srv/share").joinpath(run.run_path).exists()


def test_an_alias_of_a_real_remote_is_not_refused(
        rclone_nas: RcloneSftpNas, make_run: RunFactory, run_mover: Runner, tmp_path: Path) -> None:
    config = tmp_path / "rclone.conf"
    config.write_text(rclone_nas.config_path.read_text().replace("[nas]", "[real]")
                      + "\n[nas]\ntype = alias\nremote = real:/\n")
    run = make_run(FILES)
    destination = RcloneDestination(remote="nas", path="/nas", configFile=str(config))
    pushed = run_mover(params_for(rclone_nas, run, "push", destination=destination))
    assert pushed.returncode == 0, pushed.result_text + pushed.stderr


def test_a_volume_the_movers_uid_may_not_write_is_a_permission_error_that_says_what_to_fix(
        rclone_nas: RcloneSftpNas) -> None:
    """A PV whose root belongs to root (0755) and a mover running as the instrument's uid: the push fails at once
    as Permission naming the fix (fsGroup, the export's squash), not as an Unknown "error in file IO" retried
    forever. Directories outside pytest's private base dir, so uid 4242 can reach them."""
    with reachable_tmpdir("nassync-volume-uid-") as base:
        run = Run(source_root=base / "source", run_path="PROJ/Runs/Run_perm")
        run.dir.mkdir(parents=True)
        for relpath, data in FILES.items():
            run.write(relpath, data)
        own_tree(run.source_root, 4242, 4242, file_mode=0o644, dir_mode=0o755)
        share = base / "nfs-share"
        share.mkdir(mode=0o755)  # root's, as an NFS export with root_squash off would show it
        results = base / "results"
        results.mkdir(mode=0o777)
        results.chmod(0o777)
        params = params_for(rclone_nas, run, "push", destination=_volume(share))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NSS_WRAPPER", "LD_PRELOAD"))}
        env.update({PARAMS_ENV: params.model_dump_json(by_alias=True),
                    RESULT_PATH_ENV: str(results / "result.json"), "HOME": "/tmp"})
        proc = subprocess.run(["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups", MOVER, "push"],
                              env=env, capture_output=True, text=True, timeout=120, cwd="/tmp", check=False)
        result = json.loads((results / "result.json").read_text())
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert result["error"]["kind"] == "Permission", result
        assert "fsGroup" in result["error"]["message"] and "Permission denied" in result["error"]["message"]
        assert list(share.iterdir()) == [], "nothing was written on the volume"
        assert sha256_tree(run.dir) == {rel: hashlib.sha256(d).hexdigest() for rel, d in FILES.items()}
