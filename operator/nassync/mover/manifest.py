"""The SHA-256 manifest of a run: what "byte-identical on the NAS" is checked against.

A run is proven copied only when every regular file's SHA-256 on the NAS equals
the digest recorded here, and local data is deleted only when the local tree
still matches the same manifest. So the manifest has to be exact (no silently
skipped lines, no followed symlinks, names of any shape) and fast: runs are
tens to hundreds of GiB, and coreutils `sha256sum` manages ~0.3 GB/s where
OpenSSL-backed `hashlib` does ~1.2 GB/s per core and releases the GIL, so a
thread pool scales with cores (docs/transports.md, "Hashing speed").

The on-disk form is `<run>/<cacheDir>/checksums.sha256` in the coreutils
format (`<hex>  <relpath>`, sorted by the UTF-8 bytes of the name, with
coreutils escaping for names holding a backslash, newline or CR), so an admin
can check a run on the NAS by hand with `sha256sum -c`. The cache dir at the
run root holds our own metadata and is never part of the manifest.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from nassync.mover import fsio

# The files nassync writes into a run's cache dir (and the only ones it ever deletes there).
MANIFEST_NAME = "checksums.sha256"
OWNER_MARKER = "nassync-owner"  # `<namespace>/<syncjob>/<uid>` of the SyncJob that pushes the run
CLEANUP_MARKER = "nassync-cleanup-started"  # local only: deleting began; the run is never pushed again
OUR_CACHE_FILES = (MANIFEST_NAME, OWNER_MARKER, CLEANUP_MARKER)
_BUFFER_BYTES = 1 << 20  # ~1 MiB: best hashlib throughput (docs/transports.md)
_HEX_LEN = 64
_HEX_DIGITS = frozenset("0123456789abcdef")


class FileChanged(OSError):
    """A file changed while it was being hashed (size, mtime or ctime moved)."""


@dataclass(frozen=True)
class Entry:
    """One regular file of the run, and the identity of the file that was hashed.

    The identity (device, inode, mtime_ns, ctime_ns, from `fstat` of the
    hashing descriptor) is what cleanup compares right before each unlink: a
    file rewritten, renamed over or replaced after it was hashed is not the
    file the NAS copy proves, even when its size is the same. It is not part
    of the manifest's text and not of equality.
    """

    sha256: str
    size: int
    dev: int = field(default=0, compare=False)
    ino: int = field(default=0, compare=False)
    mtime_ns: int = field(default=0, compare=False)
    ctime_ns: int = field(default=0, compare=False)

    def is_same_file(self, info: os.stat_result) -> bool:
        """True when `info` (an lstat) is still the regular file that was hashed, unchanged."""
        return (
            stat.S_ISREG(info.st_mode)
            and (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
            == (self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns)
        )


@dataclass(frozen=True)
class Manifest(Mapping[str, Entry]):
    """relpath (POSIX, relative to the run dir) -> Entry, plus what the walk saw besides.

    `symlinks`, `dirs` and `special` are not part of the manifest (nothing but
    regular files is copied and proven) but cleanup and the gate need to know
    about them, so the single walk records them.
    """

    entries: Mapping[str, Entry]
    symlinks: tuple[str, ...] = ()
    dirs: tuple[str, ...] = ()
    special: tuple[str, ...] = ()  # FIFOs, sockets, devices: never hashed (a FIFO would block)

    def __getitem__(self, key: str) -> Entry:
        return self.entries[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def files(self) -> int:
        return len(self.entries)

    @property
    def bytes(self) -> int:
        return sum(entry.size for entry in self.entries.values())

    def digests(self) -> dict[str, str]:
        return {relpath: entry.sha256 for relpath, entry in self.entries.items()}

    def digest(self) -> str:
        """SHA-256 of the canonical serialised text: the run's identity in status."""
        return hashlib.sha256(serialise(self)).hexdigest()

    def nested_runs(self, cache_dir_name: str) -> list[str]:
        """Directories below the run root that hold a cache dir of their own: other runs inside this one."""
        return [d.rpartition("/")[0] for d in self.dirs if "/" in d and d.rpartition("/")[2] == cache_dir_name]


@dataclass(frozen=True)
class Comparison:
    """Result of checking an actual tree (or the NAS) against the expected manifest."""

    missing: tuple[str, ...] = ()
    differing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()  # reported, not a failure: the NAS also carries the cache dir

    @property
    def ok(self) -> bool:
        return not self.missing and not self.differing


@dataclass(frozen=True)
class _Walk:
    files: list[tuple[str, int]] = field(default_factory=list)  # (relpath, lstat size)
    symlinks: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    special: list[str] = field(default_factory=list)


def check_cache_dir_name(cache_dir_name: str) -> None:
    """Refuse names that would make "exclude the cache dir" exclude something else."""
    if (
        not cache_dir_name
        or cache_dir_name in {".", ".."}
        or "/" in cache_dir_name
        or "\0" in cache_dir_name
    ):
        raise ValueError(f"cache dir name must be one plain path component, got {cache_dir_name!r}")


