"""Shared checks of the fault tests: movers per step, Events, ground truth on disk, waiting for rounds."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from nassync_dev import faults
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, rclone_target, syncjob, write_run
from nassync_dev.testing import Kubectl, eventually

RUN = "PROJ-0012/Runs/Run_2026-12-02T08-00"


def files(count: int, size: int) -> dict[str, bytes]:
    return {f"raw/frame_{i:04d}.tif": os.urandom(size) for i in range(count)}



def start_run(ns: Kubectl, nas: RcloneSftpNas, tmp_path: Path, name: str, data: dict[str, bytes], *,
              spec: dict[str, Any] | None = None) -> Path:
    """RUN written under tmp_path/acq, SyncTarget `scope` pushing it to `runs` on `nas`, SyncJob `name` applied."""
    run = write_run(tmp_path / "acq", RUN, data)
    rclone_target(ns, nas, name="scope", source=tmp_path / "acq", nas_path="runs", spec=spec)
    ns.apply(syncjob(name, "scope", RUN))
    return run

def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def movers(ns: Kubectl, step: str | None = None) -> list[dict[str, Any]]:
    selector = "app.kubernetes.io/managed-by=nassync" + (f",nassync.dev/step={step}" if step else "")
    items: list[dict[str, Any]] = json.loads(ns("get", "jobs", "-l", selector, "-o", "json"))["items"]
    return items


def movers_per_step(ns: Kubectl) -> dict[str, int]:
    return dict(Counter(j["metadata"]["labels"]["nassync.dev/step"] for j in movers(ns)))


def reasons(ns: Kubectl, name: str) -> list[str]:
    items = ns.get("events")["items"]
    return [e["reason"] for e in items if e["involvedObject"]["name"] == name
            and e["involvedObject"].get("kind") == "SyncJob"]


def assert_decided_once(ns: Kubectl, name: str) -> list[str]:
    """No Event of the SyncJob's story was emitted twice: nothing was decided twice."""
    return assert_decided_once_except(ns, name, allowed=set())


def assert_decided_once_except(ns: Kubectl, name: str, *, allowed: set[str]) -> list[str]:
    """Like assert_decided_once, for a story with an expected retry (its reasons in `allowed`)."""
    seen = reasons(ns, name)
    twice = {reason: n for reason, n in Counter(seen).items() if n > 1 and reason not in allowed}
    assert not twice, f"decided twice: {twice} in {seen}"
    return seen


def status(ns: Kubectl, name: str) -> dict[str, Any]:
    return dict(ns.get("syncjob", name).get("status") or {})


def wait_phase(ns: Kubectl, name: str, want: str, *, timeout: float = 180) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        got = status(ns, name)
        if got.get("phase") == "Failed" and want != "Failed":
            raise AssertionError(f"{name} Failed: {got.get('lastError')}")
        return got if got.get("phase") == want else None
    result: dict[str, Any] = eventually(reached, timeout=timeout, what=f"SyncJob {name} phase {want}")
    return result


def rounds(operator: OperatorProcess) -> int:
    """Reconcile rounds the operator process has finished (its own metric)."""
    match = re.search(r"^nassync_reconcile_duration_seconds_count (\S+)$", operator.metrics(), re.M)
    return int(float(match.group(1))) if match else 0


def wait_rounds(operator: OperatorProcess, more: int = 1, *, fresh: bool = False, timeout: float = 60) -> None:
    """Wait until the operator has finished `more` more reconcile rounds (counted from 0 for a
    freshly started process): it has looked at the cluster and decided."""
    start = 0 if fresh else rounds(operator)
    eventually(lambda: rounds(operator) >= start + more, timeout=timeout,
               what=f"{more} more reconcile rounds")


def mover_pod(ns: Kubectl, job: str) -> str | None:
    pods = json.loads(ns("get", "pods", "-l", f"job-name={job}", "-o", "json"))["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    return str(live[0]["metadata"]["name"]) if live else None


def wait_mover_process(ns: Kubectl, step: str, *, timeout: float = 120) -> tuple[str, str, int]:
    """(job, pod, pid) of the first running `step` mover in the namespace, as soon as its process exists."""
    def found() -> tuple[str, str, int] | None:
        for job in movers(ns, step):
            if (job.get("status") or {}).get("succeeded") or (job.get("status") or {}).get("failed"):
                continue
            pod = mover_pod(ns, job["metadata"]["name"])
            if pod is None:
                continue
            pid = faults.mover_pid(ns.namespace or "", pod)
            if pid is not None:
                return job["metadata"]["name"], pod, pid
        return None
    result: tuple[str, str, int] = eventually(found, timeout=timeout, interval=0.05,
                                              what=f"a running {step} mover process")
    return result


def nas_holds(nas_run: Path, data: dict[str, bytes]) -> bool:
    """Every file of the run is on the NAS with its original SHA-256."""
    return all((nas_run / rel).is_file() and sha((nas_run / rel).read_bytes()) == sha(blob)
               for rel, blob in data.items())


def local_intact(run: Path, data: dict[str, bytes]) -> bool:
    return all((run / rel).is_file() and sha((run / rel).read_bytes()) == sha(blob) for rel, blob in data.items())


def deleted_locally_are_on_nas(run: Path, nas_run: Path, data: dict[str, bytes]) -> None:
    """The data-safety invariant: a file missing locally is on the NAS, byte for byte."""
    for rel, blob in data.items():
        if not (run / rel).exists():
            assert (nas_run / rel).is_file(), f"{rel} deleted locally but missing on the NAS"
            assert sha((nas_run / rel).read_bytes()) == sha(blob), f"{rel} deleted locally, NAS copy differs"
        else:
            assert sha((run / rel).read_bytes()) == sha(blob), f"{rel} changed locally"

