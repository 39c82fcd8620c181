"""The cleanup step: one last look at the revocations and the NAS, then free the local disk.

The operator only starts this step when its interlocks hold (enough verify
passes, old enough, no recent revocation it knows of, not on hold). Inside
the pod the rule is "any doubt, no delete":
1. creation.json is read again right before deleting, exactly as the lab app
   does: a tombstone recorded within `minAgeAfterVerify` (or at an unreadable
   time) defers the cleanup — nothing is deleted, and the result names the
   revoked override. A creation.json that cannot be read is doubt, too.
2. The manifest must be the one recorded at push (`expectedManifestSha256` is
   required). If the run's own copy is gone (a cleanup that stopped part way),
   the NAS's copy is used, checked against the same digest: a retried cleanup
   finishes from what the NAS proves.
3. The NAS must match the manifest *now*, not just at the last verify, and so
   must every replica that is requiredForCleanup (`params.replicas`): each
   copy the lab counts on is proven right before the first delete.
4. A local marker records that deleting began: from then on the run is never
   pushed again (its emptied tree would replace the NAS manifest).
5. mover/deletion.py proves the local side file by file and deletes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from nassync.api.mover_io import (
    CleanupSummary,
    ErrorInfo,
    ErrorKind,
    ManifestSummary,
    MoverParams,
    MoverResult,
    VerifySummary,
)
from nassync.mover import fsio
from nassync.mover.creation import load_creation
from nassync.mover.deletion import CleanupIncomplete, CleanupRefused, delete_run_data
from nassync.mover.logs import MoverLog
from nassync.mover.manifest import CLEANUP_MARKER, MANIFEST_NAME, parse
from nassync.mover.outcome import StepFailed, fail
from nassync.mover.overrides import recent_revocations
from nassync.mover.run import OpenRun, check_manifest_digest, existing_run, load_manifest, revocation_stamp
from nassync.mover.steps.verify import remote_check
from nassync.transports.base import TransportError
from nassync.transports.catalog import transport_for
from nassync.transports.classify import scrub


def cleanup(params: MoverParams, *, log: MoverLog, now: datetime) -> MoverResult:
    if not params.expected_manifest_sha256:
        raise fail(ErrorKind.CONFIG, "cleanup needs expectedManifestSha256 (the manifest recorded at push); "
                                     "nothing deleted")
    with existing_run(params) as run:
        return _cleanup(run, log=log, now=now)


def _revocations(run: OpenRun, now: datetime) -> str | None:
    """Why the delete must wait for a revocation, or None."""
    try:
        creation = load_creation(run.fd, cache_dir_name=run.params.cache_dir_name)
    except PermissionError as exc:
        raise fail(ErrorKind.PERMISSION, f"cannot read creation.json to check for revoked overrides ({exc}); "
                                         "nothing deleted") from exc
    except (OSError, ValueError) as exc:
        raise fail(ErrorKind.CONFIG, f"cannot read creation.json to check for revoked overrides ({exc}); "
                                     "nothing deleted") from exc
    recent = recent_revocations(creation, now=now,
                                min_age=timedelta(seconds=run.params.min_age_after_verify_seconds))
    if not recent:
        return None
    return (f"{recent[0].describe()}, within minAgeAfterVerify; nothing deleted until the revocation is "
            f"older than that")


def _manifest(run: OpenRun, log: MoverLog) -> tuple[dict[str, str], ManifestSummary]:
    try:
        return load_manifest(run)
    except StepFailed as exc:
        if exc.info.kind is not ErrorKind.HASH_MISMATCH or "no checksums.sha256" not in exc.info.message:
            raise
    # The run's own manifest is gone: finish from the NAS's, if it is the recorded one.
    params = run.params
    transport = transport_for(params.destination)
    try:
        raw = transport.read_remote_file(run_path=params.run_path, relpath=f"{params.cache_dir_name}/{MANIFEST_NAME}")
    except TransportError as exc:
        raise StepFailed(exc.info) from exc
    if raw is None:
        raise fail(ErrorKind.HASH_MISMATCH, "neither the run nor the NAS holds its checksums.sha256; nothing "
                                            "can be proven, nothing deleted")
    try:
        manifest = parse(raw)
    except ValueError as exc:
        raise fail(ErrorKind.HASH_MISMATCH, f"the NAS's checksums.sha256 is unreadable ({exc}); nothing deleted") \
            from exc
    summary = check_manifest_digest(manifest, params)
    log.info("the run's own manifest is gone; using the NAS's, which is the recorded one", files=len(manifest))
    return manifest, summary


def _check_replica(params: MoverParams, manifest: dict[str, str], log: MoverLog) -> None:
    try:
        remote_check(params, manifest, log)
    except StepFailed as exc:
        if not exc.info.message.startswith("replica "):
            exc.info = ErrorInfo(kind=exc.info.kind, message=f"replica {params.replica}: {exc.info.message}")
        if "verify" not in exc.partial:
            exc.partial["verify"] = VerifySummary(replica=params.replica)
        raise


def _mark_started(run: OpenRun) -> None:
    cache_fd = run.cache_fd(create=True)
    assert cache_fd is not None
    with fsio.opened(cache_fd):
        fsio.write_atomic(cache_fd, CLEANUP_MARKER, b"local files of this run are being deleted\n")


def _cleanup(run: OpenRun, *, log: MoverLog, now: datetime) -> MoverResult:
    params = run.params
    try:
        revoked = revocation_stamp(run)
        deferred = _revocations(run, now)
    except (OSError, ValueError) as exc:
        raise fail(ErrorKind.CONFIG, f"cannot read creation.json ({exc}); nothing deleted") from exc
    if deferred is not None:
        log.warning("cleanup deferred by a revoked override", detail=deferred)
        return MoverResult(step="cleanup", ok=True, cleanup=CleanupSummary(deferred=deferred),
                           lastRevocationAt=revoked)
    try:
        manifest, summary = _manifest(run, log)
        checked = remote_check(params, manifest, log)
        for replica in params.replicas:
            _check_replica(params.for_replica(replica), manifest, log)
    except StepFailed as exc:
        exc.info = ErrorInfo(kind=exc.info.kind, message=exc.info.message + "; nothing deleted")
        exc.partial.setdefault("last_revocation_at", revoked)
        raise
    log.info("NAS copy proven; deleting local data", files=len(manifest), method=checked.method)
    try:
        freed = delete_run_data(run.fd, parent=(run.parent_fd, run.name), cache_dir_name=params.cache_dir_name,
                                manifest=manifest, retain_cache=params.retain_cache,
                                quiet_period_seconds=params.quiet_period_seconds, now=now,
                                before_delete=lambda: _mark_started(run))
    except CleanupRefused as exc:
        raise fail(ErrorKind.HASH_MISMATCH, f"local run changed since it was verified; nothing deleted ({exc.reason})",
                   manifest=summary, verify=checked, last_revocation_at=revoked) from exc
    except CleanupIncomplete as exc:
        raise StepFailed(
            ErrorInfo(kind=ErrorKind.UNKNOWN, message=scrub(
                f"cleanup stopped part way after deleting {exc.summary.files_deleted} file(s), all of them proven "
                f"on the NAS: {exc.reason}")),
            manifest=summary, cleanup=exc.summary, last_revocation_at=revoked) from exc
    except fsio.NotARealDirectory as exc:
        raise fail(ErrorKind.CONFIG, f"the run's cache dir {exc.strerror}; nothing deleted") from exc
    log.info("local data deleted", filesDeleted=freed.files_deleted, bytesFreed=freed.bytes_freed)
    return MoverResult(step="cleanup", ok=True, manifest=summary, verify=checked, cleanup=freed,
                       lastRevocationAt=revoked)
