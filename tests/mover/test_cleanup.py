"""Cleanup: the final remote proof, then deletion; and every way it must refuse."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import pytest
from moverlib import CACHE, MoverRun, Nas, Run, RunFactory, params_for, remote_run_dir, sha256_tree

from nassync.api.mover_io import MoverParams
from nassync_dev.labapp import creation_document, write_creation

pytestmark = pytest.mark.nas

Runner = Callable[[MoverParams], MoverRun]
FILES = {
    "data/a.bin": os.urandom(50_000),
    "data/sub dir/b.txt": b"bee\n",
    "empty": b"",
    "top.txt": b"top\n",
}


def _pushed_and_verified(nas: Nas, run: Run, run_mover: Runner) -> str:
    pushed = run_mover(params_for(nas, run, "push"))
    assert pushed.returncode == 0, pushed.result_text
    digest = str(pushed.result["manifest"]["sha256"])
    verified = run_mover(params_for(nas, run, "verify", expectedManifestSha256=digest))
    assert verified.returncode == 0, verified.result_text
    return digest


def _assert_untouched(run: Run, files: dict[str, bytes]) -> None:
    for relpath, data in files.items():
        assert (run.dir / relpath).read_bytes() == data, relpath


def test_cleanup_verifies_then_deletes_and_keeps_the_cache(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    write_creation(run.dir, creation_document(run.run_path))
    digest = _pushed_and_verified(nas, run, run_mover)
    remote_before = sha256_tree(remote_run_dir(nas, run))

    cleaned = run_mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest, retainCache=True))
    assert cleaned.returncode == 0, cleaned.result_text
    assert cleaned.result["cleanup"] == {
        "filesDeleted": len(FILES),
        "bytesFreed": sum(len(v) for v in FILES.values()),
    }
    assert cleaned.result["verify"]["missing"] == 0
    left = sorted(p.relative_to(run.dir).as_posix() for p in run.dir.rglob("*"))
    assert all(p == CACHE or p.startswith(CACHE + "/") for p in left), left
    creation = json.loads((run.dir / CACHE / "creation.json").read_text())
    assert creation["sync_status"] == "cleaned"
    # The NAS is never touched by cleanup.
    assert sha256_tree(remote_run_dir(nas, run)) == remote_before


def test_cleanup_without_retain_cache_removes_the_run_dir(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run({"x": b"x"})
    digest = _pushed_and_verified(nas, run, run_mover)
    cleaned = run_mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest, retainCache=False))
    assert cleaned.returncode == 0, cleaned.result_text
    assert not run.dir.exists()


def test_cleanup_refuses_when_the_nas_copy_was_corrupted(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    digest = _pushed_and_verified(nas, run, run_mover)
    victim = remote_run_dir(nas, run) / "data/sub dir/b.txt"
    victim.write_bytes(b"BEE\n")  # same size, different bytes
    refused = run_mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest))
    assert refused.returncode == 1
    assert refused.kind == "HashMismatch", refused.result_text
    assert "nothing deleted" in refused.message
    assert "data/sub dir/b.txt" in refused.message
    assert "cleanup" not in refused.result
    _assert_untouched(run, FILES)


def test_cleanup_refuses_when_a_nas_file_is_missing(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    digest = _pushed_and_verified(nas, run, run_mover)
    (remote_run_dir(nas, run) / "top.txt").unlink()
    refused = run_mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest))
    assert refused.kind == "HashMismatch", refused.result_text
    _assert_untouched(run, FILES)


def test_cleanup_refuses_when_the_local_run_changed(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    digest = _pushed_and_verified(nas, run, run_mover)
    run.write("late.txt", b"written after verify")
    refused = run_mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest))
    assert refused.returncode == 1
    assert refused.kind == "HashMismatch", refused.result_text
    assert "local run changed since it was verified; nothing deleted" in refused.message
    _assert_untouched(run, {**FILES, "late.txt": b"written after verify"})


def test_cleanup_refuses_a_rewritten_manifest(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    digest = _pushed_and_verified(nas, run, run_mover)
    manifest = run.dir / CACHE / "checksums.sha256"
    # Drop one line: a manifest that "forgets" a file would let it be deleted unproven.
    manifest.write_bytes(b"".join(manifest.read_bytes().splitlines(keepends=True)[1:]))
    refused = run_mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest))
    assert refused.kind == "HashMismatch", refused.result_text
    _assert_untouched(run, FILES)


def test_cleanup_requires_the_recorded_manifest_digest(nas: Nas, make_run: RunFactory, run_mover: Runner) -> None:
    run = make_run(FILES)
    _pushed_and_verified(nas, run, run_mover)
    refused = run_mover(params_for(nas, run, "cleanup"))
    assert refused.kind == "Config", refused.result_text
    _assert_untouched(run, FILES)


def test_cleanup_refuses_when_the_nas_is_unreachable(
    nas: Nas, make_run: RunFactory, run_mover: Runner, tmp_path: os.PathLike[str]
) -> None:
    run = make_run(FILES)
    digest = _pushed_and_verified(nas, run, run_mover)
    params = params_for(nas, run, "cleanup", expectedManifestSha256=digest)
    # Point at a port nobody listens on (a closed, just-freed port).
    from nassync_dev.nas import free_port

    port = free_port()
    destination = params.destination
    if destination.type == "rsync":
        params = params.model_copy(update={"destination": destination.model_copy(update={"port": port})})
    else:
        from pathlib import Path

        config = Path(destination.config_file).read_text().replace(f"port = {nas.port}", f"port = {port}")
        moved = Path(str(tmp_path)) / "moved.conf"
        moved.write_text(config)
        params = params.model_copy(update={"destination": destination.model_copy(update={"config_file": str(moved)})})
    refused = run_mover(params)
    assert refused.kind == "Network", refused.result_text
    _assert_untouched(run, FILES)
