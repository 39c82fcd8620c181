"""The gate step: may this run be pushed now, and if not, why?

Four answers, kept apart on purpose: *blocked* (a hard finding without an
active override: a person has to act), *wait* (the run changed within the
quiet period, or its completion marker is not there yet: the instrument may
still be writing), *go*, and a `Permission` failure when the mover's uid/gid
could not do what the later steps need (mover/access.py) — decided here, in
the first pod, instead of half way through a push. Soft findings are reported
and never block. The rules live in mover/rules.py, the overrides that lift
them in mover/overrides.py.

With `identifyOwner` (the target runs movers as the run's owner, not known
yet) the gate only reports who owns the run: it may not even be able to read
it, and the next gate, running as that owner, judges it.
"""

from __future__ import annotations

import math
import os
import stat
from datetime import datetime
from typing import Any, NoReturn

from nassync.api import findings as rule
from nassync.api.mover_io import ErrorKind, Finding, GateOutcome, Ids, MoverParams, MoverResult
from nassync.mover import access, fsio
from nassync.mover.creation import CreationNotWritable, load_creation, set_sync_status
from nassync.mover.logs import MoverLog
from nassync.mover.outcome import fail
from nassync.mover.overrides import active_creation_rules, active_spec_rules
from nassync.mover.rules import MAX_FINDINGS, Hit, display_path, mode_prefix_hits, run_path_hits, scan_run
from nassync.mover.run import (
    OpenRun,
    RunMissing,
    RunNotAccessible,
    RunNotContained,
    open_run,
    revocation_stamp,
    run_owner,
)
from nassync.transports.catalog import transport_for

# How often a run waiting for its completion marker is looked at again.
MARKER_POLL_SECONDS = 60
_PROBLEMS_SHOWN = 3


def _finding(hit: Hit, active_rules: set[str]) -> Finding:
    overridden = hit.tier == "hard" and hit.rule in active_rules and hit.rule not in rule.NOT_OVERRIDABLE
    return Finding(rule=hit.rule, tier=hit.tier, path=hit.path, message=hit.message, overridden=overridden)


def _outcome(hits: list[Hit], active_rules: set[str], **kwargs: Any) -> GateOutcome:
    findings = [_finding(hit, active_rules) for hit in hits]
    blocked = any(f.tier == "hard" and not f.overridden for f in findings)
    # Keep blocking findings first so the truncated list still says why.
    findings.sort(key=lambda f: (f.tier != "hard" or f.overridden, f.tier != "hard", f.path))
    kept = findings[:MAX_FINDINGS]
    return GateOutcome(findings=kept, findingsTruncated=len(findings) - len(kept), blocked=blocked, **kwargs)


def _creation(run: OpenRun) -> tuple[dict[str, Any], list[Hit]]:
    try:
        return load_creation(run.fd, cache_dir_name=run.params.cache_dir_name), []
    except (ValueError, OSError) as exc:
        message = f"overrides and run_kind in it are ignored: {exc}"
        return {}, [Hit(rule.CREATION_UNREADABLE, "soft", run.params.cache_dir_name, message)]


def _owner(run: OpenRun) -> Ids:
    info = os.fstat(run.fd)
    return Ids(uid=info.st_uid, gid=info.st_gid)


def _check_access(run: OpenRun) -> None:
    who = access.Identity.current()
    problems = access.check_run(run.fd, cache_dir_name=run.params.cache_dir_name,
                                cleanup=run.params.cleanup_enabled, who=who)
    if problems:
        _permission_failure(os.fstat(run.fd), [p.describe(who) for p in problems])


def _permission_failure(owner: os.stat_result, problems: list[str]) -> NoReturn:
    who = access.Identity.current()
    shown = "; ".join(problems[:_PROBLEMS_SHOWN])
    more = f" (and {len(problems) - _PROBLEMS_SHOWN} more)" if len(problems) > _PROBLEMS_SHOWN else ""
    uid, gid = owner.st_uid, owner.st_gid
    raise fail(
        ErrorKind.PERMISSION,
        f"the mover (uid:gid {who}) cannot use this run, which belongs to uid:gid {uid}:{gid}: "
        f"{shown}{more}. Nothing was pushed. Run the movers as a user who may (SyncTarget "
        f"spec.mover.securityContext.runAsUser/runAsGroup, e.g. {uid}:{gid}, or "
        "spec.mover.runAsRunOwner), or give that user access to the files; then annotate "
        "nassync.dev/retry=<new value>",
    )


def _owner_only(info: os.stat_result) -> GateOutcome:
    me = Ids(uid=os.geteuid(), gid=os.getegid())
    return GateOutcome(ownerOnly=True, runOwner=Ids(uid=info.st_uid, gid=info.st_gid), checkedAs=me, quiet=False)


