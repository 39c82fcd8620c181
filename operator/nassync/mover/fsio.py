"""File access below a directory descriptor that never follows a symlink.

A run lives on a disk that other people write to while nassync works on it:
the instrument, the lab app, a scientist tidying up. A path string is
re-resolved at every use, so a directory swapped for a symlink between two
steps (or two lines of one step) would send nassync somewhere else: copy an
outside directory to the NAS, hash one file and delete another. Everything
the mover does to a run therefore goes through descriptors: the run is opened
component by component from the source root with O_NOFOLLOW, and every file
below it is opened relative to that descriptor, again one component at a
time. A symlink anywhere on the way is an error (ELOOP or ENOTDIR), never a
detour.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What the kernel answers when a component that must be a directory is a
# symlink (O_NOFOLLOW) or something else (O_DIRECTORY).
LINK_ERRNOS = frozenset({errno.ELOOP, errno.ENOTDIR})


class NotBeneath(OSError):
    """A relative path that is not plainly below its directory (absolute, `..`, empty parts)."""


def parts_of(relpath: str) -> list[str]:
    """The components of a plain relative path; NotBeneath for anything else."""
    parts = relpath.split("/") if relpath else []
    if relpath.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise NotBeneath(errno.EINVAL, f"not a plain relative path: {relpath!r}")
    return parts


@contextlib.contextmanager
def opened(fd: int) -> Iterator[int]:
    """Close `fd` when the block ends."""
    try:
        yield fd
    finally:
        os.close(fd)


def open_dir(dir_fd: int, relpath: str) -> int:
    """A new descriptor of directory `relpath` below `dir_fd` ("" is `dir_fd` itself)."""
    fd = os.dup(dir_fd)
    for part in parts_of(relpath):
        try:
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
        finally:
            os.close(fd)
        fd = child
    return fd


def split(relpath: str) -> tuple[str, str]:
    """(parent relpath, last component)."""
    parent, _, name = relpath.rpartition("/")
    return parent, name


def open_file(dir_fd: int, relpath: str, flags: int = FILE_FLAGS, mode: int = 0o600) -> int:
    """A descriptor of file `relpath` below `dir_fd`, no link followed on the way or at the end."""
    parent, name = split(relpath)
    parts_of(relpath)
    with opened(open_dir(dir_fd, parent)) as pfd:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=pfd)


def lstat_at(dir_fd: int, relpath: str) -> os.stat_result:
    """lstat of `relpath` below `dir_fd` (the last component itself, never its target)."""
    parent, name = split(relpath)
    parts_of(relpath)
    with opened(open_dir(dir_fd, parent)) as pfd:
        return os.stat(name, dir_fd=pfd, follow_symlinks=False)


def read_file(dir_fd: int, relpath: str) -> bytes:
    """The bytes of regular file `relpath` below `dir_fd`."""
    with opened(open_file(dir_fd, relpath)) as fd:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, f"not a regular file: {relpath!r}")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)


class NotARealDirectory(OSError):
    """A name that must be a directory of its own is a symlink, a file or something else."""


def open_real_dir(dir_fd: int, name: str, *, create: bool = False, mode: int = 0o755) -> int | None:
    """A descriptor of directory `name` in `dir_fd`, or None when it does not exist (and not `create`).

    Anything but a real directory under that name (a symlink into another
    run, a file) raises NotARealDirectory: nassync never writes through it.
    """
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        if not create:
            return None
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, mode, dir_fd=dir_fd)
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a directory"
        raise NotARealDirectory(errno.ENOTDIR, f"{name!r} is {kind}; nassync only uses a real directory there")
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in LINK_ERRNOS:  # swapped between the stat and the open
            raise NotARealDirectory(exc.errno, f"{name!r} changed into a symlink; refusing it") from exc
        raise


def fsync_dir(dir_fd: int) -> None:
    # A rename is durable only once the directory entry itself reaches the disk.
    os.fsync(dir_fd)


def write_atomic(
    dir_fd: int,
    name: str,
    data: bytes,
    *,
    mode: int = 0o644,
    owner: tuple[int, int] | None = None,
) -> None:
    """Replace `name` in directory `dir_fd` with `data`: readers see the old or the new file, never half.

    The temporary file is created with O_EXCL|O_NOFOLLOW next to the target
    and renamed over it. `owner` (uid, gid) is applied to the new file before
    the rename; raises PermissionError when this process may not give it that
    owner (then nothing is replaced).
    """
    if "/" in name or name in ("", ".", ".."):
        raise NotBeneath(errno.EINVAL, f"not a file name: {name!r}")
    tmp = f".{name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    try:
        with opened(fd):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if owner is not None and (os.fstat(fd).st_uid, os.fstat(fd).st_gid) != owner:
                os.fchown(fd, *owner)
            os.fchmod(fd, mode)
            os.fsync(fd)
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise
    fsync_dir(dir_fd)


def proc_path(fd: int) -> str:
    """A path naming the directory `fd` was opened on, for a child process given `fd` (pass_fds).

    /proc/self/fd/N is resolved by the kernel to the opened directory itself,
    not by name: a symlink swapped into the run's path after it was opened
    does not redirect a copy tool handed this path.
    """
    return f"/proc/self/fd/{fd}"
