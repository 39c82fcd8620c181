"""ProgressReporter: one JSON object per line, at most ~1/s, final sample always shown."""

from __future__ import annotations

import io
import json
from pathlib import Path

from nassync.mover.manifest import build_manifest
from nassync.mover.progress import ProgressReporter
from nassync.mover.steps.verify import VerifyProgress
from nassync.transports.base import TransferProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttles_to_one_line_per_interval_and_flushes_the_last() -> None:
    clock, out = FakeClock(), io.StringIO()
    reporter = ProgressReporter(step="push", total_bytes=1000, stream=out, clock=clock)
    for i in range(1, 31):  # 30 samples over 3 seconds
        clock.now = i * 0.1
        reporter.update(TransferProgress(bytes=i * 10, bytes_per_second=100.0))
    reporter.finish()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert 3 <= len(lines) <= 5
    assert lines[-1]["bytes"] == 300
    assert lines[-1] == {
        "event": "progress",
        "step": "push",
        "bytes": 300,
        "totalBytes": 1000,
        "percent": 30.0,
        "bytesPerSecond": 100,
        "etaSeconds": 7,
    }


def test_tool_total_wins_over_the_manifest_total() -> None:
    out = io.StringIO()
    reporter = ProgressReporter(step="push", total_bytes=1000, stream=out)
    reporter.update(TransferProgress(bytes=50, total_bytes=100, bytes_per_second=10.0, eta_seconds=5))
    record = json.loads(out.getvalue())
    assert record["percent"] == 50.0
    assert record["etaSeconds"] == 5


def test_finish_without_samples_writes_nothing() -> None:
    out = io.StringIO()
    ProgressReporter(step="push", stream=out).finish()
    assert out.getvalue() == ""


def test_verify_progress_is_local_rehash_then_remote_half(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "raw").mkdir(parents=True)
    for i in range(20):
        (run / "raw" / f"f{i}.bin").write_bytes(b"x" * (i + 1) * 1000)
    total = sum((i + 1) * 1000 for i in range(20))
    out = io.StringIO()
    progress = VerifyProgress(ProgressReporter(step="verify", stream=out, min_interval=0.0))
    seen: list[tuple[int, int]] = []

    def spy(done: int, all_bytes: int) -> None:
        seen.append((done, all_bytes))
        progress.local(done, all_bytes)

    build_manifest(run, cache_dir_name=".cache", on_progress=spy)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # never goes backwards
    assert seen[-1] == (total, total)
    progress.remote_done()
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(r["step"] == "verify" and r["totalBytes"] == 2 * total for r in lines)
    assert lines[-2]["percent"] == 50.0  # local half done, the NAS's hashes still to come
    assert lines[-1]["percent"] == 100.0


def test_a_restarted_tool_continues_the_byte_count() -> None:
    out = io.StringIO()
    reporter = ProgressReporter(step="push", total_bytes=1000, stream=out, min_interval=0.0)
    reporter.update(TransferProgress(bytes=400))
    reporter.offset = reporter.last.bytes if reporter.last else 0
    reporter.update(TransferProgress(bytes=100))  # the new run counts from zero
    assert [json.loads(line)["bytes"] for line in out.getvalue().splitlines()] == [400, 500]
