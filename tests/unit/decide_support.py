"""Builders for decide() tests: targets, jobs, children and mover results as plain values."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from nassync.api.mover_io import MoverResult, Step
from nassync.api.syncjob import SyncJob
from nassync.api.target import SyncTarget
from nassync.core.actions import Decision
from nassync.core.decide import ChildJob, ChildState, decide
from nassync.core.names import job_name

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
NAME = "run1"
SHA_A = "a" * 64
SHA_B = "b" * 64


def ago(**kw: float) -> datetime:
    return NOW - timedelta(**kw)


def target(
    *,
    cleanup: Mapping[str, Any] | None = None,
    retry: Mapping[str, Any] | None = None,
    concurrency: int = 1,
) -> SyncTarget:
    spec: dict[str, Any] = {
        "source": {"volume": {"hostPath": {"path": "/data/mic"}}},
        "destination": {"rclone": {"remote": "nas", "path": "/vol/runs/", "configSecretRef": {"name": "s"}}},
        "concurrency": concurrency,
        "cleanup": {
            "enabled": True,
            "minVerifyPasses": 2,
            "minAgeAfterVerify": "24h",
            "reverifyInterval": "6h",
            **(cleanup or {}),
        },
    }
    if retry is not None:
        spec["retry"] = dict(retry)
    return SyncTarget.from_body({"metadata": {"name": "mic", "namespace": "lab"}, "spec": spec})


def job(
    *,
    status: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    generation: int = 1,
    suspend: bool = False,
    hold: bool = False,
    name: str = NAME,
) -> SyncJob:
    body: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": "lab",
            "uid": "u-1",
            "generation": generation,
            "annotations": dict(annotations or {}),
        },
        "spec": {
            "targetRef": {"name": "mic"},
            "runPath": "P1/Runs/R1",
            "suspend": suspend,
            "cleanup": {"hold": hold},
        },
        "status": {"observedGeneration": generation, **(status or {})},
    }
    return SyncJob.from_body(body)


def running(step: Step, n: int, *, started: datetime = NOW - timedelta(minutes=5)) -> dict[str, Any]:
    """Status fields for mover n of `step` recorded as Running."""
    return {
        "moverRuns": n,
        "moverJob": {
            "name": job_name(syncjob=NAME, step=step, n=n),
            "step": step,
            "state": "Running",
            "startedAt": started,
        },
    }


def result(step: Step, ok: bool = True, **fields: Any) -> MoverResult:
    return MoverResult.model_validate({"step": step, "ok": ok, **fields})


def failure(step: Step, kind: str, message: str = "it broke", **fields: Any) -> MoverResult:
    return result(step, False, error={"kind": kind, "message": message}, **fields)


def child(step: Step, n: int, res: MoverResult | None = None, state: ChildState | None = None) -> dict[str, ChildJob]:
    """A one-entry children map: mover n, finished with `res` (Running when res is None)."""
    name = job_name(syncjob=NAME, step=step, n=n)
    if state is None:
        state = "Running" if res is None else ("Succeeded" if res.ok else "Failed")
    return {name: ChildJob(name=name, step=step, state=state, result=res)}


GATE_PASSED = result("gate", gate={"quiet": True})
PUSHED = result(
    "push",
    manifest={"files": 3, "bytes": 3072, "sha256": SHA_A},
    transfer={"bytes": 3072, "files": 3, "bandwidthLimitKiBps": 6400},
)
VERIFIED = result("verify", verify={"method": "RemoteHash"})
CLEANED = result("cleanup", cleanup={"filesDeleted": 3, "bytesFreed": 3072})

# A job verified twice, long ago: every interlock holds under target().
VERIFIED_LONG_AGO: dict[str, Any] = {
    "phase": "Verified",
    "moverRuns": 4,
    "manifest": {"files": 3, "bytes": 3072, "sha256": SHA_A},
    "verifyPasses": 2,
    "verifiedAt": NOW - timedelta(days=2),
    "lastVerifiedAt": NOW - timedelta(days=1),
}


def run(
    j: SyncJob,
    *,
    tgt: SyncTarget | None = None,
    children: Mapping[str, ChildJob] | None = None,
    slot: bool = True,
    now: datetime = NOW,
    no_target: bool = False,
) -> Decision:
    return decide(
        job=j,
        target=None if no_target else (tgt or target()),
        children=children or {},
        slot_available=slot,
        now=now,
    )
