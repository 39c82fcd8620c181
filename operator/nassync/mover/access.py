"""Can this mover do to the run what the later steps will need? Checked once, by the gate.

Runs are written by an instrument user (a share's uid, a lab PC account),
often with private modes, and the lab app writes creation.json 0600 as its own
user. A mover running as another uid used to fail half way through a push, be
retried for forty minutes and leave a lab admin with "unexpected
PermissionError". The gate therefore checks, as the uid and groups it runs as
(every later mover of the target runs as the same), everything the steps will
need: read every file, list and enter every directory, create or write the
cache dir, read creation.json and rewrite it keeping its owner, and — when
cleanup is enabled — delete every file (write on its directory, and the sticky
bit's rule). Each problem names the path, its owner and mode, and the mover's
identity, so that the message says what to change.

Permissions are judged from the mode bits as the kernel applies them (owner
class, then group, then other; root may do anything). POSIX ACLs are not
evaluated: a run relying on ACLs alone is reported as not accessible.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from nassync.mover import fsio
from nassync.mover.creation import CREATION_NAME, LOCK_SUFFIX

_R, _W, _X = 4, 2, 1


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    groups: frozenset[int]

    @classmethod
    def current(cls) -> Identity:
        return cls(uid=os.geteuid(), gid=os.getegid(), groups=frozenset({os.getegid(), *os.getgroups()}))

    def __str__(self) -> str:
        return f"{self.uid}:{self.gid}"

    def may(self, info: os.stat_result, bits: int) -> bool:
        """Mode-bit permission: the owner class if we own it, else the group class if ours, else other."""
        if self.uid == 0:
            return True
        if info.st_uid == self.uid:
            shift = 6
        elif info.st_gid in self.groups:
            shift = 3
        else:
            shift = 0
        return info.st_mode & (bits << shift) == bits << shift


@dataclass(frozen=True)
class AccessProblem:
    """One thing the mover may not do: `need` (read, list and enter, delete files in, ...) on `path`."""

    path: str
    need: str
    uid: int
    gid: int
    mode: int

    def describe(self, who: Identity) -> str:
        return (f"cannot {self.need} {self.path!r} (owner {self.uid}:{self.gid}, mode "
                f"{stat.filemode(self.mode)}) as uid:gid {who}")


@dataclass
class _Check:
    who: Identity
    cache_dir_name: str
    cleanup: bool
    problems: list[AccessProblem] = field(default_factory=list)

    def need(self, path: str, info: os.stat_result, bits: int, what: str) -> bool:
        if self.who.may(info, bits):
            return True
        self.problems.append(AccessProblem(path=path, need=what, uid=info.st_uid, gid=info.st_gid,
                                           mode=info.st_mode))
        return False

    def run(self, run_fd: int) -> None:
        stack: list[tuple[int, str, os.stat_result]] = [(os.dup(run_fd), "", os.fstat(run_fd))]
        while stack:
            dir_fd, prefix, dir_info = stack.pop()
            with fsio.opened(dir_fd):
                here = prefix.rstrip("/") or "."
                if not self.need(here, dir_info, _R | _X, "list and enter"):
                    continue
                names = set()
                try:
                    entries = list(os.scandir(dir_fd))
                except OSError:
                    continue  # not a matter of modes (an I/O error, a FUSE quirk): the gate reports it
                for entry in entries:
                    names.add(entry.name)
                    relpath = prefix + entry.name
                    info = entry.stat(follow_symlinks=False)
                    if prefix == "" and entry.name == self.cache_dir_name and stat.S_ISDIR(info.st_mode):
                        self.cache_dir(dir_fd, info)
                    elif stat.S_ISDIR(info.st_mode):
                        if self.need(relpath, info, _R | _X, "list and enter"):
                            stack.append((os.open(entry.name, fsio.DIR_FLAGS, dir_fd=dir_fd), relpath + "/", info))
                    elif stat.S_ISREG(info.st_mode):
                        self.need(relpath, info, _R, "read")
                        if self.cleanup:
                            self.deletable(here, dir_info, relpath, info)
                if prefix == "" and self.cache_dir_name not in names:
                    self.need(here, dir_info, _W | _X, f"create {self.cache_dir_name}/ in")

    def deletable(self, dir_path: str, dir_info: os.stat_result, relpath: str, info: os.stat_result) -> None:
        if not self.need(dir_path, dir_info, _W | _X, "delete files in"):
            return
        if dir_info.st_mode & stat.S_ISVTX and self.who.uid not in (0, info.st_uid, dir_info.st_uid):
            self.problems.append(AccessProblem(path=relpath, need="delete (the directory is sticky)",
                                               uid=info.st_uid, gid=info.st_gid, mode=info.st_mode))

    def cache_dir(self, run_fd: int, info: os.stat_result) -> None:
        name = self.cache_dir_name
        self.need(name, info, _R | _W | _X, "write files in")
        if not self.who.may(info, _X):
            return  # nothing in it can be reached
        with fsio.opened(os.open(name, fsio.DIR_FLAGS | os.O_PATH, dir_fd=run_fd)) as cache_fd:
            lock = _stat(cache_fd, CREATION_NAME + LOCK_SUFFIX)
            if lock is not None:
                self.need(f"{name}/{CREATION_NAME}{LOCK_SUFFIX}", lock, _R, "lock")
            creation = _stat(cache_fd, CREATION_NAME)
            if creation is None:
                return
            path = f"{name}/{CREATION_NAME}"
            if not self.need(path, creation, _R, "read"):
                return
            # Rewriting keeps the lab app's owner and group: only that user (or root) can.
            owner_ok = self.who.uid in (0, creation.st_uid) and (
                self.who.uid == 0 or creation.st_gid in self.who.groups)
            if not owner_ok:
                self.problems.append(AccessProblem(path=path, need="rewrite (keeping its owner)",
                                                   uid=creation.st_uid, gid=creation.st_gid, mode=creation.st_mode))


def _stat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def check_run(run_fd: int, *, cache_dir_name: str, cleanup: bool, who: Identity | None = None) -> list[AccessProblem]:
    """Every access problem the steps would meet in the run opened as `run_fd`, as `who` (default: us)."""
    check = _Check(who=who or Identity.current(), cache_dir_name=cache_dir_name, cleanup=cleanup)
    check.run(run_fd)
    return check.problems
