"""Local deletion: refuses on any mismatch, never follows symlinks, frees exactly the run."""

from __future__ import annotations

import json
import os
from pathlib import Path

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
    assert {p.name for p in run.iterdir()} == {CACHE}
    assert (run / CACHE / "checksums.sha256").exists()
    assert load_creation(run, cache_dir_name=CACHE) == {"sync_status": "cleaned", "x": 1}


def test_without_retain_cache_the_run_dir_is_gone_and_siblings_survive(
    run: Path, digests: dict[str, str]
) -> None:
    sibling = run.parent / "Run_2"
    sibling.mkdir()
    (sibling / "keep").write_bytes(b"k")
    summary = delete_run_data(run, cache_dir_name=CACHE, manifest=digests, retain_cache=False)
    assert summary.files_deleted == len(FILES)
    assert not run.exists()
    assert (sibling / "keep").read_bytes() == b"k"


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
    assert not (run / "raw").exists()


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


def test_symlinks_are_unlinked_and_their_targets_survive(run: Path, tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.raw").write_bytes(b"irreplaceable")
    (run / "to-dir").symlink_to(outside)  # a symlinked dir must not be descended into
    (run / "raw" / "to-file").symlink_to(outside / "data.raw")
    (run / "inner").symlink_to("raw/img_0001.tif")
    manifest = build_manifest(run, cache_dir_name=CACHE).digests()
    summary = delete_run_data(run, cache_dir_name=CACHE, manifest=manifest, retain_cache=False)
    assert summary.files_deleted == len(FILES)
    assert not run.exists()
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
    delete_run_data(run, cache_dir_name=CACHE, manifest=manifest, retain_cache=False)
    assert not run.exists()
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
        (run / "raw" / "late.tif").write_bytes(b"arrived late")
        return result

    monkeypatch.setattr(cleanup, "_prove_local", prove_then_write)
    with pytest.raises(CleanupIncomplete, match="not empty") as caught:
        delete_run_data(run, cache_dir_name=CACHE, manifest=digests, retain_cache=False)
    assert (run / "raw" / "late.tif").read_bytes() == b"arrived late"
    assert caught.value.summary.files_deleted == len(FILES)


def test_unparsable_creation_json_refuses_before_deleting(
    run: Path, digests: dict[str, str]
) -> None:
    (run / CACHE / "creation.json").write_text("{broken")
    with pytest.raises(CleanupRefused, match=r"creation\.json"):
        delete_run_data(run, cache_dir_name=CACHE, manifest=digests, retain_cache=True)
    assert (run / "raw" / "img_0001.tif").exists()
