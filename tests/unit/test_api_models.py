"""Behaviour of the SyncTarget/SyncJob models and the duration helpers."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from nassync.api import mover_io
from nassync.api.common import Condition, format_time, parse_time
from nassync.api.durations import (
    DURATION_PATTERN,
    format_duration,
    is_duration,
    parse_duration,
)
from nassync.api.syncjob import (
    MoverJobStatus,
    Override,
    Phase,
    SyncJob,
    SyncJobStatus,
)
from nassync.api.target import Bandwidth, BandwidthWindow, Retry, SyncTarget
from nassync.core.backoff import backoff_delay

CRDS = Path(__file__).resolve().parents[2] / "crds"


def _target(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "nassync.dev/v1alpha1",
        "kind": "SyncTarget",
        "metadata": {"name": "microscope-01", "namespace": "lab"},
        "spec": {
            "source": {"volume": {"hostPath": {"path": "/data/microscope-01"}}},
            "destination": {
                "rclone": {
                    "remote": "nas",
                    "path": "/volume1/runs/microscope-01",
                    "configSecretRef": {"name": "nas-rclone"},
                }
            },
        },
    }
    body["spec"].update(spec)
    return body


def _job(run_path: str = "PROJ-0001/Runs/Run_2026-11-28T10-15", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "nassync.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": "run-1", "namespace": "lab", "uid": "u-1", "generation": 3},
        "spec": {"targetRef": {"name": "microscope-01"}, "runPath": run_path},
    }
    body.update(extra)
    return body


# --- durations -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("90s", 90), ("10m", 600), ("24h", 86400), ("1h30m", 5400), ("1h0m5s", 3605), ("90m", 5400), ("0h", 0)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert is_duration(text)


@pytest.mark.parametrize(
    "text", ["", "10", "10 m", "1.5h", "-1s", "1m1h", "1h1h", "10min", "1d", "h", "500ms", "9" * 40 + "s"]
)
def test_parse_duration_rejects(text: str) -> None:
    assert not is_duration(text)
    with pytest.raises(ValueError, match=r"invalid duration .*'10m'"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59, "59s"), (600, "10m"), (5400, "1h30m"), (86400, "24h"), (90061, "25h1m1s")]
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_duration_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        format_duration(-1)


def test_duration_pattern_is_what_the_crds_use() -> None:
    text = "".join(p.read_text() for p in CRDS.glob("*.yaml"))
    # quietPeriod, minAge, reverify, history.deleteFinishedAfter, mover.startTimeout, 4 mover.deadlines
    assert text.count(f"pattern: '{DURATION_PATTERN}'") == 9
    assert re.fullmatch(DURATION_PATTERN, "1h30m")


# --- times -------------------------------------------------------------------------


def test_times_serialise_as_rfc3339_utc_seconds() -> None:
    berlin = timezone(timedelta(hours=1))
    status = SyncJobStatus(verified_at=datetime(2026, 11, 28, 11, 15, 7, 999, tzinfo=berlin))
    assert status.verified_at == datetime(2026, 11, 28, 10, 15, 7, tzinfo=UTC)
    assert status.to_api()["verifiedAt"] == "2026-11-28T10:15:07Z"


def test_times_parse_from_the_wire() -> None:
    job = SyncJob.from_body(_job(status={"nextAttemptAt": "2026-11-28T10:15:00Z"}))
    assert job.status.next_attempt_at == datetime(2026, 11, 28, 10, 15, tzinfo=UTC)
    assert parse_time("2026-11-28T11:15:00+01:00") == job.status.next_attempt_at
    assert format_time(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"  # naive = UTC


def test_bad_time_is_rejected() -> None:
    with pytest.raises(ValidationError):
        SyncJob.from_body(_job(status={"verifiedAt": "yesterday"}))


# --- from_body ---------------------------------------------------------------------


class _KopfLikeBody(Mapping[str, Any]):
    """A read-only Mapping that is not a dict, like kopf's Body."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        value = self._data[key]
        return _KopfLikeBody(value) if isinstance(value, dict) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


@pytest.mark.parametrize("status", [None, {}, "missing"])
def test_from_body_without_status(status: Any) -> None:
    body = _job()
    if status != "missing":
        body["status"] = status
    job = SyncJob.from_body(body)
    assert job.status.phase is Phase.PENDING
    assert job.status.verify_passes == 0 and job.status.mover_runs == 0
    assert job.status.mover_job is None and job.status.conditions == []


def test_from_body_ignores_unknown_fields_and_accepts_mappings() -> None:
    body = _job(
        status={"phase": "Verified", "verifyPasses": 2, "futureField": {"x": 1}},
    )
    body["spec"]["futureSpec"] = True
    job = SyncJob.from_body(_KopfLikeBody(body))
    assert job.status.phase is Phase.VERIFIED
    assert job.status.verify_passes == 2
    assert "futureField" not in job.to_api()["status"]


