"""The push step: claim the remote run directory, write the manifest, copy.

Order matters and each step is there for a reason:
1. The run must exist (a run deleted before its push is LocalVanished, final).
2. The remote owner marker `<dest>/<runPath>/<cacheDir>/nassync-owner` must be
   absent or ours: two SyncJobs must never write into one NAS directory. It is
   checked before hashing so a conflict fails in seconds, not after an hour.
3. The manifest is built and written into the cache dir BEFORE the copy, so
   the NAS carries `checksums.sha256` next to the data (an admin can run
   `sha256sum -c` there), and our owner marker is written next to it.
4. The copy runs with progress; its failure is classified by the transport.
5. Every manifest file must still exist afterwards: a file deleted mid-copy
   may have been copied from an open descriptor without any tool noticing.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import stat
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO

from nassync.api.mover_io import (
    ErrorKind,
    ManifestSummary,
    MoverParams,
    MoverResult,
    TransferSummary,
)
from nassync.mover.logs import MoverLog
from nassync.mover.manifest import Manifest, atomic_write_bytes, build_manifest, write_manifest
from nassync.mover.outcome import StepFailed, examples, fail
from nassync.mover.progress import ProgressReporter
from nassync.mover.run import run_dir_of
from nassync.transports.bandwidth import limit_at, next_change
from nassync.transports.base import OWNER_MARKER, Command, Transport, TransportError
from nassync.transports.catalog import transport_for

_TAIL_LINES = 400  # stderr lines kept for classification


@dataclass(frozen=True)
class RunOutcome:
    returncode: int
    lines: tuple[str, ...]  # non-progress output lines, oldest first (bounded)
    stopped_at_deadline: bool = False  # ended by us at `stop_at`, to be run again


def _pump(stream: IO[bytes], name: str, lines: queue.Queue[tuple[str, str | None]]) -> None:
    """Split a stream on \\n and \\r (rsync redraws progress with \\r) into the queue."""
    buffer = b""
    for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
        buffer += chunk.replace(b"\r", b"\n")
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            lines.put((name, raw.decode("utf-8", errors="replace")))
    if buffer:
        lines.put((name, buffer.decode("utf-8", errors="replace")))
    lines.put((name, None))


@contextlib.contextmanager
def _forward_sigterm(proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """Pass SIGTERM (pod deletion, activeDeadlineSeconds) on so the tool cleans up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_with_progress(command: Command, *, transport: Transport, reporter: ProgressReporter,
                      stop_at: float | None = None) -> RunOutcome:
    """Run the transfer, feeding progress lines to `reporter`, keeping the rest for errors.

    With `stop_at` (a time.monotonic() deadline), a transfer still running then
    is ended with SIGTERM and the outcome says so, for the caller to restart it.
    """
    try:
        proc = subprocess.Popen(
            list(command.argv),
            env=command.full_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except FileNotFoundError as exc:
        raise fail(ErrorKind.CONFIG, f"{command.argv[0]} is not installed: {exc}") from exc
    assert proc.stdout is not None and proc.stderr is not None
    lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
    for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        threading.Thread(target=_pump, args=(stream, name, lines), daemon=True).start()
    tail: deque[str] = deque(maxlen=_TAIL_LINES)
    open_streams = 2
    deadline_hit = threading.Event()
    finished = threading.Event()
    if stop_at is not None:
        def stop_at_deadline() -> None:
            if not finished.wait(max(0.0, stop_at - time.monotonic())) and proc.poll() is None:
                deadline_hit.set()
                proc.terminate()
        threading.Thread(target=stop_at_deadline, daemon=True).start()
    with _forward_sigterm(proc):
        while open_streams:
            _, line = lines.get()
            if line is None:
                open_streams -= 1
                continue
            sample = transport.parse_push_line(line)
            if sample is not None:
                reporter.update(sample)
            elif line.strip():
                tail.append(line)
        returncode = proc.wait()
    finished.set()
    if deadline_hit.is_set():
        return RunOutcome(returncode=returncode, lines=tuple(tail), stopped_at_deadline=True)
    reporter.finish()
    return RunOutcome(returncode=returncode, lines=tuple(tail))


def vanished_files(run_dir: Path, manifest: Manifest) -> list[str]:
    """Manifest files that are gone, or are no longer regular files (a directory or link took their place)."""
    gone: list[str] = []
    for relpath in manifest:
        try:
            info = os.lstat(run_dir / relpath)
        except FileNotFoundError:
            gone.append(relpath)
            continue
        if not stat.S_ISREG(info.st_mode):
            gone.append(relpath)
    return gone


def _check_owner(transport: Transport, params: MoverParams) -> None:
    remote = transport.remote_dir(run_path=params.run_path)
    try:
        owner = transport.read_owner(run_path=params.run_path, cache_dir_name=params.cache_dir_name)
    except TransportError as exc:
        raise StepFailed(exc.info) from exc
    if owner is not None and owner != params.owner:
        raise fail(
            ErrorKind.CONFIG,
            f"remote directory {remote} belongs to another SyncJob ({owner}); "
            "nothing was copied. Use another runPath or remove the directory on the NAS.",
        )


def _build_manifest(run_dir: Path, params: MoverParams, log: MoverLog) -> Manifest:
    try:
        manifest = build_manifest(run_dir, cache_dir_name=params.cache_dir_name)
    except FileNotFoundError as exc:
        raise fail(
            ErrorKind.LOCAL_VANISHED,
            f"a file of the run disappeared while it was being hashed: {exc.filename}",
        ) from exc
    log.info("manifest built", files=manifest.files, bytes=manifest.bytes)
    return manifest


def _check_names(transport: Transport, manifest: Manifest, summary: ManifestSummary) -> None:
    problems = [(p, why) for p in manifest if (why := transport.name_problem(p)) is not None]
    if problems:
        shown = ", ".join(repr(p) for p, _ in problems[:3])
        raise fail(
            ErrorKind.CONFIG,
            f"{len(problems)} file name(s) cannot be copied and proven with {transport.name}: "
            f"{problems[0][1]} (e.g. {shown}); rename them. Nothing was copied.",
            manifest=summary,
        )


def _write_cache(run_dir: Path, params: MoverParams, manifest: Manifest) -> None:
    write_manifest(run_dir, cache_dir_name=params.cache_dir_name, manifest=manifest)
    marker = run_dir / params.cache_dir_name / OWNER_MARKER
    atomic_write_bytes(marker, (params.owner + "\n").encode("utf-8"))


def _copy(transport: Transport, params: MoverParams, *, run_dir: Path, reporter: ProgressReporter,
          log: MoverLog, now: datetime) -> RunOutcome:
    """Run the copy tool; for tools without a timetable, restart it at each window change."""
    remote = transport.remote_dir(run_path=params.run_path)
    while True:
        command = transport.push_command(source=run_dir, run_path=params.run_path,
                                         bandwidth=params.bandwidth, now=now)
        change = None if transport.follows_timetable else next_change(params.bandwidth, now)
        stop_at = time.monotonic() + (change - now).total_seconds() if change else None
        log.info("copy started", remote=remote, tool=transport.name,
                 bandwidthLimitKiBps=limit_at(params.bandwidth, now),
                 untilWindowChange=change.isoformat() if change else None)
        outcome = run_with_progress(command, transport=transport, reporter=reporter, stop_at=stop_at)
        if not outcome.stopped_at_deadline:
            return outcome
        now = datetime.now(UTC)
        reporter.offset = reporter.last.bytes if reporter.last else reporter.offset
        log.info("bandwidth window changed; restarting the copy with the new limit",
                 bandwidthLimitKiBps=limit_at(params.bandwidth, now))


def push(params: MoverParams, *, log: MoverLog, now: datetime) -> MoverResult:
    run_dir = run_dir_of(params)
    if not run_dir.is_dir():
        raise fail(ErrorKind.LOCAL_VANISHED, f"run directory {params.run_path} does not exist")
    if not params.owner:
        raise fail(ErrorKind.CONFIG, "params.owner is empty; push refuses to write unclaimed")
    transport = transport_for(params.destination)
    remote = transport.remote_dir(run_path=params.run_path)
    _check_owner(transport, params)
    manifest = _build_manifest(run_dir, params, log)
    summary = ManifestSummary(files=manifest.files, bytes=manifest.bytes, sha256=manifest.digest())
    _check_names(transport, manifest, summary)
    _write_cache(run_dir, params, manifest)

    limit = limit_at(params.bandwidth, now)
    reporter = ProgressReporter(step="push", total_bytes=manifest.bytes)
    outcome = _copy(transport, params, run_dir=run_dir, reporter=reporter, log=log, now=now)
    if not run_dir.is_dir():
        raise fail(ErrorKind.LOCAL_VANISHED, "the run directory disappeared during the push", manifest=summary)
    # Checked before the exit code: a file deleted mid-copy makes rclone report
    # "corrupted on transfer", but the cause is the local deletion.
    gone = vanished_files(run_dir, manifest)
    if outcome.returncode != 0 and not gone:
        info = transport.classify(returncode=outcome.returncode, messages=outcome.lines)
        log.error("copy failed", kind=info.kind.value, detail=info.message)
        raise StepFailed(info, manifest=summary)
    if gone:
        raise fail(
            ErrorKind.LOCAL_VANISHED,
            f"{len(gone)} file(s) disappeared from the run during the push, e.g. {', '.join(examples(gone, limit=3))}",
            manifest=summary,
        )
    last = reporter.last
    transfer = TransferSummary(
        bytes=last.bytes if last else 0,
        files=(last.files or 0) if last else 0,
        bandwidthLimitKiBps=limit,
    )
    log.info("copy finished", remote=remote, bytes=transfer.bytes, files=transfer.files)
    return MoverResult(step="push", ok=True, manifest=summary, transfer=transfer, lastRevocationAt=None)
