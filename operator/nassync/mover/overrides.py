"""Overrides: which gate findings a person has acknowledged for this run, and revocations.

Overrides come from the SyncJob spec (matched by `rule`) and from the lab app's
append-only `validation_overrides` list in creation.json (matched by
`problem_class`). For the lab app's list nassync applies the lab app's own
semantics exactly (ExLabWizard `select_active_overrides` and cleanup), so a
run is blocked or let through the same way by both programs:

- an entry whose `revoked` is true is a tombstone (it names the override it
  revokes in `revokes`); an entry with `revoked` false, absent or null is an
  override, active unless a tombstone revokes its `id` or it has expired;
- entries written before the lab app's schema 1.6 may have no `id`: they are
  overrides nobody can revoke, active until they expire;
- `expires_at` and `recorded_at` are ISO 8601; a time without an offset is
  UTC and a date alone is midnight UTC; an unparsable expiry has expired;
- any tombstone recorded within the cleanup's minimum age (or whose time is
  missing or unparsable) stops a delete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from nassync.api.common import InvalidTime, parse_time
from nassync.api.mover_io import Override
from nassync.mover.creation import load_creation

_END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def _time(value: object) -> datetime | None:
    """A time from creation.json or a spec, or None when it is absent or unparsable."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except InvalidTime:
        return None


def _not_expired(expires_at: object, now: datetime) -> bool:
    if expires_at is None:
        return True
    expiry = _time(expires_at)
    return expiry is not None and expiry > now


def active_spec_rules(overrides: Iterable[Override], *, now: datetime) -> set[str]:
    return {o.rule for o in overrides if _not_expired(o.expires_at, now)}


def _entries(creation: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = creation.get("validation_overrides")
    return [item for item in items if isinstance(item, Mapping)] if isinstance(items, list) else []


def _is_tombstone(item: Mapping[str, Any]) -> bool:
    return bool(item.get("revoked", False))


def active_creation_rules(creation: Mapping[str, Any], *, now: datetime) -> set[str]:
    """problem_class of every active override in creation.json `validation_overrides`."""
    entries = _entries(creation)
    present = {item["id"] for item in entries if "id" in item}
    revoked_ids = {item.get("revokes") for item in entries
                   if _is_tombstone(item) and item.get("revokes") is not None and item.get("revokes") in present}
    active: set[str] = set()
    for item in entries:
        if _is_tombstone(item) or item.get("id") in revoked_ids:
            continue
        if not _not_expired(item.get("expires_at"), now):
            continue
        problem = item.get("problem_class")
        if isinstance(problem, str):
            active.add(problem)
    return active


@dataclass(frozen=True)
class Revocation:
    """A tombstone: who revoked which override, and when (None: unreadable time, counted as now)."""

    recorded_at: datetime | None
    revokes: str
    problem_class: str
    operator: str

    def describe(self) -> str:
        when = self.recorded_at.isoformat().replace("+00:00", "Z") if self.recorded_at else "at an unreadable time"
        what = f"override {self.revokes!r}" + (f" ({self.problem_class})" if self.problem_class else "")
        who = f" by {self.operator}" if self.operator else ""
        return f"{what} was revoked{who} {when}"


def revocations(creation: Mapping[str, Any]) -> list[Revocation]:
    """Every tombstone in creation.json, newest first (unreadable times first of all)."""
    entries = _entries(creation)
    classes = {item.get("id"): item.get("problem_class") for item in entries if not _is_tombstone(item)}
    found = [
        Revocation(
            recorded_at=_time(item.get("recorded_at")),
            revokes=str(item.get("revokes") or ""),
            problem_class=str(classes.get(item.get("revokes")) or ""),
            operator=str(item.get("operator") or ""),
        )
        for item in entries if _is_tombstone(item)
    ]
    return sorted(found, key=lambda r: r.recorded_at or _END_OF_TIME, reverse=True)


def recent_revocations(creation: Mapping[str, Any], *, now: datetime, min_age: timedelta) -> list[Revocation]:
    """The tombstones that stop a delete now: recorded within `min_age`, or at an unreadable time."""
    cutoff = now - min_age
    return [r for r in revocations(creation) if r.recorded_at is None or r.recorded_at > cutoff]


def latest_revocation(run: Path | int, cache_dir_name: str) -> datetime | None:
    """Newest tombstone `recorded_at`, for the operator's cleanup interlock.

    A tombstone whose time is missing or malformed counts as recorded at the
    end of time, so the interlock keeps refusing until a person repairs it. An
    unreadable creation.json raises (from load_creation): the caller must
    treat that as doubt, too.
    """
    found = revocations(load_creation(run, cache_dir_name=cache_dir_name))
    if not found:
        return None
    return found[0].recorded_at or _END_OF_TIME
