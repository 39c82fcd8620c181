"""The run a mover step works on: opened once, from the source root, without following links.

Every step starts with `open_run(params)`: it checks the runPath itself (the
operator and the CRD already did, but the pod trusts nothing it did not check),
opens the source root, then each component of the runPath with O_NOFOLLOW,
and keeps the run directory's descriptor for the whole step. Containment is
then a property of how the run was reached, not a check of a path that can
change a moment later: a symlink anywhere in the runPath is refused, and every
later access (walks, hashes, the cache dir, the copy tool's source) goes
through the descriptor. The cache dir must be a real directory
(mover/fsio.open_real_dir): a symlinked `<run>/<cacheDir>` would make us
write another run's creation.json, manifest and owner marker.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from nassync.api.mover_io import ErrorKind, ManifestSummary, MoverParams
from nassync.api.syncjob import check_run_path
from nassync.mover import fsio
from nassync.mover.manifest import check_cache_dir_name, parse, read_manifest_bytes, serialise
from nassync.mover.outcome import fail
from nassync.mover.overrides import latest_revocation


class RunMissing(FileNotFoundError):
    """The run directory (or a directory on its path) does not exist."""


class RunNotContained(OSError):
    """The runPath is not a plain path below the source root, or goes through a symlink."""


class RunNotAccessible(PermissionError):
    """The run directory exists but this mover may not open it; `owner` is its lstat from the parent."""

    def __init__(self, message: str, *, owner: os.stat_result) -> None:
        super().__init__(errno.EACCES, message)
        self.owner = owner


@dataclass(frozen=True)
class OpenRun:
    """The run directory of one step, held open (`fd`), plus how it was named."""

    params: MoverParams
    fd: int
    parent_fd: int  # the directory holding the run, to remove the emptied run directory
    name: str  # the run's name in it

    @property
    def path(self) -> Path:
        """The run's path as named, for messages only (never opened again by name)."""
        return run_dir_of(self.params)

    @property
    def source_path(self) -> str:
        """A path for a copy tool given `fd` (pass_fds): the opened directory itself."""
        return fsio.proc_path(self.fd)

    def cache_fd(self, *, create: bool = False) -> int | None:
        """A new descriptor of the cache dir (None when absent and not created); NotARealDirectory for a link."""
        return fsio.open_real_dir(self.fd, self.params.cache_dir_name, create=create)


def run_dir_of(params: MoverParams) -> Path:
    """`<sourceRoot>/<runPath>`, as named (for messages and tests; steps use `open_run`)."""
    return Path(params.source_root) / params.run_path


def check_params(params: MoverParams) -> None:
    """The runPath and cacheDirName rules, checked again in the pod (ValueError)."""
    problems = check_run_path(params.run_path)
    if problems:
        raise ValueError("; ".join(problems))
    check_cache_dir_name(params.cache_dir_name)
    if params.cache_dir_name in params.run_path.split("/"):
        raise ValueError(
            f"spec.runPath names a cache directory ({params.cache_dir_name}); "
            "it belongs to the run above it and is never a run of its own"
        )


@contextmanager
def open_run(params: MoverParams) -> Iterator[OpenRun]:
    """Open the run; RunMissing, RunNotContained or ValueError (bad runPath) otherwise."""
    check_params(params)
    source_fd = os.open(params.source_root, fsio.DIR_FLAGS & ~os.O_NOFOLLOW)
    parent, name = fsio.split(params.run_path)
    with fsio.opened(source_fd):
        try:
            parent_fd = fsio.open_dir(source_fd, parent)
            try:
                fd = _open_run_dir(parent_fd, name, params)
            except BaseException:
                os.close(parent_fd)
                raise
        except FileNotFoundError as exc:
            raise RunMissing(errno.ENOENT, f"run directory {params.run_path} does not exist") from exc
        except OSError as exc:
            if exc.errno in fsio.LINK_ERRNOS:
                raise RunNotContained(
                    exc.errno,
                    f"run path {params.run_path} goes through a symlink or a file; nassync only "
                    "reaches a run through real directories below the source root",
                ) from exc
            raise
    with fsio.opened(parent_fd), fsio.opened(fd):
        yield OpenRun(params=params, fd=fd, parent_fd=parent_fd, name=name)


