"""The run a mover step works on: where it is, whether it is still there, its manifest.

Shared by every step, so that each resolves the run directory, checks it and
reads the recorded manifest in exactly the same way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from nassync.api.mover_io import ErrorKind, ManifestSummary, MoverParams
from nassync.mover.manifest import read_manifest, serialise
from nassync.mover.outcome import fail
from nassync.mover.overrides import latest_revocation


def run_dir_of(params: MoverParams) -> Path:
    """`<sourceRoot>/<runPath>`, as named (not resolved)."""
    return Path(params.source_root) / params.run_path


def strictly_inside(path: Path, root: Path) -> bool:
    """True when `path`, symlinks resolved, lies below `root` (and is not `root` itself)."""
    real, root_real = os.path.realpath(path), os.path.realpath(root)
    return real.startswith(root_real.rstrip(os.sep) + os.sep)


def existing_run_dir(params: MoverParams) -> Path:
    """The run directory; LocalVanished when it is gone."""
    run_dir = run_dir_of(params)
    if not run_dir.is_dir():
        raise fail(ErrorKind.LOCAL_VANISHED, f"run directory {params.run_path} does not exist")
    return run_dir


def revocation_stamp(run_dir: Path, params: MoverParams) -> str | None:
    """The newest override tombstone in creation.json, as RFC 3339, for the cleanup interlock."""
    when = latest_revocation(run_dir, params.cache_dir_name)
    return when.isoformat().replace("+00:00", "Z") if when is not None else None


def load_manifest(run_dir: Path, params: MoverParams) -> tuple[dict[str, str], ManifestSummary]:
    """The recorded manifest, refused when it is missing or not the one pushed."""
    try:
        manifest = read_manifest(run_dir, cache_dir_name=params.cache_dir_name)
    except FileNotFoundError as exc:
        raise fail(
            ErrorKind.HASH_MISMATCH,
            "the run has no checksums.sha256 in its cache dir; it must be pushed again",
        ) from exc
    except ValueError as exc:
        raise fail(ErrorKind.HASH_MISMATCH, f"checksums.sha256 is unreadable: {exc}") from exc
    digest = hashlib.sha256(serialise(manifest)).hexdigest()
    summary = ManifestSummary(files=len(manifest), bytes=0, sha256=digest)
    expected = params.expected_manifest_sha256
    if expected and expected.lower() != digest:
        raise fail(
            ErrorKind.HASH_MISMATCH,
            "checksums.sha256 was changed after the push (its SHA-256 is not the one "
            "recorded); nothing can be proven against it, so the run must be pushed again",
            manifest=summary,
        )
    return manifest, summary
