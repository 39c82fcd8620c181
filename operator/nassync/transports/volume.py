"""Volume transport: a NAS mounted into the cluster as a PersistentVolumeClaim.

Many labs mount the NAS with an NFS or SMB CSI driver (or a plain PV); the
mover pod then mounts that claim at `/var/run/nassync/destination` and copies
into it with a local rsync — no network credentials at all. The copy is
`rsync -a --fsync` with the same partial-dir, `--checksum`-after-mismatch and
bandwidth handling as the ssh transport, so an interrupted file never sits
under its final name and the bytes are on the NAS's disk, not only in this
node's page cache, when the push reports success.

Verify runs in a fresh pod, and reads every file back through the mount after
asking the kernel to drop the pages it may still cache for it
(`posix_fadvise(DONTNEED)`), so what is hashed is what the NAS serves. Both
verify methods are the same here: the mover hashes the files itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from nassync.api.mover_io import Bandwidth, ErrorInfo, ErrorKind, VolumeDestination, remote_run_path
from nassync.transports.base import (
    DEFAULT_PUSH,
    Command,
    HashMethod,
    PushOptions,
    TransferProgress,
    TransportError,
    path_length_problem,
)
from nassync.transports.classify import RSYNC_EXIT_KINDS, SHARED_RULES, classify
from nassync.transports.rsync import copy_command, parse_progress2, partial_dir_problem

_BUFFER = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class VolumeTransport:
    destination: VolumeDestination
    rsync_binary: str = "rsync"

    @property
    def name(self) -> str:
        return "volume"

    @property
    def supports_remote_sha256(self) -> bool:
        return True  # the mover reads the mounted copy back and hashes it itself

    @property
    def follows_timetable(self) -> bool:
        return False  # rsync has one --bwlimit per run

    def _run_dir(self, run_path: str) -> str:
        return remote_run_path(self.destination.path, run_path)

    def remote_dir(self, *, run_path: str) -> str:
        return self._run_dir(run_path)

    def name_problem(self, relpath: str) -> str | None:
        return partial_dir_problem(relpath) or path_length_problem(relpath)

    def config_problem(self) -> str | None:
        if not os.path.isdir(self.destination.mount):
            return f"the destination volume is not mounted at {self.destination.mount}"
        return None

    def local_reads(self) -> list[str]:
        return [self.destination.mount]

    def push_command(self, *, source: str, run_path: str, bandwidth: Bandwidth, now: datetime,
                     options: PushOptions = DEFAULT_PUSH) -> Command:
        return copy_command(self.rsync_binary, source=source, target=self._run_dir(run_path) + "/",
                            bandwidth=bandwidth, now=now, options=options, fsync=True)

    def parse_push_line(self, line: str) -> TransferProgress | None:
        return parse_progress2(line)

    def push_error_messages(self, lines: Sequence[str]) -> list[str]:
        return [line for line in lines if line.strip() and parse_progress2(line) is None]

    def classify(self, *, returncode: int, messages: Sequence[str]) -> ErrorInfo:
        return classify(tool="rsync", returncode=returncode, messages=messages, exit_kinds=RSYNC_EXIT_KINDS,
                        rules=SHARED_RULES)

    def _open_run(self, run_path: str) -> int | None:
        try:
            return os.open(self._run_dir(run_path), _DIR_FLAGS)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TransportError(ErrorInfo(kind=ErrorKind.CONFIG if exc.errno != 5 else ErrorKind.NETWORK,
                                           message=f"cannot open {self._run_dir(run_path)} on the volume: "
                                                   f"{exc.strerror}")) from exc

    def _files(self, run_path: str) -> Iterator[tuple[int, str, str]]:
        """(directory fd, name, relpath) of every regular file, never following a link; each fd is
        valid while its entry is being looked at."""
        root = self._open_run(run_path)
        if root is None:
            return
        stack = [(root, "")]
        while stack:
            dir_fd, prefix = stack.pop()
            try:
                with os.scandir(dir_fd) as entries:
                    for entry in entries:
                        info = entry.stat(follow_symlinks=False)
                        if stat.S_ISDIR(info.st_mode):
                            stack.append((os.open(entry.name, _DIR_FLAGS, dir_fd=dir_fd), f"{prefix}{entry.name}/"))
                        elif stat.S_ISREG(info.st_mode):
                            yield dir_fd, entry.name, prefix + entry.name
            finally:
                os.close(dir_fd)

    def remote_hashes(self, *, run_path: str, method: HashMethod) -> dict[str, str]:
        del method  # both read the bytes back through the mount
        try:
            return {relpath: _hash_uncached(dir_fd, name) for dir_fd, name, relpath in self._files(run_path)}
        except OSError as exc:
            raise TransportError(ErrorInfo(kind=ErrorKind.NETWORK,
                                           message=f"reading the copy on the volume failed: {exc}")) from exc

    def read_remote_file(self, *, run_path: str, relpath: str) -> bytes | None:
        path = os.path.join(self._run_dir(run_path), relpath)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def find_remote_files(self, *, run_path: str, name: str) -> list[str]:
        return [relpath for _, base, relpath in self._files(run_path) if base == name]


def _hash_uncached(dir_fd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        # Pages this node still caches from the push would hide what the NAS holds.
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        digest = hashlib.sha256()
        buffer = bytearray(_BUFFER)
        view = memoryview(buffer)
        while n := os.readv(fd, [buffer]):
            digest.update(view[:n])
        return digest.hexdigest()
    finally:
        os.close(fd)
