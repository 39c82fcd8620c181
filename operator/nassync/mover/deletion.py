"""Local deletion of a verified run: the one step that destroys irreplaceable data.

Instrument data cannot be re-acquired, so this module's rule is "any doubt, no
delete". The caller has already proven the NAS copy against the manifest
(remote final verify, immediately before calling us); this module proves the
*local* side: it re-hashes the run and refuses, deleting nothing, unless the
local tree is exactly the manifest — no file the manifest does not know (it
would never have been copied), no digest changed, no FIFO or device nobody
accounted for, nothing written within the quiet period (a file updated in
place, e.g. HDF5, may be written again any moment).

Then, for each file (through directory descriptors, never a path that a
symlink could redirect): it is compared with the file that was hashed —
device, inode, size, mtime_ns and ctime_ns from the hashing descriptor's
fstat — then renamed to a private name in its own directory, looked at once
more there (the rename moves ctime, nothing else may move), and only then
unlinked. Whatever is renamed in under the file's name after the check is a
different file and stays; a file that is no longer the hashed one is left (or
put back) and the cleanup stops (`CleanupIncomplete`), deleting nothing more.

Only what the manifest proves is deleted: regular files, and afterwards the
directories that held them once empty. Symlinks, special files and directories
that were empty before are not on the NAS, so they stay where they are. In the
cache dir only the files nassync wrote are removed (and only without
`retain_cache`); creation.json belongs to the lab app and records `cleaned`.
A run directory that is empty but cannot be removed (its parent is not ours to
write) is not a failure.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nassync.api.mover_io import CleanupSummary
from nassync.mover import fsio
from nassync.mover.creation import CreationNotWritable, load_creation, set_sync_status
from nassync.mover.manifest import (
    OUR_CACHE_FILES,
    FileChanged,
    Manifest,
    build_manifest,
    check_cache_dir_name,
    compare,
)

_EXAMPLES = 5

# Called with (point, relpath) at each point of a file's deletion, for the
# safety tests that change the run between any two steps. Not used in production.
Hook = Callable[[str, str], None]


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


@dataclass(frozen=True)
class _Run:
    fd: int
    parent_fd: int | None  # to remove the emptied run directory itself
    name: str


def _open(run_dir: Path | int, parent: tuple[int, str] | None) -> _Run:
    if isinstance(run_dir, int):
        return _Run(fd=os.dup(run_dir), parent_fd=os.dup(parent[0]) if parent else None,
                    name=parent[1] if parent else "")
    try:
        fd = os.open(run_dir, fsio.DIR_FLAGS)
    except FileNotFoundError as exc:
        raise CleanupRefused(f"run directory {run_dir} does not exist") from exc
    except OSError as exc:
        if exc.errno in fsio.LINK_ERRNOS:
            raise CleanupRefused(f"run directory {run_dir} is not a real directory (symlink?)") from exc
        raise
    return _Run(fd=fd, parent_fd=os.open(run_dir.parent, fsio.DIR_FLAGS & ~os.O_NOFOLLOW), name=run_dir.name)


def _prove_local(run_fd: int, *, cache_dir_name: str, manifest: Mapping[str, str],
                 quiet_period_seconds: float, now: datetime) -> Manifest:
    """Re-hash the run; raise CleanupRefused unless it is exactly the manifest and quiet."""
    if not manifest:
        raise CleanupRefused("the manifest is empty; refusing to delete against it")
    try:
        local = build_manifest(run_fd, cache_dir_name=cache_dir_name)
    except FileChanged as exc:
        raise CleanupRefused(f"a file changed while it was re-hashed: {exc}") from exc
    except OSError as exc:
        raise CleanupRefused(f"could not re-hash the local run: {exc}") from exc
    result = compare(manifest, local.digests())
    if len(result.missing) == len(manifest):
        raise CleanupRefused("none of the manifest's files is here; refusing to delete against it")
    # Files of the manifest that are already gone are not a reason to refuse: the
    # caller has just verified the whole manifest on the NAS, and deleting fewer
    # files is never unsafe. This is what lets a cleanup that stopped part way
    # finish on a later attempt.
    nested = local.nested_runs(cache_dir_name)
    if nested:
        # Another run's data, even if this run's manifest happens to prove it: it has its own
        # SyncJob (and perhaps a hold), and only that SyncJob decides when it is deleted.
        raise CleanupRefused(f"the run holds another run (a directory with its own {cache_dir_name}/): "
                             f"{_examples(nested)}")
    problems = [
        (result.extra, "not in the manifest (never proven on the NAS)"),
        (result.differing, "changed since the manifest was written"),
        (local.special, "special files (FIFO/socket/device) not in the manifest"),
    ]
    for paths, what in problems:
        if paths:
            raise CleanupRefused(f"{len(paths)} file(s) {what}: {_examples(paths)}")
    horizon = (now.timestamp() - quiet_period_seconds) * 1e9
    recent = [p for p, e in local.items() if max(e.mtime_ns, e.ctime_ns) > horizon]
    if recent:
        raise CleanupRefused(
            f"{len(recent)} file(s) changed within the quiet period ({quiet_period_seconds:.0f}s), "
            f"e.g. {_examples(recent)}: they may still be written to (updated in place)")
    return local


def _delete_one(dir_fd: int, name: str, relpath: str, local: Manifest, summary: CleanupSummary,
                hook: Hook | None) -> None:
    """Delete file `name` in `dir_fd` if it is still the hashed file; CleanupIncomplete otherwise."""
    entry = local[relpath]
    if hook:
        hook("before-check", relpath)
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError as exc:
        raise CleanupIncomplete(f"{relpath!r} disappeared while cleaning; stopped", summary=summary) from exc
    if not entry.is_same_file(info):
        raise CleanupIncomplete(f"{relpath!r} changed while cleaning (it is not the file that was hashed); "
                                "it is kept and nothing more is deleted", summary=summary)
    if hook:
        hook("checked", relpath)
    # Move it out of reach of its name before the last look: whatever is
    # renamed in under `name` from now on is another file and stays.
    private = f".nassync-deleting-{secrets.token_hex(8)}"
    os.rename(name, private, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    if hook:
        hook("renamed", relpath)
    moved = os.stat(private, dir_fd=dir_fd, follow_symlinks=False)
    # The rename itself moves ctime; everything else must be what was checked.
    if (moved.st_mode, moved.st_dev, moved.st_ino, moved.st_size, moved.st_mtime_ns) != (
            info.st_mode, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns):
        _put_back(dir_fd, private, name)
        raise CleanupIncomplete(f"{relpath!r} was replaced while cleaning; it is kept and nothing more is deleted",
                                summary=summary)
    os.unlink(private, dir_fd=dir_fd)
    summary.files_deleted += 1
    summary.bytes_freed += entry.size


def _put_back(dir_fd: int, private: str, name: str) -> None:
    """Return what is not ours to delete to its name, or next to it if the name was taken meanwhile."""
    for target in (name, f"{name}.nassync-kept-{secrets.token_hex(4)}"):
        if _exists(dir_fd, target):
            continue
        try:
            # A hard link never replaces an existing name; a directory cannot be linked, only renamed.
            os.link(private, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            continue
        except (IsADirectoryError, PermissionError):
            os.rename(private, target, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return
        os.unlink(private, dir_fd=dir_fd)
        return


def _exists(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _unlink_files(run_fd: int, local: Manifest, summary: CleanupSummary, hook: Hook | None) -> None:
    by_dir: dict[str, list[str]] = {}
    for relpath in local:
        parent, name = fsio.split(relpath)
        by_dir.setdefault(parent, []).append(name)
    for parent, names in by_dir.items():
        with fsio.opened(fsio.open_dir(run_fd, parent)) as dir_fd:
            for name in names:
                _delete_one(dir_fd, name, f"{parent}/{name}" if parent else name, local, summary, hook)


def _proven_dirs(local: Manifest) -> set[str]:
    """Directories that held a manifest file (so they exist on the NAS), with their ancestors."""
    dirs: set[str] = set()
    for relpath in local:
        parent = fsio.split(relpath)[0]
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = fsio.split(parent)[0]
    return dirs


def _kept_dirs(local: Manifest) -> set[str]:
    """Directories that must stay: they hold what is not on the NAS (symlinks, special files, empty dirs)."""
    keep: set[str] = set()
    proven = _proven_dirs(local)
    for relpath in (*local.symlinks, *local.special, *(d for d in local.dirs if d not in proven)):
        parent = relpath if relpath in local.dirs else fsio.split(relpath)[0]
        while parent:
            keep.add(parent)
            parent = fsio.split(parent)[0]
    return keep


def _remove_dirs(run_fd: int, local: Manifest) -> list[str]:
    """rmdir the emptied proven directories, deepest first; returns those that hold new content."""
    kept = _kept_dirs(local)
    unexpected: list[str] = []
    for relpath in sorted(_proven_dirs(local) - kept, key=lambda d: d.count("/"), reverse=True):
        parent, name = fsio.split(relpath)
        with fsio.opened(fsio.open_dir(run_fd, parent)) as dir_fd:
            try:
                os.rmdir(name, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno not in {errno.ENOTEMPTY, errno.EEXIST}:
                    raise
                unexpected.append(relpath)
    return unexpected


def _remove_our_cache_files(run_fd: int, cache_dir_name: str) -> bool:
    """Delete the files nassync wrote in the cache dir; rmdir it when nothing else is left. True if gone."""
    cache_fd = fsio.open_real_dir(run_fd, cache_dir_name)
    if cache_fd is None:
        return True
    with fsio.opened(cache_fd):
        for name in OUR_CACHE_FILES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=cache_fd)
    try:
        os.rmdir(cache_dir_name, dir_fd=run_fd)
    except OSError as exc:
        if exc.errno in {errno.ENOTEMPTY, errno.EEXIST}:
            return False  # the lab app's creation.json (or anything else not ours) stays
        raise
    return True


def _remove_run_dir(run: _Run) -> None:
    """rmdir the emptied run directory; not being allowed to is not a failure (the data is gone)."""
    if run.parent_fd is None or not run.name:
        return
    try:
        os.rmdir(run.name, dir_fd=run.parent_fd)
    except OSError as exc:
        if exc.errno not in {errno.ENOTEMPTY, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EBUSY, errno.EROFS}:
            raise


def _check_creation(run_fd: int, cache_dir_name: str) -> None:
    """Fail before deleting, not after, if creation.json could not be read or record `cleaned`."""
    try:
        load_creation(run_fd, cache_dir_name=cache_dir_name)
    except (ValueError, OSError) as exc:
        raise CleanupRefused(f"cannot read creation.json to record the cleanup: {exc}") from exc


def _record_cleaned(run_fd: int, cache_dir_name: str) -> None:
    # Checked by the gate; the SyncJob's status records the cleanup either way.
    with contextlib.suppress(CreationNotWritable):
        set_sync_status(run_fd, cache_dir_name=cache_dir_name, status="cleaned")


def delete_run_data(
    run_dir: Path | int,
    *,
    cache_dir_name: str,
    manifest: Mapping[str, str],
    retain_cache: bool,
    quiet_period_seconds: float = 0,
    now: datetime | None = None,
    parent: tuple[int, str] | None = None,
    before_delete: Callable[[], None] | None = None,
    hook: Hook | None = None,
) -> CleanupSummary:
    """Delete the run's proven data after proving it is exactly `manifest`.

    `run_dir` is a path, or the run's open descriptor with `parent` (the
    parent directory's descriptor and the run's name in it, to remove the
    emptied run directory). `before_delete` runs once everything is proven,
    right before the first unlink. Raises CleanupRefused (nothing deleted) or
    CleanupIncomplete (stopped part way).
    """
    check_cache_dir_name(cache_dir_name)
    run = _open(run_dir, parent)
    try:
        local = _prove_local(run.fd, cache_dir_name=cache_dir_name, manifest=manifest,
                             quiet_period_seconds=quiet_period_seconds, now=now or datetime.now(UTC))
        _check_creation(run.fd, cache_dir_name)
        summary = CleanupSummary(filesDeleted=0, bytesFreed=0)
        try:
            if before_delete is not None:
                before_delete()
            _unlink_files(run.fd, local, summary, hook)
            unexpected = _remove_dirs(run.fd, local)
            if unexpected:
                raise CleanupIncomplete(
                    f"directories not empty after cleaning (new files?): {_examples(unexpected)}",
                    summary=summary)
            _record_cleaned(run.fd, cache_dir_name)
            if not retain_cache and _remove_our_cache_files(run.fd, cache_dir_name) and not (
                    local.symlinks or local.special or set(local.dirs) - _proven_dirs(local)):
                _remove_run_dir(run)
        except (OSError, ValueError) as exc:
            raise CleanupIncomplete(f"cleanup stopped: {exc}", summary=summary) from exc
        return summary
    finally:
        os.close(run.fd)
        if run.parent_fd is not None:
            os.close(run.parent_fd)
