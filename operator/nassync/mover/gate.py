"""The pre-sync gate: may this run be pushed now, and if not, why?

Three answers, kept apart on purpose: *blocked* (a hard finding without an
active override: a human has to act), *wait* (the run changed within the quiet
period: the instrument may still be writing; `quiet=False` and the seconds
left) and *go*. Soft findings are reported and never block.

Every path component of the run is checked, recursively (the reference gate
only looked at the top-level names, so a bad name two levels down reached the
NAS), and so is every component of `runPath`, which becomes remote directory
names as well. Names are judged against the strictest destination we serve, SMB:
Windows-reserved characters and device names, trailing dots and spaces, control
characters, over-long names; plus unresolved template tokens, which mean the
lab app failed to render a name, and symlinks that point out of the run.

Overrides are a human's acknowledgement of a hard rule for one run. They come
from the SyncJob spec (matched by `rule`) and from the lab app's append-only
`validation_overrides` list in creation.json (matched by `problem_class`, and
revocable by tombstones). Anything doubtful about an override (malformed
expiry, missing id) makes it inactive: a wrongly ignored override only delays
a sync, a wrongly honoured one pushes names the NAS may mangle.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from nassync.api.mover_io import Finding, GateOutcome, MoverParams, Override
from nassync.mover.creation import load_creation
from nassync.mover.manifest import check_cache_dir_name

Tier = Literal["hard", "soft"]

RUN_MISSING = "run_missing"
RUN_EMPTY = "run_empty"
RUN_OUTSIDE_SOURCE = "run_outside_source"
ILLEGAL_CHARACTER = "illegal_filesystem_character"
RESERVED_NAME = "reserved_filesystem_name"
PLACEHOLDER = "unresolved_placeholder_token"
SYMLINK_ESCAPES = "symlink_escapes_run"
PATH_TOO_LONG = "path_too_long"
HIDDEN_FILE = "hidden_file"
SYMLINK_NOT_COPIED = "symlink_not_copied"
SPECIAL_FILE = "special_file"
FUTURE_MTIME = "future_modification_time"
CREATION_UNREADABLE = "creation_json_unreadable"
UNREADABLE = "unreadable_path"

# Rules no override can lift: nothing (readable) to push, or the path is not the run.
NOT_OVERRIDABLE = frozenset({RUN_MISSING, RUN_EMPTY, RUN_OUTSIDE_SOURCE, UNREADABLE})

MAX_FINDINGS = 200  # per outcome; the rest is counted in findingsTruncated
MAX_RELPATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255
# An mtime this far ahead of `now` is a wrong instrument clock, not activity;
# counting it would keep the run "not quiet" until the clock catches up.
CLOCK_SKEW = timedelta(minutes=5)

_WINDOWS_RESERVED_CHARS = frozenset('<>:"|?*\\')
_WINDOWS_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"}
    | {f"COM{i}" for i in range(1, 10)}
    | {f"LPT{i}" for i in range(1, 10)}
)
_TEMPLATE_TOKENS = ("{{", "}}", "{%", "%}")


@dataclass(frozen=True)
class _Hit:
    rule: str
    tier: Tier
    path: str
    message: str


def display_path(relpath: str) -> str:
    """A printable, JSON-safe form: undecodable bytes and control characters escaped."""
    text = os.fsencode(relpath).decode("utf-8", errors="backslashreplace")
    return "".join(
        ch if unicodedata.category(ch) != "Cc" else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def _name_hits(name: str, relpath: str) -> list[_Hit]:
    """Rules that judge one path component."""
    shown = display_path(relpath)
    hits: list[_Hit] = []
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        encoded = os.fsencode(name)
        hits.append(_Hit(ILLEGAL_CHARACTER, "hard", shown, "name is not valid UTF-8"))
    controls = [ch for ch in name if unicodedata.category(ch) == "Cc"]
    if controls:
        hits.append(_Hit(ILLEGAL_CHARACTER, "hard", shown, "name contains control characters"))
    reserved = sorted({ch for ch in name if ch in _WINDOWS_RESERVED_CHARS})
    if reserved:
        chars = " ".join(reserved)
        hits.append(
            _Hit(ILLEGAL_CHARACTER, "hard", shown, f"name contains Windows-reserved {chars}")
        )
    if name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICE_NAMES:
        hits.append(_Hit(RESERVED_NAME, "hard", shown, "name is a Windows device name"))
    if name.endswith((".", " ")):
        hits.append(_Hit(RESERVED_NAME, "hard", shown, "name ends with a dot or a space"))
    tokens = [t for t in _TEMPLATE_TOKENS if t in name]
    if tokens:
        hits.append(
            _Hit(PLACEHOLDER, "hard", shown, f"name contains template token {' '.join(tokens)}")
        )
    if len(encoded) > MAX_COMPONENT_BYTES:
        hits.append(_Hit(PATH_TOO_LONG, "hard", shown, f"name is {len(encoded)} bytes (max 255)"))
    if name.startswith("."):
        hits.append(_Hit(HIDDEN_FILE, "soft", shown, "hidden (dot) name"))
    return hits


def _symlink_hits(link: Path, relpath: str, run_real: str) -> list[_Hit]:
    shown = display_path(relpath)
    target = os.path.realpath(link)  # non-strict: dangling links and loops still resolve
    if target != run_real and not target.startswith(run_real + os.sep):
        return [_Hit(SYMLINK_ESCAPES, "hard", shown, "symlink points outside the run")]
    return [_Hit(SYMLINK_NOT_COPIED, "soft", shown, "symlink inside the run is not copied")]


@dataclass
class _Scan:
    hits: list[_Hit]
    regular_files: int
    newest_mtime: float


def _scan(run_dir: Path, *, cache_dir_name: str, now: datetime) -> _Scan:
    run_real = os.path.realpath(run_dir)
    scan = _Scan(hits=[], regular_files=0, newest_mtime=run_dir.lstat().st_mtime)
    horizon = (now + CLOCK_SKEW).timestamp()
    stack: list[tuple[str, str]] = [(os.fspath(run_dir), "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            with os.scandir(directory) as it:
                for entry in it:
                    is_cache = prefix == "" and entry.name == cache_dir_name
                    if is_cache and entry.is_dir(follow_symlinks=False):
                        continue
                    subdir = _visit(scan, entry, prefix + entry.name, run_real, horizon)
                    if subdir:
                        stack.append((entry.path, prefix + entry.name + "/"))
        except OSError as exc:
            scan.hits.extend(_unreadable(prefix.rstrip("/") or ".", exc))
    return scan


def _unreadable(relpath: str, exc: OSError) -> list[_Hit]:
    """A directory or entry we cannot read is one nobody can copy or verify either."""
    shown = display_path(relpath)
    if exc.errno == errno.ENAMETOOLONG:
        if len(os.fsencode(relpath)) > MAX_RELPATH_BYTES:
            return []  # already reported by the length check
        return [_Hit(PATH_TOO_LONG, "hard", shown, "path is too long to read")]
    return [_Hit(UNREADABLE, "hard", shown, f"cannot read: {exc.strerror or exc}")]


def _visit(
    scan: _Scan, entry: os.DirEntry[str], relpath: str, run_real: str, horizon: float
) -> bool:
    """Judge one entry; True when it is a directory to descend into."""
    shown = display_path(relpath)
    scan.hits.extend(_name_hits(entry.name, relpath))
    if len(os.fsencode(relpath)) > MAX_RELPATH_BYTES:
        scan.hits.append(_Hit(PATH_TOO_LONG, "hard", shown, "path is over 4096 bytes"))
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError as exc:
        scan.hits.extend(_unreadable(relpath, exc))
        return False
    _note_mtime(scan, info.st_mtime, relpath, horizon)
    if stat.S_ISLNK(info.st_mode):
        scan.hits.extend(_symlink_hits(Path(entry.path), relpath, run_real))
    elif stat.S_ISREG(info.st_mode):
        scan.regular_files += 1
    elif not stat.S_ISDIR(info.st_mode):
        scan.hits.append(_Hit(SPECIAL_FILE, "soft", shown, "not a regular file; not copied"))
    return stat.S_ISDIR(info.st_mode)


def _note_mtime(scan: _Scan, mtime: float, relpath: str, horizon: float) -> None:
    if mtime > horizon:
        scan.hits.append(
            _Hit(FUTURE_MTIME, "soft", display_path(relpath), "modified in the future (clock?)")
        )
        return
    scan.newest_mtime = max(scan.newest_mtime, mtime)


# --- overrides -------------------------------------------------------------------------


def parse_time(value: object) -> datetime | None:
    """RFC 3339 with an explicit offset, or None: a naive time is ambiguous, so malformed."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _not_expired(expires_at: object, now: datetime) -> bool:
    if expires_at is None:
        return True
    expiry = parse_time(expires_at)
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
        when = parse_time(item.get("recorded_at")) or datetime.max.replace(tzinfo=UTC)
        newest = when if newest is None else max(newest, when)
    return newest


