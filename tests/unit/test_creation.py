"""creation.json updates: preserve the lab app's fields, write atomically, never clobber."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from nassync.mover import creation
from nassync.mover.creation import load_creation, set_sync_status

CACHE = ".exlab-wizard"

APP_DOCUMENT: dict[str, Any] = {
    "schema_version": "1.8",
    "sync_status": "pending",
    "paths": {"local": "/data/x", "nas": "/volume1/x"},
    "variables": {"sample": "Ü-42", "operator": "ana"},
    "validation_overrides": [
        {"id": "o1", "problem_class": "illegal_filesystem_character", "revoked": False}
    ],
}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    (run_dir / CACHE).mkdir(parents=True)
    (run_dir / CACHE / "creation.json").write_text(json.dumps(APP_DOCUMENT), encoding="utf-8")
    return run_dir


def test_sets_status_and_preserves_every_other_field(run: Path) -> None:
    written = set_sync_status(run, cache_dir_name=CACHE, status="synced")
    on_disk = load_creation(run, cache_dir_name=CACHE)
    assert on_disk == written == {**APP_DOCUMENT, "sync_status": "synced"}
    assert list(on_disk) == list(APP_DOCUMENT)  # key order kept for human diffs


def test_extra_fields_are_merged(run: Path) -> None:
    set_sync_status(
        run, cache_dir_name=CACHE, status="synced", extra={"synced_at": "2026-11-30T10:00:00Z"}
    )
    doc = load_creation(run, cache_dir_name=CACHE)
    assert doc["synced_at"] == "2026-11-30T10:00:00Z"
    assert doc["variables"] == APP_DOCUMENT["variables"]


def test_a_run_without_creation_json_never_gets_one(tmp_path: Path) -> None:
    # A file holding only sync_status is one the lab app refuses to read (no
    # schema_version); the SyncJob's status says where such a run stands.
    run = tmp_path / "fresh"
    run.mkdir()
    assert set_sync_status(run, cache_dir_name=CACHE, status="blocked_by_validation") is None
    assert list(run.iterdir()) == []
    (run / CACHE).mkdir()
    assert set_sync_status(run, cache_dir_name=CACHE, status="synced") is None
    assert list((run / CACHE).iterdir()) == []


def test_missing_file_loads_as_empty(tmp_path: Path) -> None:
    assert load_creation(tmp_path, cache_dir_name=CACHE) == {}


def test_missing_run_dir_is_an_error_not_a_new_tree(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        set_sync_status(tmp_path / "gone", cache_dir_name=CACHE, status="synced")
    assert not (tmp_path / "gone").exists()


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_unparsable_file_is_never_clobbered(run: Path, content: bytes) -> None:
    path = run / CACHE / "creation.json"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="refusing to touch it"):
        set_sync_status(run, cache_dir_name=CACHE, status="synced")
    assert path.read_bytes() == content


def test_unknown_status_rejected(run: Path) -> None:
    with pytest.raises(ValueError, match="unknown sync_status"):
        set_sync_status(run, cache_dir_name=CACHE, status="done")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not inside"):
        set_sync_status(run, cache_dir_name=CACHE, status="synced", extra={"sync_status": "x"})


def test_file_mode_is_preserved(run: Path) -> None:
    path = run / CACHE / "creation.json"
    path.chmod(0o664)
    set_sync_status(run, cache_dir_name=CACHE, status="synced")
    assert path.stat().st_mode & 0o777 == 0o664


def test_failed_write_leaves_the_old_file_intact(
    run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = run / CACHE / "creation.json"
    before = path.read_bytes()

    def crash(*_: object, **__: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        set_sync_status(run, cache_dir_name=CACHE, status="synced")
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["creation.json", "creation.json.lock"]


def test_replaced_not_rewritten_in_place(run: Path) -> None:
    # A reader holding the old file keeps a complete old document: proof of tmp + rename.
    path = run / CACHE / "creation.json"
    old_inode = path.stat().st_ino
    with path.open("rb") as reader:
        set_sync_status(run, cache_dir_name=CACHE, status="synced")
        assert json.loads(reader.read()) == APP_DOCUMENT
    assert path.stat().st_ino != old_inode


def test_concurrent_updates_lose_nothing(run: Path) -> None:
    def worker(n: int) -> None:
        for i in range(10):
            set_sync_status(run, cache_dir_name=CACHE, status="synced", extra={f"w{n}_{i}": i})

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    doc = load_creation(run, cache_dir_name=CACHE)
    assert {k for k in doc if k.startswith("w")} == {
        f"w{n}_{i}" for n in range(4) for i in range(10)
    }
    assert doc["variables"] == APP_DOCUMENT["variables"]


def test_lock_is_a_sidecar_file(run: Path) -> None:
    set_sync_status(run, cache_dir_name=CACHE, status="synced")
    assert (run / CACHE / ("creation.json" + creation.LOCK_SUFFIX)).exists()
    assert os.path.exists(run / CACHE / "creation.json")
