"""Push and verify against real rclone/rsync and real loopback servers."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from moverlib import (
    CACHE,
    MoverRun,
    RunFactory,
    params_for,
    remote_run_dir,
    sha256_tree,
)

from nassync.api.mover_io import MoverParams
from nassync_dev.labapp import creation_document, read_creation, write_creation
from nassync_dev.nas import RcloneSftpNas, SshNas

pytestmark = pytest.mark.nas

Runner = Callable[[MoverParams], MoverRun]
Nas = SshNas | RcloneSftpNas

MIXED = {
    "a.txt": b"hello\n",
    "with space.txt": b"spaces\n",
    "back\\slash.txt": b"backslash\n",
    "Ünïcødé/ファイル.dat": "unicode ✓".encode(),
    "empty.bin": b"",
    "deep/er/and/deeper/x.bin": os.urandom(300_000),
    ".hidden": b"dotfile\n",
}


@pytest.mark.parametrize("method", ["Auto", "RemoteHash", "Download"])
def test_push_then_verify_copies_every_byte_without_nesting(
    nas: Nas, make_run: RunFactory, run_mover: Runner, method: str
) -> None:
    run = make_run(MIXED)
    write_creation(run.dir, creation_document(run.run_path))
    pushed = run_mover(params_for(nas, run, "push"))
    assert pushed.returncode == 0, pushed.result_text + pushed.stderr
    assert pushed.result["ok"] is True
    assert pushed.result["manifest"]["files"] == len(MIXED)
    assert pushed.result["manifest"]["bytes"] == sum(len(v) for v in MIXED.values())
    # + manifest, owner marker, and the lab app's creation.json and its lock file
    assert pushed.result["transfer"]["files"] == len(MIXED) + 4

    remote = remote_run_dir(nas, run)
    assert sha256_tree(remote) == sha256_tree(run.dir)
    assert set(sha256_tree(remote)) == set(MIXED)
    # No <run>/<run>/ nesting: the run's files are directly in the remote run dir.
    assert not (remote / Path(run.run_path).name).exists()
    manifest = (remote / CACHE / "checksums.sha256").read_bytes()
    assert manifest == (run.dir / CACHE / "checksums.sha256").read_bytes()
    assert hashlib.sha256(manifest).hexdigest() == pushed.result["manifest"]["sha256"]
    assert (remote / CACHE / "nassync-owner").read_text().strip() == "lab/job-a/uid-a"
    assert not [p for p in remote.rglob("*") if p.name.endswith(".partial")]

    verified = run_mover(
        params_for(
            nas,
            run,
            "verify",
            verifyMethod=method,
            expectedManifestSha256=pushed.result["manifest"]["sha256"],
        )
    )
    assert verified.returncode == 0, verified.result_text + verified.stderr
    expected_method = "RemoteHash" if method == "Auto" else method
    assert verified.result["verify"] == {
        "localChanged": False,
        "missing": 0,
        "differing": 0,
        "examples": [],
        "method": expected_method,
    }
    assert verified.result["manifest"]["sha256"] == pushed.result["manifest"]["sha256"]
    creation = json.loads((run.dir / CACHE / "creation.json").read_text())
    assert creation["sync_status"] == "synced"
    # ... and the NAS copy says so too (it was pushed while still pending).
    assert read_creation(remote_run_dir(nas, run))["sync_status"] == "synced"


def test_second_push_transfers_nothing_new(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({"a": os.urandom(100_000), "b/c": os.urandom(5000)})
    assert run_mover(params_for(nas, run, "push")).returncode == 0
    again = run_mover(params_for(nas, run, "push"))
    assert again.returncode == 0, again.result_text
    assert again.result["transfer"]["bytes"] < 100_000
    assert sha256_tree(remote_run_dir(nas, run)) == sha256_tree(run.dir)


def test_corrupted_nas_file_is_a_hash_mismatch_naming_it(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({"good.bin": os.urandom(10_000), "sub/bad file.bin": os.urandom(10_000)})
    pushed = run_mover(params_for(nas, run, "push"))
    assert pushed.returncode == 0, pushed.result_text
    target = remote_run_dir(nas, run) / "sub/bad file.bin"
    data = bytearray(target.read_bytes())
    data[5000] ^= 0xFF  # same size, one byte flipped
    target.write_bytes(bytes(data))

    for method in ("RemoteHash", "Download"):
        verified = run_mover(params_for(nas, run, "verify", verifyMethod=method))
        assert verified.returncode == 1, verified.result_text
        assert verified.kind == "HashMismatch"
        assert "sub/bad file.bin" in verified.message
        assert verified.result["verify"]["differing"] == 1
        assert verified.result["verify"]["missing"] == 0
        assert verified.result["verify"]["examples"] == ["sub/bad file.bin"]
    creation = run.dir / CACHE / "creation.json"
    assert not creation.exists() or json.loads(creation.read_text())["sync_status"] != "synced"


def test_file_missing_on_nas_is_a_hash_mismatch(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({"keep": b"k", "lost/one": b"l"})
    assert run_mover(params_for(nas, run, "push")).returncode == 0
    (remote_run_dir(nas, run) / "lost/one").unlink()
    verified = run_mover(params_for(nas, run, "verify"))
    assert verified.kind == "HashMismatch"
    assert verified.result["verify"]["missing"] == 1
    assert "lost/one" in verified.message


def test_verify_of_a_run_never_pushed_reports_everything_missing(
    nas: Nas, make_run: RunFactory, run_mover: Runner
) -> None:
    run = make_run({"x": b"x"})
    # A manifest exists locally (push wrote it) but the NAS dir was never created.
    from nassync.mover.manifest import build_manifest, write_manifest

    write_manifest(run.dir, cache_dir_name=CACHE, manifest=build_manifest(run.dir, cache_dir_name=CACHE))
    verified = run_mover(params_for(nas, run, "verify"))
    assert verified.kind == "HashMismatch", verified.result_text
    assert verified.result["verify"]["missing"] == 1


def test_local_change_after_push_asks_for_a_new_push(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({"a": b"before"})
    assert run_mover(params_for(nas, run, "push")).returncode == 0
    run.write("a", b"after!")
    run.write("new", b"appeared later")
    verified = run_mover(params_for(nas, run, "verify"))
    assert verified.returncode == 0, verified.result_text
    assert verified.result["ok"] is True
    assert verified.result["verify"]["localChanged"] is True
    assert set(verified.result["verify"]["examples"]) == {"a", "new"}


def test_rewritten_manifest_is_refused(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({"a": b"a"})
    pushed = run_mover(params_for(nas, run, "push"))
    (run.dir / CACHE / "checksums.sha256").write_text("")
    verified = run_mover(params_for(nas, run, "verify", expectedManifestSha256=pushed.result["manifest"]["sha256"]))
    assert verified.returncode == 1
    assert verified.kind == "HashMismatch"
    assert "changed after the push" in verified.message


def test_run_of_1000_files(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    files = {f"d{i % 10}/f{i:04d}.dat": os.urandom(i % 97) for i in range(1000)}
    run = make_run(files)
    pushed = run_mover(params_for(nas, run, "push"))
    assert pushed.returncode == 0, pushed.result_text
    assert pushed.result["manifest"]["files"] == 1000
    verified = run_mover(params_for(nas, run, "verify"))
    assert verified.returncode == 0, verified.result_text
    assert sha256_tree(remote_run_dir(nas, run)) == sha256_tree(run.dir)


def test_missing_run_is_local_vanished(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({"a": b"a"})
    for path in sorted(run.dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    run.dir.rmdir()
    for step in ("push", "verify"):
        result = run_mover(params_for(nas, run, step))
        assert result.returncode == 1
        assert result.kind == "LocalVanished", result.result_text


def test_progress_lines_are_json_and_at_most_about_one_per_second(
    nas: Nas, make_run: RunFactory, run_mover: Runner
) -> None:
    run = make_run({"big.bin": os.urandom(3 << 20), "small": b"s"})
    pushed = run_mover(params_for(nas, run, "push", bandwidth={"defaultKiBps": 1024, "timeZone": "UTC"}))
    assert pushed.returncode == 0, pushed.result_text
    lines = pushed.progress
    assert len(lines) >= 2, pushed.stdout
    for line in lines:
        assert line["step"] == "push"
        assert set(line) >= {"bytes", "totalBytes", "percent", "bytesPerSecond", "etaSeconds"}
    assert max(line["bytes"] for line in lines) >= 3 << 20
    # About one a second: the transfer takes ~3 s, so a flood would be obvious.
    assert len(lines) <= 10


def test_bandwidth_limit_is_honoured(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    import time

    run = make_run({"big.bin": os.urandom(4 << 20)})
    started = time.monotonic()
    pushed = run_mover(params_for(nas, run, "push", bandwidth={"defaultKiBps": 1024, "timeZone": "UTC"}))
    elapsed = time.monotonic() - started
    assert pushed.returncode == 0, pushed.result_text
    assert pushed.result["transfer"]["bandwidthLimitKiBps"] == 1024
    # 4 MiB at 1 MiB/s: ~4 s; the tools allow a burst, so require at least 2.5 s.
    assert elapsed >= 2.5, elapsed
    assert elapsed < 30


def test_owner_marker_conflict_is_refused(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({"a": b"first"})
    assert run_mover(params_for(nas, run, "push", owner="lab/job-a/uid-a")).returncode == 0
    run.write("a", b"second")
    other = run_mover(params_for(nas, run, "push", owner="lab/job-b/uid-b"))
    assert other.returncode == 1
    assert other.kind == "Config"
    assert "belongs to another SyncJob" in other.message
    assert (remote_run_dir(nas, run) / "a").read_bytes() == b"first"
    # The rightful owner can still push again.
    assert run_mover(params_for(nas, run, "push", owner="lab/job-a/uid-a")).returncode == 0
    assert (remote_run_dir(nas, run) / "a").read_bytes() == b"second"
