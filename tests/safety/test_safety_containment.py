"""Issue #9, items 2, 8 and 9: a run never reaches outside itself, and never into or over another run.

Each attack runs the real `nassync-mover` against real NAS servers. "Outside"
is a directory next to the runs holding bytes that must never change and
never reach the NAS (the `outside` fixture); the NAS is searched for them
byte by byte, whatever name they might have landed under.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from safetylib import (
    CACHE,
    Mover,
    Nas,
    Plan,
    RunFactory,
    contains_bytes,
    data_files,
    files_under,
    op_mkdir,
    op_rename,
    op_symlink,
    op_write,
    params_for,
    push_and_verify,
    remote_dir,
    snapshot,
)

from nassync_dev.labapp import creation_document, write_creation

pytestmark = pytest.mark.nas

SECRET = b"OUTSIDE-SECRET-BYTES"
STEPS = ("push", "verify", "cleanup")


# Refusals that happen before the transport is used (a bad runPath, a cache dir that is not a directory, a
# symlink in the runPath) are attacked against one NAS (rclone sftp); the rest against every transport.


def _nas_leaks(nas: Nas) -> list[str]:
    return contains_bytes(nas.root, SECRET)


# --- item 2: nested runPaths -----------------------------------------------------------------------------


def test_a_parent_run_is_never_pushed_over_a_child_already_on_the_nas(
        nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    parent = make_run({"p.bin": b"parent"})
    child = make_run({"c.bin": b"child v1"}, run_path=parent.run_path + "/Sub_1")
    push_and_verify(mover, nas, child, owner="lab/child/uid-c")
    child_copy = files_under(remote_dir(nas, child))
    child.write("c.bin", b"child v2, not what the child's NAS copy proves")
    # Created while the webhook was down: nothing stopped the SyncJob, the mover must.
    pushed = mover(params_for(nas, parent, "push", owner="lab/parent/uid-p"))
    assert pushed.returncode == 1 and pushed.kind == "Config", pushed.explain()
    assert "another run inside" in pushed.message and "Sub_1" in pushed.message
    assert files_under(remote_dir(nas, child)) == child_copy
    assert "p.bin" not in data_files(remote_dir(nas, parent))


def test_a_child_run_is_never_pushed_into_a_parent_already_on_the_nas(
        nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    parent = make_run({"p.bin": b"parent", "Sub_1/c.bin": b"child as the parent pushed it"})
    push_and_verify(mover, nas, parent, owner="lab/parent/uid-p")
    parent_copy = files_under(remote_dir(nas, parent))
    child = type(parent)(source_root=parent.source_root, run_path=parent.run_path + "/Sub_1")
    child.write("c.bin", b"child, changed")
    pushed = mover(params_for(nas, child, "push", owner="lab/child/uid-c"))
    assert pushed.returncode == 1 and pushed.kind == "Config", pushed.explain()
    assert "contains" in pushed.message and parent.run_path in pushed.message
    assert files_under(remote_dir(nas, parent)) == parent_copy
    assert not (child.dir / CACHE).exists(), "the refused push wrote into the child run"


def test_the_gate_blocks_a_run_holding_another_run_even_with_an_override(
        nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    parent = make_run({"p.bin": b"parent"})
    child = make_run({"c.bin": b"child"}, run_path=parent.run_path + "/Sub_1")
    write_creation(child.dir, creation_document(child.run_path))
    gated = mover(params_for(nas, parent, "gate", overrides=[{"rule": "nested_run", "reason": "try"}]))
    assert gated.result["gate"]["blocked"], gated.explain()
    nested = [f for f in gated.result["gate"]["findings"] if f["rule"] == "nested_run"]
    assert nested and nested[0]["tier"] == "hard" and not nested[0]["overridden"]


def test_a_run_that_became_a_parent_after_its_gate_is_not_pushed_and_not_cleaned(
        nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    """The child run appears while the parent waits in the queue (gate passed, push not started)."""
    parent = make_run({"p.bin": b"parent"})
    gated = mover(params_for(nas, parent, "gate"))
    assert not gated.result["gate"]["blocked"], gated.explain()
    child = make_run({"c.bin": b"child"}, run_path=parent.run_path + "/Sub_1")
    write_creation(child.dir, creation_document(child.run_path))
    pushed = mover(params_for(nas, parent, "push", owner="lab/parent/uid-p"))
    assert pushed.returncode == 1 and pushed.kind == "Config", pushed.explain()
    assert "Sub_1" in pushed.message
    assert not contains_bytes(nas.root / "nas" / parent.run_path, b"child")


def test_cleanup_of_a_parent_never_deletes_a_run_that_appeared_inside_it(
        nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    parent = make_run({"p.bin": b"parent", "Sub_1/c.bin": b"child data"})
    digest = push_and_verify(mover, nas, parent, owner="lab/parent/uid-p")
    # The lab app makes Sub_1 a run of its own (its cache dir with our two files as a push would write them).
    child = type(parent)(source_root=parent.source_root, run_path=parent.run_path + "/Sub_1")
    (child.dir / CACHE).mkdir()
    (child.dir / CACHE / "nassync-owner").write_text("lab/child/uid-c\n")
    refused = mover(params_for(nas, parent, "cleanup", owner="lab/parent/uid-p", expectedManifestSha256=digest))
    assert refused.returncode == 1, refused.explain()
    assert "nothing deleted" in refused.message
    assert (child.dir / "c.bin").read_bytes() == b"child data"
    assert (parent.dir / "p.bin").read_bytes() == b"parent"


@pytest.mark.parametrize("step", ["gate", *STEPS])
def test_a_run_path_naming_another_runs_cache_dir_is_refused(
        sftp_nas: Nas, make_run: RunFactory, mover: Mover, step: str) -> None:
    other = make_run({"a.bin": b"a"})
    write_creation(other.dir, creation_document(other.run_path))
    before = snapshot(other.dir)
    cache_run = type(other)(source_root=other.source_root, run_path=f"{other.run_path}/{CACHE}")
    result = mover(params_for(sftp_nas, cache_run, step, expectedManifestSha256="0" * 64))
    if step == "gate":
        assert result.result["gate"]["blocked"], result.explain()
        assert {f["rule"] for f in result.result["gate"]["findings"]} == {"run_outside_source"}
    else:
        assert result.returncode == 1 and result.kind == "Config", result.explain()
        assert "cache directory" in result.message
    assert snapshot(other.dir) == before
    assert not (remote_dir(sftp_nas, cache_run)).exists()


# --- item 8: a symlinked cache dir is never written through ----------------------------------------------


def _victim(make_run: RunFactory) -> tuple[object, dict[str, tuple[str, int, bytes | str]]]:
    victim = make_run({"v.bin": b"victim"})
    write_creation(victim.dir, creation_document(victim.run_path))
    (victim.dir / CACHE / "checksums.sha256").write_bytes(b"victim manifest\n")
    (victim.dir / CACHE / "nassync-owner").write_bytes(b"lab/victim/uid-v\n")
    return victim, snapshot(victim.dir)


@pytest.mark.parametrize("shape", ["symlink", "file"])
@pytest.mark.parametrize("step", ["gate", *STEPS])
def test_a_cache_dir_that_is_not_a_real_directory_is_refused_by_every_step(
        sftp_nas: Nas, make_run: RunFactory, mover: Mover, step: str, shape: str) -> None:
    victim, before = _victim(make_run)
    run = make_run({"a.bin": b"a"})
    if shape == "symlink":
        (run.dir / CACHE).symlink_to(victim.dir / CACHE)  # type: ignore[attr-defined]
    else:
        (run.dir / CACHE).write_bytes(b"not a directory")
    result = mover(params_for(sftp_nas, run, step, expectedManifestSha256="0" * 64))
    if step == "gate":
        assert result.result["gate"]["blocked"], result.explain()
        assert "cache_dir_not_directory" in {f["rule"] for f in result.result["gate"]["findings"]}
    else:
        assert result.returncode == 1 and result.kind == "Config", result.explain()
    assert snapshot(victim.dir) == before  # type: ignore[attr-defined]
    assert (run.dir / "a.bin").read_bytes() == b"a"
    assert not files_under(remote_dir(sftp_nas, run)) if remote_dir(sftp_nas, run).exists() else True


@pytest.mark.parametrize("step", ["push", "verify"])
def test_a_cache_dir_swapped_for_a_symlink_inside_a_step_is_not_written_through(
        nas: Nas, make_run: RunFactory, mover: Mover, tmp_path: Path, step: str) -> None:
    victim, before = _victim(make_run)
    run = make_run({"a.bin": b"a"})
    write_creation(run.dir, creation_document(run.run_path))
    digest = push_and_verify(mover, nas, run) if step == "verify" else None
    swap = [op_rename(run.dir / CACHE, run.dir / "moved-cache"),
            op_symlink(victim.dir / CACHE, run.dir / CACHE)]  # type: ignore[attr-defined]
    # push: after the run was opened and hashed, right before our files go into the cache dir;
    # verify: the NAS was just proven, creation.json is about to say `synced`.
    when = "after-manifest" if step == "push" else "after-remote-check"
    result = mover(params_for(nas, run, step, expectedManifestSha256=digest),
                   plan=Plan(when=when, ops=swap, fired=tmp_path / "fired"))
    assert result.fired
    assert snapshot(victim.dir) == before  # type: ignore[attr-defined]
    assert not contains_bytes(remote_dir(nas, run), b"victim"), result.explain()


@pytest.mark.parametrize("when", ["publish-start", "publish-copy-start"])
def test_verify_never_publishes_another_runs_creation_json(
        nas: Nas, make_run: RunFactory, mover: Mover, tmp_path: Path, when: str) -> None:
    """The cache dir becomes a symlink after creation.json says `synced`, before it is copied to the NAS."""
    victim, before = _victim(make_run)
    run = make_run({"a.bin": b"a"})
    write_creation(run.dir, creation_document(run.run_path))
    digest = push_and_verify(mover, nas, run)
    swap = [op_rename(run.dir / CACHE, run.dir / "moved-cache"),
            op_symlink(victim.dir / CACHE, run.dir / CACHE)]  # type: ignore[attr-defined]
    verified = mover(params_for(nas, run, "verify", expectedManifestSha256=digest),
                     plan=Plan(when=when, ops=swap, fired=tmp_path / "fired"))
    assert verified.fired
    assert snapshot(victim.dir) == before  # type: ignore[attr-defined]
    published = (remote_dir(nas, run) / CACHE / "creation.json").read_bytes()
    assert b"victim" not in published and run.run_path.encode() in published, published


# --- item 9: every step re-checks containment and never follows a link into or out of the run -------------


@pytest.mark.parametrize("run_path", ["../outside", "/etc", "PROJ/../outside", "PROJ//x", "PROJ/./x", "x/",
                                      "PROJ/x\u202e", "PROJ/\u200bx", "PROJ/x\x85", "PROJ/x\u2028"])
@pytest.mark.parametrize("step", ["gate", *STEPS])
def test_the_mover_validates_the_run_path_itself(
        sftp_nas: Nas, make_run: RunFactory, mover: Mover, outside: Path, step: str, run_path: str) -> None:
    anchor = make_run({"a.bin": b"a"}, run_path="PROJ/x")
    bad = type(anchor)(source_root=anchor.source_root, run_path=run_path)
    if not run_path.startswith("/") and all(part not in ("", ".", "..") for part in run_path.split("/")):
        bad.write("b.bin", b"a run whose name hides characters")  # it exists: refused for its name alone
    before = snapshot(outside)
    result = mover(params_for(sftp_nas, bad, step, expectedManifestSha256="0" * 64))
    if step == "gate":
        assert result.result["gate"]["blocked"], result.explain()
        assert {f["rule"] for f in result.result["gate"]["findings"]} == {"run_outside_source"}
    else:
        assert result.returncode == 1 and result.kind == "Config", result.explain()
        assert "nothing was read or written" in result.message
    assert snapshot(outside) == before
    assert not _nas_leaks(sftp_nas)
    assert (anchor.dir / "a.bin").read_bytes() == b"a"


@pytest.mark.parametrize("where", ["run", "ancestor"])
@pytest.mark.parametrize("step", STEPS)
def test_a_symlink_swapped_into_the_run_path_after_the_gate_is_refused(
        sftp_nas: Nas, make_run: RunFactory, mover: Mover, outside: Path, step: str, where: str) -> None:
    run = make_run({"a.bin": b"a", "data/a.bin": b"run data"})
    digest = push_and_verify(mover, sftp_nas, run) if step != "push" else None
    victim = run.dir if where == "run" else run.dir.parent
    victim.rename(victim.with_name(victim.name + ".real"))
    victim.symlink_to(outside if where == "run" else outside.parent)
    before = snapshot(outside)
    result = mover(params_for(sftp_nas, run, step, expectedManifestSha256=digest))
    assert result.returncode == 1 and result.kind == "Config", result.explain()
    assert "symlink" in result.message
    assert snapshot(outside) == before
    assert not _nas_leaks(sftp_nas)


@pytest.mark.parametrize("step", STEPS)
def test_a_run_dir_swapped_for_a_symlink_inside_a_step_redirects_nothing(
        nas: Nas, make_run: RunFactory, mover: Mover, outside: Path, tmp_path: Path, step: str) -> None:
    run = make_run({"a.bin": b"a", "data/a.bin": b"run data"})
    digest = push_and_verify(mover, nas, run) if step != "push" else None
    moved = run.dir.with_name(run.dir.name + ".moved")
    swap = [op_rename(run.dir, moved), op_symlink(outside, run.dir)]
    # push: the copy tool is about to start; verify/cleanup: the run was opened (before hashing, deleting).
    when = "copy-start" if step == "push" else "after-open"
    before = snapshot(outside)
    result = mover(params_for(nas, run, step, expectedManifestSha256=digest),
                   plan=Plan(when=when, ops=swap, fired=tmp_path / "fired"))
    assert result.fired
    assert snapshot(outside) == before
    assert not _nas_leaks(nas), result.explain()
    if step == "push":
        assert result.returncode == 0, result.explain()
        assert data_files(remote_dir(nas, run)) == {"a.bin": b"a", "data/a.bin": b"run data"}
    if step == "cleanup":
        # What was deleted was the opened run (now under another name), all of it on the NAS.
        assert result.returncode == 0, result.explain()
        assert data_files(moved) == {}


def test_a_directory_swapped_for_a_symlink_when_the_copy_starts_copies_nothing_from_outside(
        nas: Nas, make_run: RunFactory, mover: Mover, outside: Path, tmp_path: Path) -> None:
    run = make_run({"a.bin": b"a", "data/a.bin": b"run data"})
    swap = [op_rename(run.dir / "data", run.dir / "data.moved"), op_symlink(outside / "data", run.dir / "data")]
    before = snapshot(outside)
    pushed = mover(params_for(nas, run, "push"), plan=Plan(when="copy-start", ops=swap, fired=tmp_path / "fired"))
    assert pushed.fired
    assert pushed.returncode == 1 and pushed.kind == "LocalVanished", pushed.explain()
    assert snapshot(outside) == before
    assert not _nas_leaks(nas)


def test_cleanup_never_deletes_through_a_directory_swapped_for_a_symlink(
        nas: Nas, make_run: RunFactory, mover: Mover, outside: Path, tmp_path: Path) -> None:
    run = make_run({"a.bin": b"a", "data/a.bin": b"run data", "data/b.bin": b"more"})
    digest = push_and_verify(mover, nas, run)
    swap = [op_rename(run.dir / "data", run.dir / "data.moved"), op_symlink(outside / "data", run.dir / "data"),
            op_write(outside / "data" / "b.bin", b"OUTSIDE-SECRET-BYTES b")]
    before_swap = snapshot(outside)
    result = mover(params_for(nas, run, "cleanup", expectedManifestSha256=digest),
                   plan=Plan(when="before-delete", ops=swap, fired=tmp_path / "fired"))
    assert result.fired
    after = snapshot(outside)
    assert after.pop("data/b.bin")[2] == b"OUTSIDE-SECRET-BYTES b"
    before_swap.pop("data/b.bin", None)
    assert after == before_swap, result.explain()
    _ = (os, op_mkdir)
