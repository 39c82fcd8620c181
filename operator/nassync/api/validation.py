"""Admission checks the CRD schema cannot express, as pure functions.

The CRDs' OpenAPI schema and CEL rules judge one object in isolation. Some
mistakes are only visible against the rest of the cluster: a SyncJob naming a
SyncTarget that does not exist, a target whose Secret is missing, two SyncJobs
pushing the same run into one remote directory (docs/concepts.md: never write into
a remote run directory another SyncJob owns), an override naming a gate rule
that does not exist (a typo would silently override nothing). The validating
webhook looks those facts up and hands them in here; this module does no I/O,
so every rule is a table-driven unit test.

Each problem is a `FieldError`; `str(error)` is `<field path>: <what is wrong
and how to fix it>`, shown verbatim by `kubectl apply`. The structural rules
are re-run through the pydantic models too, so the webhook alone (e.g. against
an older CRD) still refuses what the CRD refuses.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from nassync.api import findings
from nassync.api.common import dig, plain
from nassync.api.syncjob import SyncJobSpec, check_run_path
from nassync.api.target import SyncTargetSpec

# Gate rules a user may acknowledge in spec.overrides (api/findings.py): the
# webhook refuses a rule name the gate would never match.
OVERRIDABLE_GATE_RULES: tuple[str, ...] = (*findings.OVERRIDABLE, *findings.RETIRED)
MIN_OVERRIDE_REASON_LENGTH = 10


@dataclass(frozen=True)
class FieldError:
    """One problem: `field` is the JSON path, `message` says what is wrong and how to fix it.

    `str(error)` is `"<field>: <message>"`, the form shown to the user, so the
    message itself does not repeat the field.
    """

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


def _error(field: str, text: str) -> FieldError:
    return FieldError(field=field, message=text)


def _loc_to_path(prefix: str, loc: Sequence[int | str]) -> str:
    path = prefix
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else f"{path}.{part}"
    return path


def _model_errors(model: type[BaseModel], data: Any, prefix: str) -> list[FieldError]:
    """Structural problems found by the pydantic model, as FieldErrors."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        errors: list[FieldError] = []
        for item in exc.errors(include_url=False):
            path = _loc_to_path(prefix, item["loc"])
            text = str(item["msg"]).removeprefix("Value error, ")
            # The models' own messages start with the field path (they are
            # also shown by pydantic alone); str(FieldError) adds it back.
            errors.append(_error(path, text.removeprefix(f"{path} ")))
        return errors
    return []


def _override_key(override: Any) -> tuple[Any, Any]:
    if isinstance(override, Mapping):
        return (override.get("rule"), override.get("reason"))
    return (None, None)


# --- SyncJob ------------------------------------------------------------------


def validate_syncjob(
    job: Mapping[str, Any],
    *,
    old: Mapping[str, Any] | None,
    target: Mapping[str, Any] | None,
    target_secret_exists: bool | None,
    target_jobs: Mapping[str, str],
) -> list[FieldError]:
    """All admission problems of a SyncJob create (`old is None`) or update.

    - `target`: the SyncTarget named by spec.targetRef.name in the job's
      namespace, or None when it does not exist.
    - `target_secret_exists`: whether that target's destination Secret exists;
      None when unknown (not looked up), which skips the check.
    - `target_jobs`: name -> runPath of the other SyncJobs of the same target
      in the namespace (the job's own name is ignored if present); no runPath
      may equal, contain or lie inside another's.

    Cluster lookups are only enforced on create: an update must stay possible
    (e.g. set `suspend`) even after an admin deleted the target.
    """
    job = plain(job)
    spec = job.get("spec")
    name = str(dig(job, "metadata", "name") or "")
    namespace = str(dig(job, "metadata", "namespace") or "")
    structural = _model_errors(SyncJobSpec, spec, "spec")
    if not isinstance(spec, Mapping):
        return structural or [_error("spec", "is required")]
    errors: list[FieldError] = []

    target_name = dig(spec, "targetRef", "name")
    run_path = spec.get("runPath")
    if isinstance(run_path, str) and run_path:
        # One error per broken runPath rule (the model folds them into one).
        structural = [e for e in structural if e.field != "spec.runPath"]
        structural += [
            _error("spec.runPath", problem.removeprefix("spec.runPath ")) for problem in check_run_path(run_path)
        ]

    if old is not None:
        old_spec = dig(old, "spec") or {}
        if dig(old_spec, "targetRef", "name") != target_name:
            errors.append(
                _error(
                    "spec.targetRef.name",
                    "is immutable; create a new SyncJob to push the run to another target",
                )
            )
        if old_spec.get("runPath") != run_path:
            errors.append(_error("spec.runPath", "is immutable; create a new SyncJob"))

    errors.extend(_check_overrides(spec.get("overrides"), dig(old, "spec", "overrides")))

    if old is None and isinstance(target_name, str):
        if target is None:
            errors.append(
                _error(
                    "spec.targetRef.name",
                    f'SyncTarget "{target_name}" not found in namespace "{namespace}"; create it first or fix the name',
                )
            )
        elif target_secret_exists is False:
            secret = target_secret_name(target)
            errors.append(
                _error(
                    "spec.targetRef.name",
                    f'SyncTarget "{target_name}" needs Secret "{secret}", which does not exist '
                    f'in namespace "{namespace}"; ask an admin to create it',
                )
            )
        if isinstance(run_path, str):
            errors.extend(_overlaps(name, run_path, str(target_name), target_jobs))
            cache = dig(target, "spec", "source", "cacheDirName") if target is not None else None
            if isinstance(run_path, str) and (cache or ".exlab-wizard") in run_path.split("/"):
                errors.append(_error(
                    "spec.runPath",
                    f'names the cache directory "{cache or ".exlab-wizard"}" of the run above it; a cache '
                    "directory is never a run of its own, push the run that holds it",
                ))
    return _merge(structural, errors)


