"""Manifest: hashing real files, the canonical text, sha256sum compatibility, compare()."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nassync.mover.manifest import (
    Entry,
    Manifest,
    build_manifest,
    compare,
    parse,
    read_manifest,
    serialise,
    write_manifest,
)

CACHE = ".exlab-wizard"
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write(root: Path, rel: str, data: bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


WEIRD_NAMES = {
    "plain.txt": b"plain",
    "with space.dat": b"space",
    "new\nline.bin": b"newline",
    "back\\slash.txt": b"backslash",
    "carriage\rreturn": b"cr",
    "ümläut/日本語.tif": b"utf8",
    "empty.bin": b"",
    "a/b/c/d/deep.raw": b"deep",
    "-leading-dash": b"dash",
    " leading space": b"lead",
}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "Run_2026-11-28T10-15"
    for rel, data in WEIRD_NAMES.items():
        write(run_dir, rel, data)
    write(run_dir, f"{CACHE}/creation.json", b"{}")
    write(run_dir, f"{CACHE}/nested/x", b"cache")
    return run_dir


def test_hashes_every_regular_file_with_names_of_any_shape(run: Path) -> None:
    manifest = build_manifest(run, cache_dir_name=CACHE)
    assert manifest.digests() == {rel: sha(data) for rel, data in WEIRD_NAMES.items()}
    assert manifest["empty.bin"] == Entry(sha256=EMPTY_SHA, size=0)
    assert manifest.files == len(WEIRD_NAMES)
    assert manifest.bytes == sum(len(d) for d in WEIRD_NAMES.values())


def test_cache_dir_excluded_only_at_run_root(run: Path) -> None:
    write(run, f"sub/{CACHE}/kept.txt", b"not our cache")
    manifest = build_manifest(run, cache_dir_name=CACHE)
    assert not any(rel.startswith(f"{CACHE}/") for rel in manifest)
    assert f"sub/{CACHE}/kept.txt" in manifest


def test_symlinks_are_not_followed_or_listed(run: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (run / "escape").symlink_to(outside)
    (run / "escape-file").symlink_to(outside / "secret")
    (run / "inner").symlink_to("plain.txt")
    (run / "dangling").symlink_to("nowhere")
    manifest = build_manifest(run, cache_dir_name=CACHE)
    assert set(manifest) == set(WEIRD_NAMES)
    assert set(manifest.symlinks) == {"escape", "escape-file", "inner", "dangling"}


def test_fifo_is_recorded_as_special_not_hashed(run: Path) -> None:
    os.mkfifo(run / "pipe")  # hashing it would block forever
    manifest = build_manifest(run, cache_dir_name=CACHE)
    assert "pipe" not in manifest
    assert manifest.special == ("pipe",)


def test_thousand_files_parallel_equals_serial(tmp_path: Path) -> None:
    run = tmp_path / "many"
    expected = {}
    for i in range(1000):
        rel = f"d{i % 17}/f{i:04d}.bin"
        data = f"file {i}".encode() * (i % 7)
        write(run, rel, data)
        expected[rel] = sha(data)
    parallel = build_manifest(run, cache_dir_name=CACHE, workers=8)
    serial = build_manifest(run, cache_dir_name=CACHE, workers=1)
    assert parallel.digests() == expected
    assert serial.digests() == expected
    assert parallel.digest() == serial.digest()
    assert sorted(parallel.dirs) == sorted(f"d{i}" for i in range(17))


def test_large_file_spanning_many_buffers(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 12345)
    write(tmp_path / "r", "big.raw", data)
    manifest = build_manifest(tmp_path / "r", cache_dir_name=CACHE)
    assert manifest["big.raw"] == Entry(sha256=sha(data), size=len(data))


def test_missing_run_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        build_manifest(tmp_path / "absent", cache_dir_name=CACHE)


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b"])
def test_cache_dir_name_must_be_one_component(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="one plain path component"):
        build_manifest(tmp_path, cache_dir_name=bad)


def test_serialise_is_sorted_by_utf8_bytes_and_escapes_like_coreutils() -> None:
    digest = "ab" * 32
    text = serialise({"b": digest, "a\\b": digest, "Z": digest, "é": digest, "n\nl": digest})
    assert text.split(b"\n") == [
        f"{digest}  Z".encode(),
        f"\\{digest}  a\\\\b".encode(),
        f"{digest}  b".encode(),
        f"\\{digest}  n\\nl".encode(),
        f"{digest}  é".encode(),
        b"",
    ]


def test_digest_is_sha256_of_serialised_text(run: Path) -> None:
    manifest = build_manifest(run, cache_dir_name=CACHE)
    assert manifest.digest() == sha(serialise(manifest))
    (run / "plain.txt").write_bytes(b"changed")
    assert build_manifest(run, cache_dir_name=CACHE).digest() != manifest.digest()


def test_write_read_round_trip_and_sha256sum_accepts(run: Path) -> None:
    manifest = build_manifest(run, cache_dir_name=CACHE)
    path = write_manifest(run, cache_dir_name=CACHE, manifest=manifest)
    assert path == run / CACHE / "checksums.sha256"
    assert read_manifest(run, cache_dir_name=CACHE) == manifest.digests()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    sha256sum = shutil.which("sha256sum")
    assert sha256sum is not None
    check = subprocess.run(
        [sha256sum, "--check", "--strict", str(path)], cwd=run, capture_output=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.count(b": OK") == len(WEIRD_NAMES)


def test_sha256sum_catches_a_changed_file_with_our_manifest(run: Path) -> None:
    manifest = build_manifest(run, cache_dir_name=CACHE)
    path = write_manifest(run, cache_dir_name=CACHE, manifest=manifest)
    (run / "new\nline.bin").write_bytes(b"tampered")
    check = subprocess.run(["sha256sum", "--check", str(path)], cwd=run, capture_output=True)
    assert check.returncode == 1


def test_parse_accepts_coreutils_output_including_binary_markers(run: Path) -> None:
    names = sorted(WEIRD_NAMES)
    produced = subprocess.run(
        ["sha256sum", "--binary", "--", *names], cwd=run, capture_output=True, check=True
    ).stdout
    assert b" *" in produced
    assert parse(produced) == {rel: sha(WEIRD_NAMES[rel]) for rel in names}


def test_parse_tolerates_missing_final_newline_and_uppercase_hex() -> None:
    digest = "AB" * 32
    assert parse(f"{digest}  x".encode()) == {"x": digest.lower()}
    assert parse(b"") == {}


@pytest.mark.parametrize(
    "line",
    [
        b"not a manifest line\n",
        b"\n",
        b"ab" * 32 + b" x\n",  # one space only
        b"zz" * 32 + b"  x\n",  # not hex
        b"ab" * 31 + b"  x\n",  # too short
        b"ab" * 32 + b"  \n",  # no name
        b"ab" * 32 + b"  /etc/passwd\n",  # absolute
        b"ab" * 32 + b"  a/../../b\n",  # escapes
        b"ab" * 32 + b"  a//b\n",  # empty component
        b"\\" + b"ab" * 32 + b"  bad\\qescape\n",
        b"ab" * 32 + b"  x\n" + b"ab" * 32 + b"  x\n",  # duplicate
    ],
)
def test_parse_rejects_malformed_lines(line: bytes) -> None:
    with pytest.raises(ValueError):
        parse(line)


_name_chars = st.characters(codec="utf-8", exclude_characters="/\0", exclude_categories=["Cs"])
_component = st.text(_name_chars, min_size=1, max_size=12).filter(lambda s: s not in {".", ".."})
_relpath = st.lists(_component, min_size=1, max_size=3).map("/".join)
_hex = st.binary(min_size=32, max_size=32).map(bytes.hex)


@given(st.dictionaries(_relpath, _hex, max_size=20))
def test_serialise_parse_round_trip(entries: dict[str, str]) -> None:
    text = serialise(entries)
    assert parse(text) == entries
    assert serialise(parse(text)) == text  # canonical: the same bytes every time


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_component, min_size=1, max_size=6, unique=True))
def test_arbitrary_names_hash_and_check_with_sha256sum(tmp_path: Path, names: list[str]) -> None:
    run = Path(tempfile.mkdtemp(dir=tmp_path))  # hypothesis replays examples: never reuse a dir
    for i, name in enumerate(names):
        (run / name).write_bytes(str(i).encode())
    manifest = build_manifest(run, cache_dir_name=CACHE)
    assert set(manifest) == set(names)
    path = write_manifest(run, cache_dir_name=CACHE, manifest=manifest)
    check = subprocess.run(
        ["sha256sum", "--check", "--strict", str(path)], cwd=run, capture_output=True
    )
    assert check.returncode == 0, check.stderr
    shutil.rmtree(run)


def test_manifest_is_a_read_only_mapping(run: Path) -> None:
    manifest = build_manifest(run, cache_dir_name=CACHE)
    assert isinstance(manifest, Manifest)
    with pytest.raises(TypeError):
        manifest.entries["x"] = Entry(sha256=EMPTY_SHA, size=0)  # type: ignore[index]


A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.mark.parametrize(
    ("expected", "actual", "missing", "differing", "extra", "ok"),
    [
        ({"x": A}, {"x": A}, (), (), (), True),
        ({"x": A}, {"x": A.upper()}, (), (), (), True),
        ({"x": A, "y": B}, {"x": A}, ("y",), (), (), False),
        ({"x": A}, {"x": B}, (), ("x",), (), False),
        ({"x": A}, {"x": A, "z": C}, (), (), ("z",), True),
        ({"x": A}, {}, ("x",), (), (), False),
        ({}, {"z": C}, (), (), ("z",), True),
        ({"b": A, "a": A, "c": A}, {"c": B}, ("a", "b"), ("c",), (), False),
    ],
)
def test_compare(
    expected: dict[str, str],
    actual: dict[str, str],
    missing: tuple[str, ...],
    differing: tuple[str, ...],
    extra: tuple[str, ...],
    ok: bool,
) -> None:
    result = compare(expected, actual)
    assert (result.missing, result.differing, result.extra, result.ok) == (
        missing,
        differing,
        extra,
        ok,
    )


def test_a_file_named_dash_is_checked_as_a_file_by_sha256sum(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "-").write_bytes(b"not stdin")
    (run / "sub").mkdir()
    (run / "sub" / "-").write_bytes(b"deeper")
    manifest = build_manifest(run, cache_dir_name=CACHE)
    path = write_manifest(run, cache_dir_name=CACHE, manifest=manifest)
    assert b"  ./-\n" in path.read_bytes()
    assert parse(path.read_bytes()) == manifest.digests()
    check = subprocess.run(["sha256sum", "--check", "--strict", str(path)], cwd=run, capture_output=True,
                           input=b"", timeout=30)
    assert check.returncode == 0, check.stderr
    assert b"-: OK" in check.stdout
