"""Overrides: which gate findings a human has acknowledged for this run, and revocations.

Overrides are a human's acknowledgement of a hard rule for one run. They come
from the SyncJob spec (matched by `rule`) and from the lab app's append-only
`validation_overrides` list in creation.json (matched by `problem_class`, and
revocable by tombstones). Anything doubtful about an override (malformed
expiry, missing id) makes it inactive: a wrongly ignored override only delays
a sync, a wrongly honoured one pushes names the NAS may mangle. The newest
tombstone feeds the cleanup interlock: a revocation stops a delete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nassync.api.common import InvalidTime, parse_time
from nassync.api.mover_io import Override
from nassync.mover.creation import load_creation


def _time(value: object) -> datetime | None:
    """An override's time, or None when it is absent or unreadable.

    A time without an offset is treated as unreadable here (ambiguous), so an
    expiry of that form has expired and a tombstone of that form is recent.
    """
    if not isinstance(value, str):
        return None
    try:
        parsed = parse_time(value)
    except InvalidTime:
        return None
    naive = datetime.fromisoformat(value.strip().replace("z", "Z")).tzinfo is None
    return None if naive else parsed


def _not_expired(expires_at: object, now: datetime) -> bool:
    if expires_at is None:
        return True
    expiry = _time(expires_at)
    return expiry is not None and expiry > now


def active_spec_rules(overrides: Iterable[Override], *, now: datetime) -> set[str]:
    return {o.rule for o in overrides if _not_expired(o.expires_at, now)}


def _is_tombstone(item: Mapping[str, Any]) -> bool:
    return "revokes" in item


def active_creation_rules(creation: Mapping[str, Any], *, now: datetime) -> set[str]:
    """problem_class of every active override in creation.json `validation_overrides`."""
    items = creation.get("validation_overrides")
    if not isinstance(items, list):
        return set()
    entries = [item for item in items if isinstance(item, Mapping)]
    revoked_ids = {item["revokes"] for item in entries if _is_tombstone(item)}
    active: set[str] = set()
    for item in entries:
        if _is_tombstone(item):
            continue
        ident, problem = item.get("id"), item.get("problem_class")
        if not isinstance(ident, str) or not isinstance(problem, str):
            continue  # an override nobody could revoke is no override
        if item.get("revoked", False) is not False or ident in revoked_ids:
            continue
        if item.get("expires_at") is not None and not _not_expired(item["expires_at"], now):
            continue
        active.add(problem)
    return active


def latest_revocation(run_dir: Path, cache_dir_name: str) -> datetime | None:
    """Newest tombstone `recorded_at`, for the cleanup interlock.

    A tombstone whose time is missing or malformed counts as recorded at the
    end of time, so the interlock keeps refusing until a human repairs it. An
    unreadable creation.json raises ValueError (from load_creation): the caller
    must treat that as doubt, too.
    """
    creation = load_creation(run_dir, cache_dir_name=cache_dir_name)
    items = creation.get("validation_overrides")
    if not isinstance(items, list):
        return None
    newest: datetime | None = None
    for item in items:
        if not isinstance(item, Mapping) or not _is_tombstone(item):
            continue
        when = _time(item.get("recorded_at")) or datetime.max.replace(tzinfo=UTC)
        newest = when if newest is None else max(newest, when)
    return newest