def _open_run_dir(parent_fd: int, name: str, params: MoverParams) -> int:
    try:
        return os.open(name, fsio.DIR_FLAGS, dir_fd=parent_fd)
    except PermissionError as exc:
        info = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        raise RunNotAccessible(f"the mover may not open run directory {params.run_path}", owner=info) from exc


def run_owner(params: MoverParams) -> os.stat_result:
    """lstat of the run directory from its parent: who owns it, even when we may not open it."""
    check_params(params)
    parent, name = fsio.split(params.run_path)
    with fsio.opened(os.open(params.source_root, fsio.DIR_FLAGS & ~os.O_NOFOLLOW)) as source_fd:
        try:
            with fsio.opened(fsio.open_dir(source_fd, parent)) as parent_fd:
                return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        except FileNotFoundError as exc:
            raise RunMissing(errno.ENOENT, f"run directory {params.run_path} does not exist") from exc
        except OSError as exc:
            if exc.errno in fsio.LINK_ERRNOS:
                raise RunNotContained(exc.errno, f"run path {params.run_path} goes through a symlink") from exc
            raise


@contextmanager
def existing_run(params: MoverParams) -> Iterator[OpenRun]:
    """`open_run` for the steps after the gate: a missing run is LocalVanished, an unreachable one Config."""
    try:
        with open_run(params) as run:
            yield run
    except RunMissing as exc:
        raise fail(ErrorKind.LOCAL_VANISHED, str(exc.strerror)) from exc
    except RunNotAccessible as exc:
        owner = exc.owner
        raise fail(ErrorKind.PERMISSION, f"{exc.strerror} (owner {owner.st_uid}:{owner.st_gid}, mode "
                                         f"{stat.filemode(owner.st_mode)}) as uid:gid {os.geteuid()}:{os.getegid()}"
                                         "; nothing was read or written") from exc
    except (RunNotContained, ValueError) as exc:
        raise fail(ErrorKind.CONFIG, f"{exc}; nothing was read or written") from exc


def revocation_stamp(run: OpenRun) -> str | None:
    """The newest override tombstone in creation.json, as RFC 3339, for the cleanup interlock."""
    when = latest_revocation(run.fd, run.params.cache_dir_name)
    return when.isoformat().replace("+00:00", "Z") if when is not None else None


def load_manifest(run: OpenRun) -> tuple[dict[str, str], ManifestSummary]:
    """The recorded manifest, refused when it is missing or not the one pushed."""
    try:
        raw = read_manifest_bytes(run.fd, cache_dir_name=run.params.cache_dir_name)
        manifest = parse(raw)
    except FileNotFoundError as exc:
        raise fail(
            ErrorKind.HASH_MISMATCH,
            "the run has no checksums.sha256 in its cache dir; it must be pushed again",
        ) from exc
    except fsio.NotARealDirectory as exc:
        raise fail(ErrorKind.CONFIG, f"the run's cache dir {exc.strerror}") from exc
    except PermissionError as exc:
        raise fail(ErrorKind.PERMISSION, f"checksums.sha256 cannot be read: {exc.strerror}") from exc
    except OSError as exc:
        # ELOOP: a symlink where nassync wrote a file. Whatever it points at is not the manifest
        # recorded at push, and following it could prove another run's files.
        what = "is a symlink, not the file nassync wrote" if exc.errno == errno.ELOOP else f"cannot be read: {exc}"
        raise fail(ErrorKind.HASH_MISMATCH, f"checksums.sha256 in the run's cache dir {what}; the run must be "
                                            "pushed again") from exc
    except ValueError as exc:
        raise fail(ErrorKind.HASH_MISMATCH, f"checksums.sha256 is unreadable: {exc}") from exc
    return manifest, check_manifest_digest(manifest, run.params)


def check_manifest_digest(manifest: dict[str, str], params: MoverParams) -> ManifestSummary:
    """The manifest's summary; HashMismatch when it is not the one recorded at push."""
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
    return summary

