"""Local deletion of a verified run: the one step that destroys irreplaceable data.

Instrument data cannot be re-acquired, so this module's rule is "any doubt, no
delete". The caller has already proven the NAS copy against the manifest
(remote final verify, immediately before calling us); this module proves the
*local* side: it re-hashes the run and refuses, deleting nothing, unless the
local tree is exactly the manifest — no file the manifest does not know (it
would never have been copied), no digest changed, no FIFO or
device nobody accounted for.

Deletion itself never follows a symlink: every directory is opened with
O_NOFOLLOW relative to its already-opened parent (so a directory swapped for a
symlink after the check fails instead of redirecting us), symlinks are
unlinked as links (their targets survive), and every file is re-checked to be
the regular file of the recorded size right before it is unlinked. Only then
are the now-empty directories removed, deepest first. `<cacheDir>/` is kept
when `retain_cache` (its creation.json then records `cleaned`), otherwise the
whole run directory goes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path

from nassync.api.mover_io import CleanupSummary
from nassync.mover.creation import load_creation, set_sync_status
from nassync.mover.manifest import Manifest, build_manifest, check_cache_dir_name, compare

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_EXAMPLES = 5


class CleanupError(Exception):
    """Base of cleanup failures; `reason` is meant for a lab admin."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CleanupRefused(CleanupError):
    """Nothing was deleted: the local tree does not match the manifest (or is unsafe)."""


class CleanupIncomplete(CleanupError):
    """Some data was deleted, then something unexpected stopped us; `summary` says how much."""

    def __init__(self, reason: str, *, summary: CleanupSummary) -> None:
        super().__init__(reason)
        self.summary = summary


