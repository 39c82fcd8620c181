"""A passwd entry for whatever uid the mover runs as, so that ssh agrees to run.

Movers run as the instrument's user (spec.mover.securityContext.runAsUser, or
the run's owner with runAsRunOwner), a uid the image knows nothing about.
OpenSSH's client refuses to start for a uid without a passwd entry ("No user
exists for uid N"); rclone (pure Go) does not care. The read-only root
filesystem rules out editing /etc/passwd, so the mover writes a passwd and a
group file of its own into its private temporary directory and has the tools
it starts read them through nss_wrapper (Debian's libnss-wrapper, an
LD_PRELOAD library made for exactly this).
"""

from __future__ import annotations

import glob
import os
import pwd
import tempfile

_LIBRARY_GLOBS = (
    "/usr/lib/*/libnss_wrapper.so",
    "/usr/lib/libnss_wrapper.so",
    "/usr/lib64/libnss_wrapper.so",
)


def nss_wrapper_library() -> str | None:
    for pattern in _LIBRARY_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def passwd_env(*, uid: int | None = None, gid: int | None = None) -> dict[str, str]:
    """Env for child processes: nss_wrapper with a passwd entry for `uid`; {} when one exists already.

    Also {} when nss_wrapper is not installed: ssh then says "No user exists
    for uid", which the transports report as a Config error naming the fix.
    """
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    try:
        pwd.getpwuid(uid)
        return {}
    except KeyError:
        pass
    library = nss_wrapper_library()
    if library is None:
        return {}
    home = os.environ.get("HOME") or tempfile.gettempdir()
    directory = tempfile.mkdtemp(prefix="nassync-nss-")
    passwd = os.path.join(directory, "passwd")
    group = os.path.join(directory, "group")
    with open(passwd, "w", encoding="utf-8") as handle:
        handle.write(f"nassync:x:{uid}:{gid}:nassync mover:{home}:/usr/sbin/nologin\n")
    with open(group, "w", encoding="utf-8") as handle:
        handle.write(f"nassync:x:{gid}:\n")
    preload = " ".join(p for p in (os.environ.get("LD_PRELOAD", ""), library) if p)
    return {"LD_PRELOAD": preload, "NSS_WRAPPER_PASSWD": passwd, "NSS_WRAPPER_GROUP": group}