def default_workers() -> int:
    """One thread per usable core, at least two so disk latency overlaps hashing."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(2, cores)


def walk_run(run_dir: Path | int, *, cache_dir_name: str) -> _Walk:
    """Classify every entry under the run without following symlinks.

    `run_dir` is a path or an open directory descriptor; either way the walk
    descends through descriptors (mover/fsio.py), so a directory swapped for a
    symlink while we walk is not followed.
    """
    check_cache_dir_name(cache_dir_name)
    result = _Walk()
    with fsio.opened(_open_run(run_dir)) as root_fd:
        stack: list[tuple[int, str]] = [(os.dup(root_fd), "")]
        while stack:
            dir_fd, rel_dir = stack.pop()
            with fsio.opened(dir_fd), os.scandir(dir_fd) as it:
                for entry in it:
                    rel = f"{rel_dir}{entry.name}"
                    if entry.is_symlink():
                        result.symlinks.append(rel)
                    elif entry.is_dir(follow_symlinks=False):
                        if rel_dir == "" and entry.name == cache_dir_name:
                            continue
                        result.dirs.append(rel)
                        stack.append((os.open(entry.name, fsio.DIR_FLAGS, dir_fd=dir_fd), f"{rel}/"))
                    elif entry.is_file(follow_symlinks=False):
                        result.files.append((rel, entry.stat(follow_symlinks=False).st_size))
                    else:
                        result.special.append(rel)
    return result


def _open_run(run_dir: Path | int) -> int:
    if isinstance(run_dir, int):
        return os.dup(run_dir)
    return os.open(run_dir, fsio.DIR_FLAGS)


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino


def hash_fd(fd: int, what: str) -> Entry:
    """Stream an open regular file through SHA-256; FileChanged if it changes meanwhile."""
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):
        raise OSError(f"not a regular file: {what!r}")
    hasher = hashlib.sha256()
    buffer = bytearray(_BUFFER_BYTES)
    view = memoryview(buffer)
    size = 0
    with open(fd, "rb", buffering=0, closefd=False) as raw:
        while n := raw.readinto(buffer):
            hasher.update(view[:n])
            size += n
    after = os.fstat(fd)
    if _identity(after) != _identity(before) or size != after.st_size:
        raise FileChanged(f"{what!r} changed while it was being hashed")
    return Entry(sha256=hasher.hexdigest(), size=size, dev=after.st_dev, ino=after.st_ino,
                 mtime_ns=after.st_mtime_ns, ctime_ns=after.st_ctime_ns)


def hash_file(path: str | os.PathLike[str]) -> Entry:
    """Hash one file by path; refuses anything that is not a regular file (O_NOFOLLOW)."""
    with fsio.opened(os.open(path, fsio.FILE_FLAGS)) as fd:
        return hash_fd(fd, os.fsdecode(path))


def hash_at(dir_fd: int, relpath: str) -> Entry:
    """Hash file `relpath` below `dir_fd`, following no link on the way (mover/fsio.py)."""
    with fsio.opened(fsio.open_file(dir_fd, relpath)) as fd:
        return hash_fd(fd, relpath)


def build_manifest(
    run_dir: Path | int,
    *,
    cache_dir_name: str,
    workers: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Manifest:
    """Hash every regular file of the run in parallel (cache dir and symlinks excluded).

    `run_dir` is a path or an open directory descriptor. `on_progress(done_bytes,
    total_bytes)` is called after each file (from the hashing threads), so a
    long re-hash can report progress.

    Raises FileNotFoundError when the run or a file vanishes while hashing: the
    caller maps that to LocalVanished rather than recording a partial manifest;
    FileChanged when a file changes while it is hashed.
    """
    walk = walk_run(run_dir, cache_dir_name=cache_dir_name)
    # Biggest files first so one huge file does not start last and run alone.
    ordered = sorted(walk.files, key=lambda item: item[1], reverse=True)
    total = sum(size for _, size in ordered)
    done = 0
    lock = threading.Lock()

    with fsio.opened(_open_run(run_dir)) as root_fd:

        def hash_and_report(relpath: str) -> Entry:
            nonlocal done
            entry = hash_at(root_fd, relpath)
            if on_progress is not None:
                with lock:
                    done += entry.size
                    on_progress(done, total)
            return entry

        with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
            hashed = list(pool.map(hash_and_report, [rel for rel, _ in ordered]))
    entries = {rel: entry for (rel, _), entry in zip(ordered, hashed, strict=True)}
    return Manifest(
        entries=MappingProxyType(dict(sorted(entries.items(), key=lambda kv: _sort_key(kv[0])))),
        symlinks=tuple(sorted(walk.symlinks, key=_sort_key)),
        dirs=tuple(sorted(walk.dirs, key=_sort_key)),
        special=tuple(sorted(walk.special, key=_sort_key)),
    )


def _sort_key(relpath: str) -> bytes:
    # fsencode keeps undecodable names (surrogateescape) as their original bytes.
    return os.fsencode(relpath)


def _needs_escape(name: bytes) -> bool:
    return b"\\" in name or b"\n" in name or b"\r" in name


def _escape(name: bytes) -> bytes:
    return name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n").replace(b"\r", b"\\r")


def _unescape(name: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(name):
        byte = name[i : i + 1]
        if byte != b"\\":
            out += byte
            i += 1
            continue
        escaped = name[i + 1 : i + 2]
        if escaped == b"\\":
            out += b"\\"
        elif escaped == b"n":
            out += b"\n"
        elif escaped == b"r":
            out += b"\r"
        else:
            raise ValueError(f"bad escape sequence in manifest name {name!r}")
        i += 2
    return bytes(out)


_STDIN_NAME = b"-"


def serialise(manifest: Mapping[str, Entry] | Mapping[str, str]) -> bytes:
    """Canonical coreutils text; the same manifest always yields the same bytes."""
    lines: list[bytes] = []
    for relpath in sorted(manifest, key=_sort_key):
        value = manifest[relpath]
        hexdigest = value.sha256 if isinstance(value, Entry) else value
        name = os.fsencode(relpath)
        if name == _STDIN_NAME:
            name = b"./" + name  # `sha256sum -c` reads "-" as stdin; "./-" is the file
        if _needs_escape(name):
            lines.append(b"\\" + hexdigest.encode("ascii") + b"  " + _escape(name) + b"\n")
        else:
            lines.append(hexdigest.encode("ascii") + b"  " + name + b"\n")
    return b"".join(lines)


def _check_relpath(name: bytes) -> None:
    parts = name.split(b"/")
    if not name or name.startswith(b"/") or any(p in {b"", b".", b".."} for p in parts):
        raise ValueError(f"manifest name is not a plain relative path: {name!r}")
    if b"\0" in name:
        raise ValueError(f"manifest name contains NUL: {name!r}")


def _parse_line(line: bytes, lineno: int) -> tuple[str, str]:
    escaped = line.startswith(b"\\")
    body = line[1:] if escaped else line
    hexdigest = body[:_HEX_LEN].decode("ascii", errors="replace").lower()
    separator = body[_HEX_LEN : _HEX_LEN + 2]
    if len(hexdigest) != _HEX_LEN or not set(hexdigest) <= _HEX_DIGITS:
        raise ValueError(f"manifest line {lineno}: not a SHA-256 hex digest")
    if separator not in {b"  ", b" *"}:
        raise ValueError(f"manifest line {lineno}: expected '  ' or ' *' after the digest")
    name = body[_HEX_LEN + 2 :]
    if escaped:
        name = _unescape(name)
    if name == b"./" + _STDIN_NAME:
        name = _STDIN_NAME
    _check_relpath(name)
    return os.fsdecode(name), hexdigest


def parse(text: bytes) -> dict[str, str]:
    """Inverse of serialise (relpath -> lowercase hex); any malformed line raises ValueError."""
    if not text:
        return {}
    if not text.endswith(b"\n"):
        text += b"\n"  # tolerate a missing final newline; nothing else
    result: dict[str, str] = {}
    for lineno, line in enumerate(text[:-1].split(b"\n"), start=1):
        relpath, hexdigest = _parse_line(line, lineno)
        if relpath in result:
            raise ValueError(f"manifest line {lineno}: duplicate entry {relpath!r}")
        result[relpath] = hexdigest
    return result


def _cache_fd(run: Path | int, cache_dir_name: str, *, create: bool) -> int:
    check_cache_dir_name(cache_dir_name)
    with fsio.opened(_open_run(run)) as run_fd:
        fd = fsio.open_real_dir(run_fd, cache_dir_name, create=create)
    if fd is None:
        raise FileNotFoundError(f"{cache_dir_name}/ does not exist in the run")
    return fd


def write_manifest(run: Path | int, *, cache_dir_name: str, manifest: Manifest) -> Path:
    """Write `<run>/<cacheDir>/checksums.sha256` atomically, creating the cache dir; returns its path."""
    with fsio.opened(_cache_fd(run, cache_dir_name, create=True)) as cache_fd:
        fsio.write_atomic(cache_fd, MANIFEST_NAME, serialise(manifest))
    base = Path(run) if not isinstance(run, int) else Path(fsio.proc_path(run))
    return base / cache_dir_name / MANIFEST_NAME


def read_manifest_bytes(run: Path | int, *, cache_dir_name: str) -> bytes:
    """The recorded manifest's text; FileNotFoundError when there is none."""
    with fsio.opened(_cache_fd(run, cache_dir_name, create=False)) as cache_fd:
        return fsio.read_file(cache_fd, MANIFEST_NAME)


def read_manifest(run: Path | int, *, cache_dir_name: str) -> dict[str, str]:
    return parse(read_manifest_bytes(run, cache_dir_name=cache_dir_name))


def compare(expected: Mapping[str, str], actual: Mapping[str, str]) -> Comparison:
    """Missing/differing fail; extra (present only in actual) is reported but passes."""
    missing = [p for p in expected if p not in actual]
    differing = [p for p in expected if p in actual and expected[p].lower() != actual[p].lower()]
    extra = [p for p in actual if p not in expected]
    return Comparison(
        missing=tuple(sorted(missing, key=_sort_key)),
        differing=tuple(sorted(differing, key=_sort_key)),
        extra=tuple(sorted(extra, key=_sort_key)),
    )
