"""Run a container as a host process in a private mount namespace (bubblewrap).

The process node cannot run images (no container runtime here), so a
container's command runs from the host's own binaries. What must still hold is
the pod's view of the filesystem: each `volumeMount` appears at its
`mountPath`, the termination-message file is the pod's own, and nothing the
container does lands on the host outside its volumes. bubblewrap gives us a
new mount namespace whose root is an empty tmpfs; host directories are bound
into it read-only (so the root filesystem behaves as `readOnlyRootFilesystem`),
and volumes are bound writable (or read-only) at their mount paths. Where a
mount path lies inside a host directory, that directory is rebuilt from
per-entry binds over a tmpfs so the mount point can be created without
touching the host.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

# Never bound from the host: the sandbox gets its own.
_PRIVATE = {"proc", "dev", "sys", "tmp", "run", "lost+found"}


@dataclass(frozen=True)
class Mount:
    source: str  # host path
    target: str  # absolute path inside the sandbox
    read_only: bool = False


def hidden_host_dirs(paths: Iterable[str]) -> tuple[str, ...]:
    """Those of `paths` that the sandbox's private /tmp, /run, ... would hide."""
    hidden = []
    for path in paths:
        real = os.path.realpath(path)
        parts = PurePosixPath(real).parts
        if len(parts) > 1 and parts[1] in _PRIVATE and real not in hidden:
            hidden.append(real)
    return tuple(hidden)


def _bind_tree(host_dir: str, inside: str, keep_out: set[str], args: list[str]) -> None:
    """Mirror `host_dir` at `inside` entry by entry, except names in keep_out."""
    try:
        entries = sorted(os.listdir(host_dir))
    except OSError:
        return
    for name in entries:
        if name in keep_out:
            continue
        src = os.path.join(host_dir, name)
        dst = os.path.join(inside, name)
        if os.path.islink(src):
            args += ["--symlink", os.readlink(src), dst]
        elif os.path.isdir(src) or os.path.exists(src):
            args += ["--ro-bind", src, dst]


def _root_args(mount_targets: Iterable[str]) -> list[str]:
    """Bind the host root read-only, opening up directories that hold mount points."""
    # Directories on the way to a mount point that exist on the host must be
    # rebuilt (tmpfs + per-entry binds) so bwrap can create the mount point.
    opened: set[str] = set()
    for target in mount_targets:
        parts = PurePosixPath(target).parts[1:-1]
        path = ""
        for part in parts:
            path = f"{path}/{part}"
            if os.path.islink(path) or not os.path.isdir(path):
                break
            if path.count("/") == 1 and part in _PRIVATE:
                break
            opened.add(path)

    args: list[str] = []

    def build(host_dir: str) -> None:
        children = {p.rsplit("/", 1)[1] for p in opened
                    if p.rsplit("/", 1)[0] == (host_dir if host_dir != "/" else "")}
        if host_dir != "/":
            args.extend(["--tmpfs", host_dir])
        keep_out = set(children)
        if host_dir == "/":
            keep_out |= _PRIVATE
        _bind_tree(host_dir, host_dir, keep_out, args)
        for child in sorted(children):
            build(f"{host_dir.rstrip('/')}/{child}")

    build("/")
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run"]
    return args


def _resolve_host_links(target: str) -> str:
    """Follow host symlinks on the way to `target` (e.g. /var/run -> /run).

    The sandbox mirrors the host's symlinks, and bwrap cannot create a mount
    point through one, so mount at the path the link leads to instead.
    """
    path = "/"
    for part in PurePosixPath(target).parts[1:]:
        candidate = os.path.join(path, part)
        if os.path.islink(candidate):
            candidate = os.path.normpath(os.path.join(path, os.readlink(candidate)))
        path = candidate
    return path


def bwrap_argv(
    *,
    command: list[str],
    mounts: list[Mount],
    working_dir: str | None,
    run_as: tuple[int, int] | None,
    supplemental_groups: list[int] | None = None,
) -> list[str]:
    """The full argv that runs `command` in a sandbox with `mounts`.

    Environment variables are not on this argv (they may hold secret values):
    bwrap passes its own environment to the child, so the caller sets them on
    the bwrap process instead.
    """
    resolved = [Mount(m.source, _resolve_host_links(m.target), m.read_only) for m in mounts]
    ordered = sorted(resolved, key=lambda m: len(PurePosixPath(m.target).parts))
    args = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--new-session"]
    args += _root_args(m.target for m in ordered)
    made: set[str] = set()
    for m in ordered:
        # bwrap makes missing parents 0700, which a non-root container cannot
        # traverse; create them 0755 as a container runtime would.
        for parent in reversed(PurePosixPath(m.target).parents[:-1]):
            p = str(parent)
            if p not in made and not os.path.isdir(p):
                args += ["--perms", "0755", "--dir", p]
                made.add(p)
        args += ["--ro-bind" if m.read_only else "--bind", m.source, m.target]
    if working_dir:
        args += ["--chdir", working_dir]
    args.append("--")
    if run_as is not None:
        uid, gid = run_as
        groups = ",".join(str(g) for g in (supplemental_groups or [])) or None
        args += ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
        args += [f"--groups={groups}"] if groups else ["--clear-groups"]
        args += ["--"]
    return args + command
