"""`<run>/<cacheDir>/creation.json`: the run's own record, shared with the lab app.

The lab app (ExLabWizard) writes this file when it creates a run and keeps
appending to it (variables, validation overrides and their tombstones); nassync
only moves `sync_status` through pending → synced → cleaned (or
blocked_by_validation) so the app and the NAS copy show where a run stands.

Two writers share the file, so nassync does what the lab app does: every
update is read-modify-write under an exclusive `flock` on the sidecar
`creation.json.lock` (the data file itself is replaced on every write, so a
lock on it would be lost), written to a temporary file in the same directory
and renamed over the old one. On top of that:
- every field nassync does not own is kept, and so are the file's owner, group
  and mode: the lab app writes it 0600 as its own user, and a file it cannot
  read any more is a file it refuses. When nassync may not give the new file
  the old owner, it leaves the file alone (`CreationNotWritable`);
- a file that cannot be parsed is never overwritten (ValueError): that would
  destroy the app's record and its override history;
- a run without creation.json never gets one. A file holding only
  `sync_status` is one the lab app refuses to read (no `schema_version`); the
  SyncJob's status says where the run stands instead.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args

from nassync.mover import fsio
from nassync.mover.manifest import check_cache_dir_name

CREATION_NAME = "creation.json"
LOCK_SUFFIX = ".lock"

SyncStatus = Literal["pending", "synced", "cleaned", "failed", "blocked_by_validation"]
SYNC_STATUSES: frozenset[str] = frozenset(get_args(SyncStatus))


class CreationNotWritable(PermissionError):
    """creation.json exists but this mover may not rewrite it as the lab app's file."""


def _run_fd(run: Path | int) -> int:
    return os.dup(run) if isinstance(run, int) else os.open(run, fsio.DIR_FLAGS)


@contextmanager
def _cache_dir(run: Path | int, cache_dir_name: str) -> Iterator[int | None]:
    """The cache dir's descriptor (None when it does not exist); refuses one that is not a real directory."""
    check_cache_dir_name(cache_dir_name)
    with fsio.opened(_run_fd(run)) as run_fd:
        fd = fsio.open_real_dir(run_fd, cache_dir_name)
    if fd is None:
        yield None
        return
    with fsio.opened(fd):
        yield fd


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{CREATION_NAME} is not valid JSON ({exc}); refusing to touch it") from exc
    if not isinstance(document, dict):
        raise ValueError(f"{CREATION_NAME} does not hold a JSON object; refusing to touch it")
    return document


def _read(cache_fd: int) -> tuple[dict[str, Any], os.stat_result] | None:
    try:
        fd = fsio.open_file(cache_fd, CREATION_NAME)
    except FileNotFoundError:
        return None
    with fsio.opened(fd):
        info = os.fstat(fd)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    return _parse(b"".join(chunks)), info


def load_creation(run: Path | int, *, cache_dir_name: str) -> dict[str, Any]:
    """The parsed document; {} when there is none.

    ValueError when it cannot be parsed, PermissionError when this mover may
    not read it (the lab app writes it 0600 as its own user).
    """
    with _cache_dir(run, cache_dir_name) as cache_fd:
        found = _read(cache_fd) if cache_fd is not None else None
    return found[0] if found is not None else {}


@contextmanager
def _locked(cache_fd: int) -> Iterator[None]:
    name = CREATION_NAME + LOCK_SUFFIX
    try:
        fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=cache_fd)
    except PermissionError:
        # The lab app's lock file, not writable for us: flock needs only a
        # descriptor, and a read-only one locks the same file.
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=cache_fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def set_sync_status(
    run: Path | int,
    *,
    cache_dir_name: str,
    status: SyncStatus,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Set `sync_status` (and the top-level keys in `extra`) in an existing creation.json.

    Returns the written document, or None when the run has no creation.json
    (nothing is created). Raises ValueError for a file that does not parse,
    PermissionError when it cannot be read, CreationNotWritable when it
    cannot be rewritten with its owner, group and mode.
    """
    if status not in SYNC_STATUSES:
        raise ValueError(f"unknown sync_status {status!r}; expected one of {sorted(SYNC_STATUSES)}")
    if extra and "sync_status" in extra:
        raise ValueError("pass the status as `status`, not inside `extra`")
    with _cache_dir(run, cache_dir_name) as cache_fd:
        if cache_fd is None or _read(cache_fd) is None:
            return None
        with _locked(cache_fd):
            found = _read(cache_fd)  # again, under the lock: the lab app may have written meanwhile
            if found is None:
                return None
            document, info = found
            document["sync_status"] = status
            document.update(extra or {})
            text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
            try:
                fsio.write_atomic(cache_fd, CREATION_NAME, text.encode("utf-8"),
                                  mode=info.st_mode & 0o7777, owner=(info.st_uid, info.st_gid))
            except PermissionError as exc:
                if exc.errno not in (errno.EPERM, errno.EACCES):
                    raise
                raise CreationNotWritable(
                    exc.errno,
                    f"{CREATION_NAME} belongs to uid {info.st_uid}:{info.st_gid} (mode "
                    f"{info.st_mode & 0o7777:04o}); the mover (uid {os.geteuid()}:{os.getegid()}) "
                    "cannot rewrite it as that user, so it is left unchanged",
                ) from exc
    return document
