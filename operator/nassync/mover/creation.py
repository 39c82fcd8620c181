"""`<run>/<cacheDir>/creation.json`: the run's own record, shared with the lab app.

The lab app (ExLabWizard) writes this file when it creates a run and keeps
appending to it (variables, validation overrides and their tombstones); nassync
only moves `sync_status` through pending → synced → cleaned (or failed /
blocked_by_validation) so the app and the NAS copy show where a run stands.

Because two writers share the file, every update is read-modify-write under an
exclusive `fcntl` lock on a sidecar lock file (the data file itself is replaced
on every write, so a lock on it would be lost), written atomically (tmp + fsync
+ rename) and preserves every field it does not own. A file that exists but
cannot be parsed is never overwritten: that would destroy the app's record and
its override history, so it raises ValueError instead.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, get_args

from nassync.mover.manifest import atomic_write_bytes, check_cache_dir_name

CREATION_NAME = "creation.json"
LOCK_SUFFIX = ".lock"

SyncStatus = Literal["pending", "synced", "cleaned", "failed", "blocked_by_validation"]
SYNC_STATUSES: frozenset[str] = frozenset(get_args(SyncStatus))


def creation_path(run_dir: Path, *, cache_dir_name: str) -> Path:
    check_cache_dir_name(cache_dir_name)
    return run_dir / cache_dir_name / CREATION_NAME


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); refusing to touch it") from exc
    if not isinstance(document, dict):
        raise ValueError(f"{path} does not hold a JSON object; refusing to touch it")
    return document


def load_creation(run_dir: Path, *, cache_dir_name: str) -> dict[str, Any]:
    """The parsed document; {} when the file does not exist; ValueError when unreadable."""
    path = creation_path(run_dir, cache_dir_name=cache_dir_name)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    return _parse(path, raw)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock_path = path.with_name(path.name + LOCK_SUFFIX)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _current_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        return 0o644


def set_sync_status(
    run_dir: Path,
    *,
    cache_dir_name: str,
    status: SyncStatus,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Set `sync_status` (and the top-level keys in `extra`), keep everything else.

    Creates the cache dir and the file when missing. Returns the written document.
    """
    if status not in SYNC_STATUSES:
        raise ValueError(f"unknown sync_status {status!r}; expected one of {sorted(SYNC_STATUSES)}")
    if extra and "sync_status" in extra:
        raise ValueError("pass the status as `status`, not inside `extra`")
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    path = creation_path(run_dir, cache_dir_name=cache_dir_name)
    path.parent.mkdir(exist_ok=True)
    with _locked(path):
        document = load_creation(run_dir, cache_dir_name=cache_dir_name)
        document["sync_status"] = status
        document.update(extra or {})
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        atomic_write_bytes(path, text.encode("utf-8"), mode=_current_mode(path))
    return document
