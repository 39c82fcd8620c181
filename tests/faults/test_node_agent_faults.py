"""#12 item 4: the node agent restarted while a mover runs.

The process node's containers die with its agent (bubblewrap
--die-with-parent), so the restarted agent finds a Running pod it has no
process for and reports it the way the kubelet reports a container it cannot
locate (ContainerStatusUnknown, exit 137): the Job fails, the operator notices
the lost pod and retries the step once; the run ends Cleaned with a
byte-identical NAS copy.

The real kubelet keeps its containers across a restart: that variant (the
same push Job finishes, no retry) is
tests/node/test_faults_on_kubelet.py::test_kubelet_restarted_mid_push_the_same_push_job_finishes.
"""

from __future__ import annotations

from pathlib import Path

from faultlib import (
    RUN,
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
from nassync_dev.testing import Kubectl, eventually


def test_node_agent_restarted_mid_push_the_lost_pod_is_noticed_and_the_push_retried_once(
        local_cluster: LocalCluster, ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas,
        tmp_path: Path) -> None:
    data = files(8, 128 * 1024)  # ~8 s of pushing at 128 KiB/s
    run = start_run(ns, own_nas, tmp_path, "run-n", data,
                    spec={"bandwidth": {"defaultKiBps": 128}, "retry": {"backoffSeconds": [2]}})
    _job, pod, _pid = wait_mover_process(ns, "push")
    wait_phase(ns, "run-n", "Pushing")

    faults.stop_component(local_cluster, "process-node")
    eventually(lambda: not faults.pod_processes(ns.namespace or "", pod), timeout=30,
               what="the mover's processes gone with the agent")
    faults.start_component(local_cluster, "process-node")

    def lost_reported() -> bool:
        return any("ContainerStatusUnknown" in e.get("message", "") for e in ns.get("events")["items"]
                   if e["involvedObject"]["name"] == "run-n")
    eventually(lost_reported, timeout=120, what="the SyncJob to report the lost mover pod")
    wait_phase(ns, "run-n", "Cleaned", timeout=240)
    assert movers_per_step(ns)["push"] == 2, "the push is retried exactly once"
    nas_run = own_nas.root / "runs" / RUN
    assert nas_holds(nas_run, data)
    deleted_locally_are_on_nas(run, nas_run, data)

