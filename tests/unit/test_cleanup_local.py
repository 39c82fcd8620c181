"""Local deletion: refuses on any mismatch, never follows symlinks, deletes exactly what the NAS proves.

Symlinks, special files and directories that were empty before are not on the
NAS, so they stay; in the cache dir only nassync's own files go.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from nassync.api.mover_io import CleanupSummary
from nassync.mover import deletion as cleanup
from nassync.mover.creation import load_creation
from nassync.mover.deletion import CleanupIncomplete, CleanupRefused, delete_run_data
from nassync.mover.manifest import build_manifest, write_manifest

CACHE = ".exlab-wizard"
FILES = {
    "raw/img_0001.tif": b"a" * 1000,
    "raw/img_0002.tif": b"b" * 2000,
    "raw/deep/er/x.bin": b"x",
    "notes with space.txt": b"notes",
    "new\nline": b"nl",
    "empty": b"",
}
TOTAL_BYTES = sum(len(d) for d in FILES.values())


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "source" / "Run_1"
    for rel, data in FILES.items():
        path = run_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    (run_dir / "raw" / "emptydir").mkdir()
    (run_dir / CACHE).mkdir()
    (run_dir / CACHE / "creation.json").write_text(json.dumps({"sync_status": "synced", "x": 1}))
    return run_dir


@pytest.fixture
def digests(run: Path) -> dict[str, str]:
    manifest = build_manifest(run, cache_dir_name=CACHE)
    write_manifest(run, cache_dir_name=CACHE, manifest=manifest)
    return manifest.digests()


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_retain_cache_deletes_data_keeps_cache_and_records_cleaned(
    run: Path, digests: dict[str, str]
) -> None:
    summary = delete_run_data(run, cache_dir_name=CACHE, manifest=digests, retain_cache=True)
    assert summary == CleanupSummary(filesDeleted=len(FILES), bytesFreed=TOTAL_BYTES)
    # raw/emptydir was empty before: it is not on the NAS, so it stays (and raw with it).
    assert tree(run) - {p for p in tree(run) if p.startswith(CACHE)} == {"raw", "raw/emptydir"}
    assert (run / CACHE / "checksums.sha256").exists()
    assert load_creation(run, cache_dir_name=CACHE) == {"sync_status": "cleaned", "x": 1}


def test_without_retain_cache_only_our_cache_files_go_and_the_lab_apps_stay(
    run: Path, digests: dict[str, str]
) -> None:
    (run / CACHE / "notes-from-the-lab-app.txt").write_bytes(b"written after the push")
    summary = delete_run_data(run, cache_dir_name=CACHE, manifest=digests, retain_cache=False)
    assert summary.files_deleted == len(FILES)
    assert {p.name for p in (run / CACHE).iterdir()} == {"creation.json", "creation.json.lock",
                                                         "notes-from-the-lab-app.txt"}
    assert load_creation(run, cache_dir_name=CACHE)["sync_status"] == "cleaned"


def test_without_retain_cache_a_run_of_only_proven_files_is_gone_and_siblings_survive(tmp_path: Path) -> None:
    run = tmp_path / "source" / "Run_1"
    (run / "raw").mkdir(parents=True)
    (run / "raw" / "a.tif").write_bytes(b"a")
    (run / "b.txt").write_bytes(b"b")
    manifest = build_manifest(run, cache_dir_name=CACHE)
    write_manifest(run, cache_dir_name=CACHE, manifest=manifest)
    (run / CACHE / "nassync-owner").write_text("lab/job/uid\n")
    sibling = run.parent / "Run_2"
    sibling.mkdir()
    (sibling / "keep").write_bytes(b"k")
    summary = delete_run_data(run, cache_dir_name=CACHE, manifest=manifest.digests(), retain_cache=False)
    assert summary.files_deleted == 2
    assert not run.exists()
    assert (sibling / "keep").read_bytes() == b"k"


def test_an_empty_run_dir_that_cannot_be_removed_is_not_a_failure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "source" / "Run_1"
    run.mkdir(parents=True)
    (run / "a.tif").write_bytes(b"a")
    manifest = build_manifest(run, cache_dir_name=CACHE)
    write_manifest(run, cache_dir_name=CACHE, manifest=manifest)
    real_rmdir = os.rmdir

    def rmdir(path: Any, *, dir_fd: int | None = None) -> None:
        if path == run.name:  # as for a mover that may write the run but not its parent
            raise PermissionError(13, "Permission denied")
        real_rmdir(path, dir_fd=dir_fd)

    monkeypatch.setattr(os, "rmdir", rmdir)
    summary = delete_run_data(run, cache_dir_name=CACHE, manifest=manifest.digests(), retain_cache=False)
    assert summary.files_deleted == 1
    assert run.is_dir() and list(run.iterdir()) == []


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda run: (run / "raw" / "late.tif").write_bytes(b"new"), "not in the manifest"),
        (lambda run: (run / "raw" / "img_0002.tif").write_bytes(b"c" * 2000), "changed"),
        (lambda run: (run / "empty").write_bytes(b"now not empty"), "changed"),
        (lambda run: os.mkfifo(run / "raw" / "pipe"), "special files"),
    ],
)
def test_any_difference_refuses_and_deletes_nothing(
    run: Path, digests: dict[str, str], mutate: object, reason: str
) -> None:
    assert callable(mutate)
    mutate(run)
    before = tree(run)
    with pytest.raises(CleanupRefused, match=reason):
        delete_run_data(run, cache_dir_name=CACHE, manifest=digests, retain_cache=False)
    assert tree(run) == before


def test_files_already_gone_do_not_stop_a_resumed_cleanup(run: Path, digests: dict[str, str]) -> None:
    # A cleanup killed part way left some files deleted; the next attempt (after a
    # fresh remote verify of the whole manifest) deletes the rest.
    (run / "raw" / "img_0001.tif").unlink()
    summary = delete_run_data(run, cache_dir_name=CACHE, manifest=digests, retain_cache=True)
    assert summary.files_deleted == len(digests) - 1
    assert not any((run / rel).exists() for rel in FILES)


def test_manifest_none_of_whose_files_is_here_refuses(run: Path, digests: dict[str, str]) -> None:
    with pytest.raises(CleanupRefused, match="none of the manifest"):
        delete_run_data(run, cache_dir_name=CACHE, manifest={"ghost": "0" * 64}, retain_cache=True)
    assert (run / "raw" / "img_0001.tif").exists()


def test_empty_manifest_refuses(run: Path) -> None:
    with pytest.raises(CleanupRefused, match="empty"):
        delete_run_data(run, cache_dir_name=CACHE, manifest={}, retain_cache=False)
    assert (run / "raw" / "img_0001.tif").exists()


def test_missing_run_refuses(tmp_path: Path) -> None:
    with pytest.raises(CleanupRefused, match="does not exist"):
        delete_run_data(
            tmp_path / "nope", cache_dir_name=CACHE, manifest={"a": "0" * 64}, retain_cache=True
        )


def test_run_dir_that_is_a_symlink_refuses(run: Path, digests: dict[str, str]) -> None:
    link = run.parent / "Run_link"
    link.symlink_to(run)
    with pytest.raises(CleanupRefused, match="not a real directory"):
        delete_run_data(link, cache_dir_name=CACHE, manifest=digests, retain_cache=False)
    assert (run / "raw" / "img_0001.tif").exists()


def test_symlinks_stay_where_they_are_and_their_targets_survive(run: Path, tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.raw").write_bytes(b"irreplaceable")
    (run / "to-dir").symlink_to(outside)  # a symlinked dir must not be descended into
    (run / "raw" / "to-file").symlink_to(outside / "data.raw")
    (run / "inner").symlink_to("raw/img_0001.tif")
    manifest = build_manifest(run, cache_dir_name=CACHE).digests()
    summary = delete_run_data(run, cache_dir_name=CACHE, manifest=manifest, retain_cache=False)
    assert summary.files_deleted == len(FILES)
    # Symlinks are not copied to the NAS, so cleanup does not delete them either.
    assert {p for p in tree(run) if not p.startswith(CACHE)} == {"to-dir", "inner", "raw", "raw/to-file",
                                                                 "raw/emptydir"}
    assert (outside / "data.raw").read_bytes() == b"irreplaceable"


def test_symlinked_cache_dir_is_not_followed(run: Path, tmp_path: Path) -> None:
    shutil_target = tmp_path / "elsewhere"
    shutil_target.mkdir()
    (shutil_target / "creation.json").write_text("{}")
    (shutil_target / "other").write_bytes(b"keep me")
    for child in (run / CACHE).iterdir():
        child.unlink()
    (run / CACHE).rmdir()
    (run / CACHE).symlink_to(shutil_target)
    manifest = build_manifest(run, cache_dir_name=CACHE).digests()
    before = tree(run)
    with pytest.raises(CleanupRefused, match="symlink"):
        delete_run_data(run, cache_dir_name=CACHE, manifest=manifest, retain_cache=False)
    assert tree(run) == before
    assert (shutil_target / "other").read_bytes() == b"keep me"


def test_uppercase_manifest_digests_are_accepted(run: Path, digests: dict[str, str]) -> None:
    upper = {k: v.upper() for k, v in digests.items()}
    summary = delete_run_data(run, cache_dir_name=CACHE, manifest=upper, retain_cache=True)
    assert summary.files_deleted == len(FILES)


def test_file_swapped_for_symlink_after_proof_stops_cleanup(
    run: Path, digests: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "victim"
    outside.write_bytes(b"a" * 1000)
    real_prove = cleanup._prove_local

    def prove_then_swap(*args: object, **kwargs: object) -> object:
        result = real_prove(*args, **kwargs)  # type: ignore[arg-type]
        (run / "raw" / "img_0001.tif").unlink()
        (run / "raw" / "img_0001.tif").symlink_to(outside)
        return result

    monkeypatch.setattr(cleanup, "_prove_local", prove_then_swap)
    with pytest.raises(CleanupIncomplete, match="changed while cleaning"):
        delete_run_data(run, cache_dir_name=CACHE, manifest=digests, retain_cache=False)
    assert outside.read_bytes() == b"a" * 1000
    assert run.exists()


def test_directory_swapped_for_symlink_after_proof_is_not_followed(
    run: Path, digests: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "decoy"
    (decoy / "er").mkdir(parents=True)
    (decoy / "er" / "x.bin").write_bytes(b"x")  # same name and size as the run's file
    real_prove = cleanup._prove_local

    def prove_then_swap(*args: object, **kwargs: object) -> object:
        result = real_prove(*args, **kwargs)  # type: ignore[arg-type]
        (run / "raw" / "deep").rename(tmp_path / "moved-away")
        (run / "raw" / "deep").symlink_to(decoy)
        return result

    monkeypatch.setattr(cleanup, "_prove_local", prove_then_swap)
    with pytest.raises(CleanupIncomplete):
        delete_run_data(run, cache_dir_name=CACHE, manifest=digests, retain_cache=False)
    assert (decoy / "er" / "x.bin").read_bytes() == b"x"


def test_file_appearing_after_proof_is_kept(
    run: Path, digests: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_prove = cleanup._prove_local

    def prove_then_write(*args: object, **kwargs: object) -> object:
        result = real_prove(*args, **kwargs)  # type: ignore[arg-type]
        (run / "raw" / "deep" / "er" / "late.tif").write_bytes(b"arrived late")
        return result

    monkeypatch.setattr(cleanup, "_prove_local", prove_then_write)
    with pytest.raises(CleanupIncomplete, match="not empty") as caught:
        delete_run_data(run, cache_dir_name=CACHE, manifest=digests, retain_cache=False)
    assert (run / "raw" / "deep" / "er" / "late.tif").read_bytes() == b"arrived late"
    assert caught.value.summary.files_deleted == len(FILES)


def test_unparsable_creation_json_refuses_before_deleting(
    run: Path, digests: dict[str, str]
) -> None:
    (run / CACHE / "creation.json").write_text("{broken")
    with pytest.raises(CleanupRefused, match=r"creation\.json"):
        delete_run_data(run, cache_dir_name=CACHE, manifest=digests, retain_cache=True)
    assert (run / "raw" / "img_0001.tif").exists()
