"""rsync has no bandwidth timetable, so a push restarts it at each window change.

The restart must be invisible in the result: the copy resumes (rsync's
partial dir) and the NAS ends up byte-identical to the run.
"""

from __future__ import annotations

import io
import os
import time
from datetime import UTC, datetime

from moverlib import RunFactory, params_for, remote_run_dir, sha256_tree

from nassync.api.mover_io import RcloneDestination, RsyncDestination
from nassync.mover.progress import ProgressReporter
from nassync.mover.steps.push import run_with_progress
from nassync.transports.catalog import transport_for
from nassync_dev.nas import SshNas


def test_a_copy_stopped_at_a_window_change_resumes_to_an_identical_copy(
        ssh_nas: SshNas, make_run: RunFactory) -> None:
    run = make_run({"big.bin": os.urandom(3 * 1024 * 1024), "small.txt": b"s"})
    params = params_for(ssh_nas, run, "push", bandwidth={"defaultKiBps": 512, "timeZone": "UTC"})
    transport = transport_for(params.destination)
    command = transport.push_command(source=str(run.dir), run_path=params.run_path, bandwidth=params.bandwidth,
                                     now=datetime.now(UTC))
    reporter = ProgressReporter(step="push", total_bytes=3 * 1024 * 1024 + 1, stream=io.StringIO())

    # 3 MiB at 512 KiB/s takes ~6 s: a window change after 1.5 s interrupts it.
    first = run_with_progress(command, transport=transport, reporter=reporter, stop_at=time.monotonic() + 1.5)
    assert first.stopped_at_deadline
    assert sha256_tree(remote_run_dir(ssh_nas, run)) != sha256_tree(run.dir)

    unlimited = params_for(ssh_nas, run, "push").bandwidth
    again = transport.push_command(source=str(run.dir), run_path=params.run_path, bandwidth=unlimited,
                                   now=datetime.now(UTC))
    second = run_with_progress(again, transport=transport, reporter=reporter)
    assert not second.stopped_at_deadline and second.returncode == 0, second.lines
    assert sha256_tree(remote_run_dir(ssh_nas, run)) == sha256_tree(run.dir)


def test_rsync_is_restarted_by_the_push_and_rclone_follows_its_timetable() -> None:
    rsync = RsyncDestination(host="nas", user="u", path="/p", keyFile="/k", knownHostsFile="/kh")
    rclone = RcloneDestination(remote="nas", path="/p", configFile="/dev/null")
    assert transport_for(rsync).follows_timetable is False
    assert transport_for(rclone).follows_timetable is True
