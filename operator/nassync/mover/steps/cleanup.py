"""The cleanup step: one last remote proof, then free the local disk.

The operator only starts this step when its interlocks hold (enough verify
passes, old enough, no recent revocation, not on hold). Inside the pod the
rule is "any doubt, no delete": the manifest must be the one recorded at push
(`expectedManifestSha256` is required here), the NAS must match it *now*
(not just at the last verify: a NAS can lose or corrupt files since), and
only then does `mover.deletion.delete_run_data` prove the local side and
delete. A local tree that no longer matches the manifest is a HashMismatch
("local run changed since it was verified; nothing deleted").
"""

from __future__ import annotations

from datetime import datetime

from nassync.api.mover_io import ErrorInfo, ErrorKind, MoverParams, MoverResult
from nassync.mover.deletion import CleanupIncomplete, CleanupRefused, delete_run_data
from nassync.mover.logs import MoverLog
from nassync.mover.outcome import StepFailed, fail
from nassync.mover.run import existing_run_dir, load_manifest, revocation_stamp
from nassync.mover.steps.verify import remote_check
from nassync.transports.classify import scrub


def cleanup(params: MoverParams, *, log: MoverLog, now: datetime) -> MoverResult:
    if not params.expected_manifest_sha256:
        raise fail(
            ErrorKind.CONFIG,
            "cleanup needs expectedManifestSha256 (the manifest recorded at push); nothing deleted",
        )
    run_dir = existing_run_dir(params)
    revoked = revocation_stamp(run_dir, params)
    try:
        manifest, summary = load_manifest(run_dir, params)
        checked = remote_check(params, manifest, log)
    except StepFailed as exc:
        exc.info = ErrorInfo(kind=exc.info.kind, message=exc.info.message + "; nothing deleted")
        exc.partial.setdefault("last_revocation_at", revoked)
        raise
    log.info("NAS copy proven; deleting local data", files=len(manifest), method=checked.method)
    try:
        freed = delete_run_data(
            run_dir,
            cache_dir_name=params.cache_dir_name,
            manifest=manifest,
            retain_cache=params.retain_cache,
        )
    except CleanupRefused as exc:
        raise fail(
            ErrorKind.HASH_MISMATCH,
            f"local run changed since it was verified; nothing deleted ({exc.reason})",
            manifest=summary,
            verify=checked,
            last_revocation_at=revoked,
        ) from exc
    except CleanupIncomplete as exc:
        raise StepFailed(
            ErrorInfo(
                kind=ErrorKind.UNKNOWN,
                message=scrub(f"cleanup stopped part way: {exc.reason}"),
            ),
            manifest=summary,
            cleanup=exc.summary,
            last_revocation_at=revoked,
        ) from exc
    log.info("local data deleted", filesDeleted=freed.files_deleted, bytesFreed=freed.bytes_freed)
    return MoverResult(
        step="cleanup",
        ok=True,
        manifest=summary,
        verify=checked,
        cleanup=freed,
        lastRevocationAt=revoked,
    )
