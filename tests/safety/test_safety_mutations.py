"""The mutation harness and the property of issue #9: nothing is deleted that the NAS does not hold.

`delete_run_data` (mover/deletion.py) calls `hook(point, relpath)` at
"before-check" (about to compare the file with the one hashed), "checked"
(it is; the rename to a private name is next) and "renamed" (it sits under
its private name; the last look and the unlink are next). At each of those
moments the harness changes the run the way people and programs do —
rewrite in place with the same size, rename another file over it, truncate,
append, swap the file or its directory for a symlink to something outside,
put a new file or directory next to it — and then checks, by content:

    every content that ever existed under the run still exists there (under
    any name, `.nassync-deleting-*` and `*.nassync-kept-*` included), or it
    is exactly what the manifest proves on the NAS for the path it had;

and whatever a symlink pointed to outside the run is untouched. The property
test runs random sequences of such mutations at random hook calls (and before
the cleanup starts), derandomized so that it is the same every run.

In-process on purpose: the interleavings are exact and hundreds of them run in
seconds. The same hook points are attacked through the real CLI in
test_safety_cleanup.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nassync.mover.deletion import CleanupIncomplete, CleanupRefused, delete_run_data
from nassync.mover.manifest import Entry, build_manifest, write_manifest

CACHE = ".exlab-wizard"
TARGET = "sub/target.bin"
MUTATIONS = ("rewrite-same-size", "rename-over", "truncate", "append", "symlink-file", "symlink-parent",
             "new-file", "new-dir")
POINTS = ("before-check", "checked", "renamed")
SIZES = {"small": 1024, "big": 4 << 20}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class World:
    """A source root with one run, a directory outside it, and every content the run ever held."""

    root: Path
    digests: dict[str, str] = field(default_factory=dict)  # the manifest: what the NAS holds
    ever: list[tuple[str | None, bytes]] = field(default_factory=list)  # (path it had, content); None: new
    counter: int = 0

    @property
    def source(self) -> Path:
        return self.root / "source"

    @property
    def run(self) -> Path:
        return self.source / "Run_1"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    def fresh(self, tag: str) -> bytes:
        self.counter += 1
        data = f"new content {self.counter} ({tag})\n".encode()
        self.ever.append((None, data))
        return data

    def overwritten(self, data: bytes) -> None:
        """The mutation itself destroyed `data` (a rewrite, a rename over it): nassync cannot lose it."""
        with contextlib.suppress(ValueError):
            self.ever.remove((None, data))

    def contents_left(self) -> set[bytes]:
        """Every regular file's bytes under the source root (run, moved-away dirs; no link followed)."""
        found: set[bytes] = set()
        for dirpath, dirnames, filenames in os.walk(self.source, followlinks=False):
            for name in filenames + dirnames:
                path = os.path.join(dirpath, name)
                if stat.S_ISREG(os.lstat(path).st_mode):
                    found.add(Path(path).read_bytes())
        return found

    def check(self) -> None:
        left = self.contents_left()
        for path, data in self.ever:
            if data in left:
                continue
            assert path is not None and self.digests.get(path) == _sha(data), (
                f"content of {path or 'a new file'!r} ({len(data)} bytes) was deleted, and the NAS does not hold it")


