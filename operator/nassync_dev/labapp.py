"""Runs as the lab app (ExLabWizard) and an instrument leave them, for tests and the demo.

The lab app writes `<run>/<cacheDir>/creation.json` under an exclusive flock on
`creation.json.lock`, to a `mkstemp` temporary file (so mode 0600) in the same
directory, fsynced and renamed over the old file, as its own user. An
instrument writes the run's files as its user, often with private modes. Tests
that use these helpers meet what nassync meets in a lab, not what is
convenient for its author (facts: docs/ownership.md).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA_VERSION = "1.9"


def creation_document(
    run_path: str,
    *,
    run_kind: str = "experimental",
    overrides: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A creation.json as the lab app writes it for a run (required fields of its schema 1.9)."""
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "created_at": "2026-11-28T10:15:00Z",
        "created_by": "exlab-wizard 0.9.0",
        "level": "run",
        "run_kind": run_kind,
        "lims_project": {"id": "PROJ-0001", "name": "Project", "source": "live", "cache_freshness_at_use": None},
        "template": {"name": "default-run", "version": "1.0.0"},
        "variables": {"operator": "jdoe", "sample": "S1"},
        "paths": {"local": f"/data/{run_path}", "nas": "//nas/runs"},
    }
    if overrides is not None:
        document["validation_overrides"] = overrides
    document.update(extra)
    return document


@contextmanager
def _lab_app_lock(cache: Path, uid: int | None, gid: int | None) -> Iterator[None]:
    lock = cache / "creation.json.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        if uid is not None:
            os.fchown(fd, uid, gid if gid is not None else -1)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def write_creation(
    run_dir: Path,
    document: Mapping[str, Any],
    *,
    cache_dir_name: str = ".exlab-wizard",
    uid: int | None = None,
    gid: int | None = None,
) -> Path:
    """Write creation.json the lab app's way, owned by `uid`:`gid` (the lab app's user)."""
    cache = run_dir / cache_dir_name
    if not cache.exists():
        cache.mkdir(mode=0o755)
        if uid is not None:
            os.chown(cache, uid, gid if gid is not None else -1)
    path = cache / "creation.json"
    with _lab_app_lock(cache, uid, gid):
        fd, tmp = tempfile.mkstemp(dir=cache, prefix="creation.json.", suffix=".tmp")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(json.dumps(document, separators=(",", ":")).encode())
                handle.flush()
                if uid is not None:
                    os.fchown(handle.fileno(), uid, gid if gid is not None else -1)
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def read_creation(run_dir: Path, *, cache_dir_name: str = ".exlab-wizard") -> dict[str, Any]:
    """What the lab app would read: refuses a document without a schema_version of its major."""
    document: dict[str, Any] = json.loads((run_dir / cache_dir_name / "creation.json").read_bytes())
    version = document.get("schema_version")
    if not isinstance(version, str) or version.split(".", 1)[0] != SCHEMA_VERSION.split(".", 1)[0]:
        raise ValueError(f"the lab app refuses creation.json with schema_version {version!r}")
    return document


def own_tree(root: Path, uid: int, gid: int, *, file_mode: int = 0o640, dir_mode: int = 0o750) -> None:
    """Make every file and directory under `root` (inclusive) the instrument user's, with private modes."""
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, uid, gid)
        os.chmod(dirpath, dir_mode)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if not os.path.islink(path):
                os.chown(path, uid, gid)
                os.chmod(path, file_mode)
        for name in dirnames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                os.lchown(path, uid, gid)
