"""Prometheus metrics: what a lab dashboard needs to answer "is my data on the NAS?".

Labels are namespace and target (and step, phase or error kind) — never run
paths or SyncJob names, whose number grows without bound. Counters move when
the reconciler observes a change in a SyncJob's status, so a restarted
operator does not count a transition twice unless it happened again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

from nassync.api.common import parse_time
from nassync.api.syncjob import Phase, SyncJob, SyncJobStatus
from nassync.api.target import PRIMARY
from nassync.controller.kube import Body

_LABELS = ("namespace", "target")
_STEP_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)

SYNCJOBS = Gauge("nassync_syncjobs", "SyncJobs by phase.", [*_LABELS, "phase"])
TRANSITIONS = Counter("nassync_phase_transitions_total", "SyncJob phase transitions.",
                      [*_LABELS, "from_phase", "to_phase"])
FAILURES = Counter("nassync_failures_total", "Failed mover steps by error kind.", [*_LABELS, "kind"])
BYTES_PUSHED = Counter("nassync_pushed_bytes_total", "Bytes of runs pushed to the NAS.", _LABELS)
FILES_PUSHED = Counter("nassync_pushed_files_total", "Files of runs pushed to the NAS.", _LABELS)
BYTES_FREED = Counter("nassync_cleanup_freed_bytes_total", "Local bytes freed by cleanup.", _LABELS)
STEP_SECONDS = Histogram("nassync_step_duration_seconds", "Duration of mover steps.",
                         [*_LABELS, "step"], buckets=_STEP_BUCKETS)
QUEUE_DEPTH = Gauge("nassync_queue_depth", "SyncJobs waiting for a mover (Pending or Queued).", _LABELS)
ACTIVE_MOVERS = Gauge("nassync_active_movers", "Mover Jobs running.", _LABELS)
OLDEST_UNVERIFIED = Gauge("nassync_oldest_unverified_run_seconds",
                          "Age of the oldest SyncJob whose run is not yet verified on the NAS.", _LABELS)
MOVERS_STARTED = Counter("nassync_movers_started_total", "Mover Jobs created.", [*_LABELS, "step"])
RECONCILE_ERRORS = Counter("nassync_reconcile_errors_total", "Reconcile rounds that raised.")
LEADER = Gauge("nassync_leader", "1 while this replica holds the leader lease and reconciles, 0 on standby.")
RECONCILE_SECONDS = Histogram("nassync_reconcile_duration_seconds", "Duration of one target's reconcile round.")
# Copies (spec.replicas): the copy label is "primary" or a replica's name, bounded by the target's spec.
COPIES = Gauge("nassync_copies", "Copies of runs by copy and state (targets with spec.replicas).",
               [*_LABELS, "copy", "state"])
REPLICA_FAILURES = Counter("nassync_replica_failures_total", "Failed replica pushes and verifies by error kind.",
                           [*_LABELS, "replica", "kind"])
REPLICA_BYTES_PUSHED = Counter("nassync_replica_pushed_bytes_total", "Bytes of runs pushed to a replica.",
                               [*_LABELS, "replica"])
_COPY_STATES = ("Pending", "Pushing", "Pushed", "Verifying", "Verified", "Failed", "Skipped")


def _target(job: SyncJob) -> tuple[str, str]:
    return str(job.metadata.get("namespace", "")), job.spec.target_ref.name


def observe_transition(body: Body, job: SyncJob, new: SyncJobStatus) -> None:
    """Count what changed between the stored status (`job.status`) and the new one."""
    old = job.status
    labels = _target(job)
    stored_phase = (body.get("status") or {}).get("phase")
    if stored_phase != new.phase:
        TRANSITIONS.labels(*labels, stored_phase or "", str(new.phase)).inc()
        if new.phase == Phase.CLEANED and new.manifest is not None:
            # Cleanup deletes exactly the manifest's files (it refuses otherwise).
            BYTES_FREED.labels(*labels).inc(new.manifest.bytes)
    if new.last_error is not None and new.last_error.at is not None and (
            old.last_error is None or old.last_error.at != new.last_error.at):
        FAILURES.labels(*labels, new.last_error.kind).inc()
    if new.transfer is not None and new.transfer.finished_at is not None and (
            old.transfer is None or old.transfer.finished_at != new.transfer.finished_at):
        BYTES_PUSHED.labels(*labels).inc(new.transfer.bytes)
        FILES_PUSHED.labels(*labels).inc(new.transfer.files)
    _observe_replicas(labels, old, new)
    before, after = old.mover_job, new.mover_job
    # The mover recorded as running was consumed: either it is marked finished,
    # or decide() already moved on to the next step's mover in the same round.
    finished = before is not None and before.state == "Running" and before.started_at is not None and (
        after is None or after.name != before.name or after.state != "Running")
    if finished and before is not None and before.started_at is not None:
        step = before.step or "unknown"
        seconds = max(0.0, (datetime.now(before.started_at.tzinfo) - before.started_at).total_seconds())
        STEP_SECONDS.labels(*labels, step).observe(seconds)


def _observe_replicas(labels: tuple[str, str], old: SyncJobStatus, new: SyncJobStatus) -> None:
    for entry in new.destinations or ():
        before = old.destination(entry.name)
        if entry.name == PRIMARY:
            continue  # the top-level fields count the primary
        if entry.last_error is not None and entry.last_error.at is not None and (
                before is None or before.last_error is None or before.last_error.at != entry.last_error.at):
            REPLICA_FAILURES.labels(*labels, entry.name, entry.last_error.kind).inc()
        finished = entry.transfer.finished_at if entry.transfer else None
        if finished is not None and (before is None or before.transfer is None
                                     or before.transfer.finished_at != finished):
            REPLICA_BYTES_PUSHED.labels(*labels, entry.name).inc(entry.transfer.bytes if entry.transfer else 0)


def observe_target(namespace: str, target: str, *, bodies: Iterable[Body], active: int,
                   now: datetime) -> None:
    phases = {str(p): 0 for p in Phase}
    oldest = 0.0
    queued = 0
    copies: dict[tuple[str, str], int] = {}
    for body in bodies:
        for entry in (body.get("status") or {}).get("destinations") or ():
            for state in _COPY_STATES:
                copies.setdefault((str(entry.get("name")), state), 0)
            key = (str(entry.get("name")), str(entry.get("state") or "Pending"))
            copies[key] = copies.get(key, 0) + 1
        phase = (body.get("status") or {}).get("phase") or Phase.PENDING.value
        phases[phase] = phases.get(phase, 0) + 1
        try:
            known = Phase(phase)
        except ValueError:
            continue  # written by a newer operator; counted above, judged by nothing
        if known.is_queued:
            queued += 1
        if not known.nas_copy_proven:
            created = body["metadata"].get("creationTimestamp")
            if created:
                oldest = max(oldest, (now - parse_time(created)).total_seconds())
    for phase, count in phases.items():
        SYNCJOBS.labels(namespace, target, phase).set(count)
    QUEUE_DEPTH.labels(namespace, target).set(queued)
    ACTIVE_MOVERS.labels(namespace, target).set(active)
    OLDEST_UNVERIFIED.labels(namespace, target).set(oldest)
    for (copy, state), count in copies.items():
        COPIES.labels(namespace, target, copy, state).set(count)
