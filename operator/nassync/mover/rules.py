"""The gate's rules: what is wrong with a run's names and tree, as findings.

Every path component of the run is checked, recursively (the reference gate
only looked at the top-level names, so a bad name two levels down reached the
NAS), and so is every component of `runPath`, which becomes remote directory
names as well. The lab app's five rules (api/findings.py) fire exactly on what
they fire on in the lab app, so that its overrides lift the same findings;
nassync's own rules add what a NAS copy needs on top: no control, format or
line-separator characters (rclone renames them, and U+202E makes a name lie
to whoever reads it), valid UTF-8, names and paths within SMB's limits, no
symlink out of the run, no other run inside this one, nothing the transport
cannot carry.

The walk goes through descriptors (mover/fsio.py) and never follows a link.
A `Hit` is one rule firing on one path; steps/gate.py turns hits into the
findings of a gate outcome once it knows which overrides are active.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from nassync.api import findings as rule
from nassync.mover import fsio

Tier = Literal["hard", "soft"]

MAX_FINDINGS = 200  # per outcome; the rest is counted in findingsTruncated
MAX_RELPATH_BYTES = 4096
MAX_COMPONENT_BYTES = 255
# An mtime this far ahead of `now` is a wrong instrument clock, not activity;
# counting it would keep the run "not quiet" until the clock catches up.
CLOCK_SKEW = timedelta(minutes=5)

# The lab app's patterns and character sets (ExLabWizard constants/patterns.py).
_PLACEHOLDER = re.compile(r"<[A-Za-z_][A-Za-z0-9_]*>")
_JINJA = (re.compile(r"\{\{[^}]*\}\}"), re.compile(r"\{%[^%]*%\}"))
_ILLEGAL_CHARS = frozenset('<>:"/\\|?*\0')
_DEVICE_NAMES = frozenset(
    {"CON", "PRN", "AUX", "NUL"} | {f"COM{i}" for i in range(1, 10)} | {f"LPT{i}" for i in range(1, 10)}
)
# Control (Cc), format (Cf: zero-width, bidi overrides) and line/paragraph separators.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})

NameProblem = Callable[[str], str | None]


@dataclass(frozen=True)
class Hit:
    """One rule firing on one path (shown in its printable form)."""

    rule: str
    tier: Tier
    path: str
    message: str


def display_path(relpath: str) -> str:
    """A printable, JSON-safe form: undecodable bytes and invisible characters escaped."""
    text = os.fsencode(relpath).decode("utf-8", errors="backslashreplace")
    return "".join(
        ch if unicodedata.category(ch) not in _INVISIBLE_CATEGORIES else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )


def _lab_app_hits(name: str, shown: str, *, prefix: str = "") -> list[Hit]:
    """The lab app's name rules, firing where they fire in the lab app."""
    hits: list[Hit] = []
    tokens = _PLACEHOLDER.findall(name)
    if tokens:
        hits.append(Hit(rule.UNRESOLVED_PLACEHOLDER, "hard", shown,
                        f"{prefix}name contains unresolved template token {' '.join(tokens)}"))
    markers = [m for pattern in _JINJA for m in pattern.findall(name)]
    if markers:
        hits.append(Hit(rule.LEFTOVER_JINJA_MARKER, "hard", shown,
                        f"{prefix}name contains leftover template marker {' '.join(markers)}"))
    illegal = sorted({ch for ch in name if ch in _ILLEGAL_CHARS or ord(ch) < 32})
    if illegal:
        shown_chars = " ".join(display_path(ch) for ch in illegal)
        hits.append(Hit(rule.ILLEGAL_CHARACTER, "hard", shown,
                        f"{prefix}name contains characters Windows/SMB cannot store: {shown_chars}"))
    if name.endswith("."):
        hits.append(Hit(rule.ILLEGAL_CHARACTER, "hard", shown, f"{prefix}name ends with a dot"))
    if name.endswith(" "):
        hits.append(Hit(rule.ILLEGAL_CHARACTER, "hard", shown, f"{prefix}name ends with a space"))
    if name.split(".", 1)[0].upper() in _DEVICE_NAMES:
        hits.append(Hit(rule.RESERVED_NAME, "hard", shown, f"{prefix}name is a Windows device name"))
    return hits


