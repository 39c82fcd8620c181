"""Table-driven tests of the admission checks in nassync.api.validation.

Every case states the field it expects an error on and a fragment of the fix
the message must suggest; `str(error)` must start with that field's path (and not repeat it), because
`kubectl apply` shows it verbatim and the user must know what to edit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import pytest

from nassync.api.validation import (
    OVERRIDABLE_GATE_RULES,
    FieldError,
    validate_syncjob,
    validate_synctarget,
)

TARGET: dict[str, Any] = {
    "apiVersion": "nassync.dev/v1alpha1",
    "kind": "SyncTarget",
    "metadata": {"name": "microscope-01", "namespace": "lab"},
    "spec": {
        "source": {"volume": {"hostPath": {"path": "/data/microscope-01"}}},
        "destination": {
            "rclone": {
                "remote": "nas",
                "path": "/volume1/runs",
                "configSecretRef": {"name": "nas-rclone", "key": "rclone.conf"},
            }
        },
    },
}

JOB: dict[str, Any] = {
    "apiVersion": "nassync.dev/v1alpha1",
    "kind": "SyncJob",
    "metadata": {"name": "run-1", "namespace": "lab"},
    "spec": {"targetRef": {"name": "microscope-01"}, "runPath": "PROJ-0001/Runs/Run_1"},
}


def _with(base: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(base)
    body["spec"].update(spec)
    return body


@dataclass
class JobCase:
    id: str
    job: dict[str, Any]
    expect: dict[str, str]  # field -> fragment of the message
    old: dict[str, Any] | None = None
    target: dict[str, Any] | None = field(default_factory=lambda: TARGET)
    secret: bool | None = True
    others: dict[str, str] = field(default_factory=dict)  # other SyncJobs of the target: name -> runPath


GOOD_OVERRIDE = {"rule": "hidden_file", "reason": "approved by PI on 2026-11-28"}

JOB_CASES = [
    JobCase("valid", JOB, {}),
    JobCase("valid with overrides", _with(JOB, overrides=[GOOD_OVERRIDE]), {}),
    JobCase(
        "target missing",
        JOB,
        {
            "spec.targetRef.name": 'SyncTarget "microscope-01" not found in namespace "lab"; '
            "create it first or fix the name"
        },
        target=None,
    ),
    JobCase(
        "target secret missing",
        JOB,
        {"spec.targetRef.name": 'needs Secret "nas-rclone"'},
        secret=False,
    ),
    JobCase("secret unknown is not an error", JOB, {}, secret=None),
    JobCase(
        "same run owned by another job",
        JOB,
        {"spec.runPath": 'SyncJob "run-0" already pushes "PROJ-0001/Runs/Run_1"'},
        others={"run-0": "PROJ-0001/Runs/Run_1", "run-1": "PROJ-0001/Runs/Run_1"},
    ),
    JobCase("own name in the target's list is fine", JOB, {}, others={"run-1": "PROJ-0001/Runs/Run_1"}),
    JobCase(
        "a run inside another job's run",
        JOB,
        {"spec.runPath": 'SyncJob "parent"\'s "PROJ-0001/Runs" on SyncTarget "microscope-01" overlap: the run of '
                         '"parent" contains the run of "run-1"'},
        others={"parent": "PROJ-0001/Runs"},
    ),
    JobCase(
        "a run around another job's run",
        JOB,
        {"spec.runPath": 'the run of "run-1" contains the run of "child"'},
        others={"child": "PROJ-0001/Runs/Run_1/sub"},
    ),
    JobCase("siblings and prefixes of names do not overlap", JOB, {},
            others={"sib": "PROJ-0001/Runs/Run_10", "other": "PROJ-0002/Runs/Run_1", "x": "PROJ-0001/Run"}),
    JobCase(
        "a run path naming another run's cache dir",
        _with(JOB, runPath="PROJ-0001/Runs/Run_1/.exlab-wizard"),
        {"spec.runPath": 'names the cache directory ".exlab-wizard"'},
    ),
    JobCase(
        "invisible Unicode in the run path",
        _with(JOB, runPath="PROJ-0001/Runs/Run\u202e1"),
        {"spec.runPath": "invisible Unicode characters"},
    ),
    JobCase(
        "suspend that is not a boolean",
        _with(JOB, suspend="yes"),
        {"spec.suspend": "valid boolean"},
    ),
    JobCase(
        "unknown override rule",
        _with(JOB, overrides=[{"rule": "hiden_file", "reason": "approved by PI, ticket 42"}]),
        {"spec.overrides[0].rule": 'unknown gate rule "hiden_file"; use one of'},
    ),
    JobCase(
        "short override reason",
        _with(JOB, overrides=[{"rule": "hidden_file", "reason": "  ok  "}]),
        {"spec.overrides[0].reason": "at least 10 characters"},
    ),
    JobCase(
        "empty override reason",
        _with(JOB, overrides=[{"rule": "hidden_file", "reason": ""}]),
        {"spec.overrides[0].reason": "who approved"},
    ),
    JobCase(
        "duplicate override",
        _with(JOB, overrides=[GOOD_OVERRIDE, GOOD_OVERRIDE]),
        {"spec.overrides[1].rule": "overridden twice"},
    ),
    JobCase(
        "structural: absolute runPath",
        _with(JOB, runPath="/etc"),
        {"spec.runPath": "no leading '/'"},
    ),
    JobCase(
        "structural: dotdot",
        _with(JOB, runPath="PROJ/../../etc"),
        {"spec.runPath": "'..' segments"},
    ),
    JobCase(
        "structural: bad target name",
        _with(JOB, targetRef={"name": "UPPER"}),
        {"spec.targetRef.name": "pattern"},
        target=None,  # not looked up for a malformed name either way
    ),
    JobCase(
        "several runPath problems, one error each",
        _with(JOB, runPath="/a/../b"),
        {"spec.runPath": "'..' segments"},
    ),
    JobCase(
        "runPath changed on update",
        _with(JOB, runPath="PROJ-0001/Runs/Run_2"),
        {"spec.runPath": "immutable; create a new SyncJob"},
        old=JOB,
    ),
    JobCase(
        "target changed on update",
        _with(JOB, targetRef={"name": "microscope-02"}),
        {"spec.targetRef.name": "immutable"},
        old=JOB,
    ),
    JobCase(
        "update is allowed after the target was deleted",
        _with(JOB, suspend=True),
        {},
        old=JOB,
        target=None,
        secret=False,
        others={"run-0": "PROJ-0001/Runs/Run_1"},
    ),
    JobCase(
        "update keeps already admitted overrides",
        _with(JOB, suspend=True, overrides=[{"rule": "retired_rule", "reason": "approved long ago"}]),
        {},
        old=_with(JOB, overrides=[{"rule": "retired_rule", "reason": "approved long ago"}]),
    ),
    JobCase(
        "update judges new overrides",
        _with(JOB, overrides=[{"rule": "nope", "reason": "approved by PI today"}]),
        {"spec.overrides[0].rule": "unknown gate rule"},
        old=JOB,
    ),
]


def _assert_errors(errors: list[FieldError], expect: dict[str, str]) -> None:
    by_field: dict[str, list[str]] = {}
    for error in errors:
        by_field.setdefault(error.field, []).append(error.message)
        # What the user sees names the field once, then says what to do.
        assert str(error) == f"{error.field}: {error.message}"
        assert not error.message.startswith(error.field), error
    assert set(by_field) == set(expect), by_field
    for name, fragment in expect.items():
        assert any(fragment in message for message in by_field[name]), (fragment, by_field[name])


@pytest.mark.parametrize("case", JOB_CASES, ids=[c.id for c in JOB_CASES])
def test_validate_syncjob(case: JobCase) -> None:
    errors = validate_syncjob(
        case.job,
        old=case.old,
        target=case.target,
        target_secret_exists=case.secret,
        target_jobs=case.others,
    )
    _assert_errors(errors, case.expect)


def test_each_run_path_problem_is_its_own_error() -> None:
    errors = validate_syncjob(
        _with(JOB, runPath="/a/../b"), old=None, target=TARGET, target_secret_exists=True, target_jobs={}
    )
    assert [str(e) for e in errors] == [
        "spec.runPath: must be relative to the target's source root (no leading '/')",
        "spec.runPath: must not contain '..' segments",
    ]


def test_every_overridable_rule_is_accepted() -> None:
    overrides = [{"rule": r, "reason": "approved by the PI"} for r in OVERRIDABLE_GATE_RULES]
    assert OVERRIDABLE_GATE_RULES == (
        # The lab app's rule ids ...
        "unresolved_placeholder_token",
        "leftover_jinja_marker",
        "illegal_filesystem_character",
        "reserved_filesystem_name",
        "mode_prefix_mismatch",
        # ... and nassync's own hard rules a person may acknowledge ...
        "control_character",
        "non_utf8_name",
        "path_too_long",
        "symlink_escapes_run",
        # ... and a soft one older SyncJobs may still name.
        "hidden_file",
    )
    errors = validate_syncjob(
        _with(JOB, overrides=overrides),
        old=None,
        target=TARGET,
        target_secret_exists=True,
        target_jobs={},
    )
    assert errors == []


def test_rsync_target_secret_is_named() -> None:
    target = _with(
        TARGET,
        destination={"rsync": {"host": "nas", "user": "sync", "path": "/v", "sshSecretRef": {"name": "nas-ssh"}}},
    )
    errors = validate_syncjob(JOB, old=None, target=target, target_secret_exists=False, target_jobs={})
    assert [e.field for e in errors] == ["spec.targetRef.name"]
    assert 'Secret "nas-ssh"' in errors[0].message


def test_missing_spec() -> None:
    errors = validate_syncjob(
        {"metadata": {"name": "x"}},
        old=None,
        target=None,
        target_secret_exists=None,
        target_jobs={},
    )
    assert errors and errors[0].field == "spec"


# --- SyncTarget ----------------------------------------------------------------------


def _window(**overrides: Any) -> dict[str, Any]:
    window: dict[str, Any] = {"days": ["Mon"], "start": "08:00", "end": "18:00", "limitKiBps": 64}
    window.update(overrides)
    return window


TARGET_CASES: list[tuple[str, dict[str, Any], dict[str, str]]] = [
    ("valid", TARGET, {}),
    (
        "valid zone and windows",
        _with(
            TARGET, bandwidth={"timeZone": "Europe/Berlin", "windows": [_window(), _window(start="22:00", end="06:00")]}
        ),
        {},
    ),
    (
        "unknown time zone",
        _with(TARGET, bandwidth={"timeZone": "Europe/Atlantis"}),
        {"spec.bandwidth.timeZone": '"Europe/Atlantis" is not an IANA time zone'},
    ),
    (
        "path-like time zone",
        _with(TARGET, bandwidth={"timeZone": "../../etc/passwd"}),
        {"spec.bandwidth.timeZone": "not an IANA time zone"},
    ),
    (
        "empty window",
        _with(TARGET, bandwidth={"windows": [_window(), _window(end="08:00")]}),
        {"spec.bandwidth.windows[1].end": "defaultKiBps"},
    ),
    (
        "bad window time",
        _with(TARGET, bandwidth={"windows": [_window(start="25:00")]}),
        {"spec.bandwidth.windows[0].start": "pattern"},
    ),
    (
        "bad day",
        _with(TARGET, bandwidth={"windows": [_window(days=["Mon", "Caturday"])]}),
        {"spec.bandwidth.windows[0].days[1]": "Mon"},
    ),
    (
        "repeated day",
        _with(TARGET, bandwidth={"windows": [_window(days=["Tue", "Tue"])]}),
        {"spec.bandwidth.windows[0].days": "name each day once"},
    ),
    ("empty backoff", _with(TARGET, retry={"backoffSeconds": []}), {"spec.retry.backoffSeconds": "at least one delay"}),
    (
        "both volumes",
        _with(TARGET, source={"volume": {"hostPath": {"path": "/a"}, "persistentVolumeClaim": {"claimName": "c"}}}),
        {"spec.source.volume": "exactly one of"},
    ),
    (
        "no destination",
        _with(TARGET, destination={}),
        {"spec.destination": "exactly one of spec.destination.rclone or spec.destination.rsync"},
    ),
    ("bad duration", _with(TARGET, gate={"quietPeriod": "ten minutes"}), {"spec.gate.quietPeriod": "'10m'"}),
    (
        "rclone remote read as an option",
        _with(TARGET, destination={"rclone": {"remote": "-vv", "path": "/p", "configSecretRef": {"name": "s"}}}),
        {"spec.destination.rclone.remote": "pattern"},
    ),
    (
        "resources that are not quantities",
        _with(TARGET, mover={"resources": {"requests": {"memory": "lots"}, "limits": {"cpu": "1 core"}}}),
        {"spec.mover.resources.requests.memory": "not a Kubernetes quantity",
         "spec.mover.resources.limits.cpu": "not a Kubernetes quantity"},
    ),
    ("quantities", _with(TARGET, mover={"resources": {"requests": {"memory": "256Mi", "cpu": 1},
                                                      "limits": {"cpu": "500m"}}}), {}),
    (
        "run as the run owner, and as a fixed uid",
        _with(TARGET, mover={"runAsRunOwner": {"minUID": 1000}, "securityContext": {"runAsUser": 1000}}),
        {"spec.mover": "exclude each other"},
    ),
    (
        "run owner range that admits root",
        _with(TARGET, mover={"runAsRunOwner": {"minUID": 0}}),
        {"spec.mover.runAsRunOwner.minUID": "greater than or equal to 1"},
    ),
    (
        "a replica",
        _with(TARGET, replicas=[{"name": "offsite", "destination": {"rclone": {
            "remote": "s3", "path": "bucket/runs", "configSecretRef": {"name": "s3"}}}, "requiredForCleanup": True}]),
        {},
    ),
    (
        "two replicas of one name",
        _with(TARGET, replicas=[{"name": "offsite", "destination": {"volume": {"claimName": "a"}}},
                                {"name": "offsite", "destination": {"volume": {"claimName": "b"}}}]),
        {"spec.replicas": "lists the name 'offsite' twice"},
    ),
    (
        "a replica name that is no DNS label",
        _with(TARGET, replicas=[{"name": "Off_Site", "destination": {"volume": {"claimName": "a"}}}]),
        {"spec.replicas[0].name": "pattern"},
    ),
    (
        "a replica called primary",
        _with(TARGET, replicas=[{"name": "primary", "destination": {"volume": {"claimName": "a"}}}]),
        {"spec.replicas[0].name": "must not be 'primary'"},
    ),
    (
        "a replica in the primary's place",
        _with(TARGET, replicas=[{"name": "again", "destination": {"rclone": {
            "remote": "nas", "path": "/volume1/runs/", "configSecretRef": {"name": "other"}}}}]),
        {"spec.replicas[0].destination": "the same place as spec.destination"},
    ),
    (
        "two replicas in one place",
        _with(TARGET, replicas=[{"name": "a", "destination": {"volume": {"claimName": "nfs", "path": "/x"}}},
                                {"name": "b", "destination": {"volume": {"claimName": "nfs", "path": "/x/"}}}]),
        {"spec.replicas[1].destination": 'the same place as replica "a"'},
    ),
    (
        "a replica without a transport",
        _with(TARGET, replicas=[{"name": "a", "destination": {}}]),
        {"spec.replicas[0].destination": "exactly one of spec.replicas[].destination.rclone or"},
    ),
    (
        "a replica's bandwidth in an unknown zone",
        _with(TARGET, replicas=[{"name": "a", "destination": {"volume": {"claimName": "nfs"}},
                                 "bandwidth": {"timeZone": "Mars/Olympus", "windows": [_window(end="08:00")]}}]),
        {"spec.replicas[0].bandwidth.timeZone": "not an IANA time zone",
         "spec.replicas[0].bandwidth.windows[0].end": "spec.replicas[0].bandwidth.defaultKiBps"},
    ),
    (
        "completion marker leaving the run",
        _with(TARGET, gate={"completionMarker": {"names": ["../done.txt"]}}),
        {"spec.gate.completionMarker.names[0]": "'.' or '..' segments"},
    ),
]


@pytest.mark.parametrize(
    ("target", "expect"), [(t, e) for _, t, e in TARGET_CASES], ids=[i for i, _, _ in TARGET_CASES]
)
def test_validate_synctarget(target: dict[str, Any], expect: dict[str, str]) -> None:
    _assert_errors(validate_synctarget(target), expect)


def test_synctarget_missing_spec() -> None:
    errors = validate_synctarget({"metadata": {"name": "x"}})
    assert errors and errors[0].field == "spec"
