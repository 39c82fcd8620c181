"""Issue #9, items 1, 3, 4 and 7, through the real `nassync-mover cleanup` (and push) against real NAS servers.

Data loss is judged by content, not by what the mover says: every file gone
from the run must be on the NAS with the SHA-256 the NAS manifest gives it,
and every content written into the run after the proof must still be in the
run, under some name.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from safetylib import (
    CACHE,
    Mover,
    Nas,
    Plan,
    RunFactory,
    VolumeNas,
    assert_deleted_only_what_the_nas_holds,
    data_files,
    files_under,
    op_rename,
    op_rewrite,
    op_touch,
    op_write,
    params_for,
    push_and_verify,
    readable_destination,
    remote_dir,
)

from nassync_dev.labapp import creation_document, own_tree, write_creation

pytestmark = pytest.mark.nas

BIG = os.urandom(1 << 20)
FILES = {
    "raw/a_first.bin": b"first " * 100,
    "raw/m_big.bin": BIG,
    "raw/z_last.bin": b"last " * 100,
    "notes.txt": b"notes\n",
}


def _contents(root: Path) -> set[bytes]:
    return set(files_under(root).values())


# --- item 1: the file unlinked must be the file that was hashed -------------------------------------------


@pytest.mark.parametrize("point", ["before-check", "checked", "renamed"])
@pytest.mark.parametrize("mutation", ["rewrite-same-size", "rename-over"])
def test_a_file_replaced_between_hash_and_unlink_is_kept_and_cleanup_stops(
        sftp_nas: Nas, make_run: RunFactory, mover: Mover, tmp_path: Path, point: str, mutation: str) -> None:
    run = make_run(FILES)
    digest = push_and_verify(mover, sftp_nas, run)
    target = run.dir / "raw/m_big.bin"
    new = bytes(b ^ 0xFF for b in BIG[:4096]) + BIG[4096:]  # same size, other bytes
    if point == "renamed":
        # The file now sits under its private name: the attack goes to whatever is there.
        kind = "glob-rewrite" if mutation == "rewrite-same-size" else "glob-rename-over"
        plan_ops = [[kind, str(target.parent), ".nassync-deleting-*", new.hex()]]
    elif mutation == "rewrite-same-size":
        plan_ops = [op_rewrite(target, new)]
    else:
        plan_ops = [op_write(run.dir / "raw/.incoming", new), op_rename(run.dir / "raw/.incoming", target)]
    before = data_files(run.dir)
    fired = tmp_path / "fired"
    cleaned = mover(params_for(sftp_nas, run, "cleanup", expectedManifestSha256=digest),
                    plan=Plan(when=f"hook:{point}", relpath="raw/m_big.bin", ops=plan_ops, fired=fired))
    assert cleaned.fired, "the mutation never happened: this test would prove nothing"
    assert cleaned.returncode == 1, cleaned.explain()
    # Files are deleted in manifest order: notes.txt, raw/a_first.bin, then the attacked raw/m_big.bin.
    assert "stopped part way after deleting 2 file(s)" in cleaned.message, cleaned.explain()
    assert "nothing deleted" not in cleaned.message
    assert cleaned.result["cleanup"]["filesDeleted"] == 2
    # The new bytes, never on the NAS, are still in the run (under its name or next to it).
    assert new in _contents(run.dir), "bytes the NAS never saw were deleted"
    # Nothing after the stop was deleted; what was deleted is on the NAS with the manifest's digest.
    gone = assert_deleted_only_what_the_nas_holds(before, run, sftp_nas)
    assert gone == ["notes.txt", "raw/a_first.bin"]
    assert (run.dir / "raw/z_last.bin").read_bytes() == FILES["raw/z_last.bin"]


def test_cleanup_refuses_a_run_changed_within_the_quiet_period(
        nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run(FILES)
    digest = push_and_verify(mover, nas, run)
    # Updated in place (as HDF5 writers do) with the very same bytes: the digest still matches.
    (run.dir / "raw/m_big.bin").write_bytes(BIG)
    refused = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest, quietPeriodSeconds=3600))
    assert refused.returncode == 1, refused.explain()
    assert refused.kind == "HashMismatch"
    assert "within the quiet period" in refused.message and "nothing deleted" in refused.message
    assert data_files(run.dir) == FILES
    # The same run, no quiet period asked for: the digest matches, so cleanup proceeds.
    cleaned = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest, quietPeriodSeconds=0))
    assert cleaned.returncode == 0, cleaned.explain()
    assert data_files(run.dir) == {}


# --- item 3: retainCache: false removes only what nassync wrote --------------------------------------------


def test_without_retain_cache_the_lab_apps_cache_files_survive(nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run({"a.bin": b"a", "sub/b.bin": b"b"})
    write_creation(run.dir, creation_document(run.run_path))
    digest = push_and_verify(mover, nas, run)
    # The lab app writes into the cache dir after the push: never in the manifest, never on the NAS.
    (run.dir / CACHE / "thumbnails").mkdir()
    (run.dir / CACHE / "thumbnails" / "t1.png").write_bytes(b"png written after the push")
    (run.dir / CACHE / "notes.md").write_bytes(b"notes written after the push")
    cleaned = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest, retainCache=False))
    assert cleaned.returncode == 0, cleaned.explain()
    left = files_under(run.dir / CACHE)
    assert left["thumbnails/t1.png"] == b"png written after the push"
    assert left["notes.md"] == b"notes written after the push"
    assert "creation.json" in left
    assert not {"checksums.sha256", "nassync-owner", "nassync-cleanup-started"} & set(left)
    assert data_files(run.dir) == {}


def test_without_retain_cache_a_run_of_only_proven_files_goes_entirely(
        nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run({"a.bin": b"a", "sub/b.bin": b"b"})
    sibling = make_run({"keep.bin": b"sibling"})
    digest = push_and_verify(mover, nas, run)
    cleaned = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest, retainCache=False))
    assert cleaned.returncode == 0, cleaned.explain()
    assert not run.dir.exists()
    assert data_files(sibling.dir) == {"keep.bin": b"sibling"}


# --- item 4: empty directories, symlinks and special files are not on the NAS, so they stay ----------------


def test_cleanup_leaves_empty_dirs_and_symlinks_in_place(nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run({"raw/a.bin": b"a" * 1000, "raw/b.bin": b"b", "top.bin": b"top"})
    (run.dir / "empty").mkdir()
    (run.dir / "raw" / "also-empty").mkdir()
    (run.dir / "links").mkdir()
    (run.dir / "links" / "to-a").symlink_to("../raw/a.bin")
    (run.dir / "dangling").symlink_to("nowhere")
    gated = mover(params_for(nas, run, "gate"))
    rules = {(f["rule"], f["tier"]) for f in gated.result["gate"]["findings"]}
    assert {("empty_directory_not_copied", "soft"), ("symlink_not_copied", "soft")} <= rules
    assert not gated.result["gate"]["blocked"], gated.explain()
    digest = push_and_verify(mover, nas, run)
    assert set(data_files(remote_dir(nas, run))) == {"raw/a.bin", "raw/b.bin", "top.bin"}

    cleaned = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest, retainCache=False))
    assert cleaned.returncode == 0, cleaned.explain()
    assert cleaned.result["cleanup"]["filesDeleted"] == 3
    assert data_files(run.dir) == {}
    assert (run.dir / "empty").is_dir() and (run.dir / "raw" / "also-empty").is_dir()
    assert os.readlink(run.dir / "links" / "to-a") == "../raw/a.bin"
    assert os.readlink(run.dir / "dangling") == "nowhere"


def test_a_run_holding_a_fifo_is_not_cleaned(nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    """A FIFO is never copied and cleanup cannot tell one from the push from a new one: doubt, no delete."""
    run = make_run({"raw/a.bin": b"a" * 1000, "top.bin": b"top"})
    os.mkfifo(run.dir / "raw" / "pipe")
    gated = mover(params_for(nas, run, "gate"))
    special = [f for f in gated.result["gate"]["findings"] if f["rule"] == "special_file"]
    assert [f["tier"] for f in special] == ["soft"]
    assert "will not be cleaned locally" in special[0]["message"], special
    digest = push_and_verify(mover, nas, run)
    refused = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest))
    assert refused.returncode == 1 and refused.kind == "HashMismatch", refused.explain()
    assert "special files" in refused.message and "nothing deleted" in refused.message
    assert data_files(run.dir) == {"raw/a.bin": b"a" * 1000, "top.bin": b"top"}
    assert (run.dir / "raw" / "pipe").is_fifo()



def test_a_symlinked_local_manifest_refuses_cleanup_with_words(nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    """checksums.sha256 swapped for a symlink to an identical copy after verify: nassync reads only the file it
    wrote (O_NOFOLLOW). The refusal says what is wrong and that nothing was deleted (it used to be Unknown)."""
    run = make_run({"raw/a.bin": b"a" * 1000, "top.bin": b"top"})
    digest = push_and_verify(mover, nas, run)
    manifest = run.dir / CACHE / "checksums.sha256"
    twin = run.dir.parent / "elsewhere.sha256"
    twin.write_bytes(manifest.read_bytes())
    manifest.unlink()
    manifest.symlink_to(twin)
    refused = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest))
    assert refused.returncode == 1 and refused.kind == "HashMismatch", refused.explain()
    assert "is a symlink" in refused.message and "nothing deleted" in refused.message, refused.message
    assert data_files(run.dir) == {"raw/a.bin": b"a" * 1000, "top.bin": b"top"}
    assert manifest.is_symlink()

# --- item 7: a cleanup that stops part way ----------------------------------------------------------------


def _stopped_part_way(mover: Mover, nas: Nas, run_files: dict[str, bytes], make_run: RunFactory,
                      tmp_path: Path) -> tuple[object, str, dict[str, bytes]]:
    run = make_run(run_files)
    digest = push_and_verify(mover, nas, run)
    before = data_files(run.dir)
    # Someone touches a file (content unchanged) right before its turn: not the file that was hashed any more.
    fired = tmp_path / "fired"
    stopped = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest),
                    plan=Plan(when="hook:before-check", relpath="raw/m_big.bin",
                              ops=[op_touch(run.dir / "raw/m_big.bin")], fired=fired))
    assert stopped.fired
    assert stopped.returncode == 1, stopped.explain()
    assert stopped.result["cleanup"]["filesDeleted"] == 2
    assert "stopped part way after deleting 2 file(s), all of them proven on the NAS" in stopped.message
    assert "nothing deleted" not in stopped.message and "kept" in stopped.message
    return run, digest, before


def test_after_a_partial_cleanup_push_never_runs_and_the_nas_manifest_stays(
        nas: Nas, make_run: RunFactory, mover: Mover, tmp_path: Path) -> None:
    run, digest, before = _stopped_part_way(mover, nas, FILES, make_run, tmp_path)
    nas_manifest = (remote_dir(nas, run) / CACHE / "checksums.sha256").read_bytes()
    nas_before = files_under(remote_dir(nas, run))
    for extra in ({}, {"expectedManifestSha256": digest}, {"compareContent": True}):
        pushed = mover(params_for(nas, run, "push", **extra))
        assert pushed.returncode == 1 and pushed.kind == "LocalVanished", pushed.explain()
        assert "partly cleaned" in pushed.message
    assert (remote_dir(nas, run) / CACHE / "checksums.sha256").read_bytes() == nas_manifest
    assert files_under(remote_dir(nas, run)) == nas_before
    assert hashlib.sha256(nas_manifest).hexdigest() == digest
    assert_deleted_only_what_the_nas_holds(before, run, nas)


def test_a_retried_cleanup_finishes_from_what_the_nas_proves(
        nas: Nas, make_run: RunFactory, mover: Mover, tmp_path: Path) -> None:
    run, digest, before = _stopped_part_way(mover, nas, FILES, make_run, tmp_path)
    # The run's own manifest is gone too (e.g. removed by hand): the NAS's, checked against the digest, serves.
    (run.dir / CACHE / "checksums.sha256").unlink()
    retried = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest))
    assert retried.returncode == 0, retried.explain()
    assert retried.result["cleanup"]["filesDeleted"] == len(FILES) - 2
    assert data_files(run.dir) == {}
    assert_deleted_only_what_the_nas_holds(before, run, nas)


def test_a_retried_cleanup_refuses_a_nas_manifest_that_is_not_the_recorded_one(
        nas: Nas, make_run: RunFactory, mover: Mover, tmp_path: Path) -> None:
    run, digest, _ = _stopped_part_way(mover, nas, FILES, make_run, tmp_path)
    (run.dir / CACHE / "checksums.sha256").unlink()
    forged = remote_dir(nas, run) / CACHE / "checksums.sha256"
    forged.write_bytes(forged.read_bytes().replace(b"raw/z_last.bin", b"raw/z_lasT.bin"))
    left = data_files(run.dir)
    refused = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest))
    assert refused.returncode == 1 and refused.kind == "HashMismatch", refused.explain()
    assert "nothing deleted" in refused.message
    assert data_files(run.dir) == left


def test_push_never_replaces_a_nas_manifest_it_did_not_record(nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run({"a.bin": b"a", "b.bin": b"b"})
    digest = push_and_verify(mover, nas, run)
    theirs = remote_dir(nas, run) / CACHE / "checksums.sha256"
    other = b"0" * 64 + b"  a.bin\n"
    theirs.write_bytes(other)
    run.write("c.bin", b"c")
    pushed = mover(params_for(nas, run, "push", expectedManifestSha256=digest))
    assert pushed.returncode == 1 and pushed.kind == "Config", pushed.explain()
    assert "never replaces a NAS manifest" in pushed.message
    assert theirs.read_bytes() == other
    assert "c.bin" not in data_files(remote_dir(nas, run))


def test_an_emptied_run_is_never_pushed(nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run({"a.bin": b"a"})
    digest = push_and_verify(mover, nas, run)
    nas_before = files_under(remote_dir(nas, run))
    (run.dir / "a.bin").unlink()
    (run.dir / "leftover-dir").mkdir()
    gated = mover(params_for(nas, run, "gate"))
    assert gated.result["gate"]["blocked"] and "run_empty" in {f["rule"] for f in gated.result["gate"]["findings"]}
    for extra in ({}, {"expectedManifestSha256": digest}):
        pushed = mover(params_for(nas, run, "push", **extra))
        assert pushed.returncode == 1 and pushed.kind == "LocalVanished", pushed.explain()
        assert "run_empty" in pushed.message
    assert files_under(remote_dir(nas, run)) == nas_before


def test_an_empty_run_dir_that_cannot_be_removed_is_not_a_failure(
        nas: Nas, make_run: RunFactory, mover: Mover, open_tmp: Path) -> None:
    uid = gid = 1000
    if isinstance(nas, VolumeNas):
        # The NAS export lets the mover's uid write (as an NFS export for that uid would).
        target = nas.root / "nas"
        target.mkdir(exist_ok=True)
        os.chmod(target, 0o1777)
    run = make_run({"a.bin": b"a", "sub/b.bin": b"b"})
    own_tree(run.dir, uid, gid, file_mode=0o644, dir_mode=0o755)  # the parent stays root's, 0755
    destination = readable_destination(nas, open_tmp, uid, gid)
    digest = push_and_verify(mover, nas, run, destination=destination, user=uid)
    cleaned = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest, retainCache=False,
                               destination=destination), user=uid, group=gid)
    assert cleaned.returncode == 0, cleaned.explain()
    assert cleaned.result["cleanup"]["filesDeleted"] == 2
    assert run.dir.is_dir() and list(run.dir.iterdir()) == []
