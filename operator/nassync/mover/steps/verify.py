"""The verify step: prove the NAS holds exactly the bytes of the manifest.

Three checks, cheapest meaningful first:
1. The local manifest is the one recorded at push (`expectedManifestSha256`):
   a rewritten checksums.sha256 would make every later check meaningless.
2. The local run still matches the manifest. If not, the run changed after the
   push; that is not a failure of the copy, it means "push again", so the
   result is ok with `verify.localChanged` and the NAS is not consulted.
3. The SHA-256 of every manifest file on the NAS, from the NAS itself
   (`RemoteHash`) or by reading the bytes back (`Download`). A missing or
   differing file is a HashMismatch naming the files. Files only on the NAS
   (our cache dir, older leftovers) are not failures: push never deletes.

Once verified, the run's creation.json says `synced` (when it has one: the
lab app's file, rewritten keeping its owner and mode) and its copy on the NAS
is replaced, so that the NAS copy says it too. A replica's verify
(`params.replica`) does only check 3: what it proves is that copy, the local
side is the primary's verify's and the cleanup's business, and the lab app
reads the primary's creation.json. `remote_check` is shared with
the cleanup step (steps/cleanup.py), whose last act before deleting is this
same comparison.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from nassync.api.mover_io import ErrorKind, ManifestSummary, MoverParams, MoverResult, VerifySummary
from nassync.mover import fsio
from nassync.mover.creation import CREATION_NAME, CreationNotWritable, set_sync_status
from nassync.mover.logs import MoverLog
from nassync.mover.manifest import FileChanged, build_manifest, compare
from nassync.mover.outcome import StepFailed, examples, fail
from nassync.mover.progress import ProgressReporter
from nassync.mover.rules import display_path
from nassync.mover.run import OpenRun, existing_run, load_manifest, revocation_stamp
from nassync.transports.base import PushOptions, TransferProgress, TransportError, resolve_method, run_probe
from nassync.transports.catalog import transport_for

_EXAMPLES = 5


class VerifyProgress:
    """Progress of a verify: the local re-hash is the first half, the NAS's hashes the second.

    The remote half arrives in one piece (one `sha256sum` listing or one
    download stream), so it is reported when it is done rather than guessed.
    """

    def __init__(self, reporter: ProgressReporter | None = None) -> None:
        self.reporter = reporter or ProgressReporter(step="verify")
        self.started = time.monotonic()
        self.total = 0

    def local(self, done: int, total: int) -> None:
        self.total = total
        elapsed = max(time.monotonic() - self.started, 1e-6)
        self.reporter.update(TransferProgress(bytes=done, total_bytes=2 * total, bytes_per_second=done / elapsed))

    def remote_done(self) -> None:
        self.reporter.update(TransferProgress(bytes=2 * self.total, total_bytes=2 * self.total))
        self.reporter.finish()


def local_changes(run_fd: int, params: MoverParams, manifest: Mapping[str, str],
                  progress: VerifyProgress | None = None) -> tuple[list[str], int]:
    """Relpaths that differ between the run on disk and the manifest, and the local bytes."""
    try:
        local = build_manifest(run_fd, cache_dir_name=params.cache_dir_name,
                               on_progress=progress.local if progress else None)
    except (FileNotFoundError, FileChanged) as exc:
        return [str(exc.filename or exc)], 0
    result = compare(manifest, local.digests())
    return [*result.missing, *result.differing, *result.extra], local.bytes


def remote_check(params: MoverParams, manifest: Mapping[str, str], log: MoverLog) -> VerifySummary:
    """Compare the NAS against the manifest; raise StepFailed on any doubt."""
    transport = transport_for(params.destination)
    method = resolve_method(transport, params.verify_method)
    remote = transport.remote_dir(run_path=params.run_path)
    log.info("remote hashing", remote=remote, method=method, files=len(manifest))
    try:
        hashes = transport.remote_hashes(run_path=params.run_path, method=method)
    except TransportError as exc:
        raise StepFailed(exc.info) from exc
    cache_prefix = params.cache_dir_name + "/"
    ours = {p: d for p, d in hashes.items() if not p.startswith(cache_prefix)}
    result = compare(manifest, ours)
    summary = VerifySummary(
        localChanged=False,
        missing=len(result.missing),
        differing=len(result.differing),
        examples=[display_path(p) for p in examples([*result.differing, *result.missing], limit=_EXAMPLES)],
        method=method,
        replica=params.replica,
    )
    if not result.ok:
        what = f"replica {params.replica}: the copy" if params.replica else "the NAS copy"
        parts = []
        if result.differing:
            parts.append(f"{len(result.differing)} file(s) differ")
        if result.missing:
            parts.append(f"{len(result.missing)} file(s) missing")
        shown = ", ".join(repr(p) for p in summary.examples)
        raise fail(
            ErrorKind.HASH_MISMATCH,
            f"{what} at {remote} does not match the manifest: {' and '.join(parts)} "
            f"(SHA-256 via {method}), e.g. {shown}",
            verify=summary,
        )
    return summary


def publish_creation(run: OpenRun, log: MoverLog) -> None:
    """Copy the run's creation.json to the NAS again, so that the NAS copy says what the run says.

    The copy tool reads the cache dir through its own descriptor (opened without
    following links) and is given only the file's name: a cache dir swapped for
    a symlink after we looked would otherwise send another run's creation.json
    to this run's NAS copy (rsync's --files-from follows links on the way).
    """
    try:
        cache_fd = run.cache_fd()
    except fsio.NotARealDirectory as exc:
        log.warning("creation.json not copied to the NAS", detail=str(exc.strerror))
        return
    if cache_fd is None:
        return
    with fsio.opened(cache_fd):
        try:
            info = os.stat(CREATION_NAME, dir_fd=cache_fd, follow_symlinks=False)
        except OSError:
            return  # a run without creation.json (or one we may not see) has nothing to publish
        if not stat.S_ISREG(info.st_mode):
            return
        transport = transport_for(run.params.destination)
        command = transport.push_command(source=fsio.proc_path(cache_fd),
                                         run_path=f"{run.params.run_path}/{run.params.cache_dir_name}",
                                         bandwidth=run.params.bandwidth, now=datetime.now(UTC),
                                         options=PushOptions(compare_content=True, only=(CREATION_NAME,)))
        try:
            done = run_probe(replace(command, pass_fds=(cache_fd,)), timeout=600)
        except TransportError as exc:
            log.warning("could not copy creation.json to the NAS", detail=exc.info.message)
            return
    if done.returncode != 0:
        failure = transport.classify(returncode=done.returncode, messages=done.stderr.splitlines())
        log.warning("could not copy creation.json to the NAS", detail=failure.message)


def verify(params: MoverParams, *, log: MoverLog, now: datetime) -> MoverResult:
    with existing_run(params) as run:
        return _verify(run, log=log)


def _verify(run: OpenRun, *, log: MoverLog) -> MoverResult:
    params = run.params
    try:
        revoked = revocation_stamp(run)
    except (OSError, ValueError) as exc:
        log.warning("could not read override revocations from creation.json", error=str(exc))
        revoked = None
    try:
        manifest, summary = load_manifest(run)
    except StepFailed as exc:
        exc.partial.setdefault("last_revocation_at", revoked)
        raise
    progress = VerifyProgress()
    if params.replica is not None:
        return _verify_replica(params, manifest, summary, log=log, revoked=revoked)
    changed, local_bytes = local_changes(run.fd, params, manifest, progress)
    if changed:
        log.warning("local run changed since the push", files=len(changed), examples=changed[:5])
        return MoverResult(
            step="verify",
            ok=True,
            manifest=summary,
            verify=VerifySummary(localChanged=True,
                                 examples=[display_path(p) for p in examples(changed, limit=_EXAMPLES)]),
            lastRevocationAt=revoked,
        )
    summary = summary.model_copy(update={"bytes": local_bytes})
    try:
        checked = remote_check(params, manifest, log)
    except StepFailed as exc:
        exc.partial.update(manifest=summary, last_revocation_at=revoked)
        raise
    progress.remote_done()
    try:
        if set_sync_status(run.fd, cache_dir_name=params.cache_dir_name, status="synced") is not None:
            publish_creation(run, log)
    except (CreationNotWritable, OSError, ValueError) as exc:
        log.warning("could not record synced in creation.json", error=str(exc))
    log.info("verified", files=len(manifest), method=checked.method)
    return MoverResult(step="verify", ok=True, manifest=summary, verify=checked, lastRevocationAt=revoked)


def _verify_replica(params: MoverParams, manifest: Mapping[str, str], summary: ManifestSummary, *, log: MoverLog,
                    revoked: str | None) -> MoverResult:
    try:
        checked = remote_check(params, manifest, log)
    except StepFailed as exc:
        exc.partial.update(manifest=summary, last_revocation_at=revoked)
        raise
    log.info("replica verified", replica=params.replica, files=len(manifest), method=checked.method)
    return MoverResult(step="verify", ok=True, manifest=summary, verify=checked, lastRevocationAt=revoked)