# --- the gate --------------------------------------------------------------------------


def _finding(hit: _Hit, active_rules: set[str]) -> Finding:
    overridden = hit.tier == "hard" and hit.rule in active_rules and hit.rule not in NOT_OVERRIDABLE
    return Finding(
        rule=hit.rule, tier=hit.tier, path=hit.path, message=hit.message, overridden=overridden
    )


def _outcome(hits: list[_Hit], active_rules: set[str], **kwargs: Any) -> GateOutcome:
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
) -> tuple[set[str], list[_Hit]]:
    try:
        creation = load_creation(run_dir, cache_dir_name=cache_dir_name)
    except (ValueError, OSError) as exc:
        hit = _Hit(CREATION_UNREADABLE, "soft", cache_dir_name, f"overrides ignored: {exc}")
        return set(), [hit]
    return active_creation_rules(creation, now=now), []


def run_dir_of(params: MoverParams) -> Path:
    return Path(params.source_root) / params.run_path


def _strictly_inside(path: Path, root: Path) -> bool:
    real, root_real = os.path.realpath(path), os.path.realpath(root)
    return real.startswith(root_real.rstrip(os.sep) + os.sep)


def _run_path_hits(run_path: str) -> list[_Hit]:
    """The runPath's own components become remote directory names too (e.g. a colon)."""
    parts = [p for p in run_path.split("/") if p]
    hits: list[_Hit] = []
    for i, part in enumerate(parts):
        for hit in _name_hits(part, "/".join(parts[: i + 1])):
            hits.append(_Hit(hit.rule, hit.tier, hit.path, f"in runPath: {hit.message}"))
    return hits