def _marker_wait(run: OpenRun) -> str | None:
    """What the run still waits for, when the target names completion markers."""
    marker = run.params.completion_marker
    if marker is None:
        return None
    present = [name for name in marker.names if _is_file(run.fd, name)]
    if marker.match == "All" and len(present) < len(marker.names):
        missing = [n for n in marker.names if n not in present]
        return f"completion marker(s) {', '.join(missing)} not written yet"
    if marker.match == "Any" and not present:
        return f"a completion marker ({' or '.join(marker.names)}) not written yet"
    return None


def _is_file(run_fd: int, relpath: str) -> bool:
    try:
        return fsio.lstat_at(run_fd, relpath).st_mode & 0o170000 == 0o100000
    except OSError:
        return False


def run_gate(params: MoverParams, *, now: datetime) -> GateOutcome:
    """Check the run named by params; `now` must be timezone-aware. Raises StepFailed for Permission."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    shown = display_path(params.run_path)
    try:
        if params.identify_owner:
            return _owner_only(run_owner(params))
        with open_run(params) as run:
            return _judge(run, now=now)
    except RunNotAccessible as exc:
        _permission_failure(exc.owner, [f"cannot list and enter '.' (owner {exc.owner.st_uid}:{exc.owner.st_gid}, "
                                        f"mode {stat.filemode(exc.owner.st_mode)})"])
        raise  # unreachable: _permission_failure raises
    except RunMissing:
        return _outcome([Hit(rule.RUN_MISSING, "hard", shown, "run directory does not exist")], set())
    except (RunNotContained, ValueError) as exc:
        message = str(exc.strerror) if isinstance(exc, OSError) else f"not a run below the source root: {exc}"
        return _outcome([Hit(rule.RUN_OUTSIDE_SOURCE, "hard", shown, message)], set())


def _judge(run: OpenRun, *, now: datetime) -> GateOutcome:
    params = run.params
    owner = _owner(run)
    me = Ids(uid=os.geteuid(), gid=os.getegid())
    try:
        cache_fd = run.cache_fd()
    except fsio.NotARealDirectory as exc:
        hit = Hit(rule.CACHE_DIR_NOT_DIRECTORY, "hard", params.cache_dir_name, str(exc.strerror))
        return _outcome([hit], set(), runOwner=owner, checkedAs=me)
    if cache_fd is not None:
        os.close(cache_fd)
    _check_access(run)
    transport = transport_for(params.destination)
    problem = transport.config_problem()
    if problem is not None:
        raise fail(ErrorKind.CONFIG, f"{problem}; nothing was pushed")
    scan = scan_run(run.fd, cache_dir_name=params.cache_dir_name, now=now, name_problem=transport.name_problem)
    creation, creation_hits = _creation(run)
    hits = run_path_hits(params.run_path) + mode_prefix_hits(params.run_path, creation) + scan.hits + creation_hits
    if scan.regular_files == 0:
        hits.append(Hit(rule.RUN_EMPTY, "hard", display_path(params.run_path), "run directory holds no regular files"))
    active = active_spec_rules(params.overrides, now=now) | active_creation_rules(creation, now=now)

    age = now.timestamp() - scan.newest_mtime
    remaining = max(0, math.ceil(params.quiet_period_seconds - max(age, 0.0)))
    waiting = _marker_wait(run)
    if waiting is not None:
        remaining = max(remaining, MARKER_POLL_SECONDS)
    return _outcome(hits, active, quiet=remaining == 0, quietRemainingSeconds=remaining, waitingFor=waiting,
                    runOwner=owner, checkedAs=me)


def gate(params: MoverParams, *, log: MoverLog, now: datetime) -> MoverResult:
    outcome = run_gate(params, now=now)
    revoked = None
    if not outcome.owner_only and not any(f.rule in (rule.RUN_MISSING, rule.RUN_OUTSIDE_SOURCE)
                                          for f in outcome.findings):
        with open_run(params) as run:
            try:
                revoked = revocation_stamp(run)
            except (OSError, ValueError) as e:
                log.warning("could not read override revocations from creation.json", error=str(e))
            if outcome.blocked:
                try:
                    set_sync_status(run.fd, cache_dir_name=params.cache_dir_name, status="blocked_by_validation")
                except (CreationNotWritable, OSError, ValueError) as e:
                    # The verdict stands whether or not the lab app's file could be updated.
                    log.warning("could not record blocked_by_validation in creation.json", error=str(e))
    log.info("gate checked", blocked=outcome.blocked, quiet=outcome.quiet, findings=len(outcome.findings),
             ownerOnly=outcome.owner_only)
    return MoverResult(step="gate", ok=True, gate=outcome, lastRevocationAt=revoked)