def name_hits(name: str, relpath: str, *, prefix: str = "") -> list[Hit]:
    """Every rule that judges one path component."""
    shown = display_path(relpath)
    hits = _lab_app_hits(name, shown, prefix=prefix)
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        encoded = os.fsencode(name)
        hits.append(Hit(rule.NON_UTF8_NAME, "hard", shown, f"{prefix}name is not valid UTF-8"))
    invisible = sorted({ch for ch in name if unicodedata.category(ch) in _INVISIBLE_CATEGORIES})
    if invisible:
        codes = " ".join(f"U+{ord(ch):04X}" for ch in invisible)
        hits.append(Hit(rule.CONTROL_CHARACTER, "hard", shown,
                        f"{prefix}name contains control, format or line-separator characters ({codes})"))
    if len(encoded) > MAX_COMPONENT_BYTES:
        hits.append(Hit(rule.PATH_TOO_LONG, "hard", shown,
                        f"{prefix}name is {len(encoded)} bytes (max {MAX_COMPONENT_BYTES})"))
    if name.startswith("."):
        hits.append(Hit(rule.HIDDEN_FILE, "soft", shown, f"{prefix}hidden (dot) name"))
    return hits


def run_path_hits(run_path: str) -> list[Hit]:
    """The runPath's own components become remote directory names too (e.g. a colon)."""
    parts = [p for p in run_path.split("/") if p]
    hits: list[Hit] = []
    for i, part in enumerate(parts):
        hits.extend(name_hits(part, "/".join(parts[: i + 1]), prefix="in runPath: "))
    return hits


def mode_prefix_hits(run_path: str, creation: dict[str, Any]) -> list[Hit]:
    """The lab app's `mode_prefix_mismatch`: creation.json's run_kind against the run's name and parent."""
    kind = creation.get("run_kind")
    parts = [p for p in run_path.split("/") if p]
    leaf = parts[-1] if parts else ""
    parent = parts[-2] if len(parts) >= 2 else ""
    says_test = leaf.startswith("TestRun_")
    says_run = leaf.startswith("Run_") and not says_test
    shown = display_path(run_path)
    problems: list[str] = []
    if kind == "experimental":
        if not says_run:
            problems.append(f"run_kind 'experimental' needs a run named Run_..., not {leaf!r}")
        if parent == "TestRuns":
            problems.append("run_kind 'experimental' must not be under TestRuns/")
    elif kind == "test":
        if not says_test:
            problems.append(f"run_kind 'test' needs a run named TestRun_..., not {leaf!r}")
        if parent != "TestRuns":
            problems.append(f"run_kind 'test' must be under TestRuns/, not {parent!r}")
    return [Hit(rule.MODE_PREFIX_MISMATCH, "hard", shown, f"creation.json: {p}") for p in problems]


@dataclass
class Scan:
    hits: list[Hit] = field(default_factory=list)
    regular_files: int = 0
    newest_mtime: float = 0.0


