"""Keep the copy tool's reads inside the run: a Landlock ruleset, entered by the tool's process.

The push hands rclone or rsync the opened run (/proc/self/fd/N), but below it
a tool opens directories and files by path. rsync opens each component with
O_NOFOLLOW; rclone follows symlinks, so a directory of the run swapped for a
symlink while it copies would bring whatever the link points to onto the NAS
(tests/safety/test_safety_rclone_swap.py). Landlock (Linux >= 5.13) lets an
unprivileged process give up rights for good: the mover prepares a ruleset
that allows *reading* only beneath the run's descriptor and the few places a
copy tool needs (system directories, the tool's own directory, the
destination's Secret files, the mover's private copies, a mounted
destination), and the tool's process enters it between fork and exec.
Everything else, above all the rest of the source volume and other runs,
reads as EACCES, whatever path or link leads there. Writing and executing
are not restricted.

Where the kernel or the runtime's seccomp profile does not offer Landlock the
tool runs unconfined (the other layers still hold: descriptor-based access,
the gate, per-file checks before every delete); `prepare()` returns None and
the push logs `confinedToRun: false`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38
_READ_FILE = 1 << 2
_READ_DIR = 1 << 3
_READ = _READ_FILE | _READ_DIR

# What a copy tool reads besides the run: its libraries, certificates, name
# service and /proc; never /tmp, /home, /root, /data or /mnt as a whole.
SYSTEM_DIRS = ("/etc", "/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/opt", "/proc", "/sys",
               "/dev", "/nix")

_libc = ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock cannot be used here."""
    try:
        value = int(_libc.syscall(_SYS_CREATE_RULESET, None, 0, _CREATE_RULESET_VERSION))
    except (OSError, AttributeError):
        return 0
    return max(value, 0)


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


@dataclass(frozen=True)
class Ruleset:
    """A prepared Landlock ruleset; pass `fd` to the child and call `enter` there (preexec_fn)."""

    fd: int

    def enter(self) -> None:
        """In the tool's process, before exec: restrict it for good. Must not raise (it runs after fork)."""
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0:
            _libc.syscall(_SYS_RESTRICT_SELF, self.fd, 0)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def prepare(allowed_fds: Iterable[int], allowed_paths: Iterable[str]) -> Ruleset | None:
    """A ruleset allowing reads only beneath `allowed_fds` (open directories), `allowed_paths` and
    SYSTEM_DIRS; None when Landlock is not available (paths that do not exist are skipped)."""
    if landlock_abi() <= 0:
        return None
    attr = struct.pack("Q", _READ)  # struct landlock_ruleset_attr { __u64 handled_access_fs; }
    try:
        fd = _check(int(_libc.syscall(_SYS_CREATE_RULESET, ctypes.c_char_p(attr), len(attr), 0)),
                    "landlock_create_ruleset")
    except OSError:
        return None
    ruleset = Ruleset(fd)
    opened: list[int] = []
    try:
        for path in (*SYSTEM_DIRS, *allowed_paths):
            with contextlib.suppress(OSError):
                opened.append(os.open(path, os.O_PATH | os.O_CLOEXEC))
        for parent in (*allowed_fds, *opened):
            # struct landlock_path_beneath_attr { __u64 allowed_access; __s32 parent_fd; } __attribute__((packed))
            rule = struct.pack("=Qi", _READ, parent)
            _check(int(_libc.syscall(_SYS_ADD_RULE, fd, _RULE_PATH_BENEATH, ctypes.c_char_p(rule), 0)),
                   "landlock_add_rule")
    except OSError:
        ruleset.close()
        return None
    finally:
        for path_fd in opened:
            os.close(path_fd)
    return ruleset
