"""The gate's rules: what is wrong with a run's names and tree, as findings.

Every path component of the run is checked, recursively (the reference gate
only looked at the top-level names, so a bad name two levels down reached the
NAS), and so is every component of `runPath`, which becomes remote directory
names as well. Names are judged against the strictest destination we serve, SMB:
Windows-reserved characters and device names, trailing dots and spaces, control
characters, over-long names; plus unresolved template tokens, which mean the
lab app failed to render a name, and symlinks that point out of the run.

A `Hit` is one rule firing on one path; steps/gate.py turns hits into the
findings of a gate outcome once it knows which overrides are active.
"""

from __future__ import annotations

import errno
import os
import stat
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

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
class Hit:
    """One rule firing on one path (shown in its printable form)."""

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


def _name_hits(name: str, relpath: str) -> list[Hit]:
    """Rules that judge one path component."""
    shown = display_path(relpath)
    hits: list[Hit] = []
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        encoded = os.fsencode(name)
        hits.append(Hit(ILLEGAL_CHARACTER, "hard", shown, "name is not valid UTF-8"))
    controls = [ch for ch in name if unicodedata.category(ch) == "Cc"]
    if controls:
        hits.append(Hit(ILLEGAL_CHARACTER, "hard", shown, "name contains control characters"))
    reserved = sorted({ch for ch in name if ch in _WINDOWS_RESERVED_CHARS})
    if reserved:
        chars = " ".join(reserved)
        hits.append(
            Hit(ILLEGAL_CHARACTER, "hard", shown, f"name contains Windows-reserved {chars}")
        )
    if name.split(".", 1)[0].rstrip(" ").upper() in _WINDOWS_DEVICE_NAMES:
        hits.append(Hit(RESERVED_NAME, "hard", shown, "name is a Windows device name"))
    if name.endswith((".", " ")):
        hits.append(Hit(RESERVED_NAME, "hard", shown, "name ends with a dot or a space"))
    tokens = [t for t in _TEMPLATE_TOKENS if t in name]
    if tokens:
        hits.append(
            Hit(PLACEHOLDER, "hard", shown, f"name contains template token {' '.join(tokens)}")
        )
    if len(encoded) > MAX_COMPONENT_BYTES:
        hits.append(Hit(PATH_TOO_LONG, "hard", shown, f"name is {len(encoded)} bytes (max 255)"))
    if name.startswith("."):
        hits.append(Hit(HIDDEN_FILE, "soft", shown, "hidden (dot) name"))
    return hits


def _symlink_hits(link: Path, relpath: str, run_real: str) -> list[Hit]:
    shown = display_path(relpath)
    target = os.path.realpath(link)  # non-strict: dangling links and loops still resolve
    if target != run_real and not target.startswith(run_real + os.sep):
        return [Hit(SYMLINK_ESCAPES, "hard", shown, "symlink points outside the run")]
    return [Hit(SYMLINK_NOT_COPIED, "soft", shown, "symlink inside the run is not copied")]


@dataclass
class Scan:
    hits: list[Hit]
    regular_files: int
    newest_mtime: float


def scan_run(run_dir: Path, *, cache_dir_name: str, now: datetime) -> Scan:
    """Every hit in the run's tree (cache dir excluded), its regular files and newest mtime."""
    run_real = os.path.realpath(run_dir)
    scan = Scan(hits=[], regular_files=0, newest_mtime=run_dir.lstat().st_mtime)
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


def _unreadable(relpath: str, exc: OSError) -> list[Hit]:
    """A directory or entry we cannot read is one nobody can copy or verify either."""
    shown = display_path(relpath)
    if exc.errno == errno.ENAMETOOLONG:
        if len(os.fsencode(relpath)) > MAX_RELPATH_BYTES:
            return []  # already reported by the length check
        return [Hit(PATH_TOO_LONG, "hard", shown, "path is too long to read")]
    return [Hit(UNREADABLE, "hard", shown, f"cannot read: {exc.strerror or exc}")]


def _visit(
    scan: Scan, entry: os.DirEntry[str], relpath: str, run_real: str, horizon: float
) -> bool:
    """Judge one entry; True when it is a directory to descend into."""
    shown = display_path(relpath)
    scan.hits.extend(_name_hits(entry.name, relpath))
    if len(os.fsencode(relpath)) > MAX_RELPATH_BYTES:
        scan.hits.append(Hit(PATH_TOO_LONG, "hard", shown, "path is over 4096 bytes"))
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
        scan.hits.append(Hit(SPECIAL_FILE, "soft", shown, "not a regular file; not copied"))
    return stat.S_ISDIR(info.st_mode)


def _note_mtime(scan: Scan, mtime: float, relpath: str, horizon: float) -> None:
    if mtime > horizon:
        scan.hits.append(
            Hit(FUTURE_MTIME, "soft", display_path(relpath), "modified in the future (clock?)")
        )
        return
    scan.newest_mtime = max(scan.newest_mtime, mtime)


def run_path_hits(run_path: str) -> list[Hit]:
    """The runPath's own components become remote directory names too (e.g. a colon)."""
    parts = [p for p in run_path.split("/") if p]
    hits: list[Hit] = []
    for i, part in enumerate(parts):
        for hit in _name_hits(part, "/".join(parts[: i + 1])):
            hits.append(Hit(hit.rule, hit.tier, hit.path, f"in runPath: {hit.message}"))
    return hits
