"""#12 item 2: a mover pod deleted mid-push and mid-cleanup (half way through its unlinks).

The Job (backoffLimit 0) fails with its pod; the operator reads "ended without
a result" as a transient failure and retries the step once: a push is pushed
again, a cleanup is cleaned again (never re-pushed from a half-deleted run).
"""

from __future__ import annotations

import signal
from pathlib import Path

from faultlib import (
    RUN,
    assert_decided_once_except,
    deleted_locally_are_on_nas,
    files,
    movers_per_step,
    nas_holds,
    reasons,
    start_run,
    status,
    wait_mover_process,
    wait_phase,
)

from nassync_dev import faults
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess
from nassync_dev.testing import Kubectl, eventually


def test_push_pod_deleted_mid_push_is_retried_once(
        ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    data = files(8, 128 * 1024)  # 1 MiB at 128 KiB/s: ~8 s of pushing
    run = start_run(ns, own_nas, tmp_path, "run-p", data,
                    spec={"bandwidth": {"defaultKiBps": 128}, "retry": {"backoffSeconds": [2]}})
    _job, pod, _pid = wait_mover_process(ns, "push")
    wait_phase(ns, "run-p", "Pushing")
    ns("delete", "pod", pod, "--wait=false")

    done = wait_phase(ns, "run-p", "Cleaned", timeout=240)
    assert movers_per_step(ns)["push"] == 2, "the push must be retried exactly once"
    seen = reasons(ns, "run-p")
    assert "PushFailed" in seen and "Retrying" in seen
    assert done["attempts"] == 0 or done["phase"] == "Cleaned"
    nas_run = own_nas.root / "runs" / RUN
    assert nas_holds(nas_run, data)
    deleted_locally_are_on_nas(run, nas_run, data)
    # main: a failed push goes back through the gate
    assert_decided_once_except(ns, "run-p", allowed={"PushStarted", "PushFailed", "Retrying", "GateStarted", "Gated"})


def test_cleanup_pod_deleted_half_way_through_deleting_finishes_on_retry(
        ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    data = files(40, 10_000)
    run = start_run(ns, own_nas, tmp_path, "run-c", data, spec={"retry": {"backoffSeconds": [2]}})
    namespace = ns.namespace or ""
    _job, pod, pid = wait_mover_process(ns, "cleanup")
    faults.signal_pod(namespace, pod, signal.SIGSTOP)
    log = tmp_path / "strace.log"
    with faults.stop_at_syscall(pid, "unlinkat", 20, log):
        faults.signal_pod(namespace, pod, signal.SIGCONT)
        eventually(lambda: faults.stopped_by_strace(pid, log), timeout=150,
                   what="the cleanup mover stopped half way through its unlinks")
        left = [rel for rel in data if (run / rel).exists()]
        assert 0 < len(left) < len(data)
        nas_run = own_nas.root / "runs" / RUN
        deleted_locally_are_on_nas(run, nas_run, data)
        ns("delete", "pod", pod, "--wait=false", "--grace-period=1")
        eventually(lambda: not faults.pod_processes(namespace, pod), timeout=60, what="the pod's processes gone")

    done = wait_phase(ns, "run-c", "Cleaned", timeout=240)
    counts = movers_per_step(ns)
    assert counts["cleanup"] == 2 and counts["push"] == 1, f"retried as a cleanup, never re-pushed: {counts}"
    assert "CleanupFailed" in reasons(ns, "run-c")
    assert nas_holds(nas_run, data)
    deleted_locally_are_on_nas(run, nas_run, data)
    assert not any((run / rel).exists() for rel in data)
    assert status(ns, "run-c")["phase"] == done["phase"] == "Cleaned"