def scan_run(
    run_fd: int,
    *,
    cache_dir_name: str,
    now: datetime,
    name_problem: NameProblem | None = None,
) -> Scan:
    """Every hit in the run's tree (cache dir excluded), its regular files and newest mtime.

    `run_fd` is the opened run directory. `name_problem(relpath)` says why the
    transport cannot carry a name (None when it can).
    """
    scan = Scan(newest_mtime=os.fstat(run_fd).st_mtime)
    horizon = (now + CLOCK_SKEW).timestamp()
    run_real = os.path.realpath(fsio.proc_path(run_fd))
    stack: list[tuple[int, str]] = [(os.dup(run_fd), "")]
    while stack:
        dir_fd, prefix = stack.pop()
        with fsio.opened(dir_fd):
            try:
                entries = list(os.scandir(dir_fd))
            except OSError as exc:
                scan.hits.extend(_unreadable(prefix.rstrip("/") or ".", exc))
                continue
            if not entries and prefix:
                scan.hits.append(Hit(rule.EMPTY_DIRECTORY, "soft", display_path(prefix.rstrip("/")),
                                     "empty directory: not copied to the NAS, left in place locally"))
            for entry in entries:
                relpath = prefix + entry.name
                if entry.name == cache_dir_name and entry.is_dir(follow_symlinks=False):
                    if prefix == "":
                        continue  # the run's own metadata
                    scan.hits.append(Hit(rule.NESTED_RUN, "hard", display_path(relpath),
                                         "another run's cache directory is inside this run; push that run on "
                                         "its own, never as part of another"))
                    continue
                if prefix == "" and entry.name == cache_dir_name:
                    scan.hits.append(Hit(rule.CACHE_DIR_NOT_DIRECTORY, "hard", display_path(relpath),
                                         "the run's cache dir is a symlink or a file; nassync never writes "
                                         "through it"))
                    continue
                if _visit(scan, dir_fd, entry, relpath, run_real, horizon, name_problem):
                    try:
                        child = os.open(entry.name, fsio.DIR_FLAGS, dir_fd=dir_fd)
                    except OSError as exc:
                        scan.hits.extend(_unreadable(relpath, exc))
                        continue
                    stack.append((child, relpath + "/"))
    return scan


def _unreadable(relpath: str, exc: OSError) -> list[Hit]:
    """A directory or entry we cannot read is one nobody can copy or verify either."""
    shown = display_path(relpath)
    if exc.errno == errno.ENAMETOOLONG:
        if len(os.fsencode(relpath)) > MAX_RELPATH_BYTES:
            return []  # already reported by the length check
        return [Hit(rule.PATH_TOO_LONG, "hard", shown, "path is too long to read")]
    return [Hit(rule.UNREADABLE, "hard", shown, f"cannot read: {exc.strerror or exc}")]


def _symlink_hits(dir_fd: int, name: str, relpath: str, run_real: str) -> list[Hit]:
    shown = display_path(relpath)
    # Judged, never followed for data: realpath through the opened directory.
    target = os.path.realpath(os.path.join(fsio.proc_path(dir_fd), name))
    if target != run_real and not target.startswith(run_real + os.sep):
        return [Hit(rule.SYMLINK_ESCAPES, "hard", shown, "symlink points outside the run")]
    return [Hit(rule.SYMLINK_NOT_COPIED, "soft", shown,
                "symlink inside the run: not copied to the NAS, left in place locally")]


def _visit(scan: Scan, dir_fd: int, entry: os.DirEntry[str], relpath: str, run_real: str, horizon: float,
           name_problem: NameProblem | None) -> bool:
    """Judge one entry; True when it is a directory to descend into."""
    shown = display_path(relpath)
    scan.hits.extend(name_hits(entry.name, relpath))
    if len(os.fsencode(relpath)) > MAX_RELPATH_BYTES:
        scan.hits.append(Hit(rule.PATH_TOO_LONG, "hard", shown, f"path is over {MAX_RELPATH_BYTES} bytes"))
    if name_problem is not None and (why := name_problem(relpath)) is not None:
        scan.hits.append(Hit(rule.TRANSPORT_RESERVED_NAME, "hard", shown, why))
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError as exc:
        scan.hits.extend(_unreadable(relpath, exc))
        return False
    _note_mtime(scan, info.st_mtime, relpath, horizon)
    if stat.S_ISLNK(info.st_mode):
        scan.hits.extend(_symlink_hits(dir_fd, entry.name, relpath, run_real))
    elif stat.S_ISREG(info.st_mode):
        scan.regular_files += 1
    elif not stat.S_ISDIR(info.st_mode):
        scan.hits.append(Hit(rule.SPECIAL_FILE, "soft", shown,
                             "not a regular file (FIFO, socket or device): not copied; the run will not be "
                             "cleaned locally while it is there"))
    return stat.S_ISDIR(info.st_mode)


def _note_mtime(scan: Scan, mtime: float, relpath: str, horizon: float) -> None:
    if mtime > horizon:
        scan.hits.append(Hit(rule.FUTURE_MTIME, "soft", display_path(relpath), "modified in the future (clock?)"))
        return
    scan.newest_mtime = max(scan.newest_mtime, mtime)