def run_gate(params: MoverParams, *, now: datetime) -> GateOutcome:
    """Check the run named by params; `now` must be timezone-aware."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    check_cache_dir_name(params.cache_dir_name)
    run_dir = run_dir_of(params)
    shown = display_path(params.run_path)
    if not run_dir.is_dir():
        return _outcome([_Hit(RUN_MISSING, "hard", shown, "run directory does not exist")], set())
    if not _strictly_inside(run_dir, Path(params.source_root)):
        message = "run directory resolves outside the source volume (symlink?)"
        return _outcome([_Hit(RUN_OUTSIDE_SOURCE, "hard", shown, message)], set())

    scan = _scan(run_dir, cache_dir_name=params.cache_dir_name, now=now)
    creation_rules, creation_hits = _creation_overrides(run_dir, params.cache_dir_name, now)
    hits = _run_path_hits(params.run_path) + scan.hits + creation_hits
    if scan.regular_files == 0:
        hits.append(_Hit(RUN_EMPTY, "hard", shown, "run directory holds no regular files"))
    active = active_spec_rules(params.overrides, now=now) | creation_rules

    age = now.timestamp() - scan.newest_mtime
    remaining = max(0, math.ceil(params.quiet_period_seconds - max(age, 0.0)))
    return _outcome(hits, active, quiet=remaining == 0, quietRemainingSeconds=remaining)
