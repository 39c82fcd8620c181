"""The push step: claim the remote run directory, write the manifest, copy.

Order matters and each step is there for a reason:
1. The run must exist, be reached through real directories (mover/run.py) and
   never have been partly cleaned: a run whose files were deleted after a
   verify is never pushed again (its emptied tree would replace the NAS
   manifest, the only proof of what was deleted).
2. The remote owner markers: `<dest>/<runPath>/<cacheDir>/nassync-owner` must
   be absent or ours, and no run may sit above or below this one on the NAS
   (a parent's copy would overwrite a child's). A NAS manifest that is not
   the one this SyncJob recorded is never replaced. All checked before
   hashing, so a conflict fails in seconds, not after an hour.
3. The manifest is built (an empty run is refused) and written into the cache
   dir BEFORE the copy, so the NAS carries `checksums.sha256` next to the data
   (an admin can run `sha256sum -c` there), with our owner marker beside it.
4. The copy reads the run through its open descriptor, so a symlink swapped
   into the run's path meanwhile redirects nothing. Completion markers are
   copied last, after everything they vouch for.
5. Every manifest file must still exist afterwards: a file deleted mid-copy
   may have been copied from an open descriptor without any tool noticing.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import FrameType
from typing import IO

from nassync.api.mover_io import (
    ErrorKind,
    ManifestSummary,
    MoverParams,
    MoverResult,
    TransferSummary,
)
from nassync.mover import confine, fsio
from nassync.mover.logs import MoverLog
from nassync.mover.manifest import (
    CLEANUP_MARKER,
    MANIFEST_NAME,
    OWNER_MARKER,
    FileChanged,
    Manifest,
    build_manifest,
    parse,
    serialise,
    write_manifest,
)
from nassync.mover.outcome import StepFailed, examples, fail
from nassync.mover.progress import ProgressReporter
from nassync.mover.rules import display_path
from nassync.mover.run import OpenRun, existing_run, load_manifest
from nassync.transports.bandwidth import limit_at, next_change
from nassync.transports.base import Command, PushOptions, Transport, TransportError, private_dirs
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
            stdin=subprocess.PIPE if command.stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=command.pass_fds,
            preexec_fn=command.preexec,
        )
    except FileNotFoundError as exc:
        raise fail(ErrorKind.CONFIG, f"{command.argv[0]} is not installed: {exc}") from exc
    assert proc.stdout is not None and proc.stderr is not None
    if proc.stdin is not None:
        with proc.stdin:
            proc.stdin.write(command.stdin or b"")
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


def vanished_files(run_fd: int, manifest: Iterable[str]) -> list[str]:
    """Manifest files that are gone, or are no longer regular files (a directory or link took their place)."""
    gone: list[str] = []
    for relpath in manifest:
        try:
            info = fsio.lstat_at(run_fd, relpath)
        except OSError:
            gone.append(relpath)
            continue
        if not stat.S_ISREG(info.st_mode):
            gone.append(relpath)
    return gone


def _read_remote(transport: Transport, *, run_path: str, relpath: str) -> bytes | None:
    try:
        return transport.read_remote_file(run_path=run_path, relpath=relpath)
    except TransportError as exc:
        raise StepFailed(exc.info) from exc


def _owner_of(data: bytes | None) -> str | None:
    text = (data or b"").decode("utf-8", errors="replace").strip()
    return text or None


def check_remote_claims(transport: Transport, params: MoverParams) -> None:
    """Refuse a remote run directory that another SyncJob owns, or that is inside or around one.

    Two SyncJobs must never write into one NAS directory, and a run must not
    be pushed into, or over, another run: the NAS copy of one would overwrite
    the only copy of the other. The owner markers of the run, of each
    directory above it and of every run below it are read on the NAS, so this
    holds even for SyncJobs the webhook never saw.
    """
    cache, marker = params.cache_dir_name, OWNER_MARKER
    parts = params.run_path.split("/")
    remote = transport.remote_dir(run_path=params.run_path)
    owner = _owner_of(_read_remote(transport, run_path=params.run_path, relpath=f"{cache}/{marker}"))
    if owner is not None and owner != params.owner:
        raise fail(ErrorKind.CONFIG, f"remote directory {remote} belongs to another SyncJob ({owner}); nothing was "
                                     "copied. Use another runPath or remove the directory on the NAS.")
    for depth in range(1, len(parts)):
        ancestor = "/".join(parts[:depth])
        other = _owner_of(_read_remote(transport, run_path=ancestor, relpath=f"{cache}/{marker}"))
        if other is not None and other != params.owner:
            raise fail(ErrorKind.CONFIG, f"the NAS already holds a run at {ancestor!r} ({other}) that contains "
                                         f"{params.run_path!r}; a run is never pushed into another. Nothing was "
                                         "copied.")
    try:
        below = transport.find_remote_files(run_path=params.run_path, name=marker)
    except TransportError as exc:
        raise StepFailed(exc.info) from exc
    nested = [p for p in below if p != f"{cache}/{marker}" and p.endswith(f"/{cache}/{marker}")]
    if nested:
        inner = nested[0].removesuffix(f"/{cache}/{marker}")
        raise fail(ErrorKind.CONFIG, f"the NAS already holds another run inside {params.run_path!r} (at "
                                     f"{inner!r}); pushing this run would overwrite its copy. Nothing was copied.")


def check_remote_manifest(transport: Transport, params: MoverParams) -> None:
    """Never replace a NAS manifest that is not the one this SyncJob recorded (it may be the only proof)."""
    expected = params.expected_manifest_sha256
    if not expected:
        return
    raw = _read_remote(transport, run_path=params.run_path, relpath=f"{params.cache_dir_name}/{MANIFEST_NAME}")
    if raw is None:
        return
    try:
        digest = hashlib.sha256(serialise(parse(raw))).hexdigest()
    except ValueError:
        digest = hashlib.sha256(raw).hexdigest()
    if digest != expected.lower():
        raise fail(ErrorKind.CONFIG, f"the NAS's {MANIFEST_NAME} for this run is not the one this SyncJob recorded "
                                     "(someone or something else wrote it); nassync never replaces a NAS manifest "
                                     "it cannot account for. Nothing was copied; check the NAS copy.")


def _build_manifest(run: OpenRun, log: MoverLog) -> Manifest:
    try:
        manifest = build_manifest(run.fd, cache_dir_name=run.params.cache_dir_name)
    except FileNotFoundError as exc:
        raise fail(ErrorKind.LOCAL_VANISHED,
                   f"a file of the run disappeared while it was being hashed: {exc.filename}") from exc
    except FileChanged as exc:
        raise fail(ErrorKind.UNKNOWN, f"{exc} (the run is not quiet; the push is retried)") from exc
    log.info("manifest built", files=manifest.files, bytes=manifest.bytes)
    # The gate refuses a run holding another run, but a run can appear inside this one while
    # it waits in the queue: its files would go to the NAS, and later be deleted, as ours.
    nested = manifest.nested_runs(run.params.cache_dir_name)
    if nested:
        shown = ", ".join(repr(display_path(p)) for p in examples(nested, limit=3))
        raise fail(ErrorKind.CONFIG, f"the run holds another run (a directory with its own "
                                     f"{run.params.cache_dir_name}/): {shown}; a run is never pushed as part of "
                                     "another. Nothing was copied.")
    return manifest


def _check_names(transport: Transport, manifest: Iterable[str], summary: ManifestSummary) -> None:
    problems = [(p, why) for p in manifest if (why := transport.name_problem(p)) is not None]
    if problems:
        # Shortened in the middle: a 4 KiB path would push the rest of the message out of the result.
        shown = ", ".join(repr(_middle(display_path(p))) for p, _ in problems[:3])
        raise fail(
            ErrorKind.CONFIG,
            f"{len(problems)} file name(s) cannot be copied and proven with {transport.name}: "
            f"{problems[0][1]} (e.g. {shown}); rename them. Nothing was copied.",
            manifest=summary,
        )


def _middle(text: str, limit: int = 160) -> str:
    half = (limit - 1) // 2
    return text if len(text) <= limit else text[:half] + "…" + text[-half:]


def _write_cache(run: OpenRun, manifest: Manifest) -> None:
    try:
        cache_fd = run.cache_fd(create=True)
    except fsio.NotARealDirectory as exc:
        raise fail(ErrorKind.CONFIG, f"the run's cache dir {exc.strerror}; nothing was copied") from exc
    assert cache_fd is not None
    with fsio.opened(cache_fd):
        write_manifest(run.fd, cache_dir_name=run.params.cache_dir_name, manifest=manifest)
        fsio.write_atomic(cache_fd, OWNER_MARKER, (run.params.owner + "\n").encode("utf-8"))


def _recorded_manifest(run: OpenRun) -> tuple[dict[str, str], ManifestSummary]:
    """A replica's push copies the run the primary's push recorded, manifest included, and never rewrites it.

    Whether the bytes it copies are still those of the manifest is for the
    replica's verify to prove; here the manifest must be the recorded one and
    every file in it must still be there.
    """
    if not run.params.expected_manifest_sha256:
        raise fail(ErrorKind.CONFIG, "a replica push needs expectedManifestSha256 (the primary's manifest); "
                                     "nothing was copied")
    manifest, summary = load_manifest(run)
    gone = vanished_files(run.fd, manifest)
    if gone:
        shown = ", ".join(display_path(p) for p in examples(gone, limit=3))
        raise fail(ErrorKind.LOCAL_VANISHED, f"{len(gone)} file(s) of the recorded manifest are no longer in the "
                                             f"run, e.g. {shown}; nothing was copied", manifest=summary)
    size = sum(fsio.lstat_at(run.fd, relpath).st_size for relpath in manifest)
    return manifest, summary.model_copy(update={"bytes": size})


def _cleanup_started(run: OpenRun) -> bool:
    try:
        cache_fd = run.cache_fd()
    except fsio.NotARealDirectory:
        return False
    if cache_fd is None:
        return False
    with fsio.opened(cache_fd):
        return os.path.lexists(os.path.join(fsio.proc_path(cache_fd), CLEANUP_MARKER))


def _markers(params: MoverParams) -> tuple[str, ...]:
    return tuple(params.completion_marker.names) if params.completion_marker else ()


def _copy(transport: Transport, run: OpenRun, *, options: PushOptions, reporter: ProgressReporter,
          log: MoverLog, now: datetime) -> RunOutcome:
    """Run the copy tool; for tools without a timetable, restart it at each window change."""
    params = run.params
    remote = transport.remote_dir(run_path=params.run_path)
    while True:
        command = transport.push_command(source=run.source_path, run_path=params.run_path,
                                         bandwidth=params.bandwidth, now=now, options=options)
        ruleset = _ruleset(command, run, transport)
        command = replace(command, pass_fds=(run.fd, *((ruleset.fd,) if ruleset else ())),
                          preexec=ruleset.enter if ruleset else None)
        change = None if transport.follows_timetable else next_change(params.bandwidth, now)
        stop_at = time.monotonic() + (change - now).total_seconds() if change else None
        log.info("copy started", remote=remote, tool=transport.name, confinedToRun=ruleset is not None,
                 bandwidthLimitKiBps=limit_at(params.bandwidth, now),
                 untilWindowChange=change.isoformat() if change else None)
        try:
            outcome = run_with_progress(command, transport=transport, reporter=reporter, stop_at=stop_at)
        finally:
            if ruleset is not None:
                ruleset.close()
        if not outcome.stopped_at_deadline:
            return outcome
        now = datetime.now(UTC)
        reporter.offset = reporter.last.bytes if reporter.last else reporter.offset
        log.info("bandwidth window changed; restarting the copy with the new limit",
                 bandwidthLimitKiBps=limit_at(params.bandwidth, now))


def _ruleset(command: Command, run: OpenRun, transport: Transport) -> confine.Ruleset | None:
    """The copy tool may read only the run and what it needs besides (mover/confine.py)."""
    tool = shutil.which(command.argv[0]) or command.argv[0]
    nss = (os.path.dirname(os.environ[v]) for v in ("NSS_WRAPPER_PASSWD", "NSS_WRAPPER_GROUP") if v in os.environ)
    # The kernel reads the tool's file to exec it.
    reads = [os.path.dirname(os.path.abspath(tool)), *transport.local_reads(), *private_dirs(), *nss]
    return confine.prepare((run.fd,), reads)


def push(params: MoverParams, *, log: MoverLog, now: datetime) -> MoverResult:
    if not params.owner:
        raise fail(ErrorKind.CONFIG, "params.owner is empty; push refuses to write unclaimed")
    with existing_run(params) as run:
        return _push(run, log=log, now=now)


def _push(run: OpenRun, *, log: MoverLog, now: datetime) -> MoverResult:
    params = run.params
    if _cleanup_started(run):
        raise fail(ErrorKind.LOCAL_VANISHED,
                   "this run was partly cleaned already (local files were deleted after the NAS copy was "
                   "verified); it is never pushed again, which would replace the NAS manifest with that of "
                   "an emptied run. The NAS copy is the run now.")
    transport = transport_for(params.destination)
    remote = transport.remote_dir(run_path=params.run_path)
    problem = transport.config_problem()
    if problem is not None:
        raise fail(ErrorKind.CONFIG, f"{problem}; nothing was copied")
    check_remote_claims(transport, params)
    check_remote_manifest(transport, params)
    manifest: Iterable[str]
    if params.replica is None:
        built = _build_manifest(run, log)
        summary = ManifestSummary(files=built.files, bytes=built.bytes, sha256=built.digest())
        if not built:
            raise fail(ErrorKind.LOCAL_VANISHED, "the run holds no regular files (run_empty); nothing was pushed",
                       manifest=summary)
        _check_names(transport, built, summary)
        _write_cache(run, built)
        manifest = built
    else:
        manifest, summary = _recorded_manifest(run)
        _check_names(transport, manifest, summary)

    limit = limit_at(params.bandwidth, now)
    reporter = ProgressReporter(step="push", total_bytes=summary.bytes)
    markers = tuple(m for m in _markers(params) if m in manifest)
    options = PushOptions(compare_content=params.compare_content, exclude=markers)
    outcome = _copy(transport, run, options=options, reporter=reporter, log=log, now=now)
    if outcome.returncode == 0 and markers:
        # The completion marker vouches for everything else: it reaches the NAS last.
        outcome = _copy(transport, run, options=PushOptions(compare_content=params.compare_content, only=markers),
                        reporter=reporter, log=log, now=now)
    # Checked before the exit code: a file deleted mid-copy makes rclone report
    # "corrupted on transfer", but the cause is the local deletion.
    gone = vanished_files(run.fd, manifest)
    if outcome.returncode != 0 and not gone:
        info = transport.classify(returncode=outcome.returncode, messages=outcome.lines)
        log.error("copy failed", kind=info.kind.value, detail=info.message)
        raise StepFailed(info, manifest=summary)
    if gone:
        shown = ", ".join(display_path(p) for p in examples(gone, limit=3))
        raise fail(ErrorKind.LOCAL_VANISHED, f"{len(gone)} file(s) disappeared from the run during the push, "
                                             f"e.g. {shown}", manifest=summary)
    last = reporter.last
    transfer = TransferSummary(bytes=last.bytes if last else 0, files=(last.files or 0) if last else 0,
                               bandwidthLimitKiBps=limit)
    log.info("copy finished", remote=remote, bytes=transfer.bytes, files=transfer.files)
    return MoverResult(step="push", ok=True, manifest=summary, transfer=transfer, lastRevocationAt=None)