def _parts(run_path: str) -> tuple[str, ...]:
    return tuple(p for p in run_path.split("/") if p and p != ".")


def _overlaps(name: str, run_path: str, target_name: str, target_jobs: Mapping[str, str]) -> list[FieldError]:
    """One error per other SyncJob whose runPath equals, contains or lies inside this one."""
    mine = _parts(run_path)
    errors: list[FieldError] = []
    for other, other_path in sorted(target_jobs.items()):
        theirs = _parts(other_path)
        if other == name or not theirs:
            continue
        shorter = min(len(mine), len(theirs))
        if mine[:shorter] != theirs[:shorter]:
            continue
        if mine == theirs:
            errors.append(_error(
                "spec.runPath",
                f'SyncJob "{other}" already pushes "{run_path}" to SyncTarget "{target_name}"; two SyncJobs '
                "must not write one remote run directory, so use that SyncJob (annotate nassync.dev/retry to "
                "re-run it) or delete it first"))
        else:
            outer, inner = (other, name) if len(theirs) < len(mine) else (name, other)
            errors.append(_error(
                "spec.runPath",
                f'"{run_path}" and SyncJob "{other}"\'s "{other_path}" on SyncTarget "{target_name}" overlap: '
                f'the run of "{outer}" contains the run of "{inner}". Runs of one target never contain each '
                "other (the outer run's push would overwrite the inner run's NAS copy and its cleanup would "
                "delete it); push each run on its own"))
    return errors


def target_secret_name(target: Mapping[str, Any]) -> str:
    """The Secret a SyncTarget object (as stored, maybe invalid) names; "" if none.

    Read from the raw object, not the model, so that a target the model
    refuses still gets its Secret checked: every destination block names its
    Secret in a `*SecretRef` field.
    """
    destination = dig(target, "spec", "destination") or {}
    for block in destination.values() if isinstance(destination, Mapping) else ():
        for key, ref in (block.items() if isinstance(block, Mapping) else ()):
            if key.endswith("SecretRef") and dig(ref, "name"):
                return str(ref["name"])
    return ""


def _check_overrides(overrides: Any, old_overrides: Any) -> list[FieldError]:
    if not isinstance(overrides, list):
        return []
    # Entries already admitted are not re-judged: a later, stricter rule list
    # must not make every unrelated edit of an old SyncJob fail.
    grandfathered = {_override_key(o) for o in (old_overrides if isinstance(old_overrides, list) else [])}
    errors: list[FieldError] = []
    seen: set[str] = set()
    for index, override in enumerate(overrides):
        if not isinstance(override, Mapping):
            continue
        field = f"spec.overrides[{index}]"
        rule = override.get("rule")
        reason = override.get("reason")
        if isinstance(rule, str) and rule in seen:
            errors.append(_error(f"{field}.rule", f'"{rule}" is overridden twice; keep one entry per rule'))
        if isinstance(rule, str):
            seen.add(rule)
        if _override_key(override) in grandfathered:
            continue
        if rule not in OVERRIDABLE_GATE_RULES:
            errors.append(
                _error(
                    f"{field}.rule",
                    f'unknown gate rule "{rule}"; use one of {", ".join(OVERRIDABLE_GATE_RULES)}',
                )
            )
        if not isinstance(reason, str) or len(reason.strip()) < MIN_OVERRIDE_REASON_LENGTH:
            errors.append(
                _error(
                    f"{field}.reason",
                    f"must explain who approved the override and why "
                    f"(at least {MIN_OVERRIDE_REASON_LENGTH} characters)",
                )
            )
    return errors


