"""#12 item 1: the operator SIGKILLed in every phase that runs a mover, then restarted.

The mover of the phase is frozen in place (SIGSTOP on its processes) before
the kill, so the restarted operator finds it still running: it must follow
that mover, not start a second one, and the run must still end Cleaned. In
Cleaning, the cleanup mover is stopped half way through its unlinks (strace
stops it at the n-th `unlinkat`), which is the worst moment for a restart.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from faultlib import (
    RUN,
    assert_decided_once,
    deleted_locally_are_on_nas,
    files,
    movers,
    movers_per_step,
    nas_holds,
    start_run,
    status,
    wait_mover_process,
    wait_phase,
    wait_rounds,
)

from nassync_dev import faults
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess
from nassync_dev.testing import Kubectl, eventually

STEPS = {"Gating": "gate", "Pushing": "push", "Verifying": "verify", "Cleaning": "cleanup"}
FILES = 40


@pytest.mark.parametrize("phase", list(STEPS))
def test_operator_sigkilled_in_each_phase_resumes_to_cleaned(
        phase: str, ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    step = STEPS[phase]
    data = files(FILES, 20_000)
    run = start_run(ns, own_nas, tmp_path, "run-k", data)
    namespace = ns.namespace or ""

    job, pod, pid = wait_mover_process(ns, step)
    strace_log = tmp_path / "strace.log"
    if step == "cleanup":
        # Half way through deleting: the mover stops on its 20th unlink of 40 files.
        faults.signal_pod(namespace, pod, signal.SIGSTOP)
        tracer = faults.stop_at_syscall(pid, "unlinkat", FILES // 2, strace_log)
        tracer.__enter__()
        faults.signal_pod(namespace, pod, signal.SIGCONT)
        eventually(lambda: faults.stopped_by_strace(pid, strace_log), timeout=150,
                   what="the cleanup mover stopped half way through its unlinks")
        left = [rel for rel in data if (run / rel).exists()]
        assert 0 < len(left) < FILES, f"expected a half-deleted run, {len(left)} of {FILES} files left"
    else:
        faults.signal_pod(namespace, pod, signal.SIGSTOP)
    wait_phase(ns, "run-k", phase, timeout=60)

    operator.kill()
    operator.start()
    wait_rounds(operator, 1, fresh=True)
    assert [j["metadata"]["name"] for j in movers(ns, step)] == [job], "a second mover for the same step"
    assert status(ns, "run-k")["phase"] == phase
    assert status(ns, "run-k")["moverJob"]["name"] == job

    if step == "cleanup":
        tracer.__exit__(None, None, None)
    faults.signal_pod(namespace, pod, signal.SIGCONT)
    done = wait_phase(ns, "run-k", "Cleaned", timeout=180)

    assert movers_per_step(ns) == {"gate": 1, "push": 1, "verify": 1, "cleanup": 1}
    nas_run = own_nas.root / "runs" / RUN
    assert nas_holds(nas_run, data)
    deleted_locally_are_on_nas(run, nas_run, data)
    assert not any((run / rel).exists() for rel in data), "Cleaned, but local data files remain"
    assert done["conditions"] and {c["type"]: c["status"] for c in done["conditions"]}["Cleaned"] == "True"
    seen = assert_decided_once(ns, "run-k")
    assert "Cleaned" in seen
