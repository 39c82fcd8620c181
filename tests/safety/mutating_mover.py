"""The real mover CLI, with one filesystem mutation at a precise moment inside a step.

Run as `python mutating_mover.py <step>` with the usual NASSYNC_PARAMS and
NASSYNC_SAFETY_PLAN (the path of a JSON file, see safetylib.Plan). The plan's operations run
once, the first time the mover reaches the named point; then the step goes
on as it would have. Points are function boundaries of the mover, so the
interleaving is exact and the test needs no sleep:

- hook:before-check, hook:checked, hook:renamed — deletion.delete_run_data's
  hook, for the file `relpath` (deletion.py calls it for exactly this);
- before-delete — everything is proven, the first unlink is next;
- after-open — the step has opened the run from the source root;
- after-remote-check — the NAS was just proven against the manifest (verify, cleanup);
- after-manifest — push has hashed the run, before writing the cache and copying;
- copy-start — push's copy tool is about to start;
- publish-start — verify is about to copy creation.json to the NAS;
- publish-copy-start — that copy's tool is about to start (creation.json was found).

Besides plain file operations, a plan may hold ["after-listing", dir, arm_url,
release_url, ops]: run `ops` once the copy tool has listed `dir`, while the
test's NAS proxy holds the tool (test_safety_rclone_swap.py).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import struct
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PLAN_ENV = "NASSYNC_SAFETY_PLAN"


def _apply(op: list[Any]) -> None:
    kind, *args = op
    if kind == "write":
        Path(args[0]).write_bytes(base64.b64decode(args[1]))
    elif kind == "rewrite":
        fd = os.open(args[0], os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.pwrite(fd, base64.b64decode(args[1]), 0)
        finally:
            os.close(fd)
    elif kind == "rename":
        os.rename(args[0], args[1])
    elif kind == "symlink":
        os.symlink(args[0], args[1])
    elif kind == "touch":
        os.utime(args[0], follow_symlinks=False)
    elif kind == "unlink":
        os.unlink(args[0])
    elif kind == "mkdir":
        os.mkdir(args[0])
    elif kind in ("glob-rewrite", "glob-rename-over"):
        # The one file matching a pattern (e.g. cleanup's private .nassync-deleting-* name).
        directory, pattern, data = Path(args[0]), args[1], bytes.fromhex(args[2])
        (match,) = directory.glob(pattern)
        if kind == "glob-rewrite":
            _apply(["rewrite", str(match), base64.b64encode(data).decode()])
        else:
            incoming = directory / ".incoming"
            incoming.write_bytes(data)
            os.rename(incoming, match)
    elif kind == "after-listing":
        # ["after-listing", directory, arm_url, release_url, [ops...]]: arm the test's NAS proxy, then run the
        # ops in the background once a process has listed `directory` (it closes it: IN_CLOSE_NOWRITE), and
        # tell the proxy to let the copy go on. The copy tool is held by the proxy meanwhile, so the ops land
        # exactly between its listing of `directory` and its next look below it.
        watch = _inotify_close(args[0])
        urllib.request.urlopen(args[1], timeout=60).read()

        def background() -> None:
            watch()
            for inner in args[3]:
                _apply(inner)
            urllib.request.urlopen(args[2], timeout=60).read()

        threading.Thread(target=background, daemon=True).start()
    else:
        raise ValueError(f"unknown op {kind!r}")


def _inotify_close(directory: str) -> Callable[[], None]:
    """Watch `directory` now; the returned function blocks until it is closed after being read."""
    libc = ctypes.CDLL(None, use_errno=True)
    in_close_nowrite, in_cloexec = 0x10, 0o2000000
    fd = libc.inotify_init1(in_cloexec)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(directory), in_close_nowrite) < 0:
        raise OSError(ctypes.get_errno(), "inotify")

    def wait() -> None:
        try:
            while True:
                data = os.read(fd, 4096)
                offset = 0
                while offset < len(data):
                    _wd, mask, _cookie, length = struct.unpack_from("iIII", data, offset)
                    offset += 16 + length
                    if mask & in_close_nowrite and length == 0:
                        return
        finally:
            os.close(fd)

    return wait


class Trigger:
    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        self.done = False

    def __call__(self, point: str, relpath: str | None = None) -> None:
        if self.done or point != self.plan["when"]:
            return
        if self.plan.get("relpath") is not None and relpath != self.plan["relpath"]:
            return
        self.done = True
        for op in self.plan["ops"]:
            _apply(op)
        if self.plan.get("fired"):
            Path(self.plan["fired"]).write_text(point)


def install(trigger: Trigger) -> None:
    from nassync.mover import run as run_module
    from nassync.mover.steps import cleanup, gate, push, verify

    real_delete = cleanup.delete_run_data

    def delete_run_data(*args: Any, **kwargs: Any) -> Any:
        before = kwargs.get("before_delete")

        def before_delete() -> None:
            if before is not None:
                before()
            trigger("before-delete")

        kwargs["before_delete"] = before_delete
        kwargs["hook"] = lambda point, relpath: trigger(f"hook:{point}", relpath)
        return real_delete(*args, **kwargs)

    cleanup.delete_run_data = delete_run_data  # type: ignore[assignment]

    real_open = run_module.open_run

    @contextlib.contextmanager
    def open_run(params: Any) -> Iterator[Any]:
        with real_open(params) as opened:
            trigger("after-open")
            yield opened

    run_module.open_run = open_run  # type: ignore[assignment]
    gate.open_run = open_run  # type: ignore[assignment]

    def after(fn: Callable[..., Any], point: str) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            result = fn(*args, **kwargs)
            trigger(point)
            return result

        return wrapped

    def before(fn: Callable[..., Any], point: str) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            trigger(point)
            return fn(*args, **kwargs)

        return wrapped

    cleanup.remote_check = after(cleanup.remote_check, "after-remote-check")  # type: ignore[assignment]
    verify.remote_check = after(verify.remote_check, "after-remote-check")  # type: ignore[assignment]
    push._build_manifest = after(push._build_manifest, "after-manifest")  # type: ignore[assignment]
    push.run_with_progress = before(push.run_with_progress, "copy-start")  # type: ignore[assignment]
    verify.publish_creation = before(verify.publish_creation, "publish-start")  # type: ignore[assignment]
    verify.run_probe = before(verify.run_probe, "publish-copy-start")  # type: ignore[assignment]


def main() -> int:
    plan = json.loads(Path(os.environ[PLAN_ENV]).read_text())
    install(Trigger(plan))
    from nassync.mover import cli

    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