# --- SyncTarget ---------------------------------------------------------------


def validate_synctarget(target: Mapping[str, Any], *, old: Mapping[str, Any] | None = None) -> list[FieldError]:
    """Semantic problems of a SyncTarget: time zone, bandwidth windows, retry schedule.

    `old` is accepted for symmetry with validate_syncjob; no SyncTarget field
    is immutable today.
    """
    del old  # no transition rules yet; kept so the webhook calls both alike
    target = plain(target)
    spec = target.get("spec")
    structural = _model_errors(SyncTargetSpec, spec, "spec")
    if not isinstance(spec, Mapping):
        return structural or [_error("spec", "is required")]
    errors: list[FieldError] = []

    errors += _bandwidth_errors(spec.get("bandwidth") or {}, "spec.bandwidth")
    listed = spec.get("replicas")
    replicas: list[Any] = listed if isinstance(listed, list) else []
    for index, replica in enumerate(replicas):
        if not isinstance(replica, Mapping):
            continue
        field = f"spec.replicas[{index}]"
        if isinstance(replica.get("bandwidth"), Mapping):
            errors += _bandwidth_errors(replica["bandwidth"], f"{field}.bandwidth")
        errors += _same_place(replica.get("destination"), field, spec, replicas[:index])

    retry = spec.get("retry") or {}
    if "backoffSeconds" in retry and not retry.get("backoffSeconds"):
        errors.append(
            _error(
                "spec.retry.backoffSeconds",
                "must list at least one delay in seconds, e.g. [30, 120, 480, 1800]",
            )
        )
    return _merge(structural, errors)


def _bandwidth_errors(bandwidth: Mapping[str, Any], where: str) -> list[FieldError]:
    errors: list[FieldError] = []
    time_zone = bandwidth.get("timeZone", "UTC")
    if isinstance(time_zone, str) and not _time_zone_exists(time_zone):
        errors.append(
            _error(
                f"{where}.timeZone",
                f'"{time_zone}" is not an IANA time zone; use a name such as "Europe/Berlin" or "UTC"',
            )
        )
    windows = bandwidth.get("windows") or []
    for index, window in enumerate(windows if isinstance(windows, list) else []):
        if not isinstance(window, Mapping):
            continue
        start, end = window.get("start"), window.get("end")
        if isinstance(start, str) and start == end:
            errors.append(
                _error(
                    f"{where}.windows[{index}].end",
                    f'equals start ("{start}"), which reads as a 24-hour window; '
                    f"for a limit all day use {where}.defaultKiBps instead",
                )
            )
    return errors


def _place(destination: Any) -> tuple[str, ...] | None:
    """Where a destination block writes (type, server, path), for spotting two copies in one place."""
    if not isinstance(destination, Mapping) or len(destination) != 1:
        return None
    kind, block = next(iter(destination.items()))
    if not isinstance(block, Mapping):
        return None
    path = str(block.get("path") or "/").rstrip("/") or "/"
    server = {"rclone": ("remote",), "rsync": ("host", "port", "user"), "volume": ("claimName",)}.get(kind, ())
    return (kind, *(str(block.get(k, "")) for k in server), path)


def _same_place(destination: Any, field: str, spec: Mapping[str, Any], earlier: list[Any]) -> list[FieldError]:
    """A replica that writes where the primary or an earlier replica writes is no second copy."""
    mine = _place(destination)
    if mine is None:
        return []
    if mine == _place(spec.get("destination")):
        return [_error(f"{field}.destination", "is the same place as spec.destination; a replica must be a "
                                               "second copy somewhere else")]
    for other in earlier:
        if isinstance(other, Mapping) and mine == _place(other.get("destination")):
            return [_error(f"{field}.destination", f'is the same place as replica "{other.get("name")}"; each '
                                                   "replica must be a copy of its own")]
    return []


def _time_zone_exists(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


# Fields whose semantic check restates the model's generic complaint in this
# API's words; for these (and only these) the semantic message replaces it.
_RESTATED_FIELDS_SUFFIXES = (".rule", ".reason", "spec.retry.backoffSeconds")


def _merge(structural: list[FieldError], semantic: list[FieldError]) -> list[FieldError]:
    """Model errors plus semantic ones, without saying the same thing twice."""
    restated = {e.field for e in semantic if e.field.endswith(_RESTATED_FIELDS_SUFFIXES)}
    return [e for e in structural if e.field not in restated] + semantic
