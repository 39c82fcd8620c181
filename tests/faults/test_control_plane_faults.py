"""#12 item 3: kube-apiserver restarted mid-push, etcd restarted (data kept) mid-verify.

The operator is not restarted: it must reconnect its watches by itself and
carry on, deciding nothing twice (one mover per step, every Event of the
SyncJob's story once). The mover is frozen over the outage so that its Job
finishes only after the control plane is back: the operator learns of it only
through a watch that it re-established on its own.
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
    movers_per_step,
    nas_holds,
    start_run,
    wait_mover_process,
    wait_phase,
)

from nassync_dev import faults
from nassync_dev.cluster import LocalCluster
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess
from nassync_dev.testing import Kubectl


@pytest.mark.parametrize(("component", "step", "phase"), [
    ("kube-apiserver", "push", "Pushing"),
    ("etcd", "verify", "Verifying"),
])
def test_control_plane_restart_mid_step_is_survived_without_deciding_twice(
        component: str, step: str, phase: str, local_cluster: LocalCluster, ns: Kubectl,
        operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    data = files(6, 50_000)
    run = start_run(ns, own_nas, tmp_path, "run-r", data)
    namespace = ns.namespace or ""
    _job, pod, _pid = wait_mover_process(ns, step)
    faults.signal_pod(namespace, pod, signal.SIGSTOP)
    wait_phase(ns, "run-r", phase, timeout=60)
    operator_pid = operator.proc.pid if operator.proc else None

    faults.restart_component(local_cluster, component, down_for=3)
    faults.signal_pod(namespace, pod, signal.SIGCONT)

    wait_phase(ns, "run-r", "Cleaned", timeout=240)
    assert operator.proc is not None and operator.proc.poll() is None and operator.proc.pid == operator_pid, \
        "the operator must survive the outage without a restart"
    assert movers_per_step(ns) == {"gate": 1, "push": 1, "verify": 1, "cleanup": 1}
    assert_decided_once(ns, "run-r")
    nas_run = own_nas.root / "runs" / RUN
    assert nas_holds(nas_run, data)
    deleted_locally_are_on_nas(run, nas_run, data)
