"""#12 items 6 and 7: the NAS runs full, and the NAS hangs.

- Full (ENOSPC): the NAS serves a 1 MiB tmpfs; a 3 MiB run fails as NoSpace,
  is retried with backoff, and no file sits on the NAS under its final name
  with partial content; once the volume grows, the run completes.
- Hung (SIGSTOP of the server): the push mover blocks; its Job's deadline
  (spec.mover.deadlines.push) stops it, the step fails as Timeout and is
  retried, and the target's slot is free while it waits; once the NAS
  answers again the run completes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faultlib import (
    RUN,
    deleted_locally_are_on_nas,
    files,
    local_intact,
    movers_per_step,
    nas_holds,
    reasons,
    sha,
    start_run,
    status,
    wait_mover_process,
    wait_phase,
)

from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, rclone_target, syncjob, write_run
from nassync_dev.testing import Kubectl, eventually


@pytest.fixture
def small_nas(tmp_path: Path) -> Iterator[RcloneSftpNas]:
    """A NAS whose volume is a 1 MiB tmpfs (grown later with `mount -o remount,size=`)."""
    root = tmp_path / "nas-volume"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(root)], check=True)
    try:
        with RcloneSftpNas(workdir=tmp_path / "nas", root=root) as nas:
            yield nas
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def test_nas_full_is_no_space_retried_without_partial_files_then_completes(
        ns: Kubectl, operator: OperatorProcess, small_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    data = files(6, 512 * 1024)  # 3 MiB onto a 1 MiB volume
    run = write_run(source, RUN, data)
    rclone_target(ns, small_nas, name="scope", source=source, nas_path="runs",
                  spec={"retry": {"maxAttempts": 10, "backoffSeconds": [5]}})
    ns.apply(syncjob("run-full", "scope", RUN))

    def no_space() -> dict[str, Any] | None:
        got = status(ns, "run-full")
        return got if (got.get("lastError") or {}).get("kind") == "NoSpace" else None
    failed = eventually(no_space, timeout=120, what="a NoSpace failure")
    assert "the NAS is full" in failed["lastError"]["message"]
    assert failed["phase"] != "Failed" and failed.get("nextAttemptAt"), "retried with backoff"
    assert "Retrying" in reasons(ns, "run-full")
    nas_run = small_nas.root / "runs" / RUN
    for path in nas_run.rglob("*") if nas_run.exists() else []:
        rel = str(path.relative_to(nas_run))
        if path.is_file() and rel in data:
            assert sha(path.read_bytes()) == sha(data[rel]), f"partial content under the final name {rel}"
    assert local_intact(run, data)

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_nas.root)], check=True)
    wait_phase(ns, "run-full", "Cleaned", timeout=240)
    assert nas_holds(nas_run, data)
    deleted_locally_are_on_nas(run, nas_run, data)


def test_nas_hung_mid_push_times_out_frees_the_slot_and_completes_after(
        ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    data = files(8, 128 * 1024)
    run = start_run(ns, own_nas, tmp_path, "run-hang", data,
                    spec={"bandwidth": {"defaultKiBps": 128}, "mover": {"deadlines": {"push": "20s"}},
                          "retry": {"maxAttempts": 5, "backoffSeconds": [20]}})
    wait_mover_process(ns, "push")
    assert own_nas._proc is not None
    os.killpg(own_nas._proc.pid, signal.SIGSTOP)  # the NAS hangs: connections open, nothing answers
    try:
        def timed_out() -> dict[str, Any] | None:
            got = status(ns, "run-hang")
            return got if (got.get("lastError") or {}).get("kind") == "Timeout" else None
        waiting = eventually(timed_out, timeout=120, what="the push to time out at its deadline")
        assert "spec.mover.deadlines.push" in waiting["lastError"]["message"]
        assert waiting.get("nextAttemptAt"), "retried with backoff"
        eventually(lambda: (ns.get("synctarget", "scope").get("status") or {}).get("activeMovers") == 0,
                   timeout=30, what="the target's mover slot freed")
        assert local_intact(run, data)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(own_nas._proc.pid, signal.SIGCONT)
    wait_phase(ns, "run-hang", "Cleaned", timeout=240)
    assert movers_per_step(ns)["push"] >= 2
    nas_run = own_nas.root / "runs" / RUN
    assert nas_holds(nas_run, data)
    deleted_locally_are_on_nas(run, nas_run, data)