def _snapshot(root: Path) -> dict[str, tuple[int, bytes | str]]:
    out: dict[str, tuple[int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in filenames + dirnames:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISREG(info.st_mode):
                out[rel] = (info.st_ino, Path(path).read_bytes())
            elif stat.S_ISLNK(info.st_mode):
                out[rel] = (info.st_ino, os.readlink(path))
            else:
                out[rel] = (info.st_ino, "dir")
    return out


def make_world(root: Path, files: dict[str, bytes]) -> World:
    world = World(root=root)
    for relpath, data in files.items():
        path = world.run / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        world.ever.append((relpath, data))
    # Outside the run: decoys under the same names, which a followed link would hit.
    for relpath in files:
        decoy = world.outside / relpath
        decoy.parent.mkdir(parents=True, exist_ok=True)
        decoy.write_bytes(b"OUTSIDE " + relpath.encode())
    manifest = build_manifest(world.run, cache_dir_name=CACHE)
    write_manifest(world.run, cache_dir_name=CACHE, manifest=manifest)
    world.digests = manifest.digests()
    return world


def _inside(world: World, path: Path) -> bool:
    """True when no component from the source root down to `path` (itself included) is a symlink.

    The attacker acts on the run, not through a link it planted: a path through
    one would change the outside files whose untouchedness is checked.
    """
    current = world.source
    for part in path.relative_to(world.source).parts:
        current = current / part
        if current.is_symlink():
            return False
    return True


def _location(world: World, relpath: str, *, private: bool) -> Path | None:
    """Where file `relpath` is now: its private name while it is being deleted, else its own name."""
    parent = (world.run / relpath).parent
    if not _inside(world, parent):
        return None
    if private:
        matches = list(parent.glob(".nassync-deleting-*"))
        if len(matches) == 1:
            return matches[0]
    path = world.run / relpath
    with contextlib.suppress(OSError):
        if stat.S_ISREG(os.lstat(path).st_mode):
            return path
    return None


def mutate(world: World, kind: str, relpath: str, *, private: bool = False) -> bool:
    """Apply mutation `kind` to file `relpath` (or its directory); False when there is nothing to mutate."""
    where = _location(world, relpath, private=private)
    parent = (world.run / relpath).parent
    if not _inside(world, parent) or not parent.is_dir():
        return False
    if kind == "new-file":
        (parent / f"new-{world.counter}.bin").write_bytes(world.fresh("new file"))
        return True
    if kind == "new-dir":
        new_dir = parent / f"newdir-{world.counter}"
        new_dir.mkdir()
        (new_dir / "inside.bin").write_bytes(world.fresh("file in a new dir"))
        return True
    if kind == "symlink-parent":
        world.counter += 1
        parent.rename(parent.with_name(parent.name + f".moved-away-{world.counter}"))
        target = world.outside / os.path.relpath(parent, world.run) if parent != world.run else world.outside
        target.mkdir(parents=True, exist_ok=True)
        parent.symlink_to(target, target_is_directory=True)
        return True
    if where is None:
        return False
    old = where.read_bytes()
    if kind in {"rewrite-same-size", "truncate", "append", "rename-over"}:
        world.overwritten(old)
    if kind == "rewrite-same-size":
        new = bytes([old[0] ^ 0xFF]) + old[1:] if old else b""
        if not old:
            return False
        fd = os.open(where, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.pwrite(fd, new[:1], 0)
        finally:
            os.close(fd)
        world.ever.append((None, new))
    elif kind == "truncate":
        os.truncate(where, len(old) // 2)
        world.ever.append((None, old[: len(old) // 2]))
    elif kind == "append":
        with open(where, "ab") as handle:
            handle.write(b"appended")
        world.ever.append((None, old + b"appended"))
    elif kind == "rename-over":
        incoming = where.with_name(f".incoming-{world.counter}")
        incoming.write_bytes(world.fresh("renamed over"))
        incoming.rename(where)
    elif kind == "symlink-file":
        world.counter += 1
        where.rename(where.with_name(where.name + f".moved-away-{world.counter}"))
        where.symlink_to(world.outside / relpath)
    elif kind == "touch":
        os.utime(where)
    else:
        raise ValueError(kind)
    return True


def _left_private(world: World) -> list[Path]:
    """Files nassync left under a private name (put back, or kept next to the name, is what it must do)."""
    private = re.compile(r"\.nassync-deleting-[0-9a-f]{16}")
    return [p for p in world.source.rglob(".nassync-deleting-*") if private.fullmatch(p.name)]


def run_cleanup(world: World, hook: object, *, retain_cache: bool) -> str:
    try:
        delete_run_data(world.run, cache_dir_name=CACHE, manifest=world.digests, retain_cache=retain_cache,
                        quiet_period_seconds=0, hook=hook)  # type: ignore[arg-type]
    except CleanupIncomplete:
        return "incomplete"
    except CleanupRefused:
        return "refused"
    return "done"


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="nassync-mutations-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- the harness: every mutation at every hook point, small and big file ----------------------------------


@pytest.mark.parametrize("retain_cache", [True, False], ids=["retain", "no-retain"])
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("mutation", MUTATIONS)
def test_no_byte_is_deleted_that_the_nas_does_not_hold(
        tmp_path: Path, mutation: str, point: str, size: str, retain_cache: bool) -> None:
    files = {"a.txt": b"top level\n", "other/o.bin": os.urandom(300), "sub/aa.bin": os.urandom(500),
             TARGET: os.urandom(SIZES[size]), "sub/zz.bin": os.urandom(700)}
    world = make_world(tmp_path, files)
    outside_before = _snapshot(world.outside)
    fired: list[str] = []

    def hook(at: str, relpath: str) -> None:
        if at == point and relpath == TARGET and not fired:
            assert mutate(world, mutation, TARGET, private=point == "renamed"), "nothing to mutate"
            fired.append(at)

    outcome = run_cleanup(world, hook, retain_cache=retain_cache)
    assert fired, "the mutation never happened"
    world.check()
    assert _snapshot(world.outside) == outside_before, "a path outside the run was changed"
    changed_content = mutation in {"rewrite-same-size", "rename-over", "truncate", "append", "symlink-file"}
    if changed_content:
        # The target is not the hashed file any more: cleanup stops and deletes nothing after it.
        assert outcome == "incomplete"
        assert (world.run / "sub/zz.bin").read_bytes() == files["sub/zz.bin"]
    else:
        # The target is still the hashed file; what changed around it keeps the run from being called clean.
        assert outcome == "incomplete"
    assert not _left_private(world)


def test_a_run_holding_another_run_is_never_deleted_even_if_its_manifest_covers_it(tmp_path: Path) -> None:
    """Defence in depth for issue #9 item 2: push refuses this, but a manifest written before must not count."""
    world = make_world(tmp_path, {"p.bin": b"parent", "Sub_1/c.bin": b"child", f"Sub_1/{CACHE}/nassync-owner": b"o"})
    assert f"Sub_1/{CACHE}/nassync-owner" in world.digests  # the parent's push took the child's cache dir along
    with pytest.raises(CleanupRefused, match="holds another run"):
        delete_run_data(world.run, cache_dir_name=CACHE, manifest=world.digests, retain_cache=True)
    assert (world.run / "Sub_1/c.bin").read_bytes() == b"child"


# --- the property: random mutations at random moments ----------------------------------------------------

_KINDS = (*MUTATIONS, "touch")
_names = st.sampled_from(["a.bin", "b.bin", "d1/c.bin", "d1/d.bin", "d1/d2/e.bin", "f.bin"])
_runs = st.dictionaries(_names, st.binary(min_size=1, max_size=64), min_size=1, max_size=6)
# (hook call index or -1 for "before cleanup starts", mutation, which file it aims at)
_events = st.lists(st.tuples(st.integers(min_value=-1, max_value=18), st.sampled_from(_KINDS),
                             st.integers(min_value=0, max_value=5)), max_size=6)


@settings(derandomize=True, max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(files=_runs, events=_events, retain_cache=st.booleans())
def test_property_every_deleted_file_is_on_the_nas_with_the_manifests_digest(
        files: dict[str, bytes], events: list[tuple[int, str, int]], retain_cache: bool) -> None:
    with scratch() as root:
        world = make_world(root, files)
        outside_before = _snapshot(world.outside)
        names = sorted(files)
        calls: list[tuple[str, str]] = []

        def apply(at: int, point: str | None, current: str | None) -> None:
            for index, kind, which in events:
                if index != at:
                    continue
                relpath = names[which % len(names)]
                mutate(world, kind, relpath, private=point == "renamed" and relpath == current)

        apply(-1, None, None)  # between the last verify and the cleanup

        def hook(point: str, relpath: str) -> None:
            calls.append((point, relpath))
            apply(len(calls) - 1, point, relpath)

        run_cleanup(world, hook, retain_cache=retain_cache)
        world.check()
        assert _snapshot(world.outside) == outside_before
        assert not _left_private(world)


# --- the harness itself: it must fail against the defect it is there to catch ------------------------------


def _size_only(self: Entry, info: os.stat_result) -> bool:
    return stat.S_ISREG(info.st_mode) and info.st_size == self.size  # the pre-fix check (issue #9 item 1)


def test_the_harness_catches_a_size_only_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Entry, "is_same_file", _size_only)
    with pytest.raises(AssertionError, match="was deleted, and the NAS does not hold it"):
        test_no_byte_is_deleted_that_the_nas_does_not_hold(tmp_path, "rewrite-same-size", "before-check", "big", True)


def test_the_property_catches_a_size_only_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Entry, "is_same_file", _size_only)
    with pytest.raises(AssertionError, match="was deleted, and the NAS does not hold it"):
        test_property_every_deleted_file_is_on_the_nas_with_the_manifests_digest()