def _examples(paths: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(repr(p) for p in paths[:_EXAMPLES])
    more = f" and {len(paths) - _EXAMPLES} more" if len(paths) > _EXAMPLES else ""
    return shown + more


def _check_run_dir(run_dir: Path) -> None:
    try:
        info = run_dir.lstat()
    except FileNotFoundError as exc:
        raise CleanupRefused(f"run directory {run_dir} does not exist") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise CleanupRefused(f"run directory {run_dir} is not a real directory (symlink?)")


def _check_creation_writable(run_dir: Path, cache_dir_name: str) -> None:
    """Fail before deleting, not after, if `cleaned` could not be recorded."""
    try:
        load_creation(run_dir, cache_dir_name=cache_dir_name)
    except (ValueError, OSError) as exc:
        raise CleanupRefused(f"cannot record the cleanup in creation.json: {exc}") from exc


def _prove_local(run_dir: Path, *, cache_dir_name: str, manifest: Mapping[str, str]) -> Manifest:
    """Re-hash the run; raise CleanupRefused unless it is exactly the manifest."""
    if not manifest:
        raise CleanupRefused("the manifest is empty; refusing to delete against it")
    try:
        local = build_manifest(run_dir, cache_dir_name=cache_dir_name)
    except OSError as exc:
        raise CleanupRefused(f"could not re-hash the local run: {exc}") from exc
    result = compare(manifest, local.digests())
    if len(result.missing) == len(manifest):
        raise CleanupRefused("none of the manifest's files is here; refusing to delete against it")
    # Files of the manifest that are already gone are not a reason to refuse: the
    # caller has just verified the whole manifest on the NAS, and deleting fewer
    # files is never unsafe. This is what lets a cleanup that stopped part way
    # (pod killed) finish on a later attempt instead of re-pushing a shrunken run.
    problems = [
        (result.extra, "not in the manifest (never proven on the NAS)"),
        (result.differing, "changed since the manifest was written"),
        (local.special, "special files (FIFO/socket/device) not in the manifest"),
    ]
    for paths, what in problems:
        if paths:
            raise CleanupRefused(f"{len(paths)} file(s) {what}: {_examples(paths)}")
    return local


@contextlib.contextmanager
def _opened(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def _open_subdir(root_fd: int, reldir: str) -> int:
    """fd of run/reldir, opened one component at a time with O_NOFOLLOW."""
    fd = os.dup(root_fd)
    for part in reldir.split("/") if reldir else []:
        try:
            child = os.open(part, _DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def _split(relpath: str) -> tuple[str, str]:
    parent, _, name = relpath.rpartition("/")
    return parent, name


def _unlink_files(root_fd: int, local: Manifest, summary: CleanupSummary) -> None:
    by_dir: dict[str, list[str]] = defaultdict(list)
    for relpath in local:
        parent, name = _split(relpath)
        by_dir[parent].append(name)
    for parent, names in by_dir.items():
        with _opened(_open_subdir(root_fd, parent)) as dir_fd:
            for name in names:
                relpath = f"{parent}/{name}" if parent else name
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                expected = local[relpath].size
                if not stat.S_ISREG(info.st_mode) or info.st_size != expected:
                    raise CleanupIncomplete(
                        f"{relpath!r} changed while cleaning; stopped",
                        summary=summary,
                    )
                os.unlink(name, dir_fd=dir_fd)
                summary.files_deleted += 1
                summary.bytes_freed += expected


def _unlink_symlinks(root_fd: int, symlinks: tuple[str, ...]) -> None:
    for relpath in symlinks:
        parent, name = _split(relpath)
        with _opened(_open_subdir(root_fd, parent)) as dir_fd:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                os.unlink(name, dir_fd=dir_fd)  # removes the link, never its target


def _remove_dirs(root_fd: int, dirs: tuple[str, ...]) -> list[str]:
    """rmdir deepest first; returns the directories that were not empty."""
    left: list[str] = []
    for relpath in sorted(dirs, key=lambda d: d.count("/"), reverse=True):
        parent, name = _split(relpath)
        with _opened(_open_subdir(root_fd, parent)) as dir_fd:
            try:
                os.rmdir(name, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno not in {errno.ENOTEMPTY, errno.EEXIST}:
                    raise
                left.append(relpath)
    return left


def _remove_cache_and_run(run_dir: Path, cache_dir_name: str) -> None:
    cache = run_dir / cache_dir_name
    if cache.is_symlink():
        cache.unlink()
    elif cache.exists():
        # Our own metadata only; rmtree's fd-based walk does not follow symlinks.
        shutil.rmtree(cache)
    run_dir.rmdir()  # fails (ENOTEMPTY) if anything appeared: nothing unproven is removed


def delete_run_data(
    run_dir: Path, *, cache_dir_name: str, manifest: Mapping[str, str], retain_cache: bool
) -> CleanupSummary:
    """Delete the run's data after proving it is exactly `manifest`.

    Raises CleanupRefused (nothing deleted) or CleanupIncomplete (stopped part way).
    """
    check_cache_dir_name(cache_dir_name)
    _check_run_dir(run_dir)
    local = _prove_local(run_dir, cache_dir_name=cache_dir_name, manifest=manifest)
    if retain_cache:
        _check_creation_writable(run_dir, cache_dir_name)
    summary = CleanupSummary(filesDeleted=0, bytesFreed=0)
    try:
        with _opened(os.open(run_dir, _DIR_FLAGS)) as root_fd:
            _unlink_files(root_fd, local, summary)
            _unlink_symlinks(root_fd, local.symlinks)
            left = _remove_dirs(root_fd, local.dirs)
        if left:
            raise CleanupIncomplete(
                f"directories not empty after cleaning (new files?): {_examples(left)}",
                summary=summary,
            )
        if retain_cache:
            set_sync_status(run_dir, cache_dir_name=cache_dir_name, status="cleaned")
        else:
            _remove_cache_and_run(run_dir, cache_dir_name)
    except (OSError, ValueError) as exc:
        raise CleanupIncomplete(f"cleanup stopped: {exc}", summary=summary) from exc
    return summary
