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

`remote_check` is shared with the cleanup step (steps/cleanup.py), whose last act before deleting
is this same comparison.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from nassync.api.mover_io import ErrorKind, MoverParams, MoverResult, VerifySummary
from nassync.mover.creation import set_sync_status
from nassync.mover.logs import MoverLog
from nassync.mover.manifest import build_manifest, compare
from nassync.mover.outcome import StepFailed, examples, fail
from nassync.mover.progress import ProgressReporter
from nassync.mover.run import existing_run_dir, load_manifest, revocation_stamp
from nassync.transports.base import TransferProgress, TransportError, resolve_method
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


def local_changes(run_dir: Path, params: MoverParams, manifest: Mapping[str, str],
                  progress: VerifyProgress | None = None) -> tuple[list[str], int]:
    """Relpaths that differ between the run on disk and the manifest, and the local bytes."""
    try:
        local = build_manifest(run_dir, cache_dir_name=params.cache_dir_name,
                               on_progress=progress.local if progress else None)
    except FileNotFoundError as exc:
        return [str(exc.filename or "?")], 0
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
        examples=examples([*result.differing, *result.missing], limit=_EXAMPLES),
        method=method,
    )
    if not result.ok:
        parts = []
        if result.differing:
            parts.append(f"{len(result.differing)} file(s) differ")
        if result.missing:
            parts.append(f"{len(result.missing)} file(s) missing")
        shown = ", ".join(repr(p) for p in summary.examples)
        raise fail(
            ErrorKind.HASH_MISMATCH,
            f"the NAS copy at {remote} does not match the manifest: {' and '.join(parts)} "
            f"(SHA-256 via {method}), e.g. {shown}",
            verify=summary,
        )
    return summary


def verify(params: MoverParams, *, log: MoverLog, now: datetime) -> MoverResult:
    run_dir = existing_run_dir(params)
    revoked = revocation_stamp(run_dir, params)
    try:
        manifest, summary = load_manifest(run_dir, params)
    except StepFailed as exc:
        exc.partial.setdefault("last_revocation_at", revoked)
        raise
    progress = VerifyProgress()
    changed, local_bytes = local_changes(run_dir, params, manifest, progress)
    if changed:
        log.warning("local run changed since the push", files=len(changed), examples=changed[:5])
        return MoverResult(
            step="verify",
            ok=True,
            manifest=summary,
            verify=VerifySummary(localChanged=True, examples=examples(changed, limit=_EXAMPLES)),
            lastRevocationAt=revoked,
        )
    summary = summary.model_copy(update={"bytes": local_bytes})
    try:
        checked = remote_check(params, manifest, log)
    except StepFailed as exc:
        exc.partial.update(manifest=summary, last_revocation_at=revoked)
        raise
    progress.remote_done()
    set_sync_status(run_dir, cache_dir_name=params.cache_dir_name, status="synced")
    log.info("verified", files=len(manifest), method=checked.method)
    return MoverResult(step="verify", ok=True, manifest=summary, verify=checked, lastRevocationAt=revoked)