def test_from_body_reads_every_status_field() -> None:
    status: dict[str, Any] = {
        "phase": "Pushing",
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Pushed",
                "status": "False",
                "reason": "InProgress",
                "message": "",
                "lastTransitionTime": "2026-11-28T10:00:00Z",
                "observedGeneration": 3,
            }
        ],
        "attempts": 1,
        "lastError": {"kind": "Network", "message": "NAS unreachable", "at": "2026-11-28T09:00:00Z"},
        "nextAttemptAt": "2026-11-28T09:02:00Z",
        "remotePath": "/volume1/runs/microscope-01/PROJ-0001/Runs/Run_2026-11-28T10-15",
        "gate": {
            "checkedAt": "2026-11-28T08:00:00Z",
            "quiet": True,
            "findings": [
                {
                    "rule": "hidden_file",
                    "tier": "soft",
                    "path": ".DS_Store",
                    "message": "hidden file",
                    "overridden": False,
                }
            ],
            "findingsTruncated": 0,
        },
        "manifest": {"files": 9, "bytes": 2097152, "sha256": "ab" * 32},
        "transfer": {
            "startedAt": "2026-11-28T10:00:00Z",
            "bytes": 1024,
            "files": 1,
            "bandwidthLimitKiBps": 6400,
            "progress": {"bytes": 1024, "totalBytes": 2048, "percent": 50, "bytesPerSecond": 100, "etaSeconds": 10},
        },
        "verifyPasses": 0,
        "moverJob": {"name": "run-1-push-2", "step": "push", "state": "Running", "startedAt": "2026-11-28T10:00:00Z"},
        "moverRuns": 2,
        "handledRetry": "1",
        "handledVerify": "2",
        "lastRevocationAt": "2026-11-01T00:00:00Z",
    }
    job = SyncJob.from_body(_job(status=status))
    s = job.status
    assert s.last_error is not None and s.last_error.kind == "Network"
    assert s.transfer is not None and s.transfer.progress is not None
    assert s.transfer.progress.percent == 50 and s.transfer.bandwidth_limit_kibps == 6400
    assert s.mover_job is not None and s.mover_job.name == "run-1-push-2"
    assert s.mover_job.phase == "push"  # DESIGN's name for the step is filled in
    assert s.gate is not None and s.gate.findings[0].rule == "hidden_file"
    assert s.condition("Pushed") is not None and s.condition("Verified") is None
    assert (s.handled_retry, s.handled_verify, s.mover_runs) == ("1", "2", 2)
    # Round trip: what the operator writes is what it reads back.
    written = job.to_api()["status"]
    assert written["moverJob"] == {**status["moverJob"], "phase": "push"}
    assert {k: v for k, v in written.items() if k != "moverJob"} == {k: v for k, v in status.items() if k != "moverJob"}


def test_to_api_can_emit_nulls_for_merge_patches() -> None:
    status = SyncJobStatus(phase=Phase.QUEUED)
    assert "nextAttemptAt" not in status.to_api()
    assert status.to_api(exclude_none=False)["nextAttemptAt"] is None


def test_metadata_accessors() -> None:
    job = SyncJob.from_body(_job())
    job.metadata["annotations"] = {"nassync.dev/retry": "2"}
    assert (job.name, job.namespace, job.uid, job.generation) == ("run-1", "lab", "u-1", 3)
    assert job.owner == "lab/run-1/u-1"
    assert job.annotations == {"nassync.dev/retry": "2"}
    assert SyncJob.from_body({"spec": _job()["spec"]}).annotations == {}


# --- SyncJob spec ----------------------------------------------------------------------


def test_syncjob_spec_defaults_and_aliases() -> None:
    job = SyncJob.from_body(_job())
    assert job.spec.target_ref.name == "microscope-01"
    assert job.spec.run_path == "PROJ-0001/Runs/Run_2026-11-28T10-15"
    assert job.spec.suspend is False and job.spec.cleanup.hold is False
    assert job.spec.overrides == []
    assert job.to_api()["spec"] == {
        "targetRef": {"name": "microscope-01"},
        "runPath": "PROJ-0001/Runs/Run_2026-11-28T10-15",
        "overrides": [],
        "suspend": False,
        "cleanup": {"hold": False},
    }


