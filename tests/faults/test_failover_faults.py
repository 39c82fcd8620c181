"""#12 item 9: two operator replicas; the leader is SIGKILLed mid-push; the standby takes over.

Exactly one replica reconciles at a time (the standby's reconcile counter stays
at 0 while the leader lives), the standby holds the Lease within 30 s of the
leader's death, no mover is duplicated and the run ends Cleaned with every
transition recorded once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultlib import (
    RUN,
    assert_decided_once,
    deleted_locally_are_on_nas,
    files,
    movers_per_step,
    nas_holds,
    rounds,
    start_run,
    wait_mover_process,
    wait_phase,
)

from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess
from nassync_dev.testing import Kubectl, eventually

LEASE = ("default", "nassync-operator")


def _holder(cluster: Kubectl) -> str:
    lease = cluster.in_namespace(LEASE[0]).get("lease", LEASE[1])
    return str((lease.get("spec") or {}).get("holderIdentity") or "")


@pytest.fixture
def replicas(crds: Kubectl, tmp_path: Path) -> Iterator[dict[str, OperatorProcess]]:
    procs = {name: OperatorProcess(crds.kubeconfig, tmp_path / f"{name}.log",
                                   extra_args=("--leader-elect", "--lease-namespace", LEASE[0],
                                               "--identity", name))
             for name in ("op-a", "op-b")}
    try:
        procs["op-a"].start()
        eventually(lambda: _holder(crds) == "op-a", timeout=60, what="op-a to hold the lease")
        procs["op-b"].start()
        yield procs
    finally:
        for proc in procs.values():
            proc.stop()


def test_standby_takes_over_within_30s_of_the_leaders_sigkill(
        replicas: dict[str, OperatorProcess], crds: Kubectl, ns: Kubectl, own_nas: RcloneSftpNas,
        tmp_path: Path) -> None:
    leader, standby = replicas["op-a"], replicas["op-b"]
    data = files(8, 128 * 1024)  # ~8 s of pushing at 128 KiB/s
    run = start_run(ns, own_nas, tmp_path, "run-f", data, spec={"bandwidth": {"defaultKiBps": 128}})
    wait_mover_process(ns, "push")
    wait_phase(ns, "run-f", "Pushing")
    assert rounds(leader) > 0
    assert rounds(standby) == 0, "the standby must not reconcile while the leader lives"

    killed = time.monotonic()
    leader.kill()
    eventually(lambda: _holder(crds) == "op-b", timeout=30, what="op-b to take the lease")
    eventually(lambda: rounds(standby) > 0, timeout=max(1.0, 30 - (time.monotonic() - killed)),
               what="op-b reconciling within 30 s of the leader's death")
    took_over = time.monotonic() - killed
    assert took_over <= 30, f"took {took_over:.1f}s"

    wait_phase(ns, "run-f", "Cleaned", timeout=240)
    assert movers_per_step(ns) == {"gate": 1, "push": 1, "verify": 1, "cleanup": 1}, "no duplicate mover"
    assert_decided_once(ns, "run-f")
    nas_run = own_nas.root / "runs" / RUN
    assert nas_holds(nas_run, data)
    deleted_locally_are_on_nas(run, nas_run, data)
    assert "nassync_leader 1.0" in standby.metrics()
