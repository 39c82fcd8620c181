"""The gate step: may this run be pushed now, and if not, why?

Three answers, kept apart on purpose: *blocked* (a hard finding without an
active override: a human has to act), *wait* (the run changed within the quiet
period: the instrument may still be writing; `quiet=False` and the seconds
left) and *go*. Soft findings are reported and never block. The rules live in
mover/rules.py, the overrides that lift them in mover/overrides.py.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from nassync.api.mover_io import Finding, GateOutcome, MoverParams, MoverResult
from nassync.mover.creation import load_creation, set_sync_status
from nassync.mover.logs import MoverLog
from nassync.mover.manifest import check_cache_dir_name
from nassync.mover.overrides import active_creation_rules, active_spec_rules
from nassync.mover.rules import (
    CREATION_UNREADABLE,
    MAX_FINDINGS,
    NOT_OVERRIDABLE,
    RUN_EMPTY,
    RUN_MISSING,
    RUN_OUTSIDE_SOURCE,
    Hit,
    display_path,
    run_path_hits,
    scan_run,
)
from nassync.mover.run import revocation_stamp, run_dir_of, strictly_inside


def _finding(hit: Hit, active_rules: set[str]) -> Finding:
    overridden = hit.tier == "hard" and hit.rule in active_rules and hit.rule not in NOT_OVERRIDABLE
    return Finding(
        rule=hit.rule, tier=hit.tier, path=hit.path, message=hit.message, overridden=overridden
    )


def _outcome(hits: list[Hit], active_rules: set[str], **kwargs: Any) -> GateOutcome:
    findings = [_finding(hit, active_rules) for hit in hits]
    blocked = any(f.tier == "hard" and not f.overridden for f in findings)
    # Keep blocking findings first so the truncated list still says why.
    findings.sort(key=lambda f: (f.tier != "hard" or f.overridden, f.tier != "hard", f.path))
    kept = findings[:MAX_FINDINGS]
    return GateOutcome(
        findings=kept,
        findingsTruncated=len(findings) - len(kept),
        blocked=blocked,
        **kwargs,
    )


def _creation_overrides(
    run_dir: Path, cache_dir_name: str, now: datetime
) -> tuple[set[str], list[Hit]]:
    try:
        creation = load_creation(run_dir, cache_dir_name=cache_dir_name)
    except (ValueError, OSError) as exc:
        hit = Hit(CREATION_UNREADABLE, "soft", cache_dir_name, f"overrides ignored: {exc}")
        return set(), [hit]
    return active_creation_rules(creation, now=now), []


def run_gate(params: MoverParams, *, now: datetime) -> GateOutcome:
    """Check the run named by params; `now` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    check_cache_dir_name(params.cache_dir_name)
    run_dir = run_dir_of(params)
    shown = display_path(params.run_path)
    if not run_dir.is_dir():
        return _outcome([Hit(RUN_MISSING, "hard", shown, "run directory does not exist")], set())
    if not strictly_inside(run_dir, Path(params.source_root)):
        message = "run directory resolves outside the source volume (symlink?)"
        return _outcome([Hit(RUN_OUTSIDE_SOURCE, "hard", shown, message)], set())

    scan = scan_run(run_dir, cache_dir_name=params.cache_dir_name, now=now)
    creation_rules, creation_hits = _creation_overrides(run_dir, params.cache_dir_name, now)
    hits = run_path_hits(params.run_path) + scan.hits + creation_hits
    if scan.regular_files == 0:
        hits.append(Hit(RUN_EMPTY, "hard", shown, "run directory holds no regular files"))
    active = active_spec_rules(params.overrides, now=now) | creation_rules

    age = now.timestamp() - scan.newest_mtime
    remaining = max(0, math.ceil(params.quiet_period_seconds - max(age, 0.0)))
    return _outcome(hits, active, quiet=remaining == 0, quietRemainingSeconds=remaining)


def gate(params: MoverParams, *, log: MoverLog, now: datetime) -> MoverResult:
    outcome = run_gate(params, now=now)
    run_dir = run_dir_of(params)
    # A run that resolves outside the source volume is never read or written
    # beyond the gate's own checks: not even its creation.json.
    contained = run_dir.is_dir() and not any(f.rule == RUN_OUTSIDE_SOURCE for f in outcome.findings)
    revoked = revocation_stamp(run_dir, params) if contained else None
    if outcome.blocked and contained:
        try:
            set_sync_status(run_dir, cache_dir_name=params.cache_dir_name, status="blocked_by_validation")
        except (OSError, ValueError) as e:
            # The verdict stands whether or not the lab app's file could be updated.
            log.warning("could not record blocked_by_validation in creation.json", error=str(e))
    log.info(
        "gate checked",
        blocked=outcome.blocked,
        quiet=outcome.quiet,
        findings=len(outcome.findings),
    )
    return MoverResult(step="gate", ok=True, gate=outcome, lastRevocationAt=revoked)