@pytest.mark.parametrize(
    ("run_path", "fragment"),
    [
        ("/data/run", "no leading '/'"),
        ("a/../b", "'..' segments"),
        ("a//b", "empty or '.' segments"),
        ("a/./b", "empty or '.' segments"),
        ("a/b/", "empty or '.' segments"),
        ("a\nb", "control characters"),
        ("x" * 1025, "at most 1024"),
    ],
)
def test_syncjob_rejects_bad_run_paths(run_path: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        SyncJob.from_body(_job(run_path))
    assert fragment in str(info.value)
    assert "runPath" in str(info.value)


def test_syncjob_requires_target_ref_name_shape() -> None:
    body = _job()
    body["spec"]["targetRef"]["name"] = "Not_A_Name"
    with pytest.raises(ValidationError, match="targetRef"):
        SyncJob.from_body(body)


def test_override_shape_matches_the_mover_contract() -> None:
    override = Override.model_validate(
        {"rule": "hidden_file", "reason": "approved by PI", "expiresAt": "2026-12-31T00:00:00Z"}
    )
    mover = override.to_mover()
    assert isinstance(mover, mover_io.Override)
    assert mover.expires_at == "2026-12-31T00:00:00Z"
    assert _aliases(Override) == _aliases(mover_io.Override)


def test_mover_job_step_and_phase() -> None:
    assert MoverJobStatus(name="j-push-1", step="push").phase == "push"
    assert MoverJobStatus.model_validate({"name": "j-gate-1", "phase": "gate"}).step == "gate"
    with pytest.raises(ValidationError, match=r"step and moverJob\.phase"):
        MoverJobStatus(name="j-push-1", step="push", phase="verify")
    with pytest.raises(ValidationError):
        MoverJobStatus.model_validate({"name": "j", "step": "push", "state": "Exploded"})


def test_condition_status_is_a_kubernetes_tristate() -> None:
    assert Condition(type="Verified", status="True").status == "True"
    with pytest.raises(ValidationError):
        Condition.model_validate({"type": "Verified", "status": "yes"})


def test_phase_values_are_the_documented_ones() -> None:
    assert [p.value for p in Phase] == [
        "Pending",
        "Gating",
        "Blocked",
        "Queued",
        "Pushing",
        "Verifying",
        "Verified",
        "Cleaning",
        "Cleaned",
        "Failed",
    ]


# --- SyncTarget ------------------------------------------------------------------------


def test_synctarget_defaults_are_design_defaults() -> None:
    target = SyncTarget.from_body(_target())
    spec = target.spec
    assert spec.source.cache_dir_name == ".exlab-wizard"
    assert spec.verify.method == "Auto"
    assert spec.bandwidth.time_zone == "UTC" and spec.bandwidth.default_kibps == 0
    assert spec.concurrency == 1
    assert spec.retry.max_attempts == 5 and spec.retry.backoff_seconds == [30, 120, 480, 1800]
    assert spec.gate.quiet_period == "10m" and spec.gate.quiet_period_seconds == 600
    assert spec.cleanup.enabled is False
    assert spec.cleanup.min_verify_passes == 2
    assert spec.cleanup.min_age_after_verify_seconds == 86400
    assert spec.cleanup.reverify_interval_seconds == 6 * 3600
    assert spec.cleanup.retain_cache is True
    assert spec.destination.rclone is not None
    assert spec.destination.rclone.config_secret_ref.key == "rclone.conf"
    assert target.status.active_movers == 0 and target.status.queued == 0


def test_defaults_do_not_share_state_between_objects() -> None:
    a = SyncTarget.from_body(_target())
    b = SyncTarget.from_body(_target())
    a.spec.retry.backoff_seconds.append(1)
    assert b.spec.retry.backoff_seconds == [30, 120, 480, 1800]


def test_synctarget_snake_case_paths_from_the_brief() -> None:
    body = _target(
        mover={
            "image": "nassync:1",
            "securityContext": {"runAsUser": 1000},
            "serviceAccountName": "mover",
            "activeDeadlineSeconds": 600,
            "resources": {"requests": {"cpu": "100m", "memory": 1024}},
        },
    )
    body["spec"]["source"]["volume"] = {"persistentVolumeClaim": {"claimName": "acq-data"}}
    spec = SyncTarget.from_body(body).spec
    assert spec.source.volume.persistent_volume_claim is not None
    assert spec.source.volume.persistent_volume_claim.claim_name == "acq-data"
    assert spec.mover.security_context is not None
    assert spec.mover.security_context.run_as_user == 1000
    assert spec.mover.service_account_name == "mover"
    assert spec.mover.active_deadline_seconds == 600
    assert spec.mover.resources is not None and spec.mover.resources.requests["memory"] == 1024
    assert spec.source_summary() == "pvc:acq-data"


def test_destination_helpers() -> None:
    rclone = SyncTarget.from_body(_target()).spec
    assert (rclone.destination.type, rclone.destination.path) == ("rclone", "/volume1/runs/microscope-01")
    assert rclone.destination.secret_name == "nas-rclone"
    assert rclone.source_summary() == "hostPath:/data/microscope-01"
    rsync = SyncTarget.from_body(
        _target(
            destination={
                "rsync": {"host": "nas.lab.example", "user": "sync", "path": "/v", "sshSecretRef": {"name": "nas-ssh"}}
            }
        )
    ).spec
    assert rsync.destination.type == "rsync" and rsync.destination.secret_name == "nas-ssh"
    assert rsync.destination.rsync is not None and rsync.destination.rsync.port == 22


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"source": {"volume": {}}}, "exactly one of spec.source.volume.hostPath"),
        (
            {"source": {"volume": {"hostPath": {"path": "/a"}, "persistentVolumeClaim": {"claimName": "c"}}}},
            "exactly one of spec.source.volume.hostPath",
        ),
        ({"destination": {}}, "exactly one of spec.destination.rclone or spec.destination.rsync"),
        ({"source": {"volume": {"hostPath": {"path": "data"}}}}, "absolute path"),
        ({"source": {"volume": {"hostPath": {"path": "/d"}}, "cacheDirName": "a/b"}}, "single directory name"),
        ({"gate": {"quietPeriod": "10 minutes"}}, "invalid duration"),
        ({"cleanup": {"reverifyInterval": "0s"}}, "longer than 0s"),
        ({"retry": {"backoffSeconds": []}}, "at least 1 item"),
        ({"retry": {"backoffSeconds": [30, -1]}}, ">= 0"),
        ({"concurrency": 0}, "greater than or equal to 1"),
        (
            {
                "destination": {
                    "rsync": {"host": "-oProxyCommand=sh", "user": "u", "path": "/p", "sshSecretRef": {"name": "s"}}
                }
            },
            "host",
        ),
        ({"verify": {"method": "Size"}}, "method"),
    ],
)
def test_synctarget_rejects(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        SyncTarget.from_body(_target(**spec))
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("window", "fragment"),
    [
        ({"days": ["Mon"], "start": "24:00", "end": "08:00", "limitKiBps": 1}, "start"),
        ({"days": ["Mon"], "start": "8:00", "end": "18:00", "limitKiBps": 1}, "start"),
        ({"days": ["Mon"], "start": "08:00", "end": "18:60", "limitKiBps": 1}, "end"),
        ({"days": ["Monday"], "start": "08:00", "end": "18:00", "limitKiBps": 1}, "days"),
        ({"days": ["Mon", "Mon"], "start": "08:00", "end": "18:00", "limitKiBps": 1}, "twice"),
        ({"days": [], "start": "08:00", "end": "18:00", "limitKiBps": 1}, "days"),
        ({"days": ["Mon"], "start": "08:00", "end": "18:00", "limitKiBps": -1}, "limitKiBps"),
    ],
)
def test_bandwidth_window_rules(window: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        BandwidthWindow.model_validate(window)
    assert fragment in str(info.value)


def test_bandwidth_shape_matches_the_mover_contract() -> None:
    bandwidth = Bandwidth.model_validate(
        {
            "timeZone": "Europe/Berlin",
            "defaultKiBps": 0,
            "windows": [{"days": ["Mon", "Fri"], "start": "22:00", "end": "06:00", "limitKiBps": 6400}],
        }
    )
    mover = bandwidth.to_mover()
    assert isinstance(mover, mover_io.Bandwidth)
    assert mover.model_dump(by_alias=True) == bandwidth.model_dump(by_alias=True)
    assert _aliases(Bandwidth) == _aliases(mover_io.Bandwidth)
    assert _aliases(BandwidthWindow) == _aliases(mover_io.BandwidthWindow)


@pytest.mark.parametrize(("attempts", "delay"), [(0, 30), (1, 30), (2, 120), (4, 1800), (9, 1800)])
def test_backoff_for_repeats_the_last_step(attempts: int, delay: int) -> None:
    # The default schedule as decide() applies it (core/backoff.py).
    assert backoff_delay(attempts, Retry().backoff_seconds) == delay


def test_status_is_not_required_and_phase_enum_is_enforced() -> None:
    with pytest.raises(ValidationError, match="phase"):
        SyncJob.from_body(_job(status={"phase": "Exploded"}))


def test_samples_parse() -> None:
    samples = CRDS.parent / "manifests" / "samples"
    job = SyncJob.from_body(yaml.safe_load((samples / "syncjob.yaml").read_text()))
    assert job.spec.run_path == "PROJ-0001/Runs/Run_2026-11-28T10-15"


def _aliases(model: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in model.model_fields.items()}
