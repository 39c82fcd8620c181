"""The level-based loop: one SyncTarget at a time, its SyncJobs in FIFO order.

Watch events (from kopf) only say "look at target X again"; this loop then
reads the whole picture fresh from the API — the target, its SyncJobs, their
mover Jobs and pods — asks the pure core what to do for each SyncJob, and does
it. Reconciling a target as a unit is what makes the per-target FIFO and the
`concurrency` limit exact: SyncJobs are decided oldest first, and a mover
started for one of them takes the slot before the next one is decided.

Nothing is remembered between rounds except when to look again and when
progress was last read: the SyncJob status plus the deterministic mover Job
names are the whole state, so an operator restarted at any point resumes.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from nassync.api.syncjob import SyncJob
from nassync.api.target import SyncTarget, SyncTargetStatus
from nassync.controller import metrics
from nassync.controller.kube import Body, Kube
from nassync.controller.moverjob import DEFAULT_IMAGE, build_mover_job
from nassync.controller.observe import (
    child_jobs,
    job_state,
    latest_progress,
    pods_by_job,
    progress_model,
    running_pod,
    started,
)
from nassync.core import names
from nassync.core.actions import CreateMoverJob, Decision, DeleteMoverJob
from nassync.core.decide import MoverProgress, decide
from nassync.core.history import prune
from nassync.core.readiness import Readiness, assess, load_target, secret_names
from nassync.core.target_status import target_status

log = logging.getLogger("nassync.reconciler")

PROGRESS_INTERVAL = 10.0  # seconds between progress reads of a running mover
PRUNE_INTERVAL = 30.0  # judge a target's spec.history at most this often
DIAGNOSE_AFTER = 4.0  # read the Events of a mover Job whose pod has not started after this long
IDLE_RESYNC = 300.0  # look at every target at least this often, events or not
TARGET_ANNOTATION = "nassync.dev/target-name"


class NotLeader(Exception):
    """This replica does not hold the leader lease (any more): it must not write."""


@dataclass(frozen=True, order=True)
class TargetKey:
    namespace: str
    name: str


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Reconciler:
    kube: Kube
    default_image: str = DEFAULT_IMAGE
    clock: Callable[[], datetime] = _now
    # Leader election (controller/election.py): only the leader reconciles, and it checks
    # again before every write, so a replica that lost its lease stops acting at once.
    leader: Callable[[], bool] = lambda: True
    _due: list[tuple[float, TargetKey]] = field(default_factory=list)
    _cv: threading.Condition = field(default_factory=threading.Condition)
    _progress_read: dict[str, float] = field(default_factory=dict)
    # SyncJobs in a final phase whose last decision changed nothing: (resourceVersion, target
    # fingerprint) when decided. Skipped until either changes (10,000 finished SyncJobs cost nothing).
    _settled: dict[str, tuple[Any, tuple[str, str]]] = field(default_factory=dict)
    _pruned_at: dict[TargetKey, float] = field(default_factory=dict)

    # scheduling -------------------------------------------------------------
    def enqueue(self, key: TargetKey, delay: float = 0.0) -> None:
        with self._cv:
            heapq.heappush(self._due, (time.monotonic() + max(0.0, delay), key))
            self._cv.notify()

    def _next(self, stop: threading.Event) -> TargetKey | None:
        with self._cv:
            while not stop.is_set():
                if self._due:
                    when, key = self._due[0]
                    wait = when - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(self._due)
                        # Collapse duplicates: one round covers every pending wake of a key.
                        self._due = [(w, k) for (w, k) in self._due if k != key or w > time.monotonic() + 1]
                        heapq.heapify(self._due)
                        return key
                    self._cv.wait(min(wait, 1.0))
                else:
                    self._cv.wait(1.0)
        return None

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if not self.leader():
                # Standby: keep the queue (kopf's events still arrive) and wait for the lease.
                stop.wait(0.5)
                continue
            key = self._next(stop)
            if key is None:
                return
            started = time.monotonic()
            try:
                delay = self.reconcile(key)
            except NotLeader:
                self.enqueue(key)  # the next leader (or we, again) takes it from here
                continue
            except Exception:
                log.exception("reconciling target %s/%s failed; retrying in 5s", key.namespace, key.name)
                metrics.RECONCILE_ERRORS.inc()
                delay = 5.0
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
            self.enqueue(key, delay if delay is not None else IDLE_RESYNC)

    def _fence(self) -> None:
        if not self.leader():
            raise NotLeader("lost the leader lease; not writing")

    # one round ----------------------------------------------------------------
    def reconcile(self, key: TargetKey) -> float | None:
        """Reconcile every SyncJob of one target; return seconds until the next look."""
        self._fence()
        target_body = self.kube.get_target(key.namespace, key.name)
        target, problem = load_target(target_body)
        secrets = secret_names(target)
        readiness = assess(namespace=key.namespace, name=key.name, exists=target_body is not None,
                           target=target, problem=problem,
                           secrets={s: self.kube.secret_keys(key.namespace, s) for s in secrets})
        bodies = sorted(self.kube.list_target_syncjobs(key.namespace, key.name),
                        key=lambda b: (b["metadata"].get("creationTimestamp", ""), b["metadata"]["name"]))
        selector = names.target_selector(target=key.name)
        movers = self.kube.list_jobs(key.namespace, selector)
        # Pods only when a mover's result or its start must be read (not every round).
        pods = (pods_by_job(self.kube.list_pods(key.namespace, selector))
                if self._pods_needed(bodies, movers) else {})
        active = sum(1 for m in movers if job_state(m) == "Running")
        fingerprint = (str(target_body["metadata"].get("resourceVersion")) if target_body else "", readiness.reason)
        prune_due = (target is not None and target.spec.history.enabled
                     and time.monotonic() - self._pruned_at.get(key, 0.0) >= PRUNE_INTERVAL)
        events = self._events_of_stuck_movers(key.namespace, movers, pods)
        concurrency = target.spec.concurrency if target is not None else 0
        wake: list[float] = []
        queued = 0
        models: list[SyncJob] = []
        written: set[str] = set()
        secret_checked = False
        for body in bodies:
            if body["metadata"].get("deletionTimestamp"):
                continue
            meta = body["metadata"]
            settled = self._settled.get(meta.get("uid", ""))
            if settled == (meta.get("resourceVersion"), fingerprint) and not prune_due:
                continue  # finished, unchanged since it was last decided: nothing to decide
            try:
                job = SyncJob.from_body(body)
            except ValidationError as e:
                log.error("SyncJob %s/%s cannot be read: %s", key.namespace, body["metadata"]["name"], e)
                continue
            models.append(job)
            progress, progress_delay = self._progress(job, pods)
            children = child_jobs(job.uid, movers, pods, events)
            decision = decide(job=job, target=target, readiness=readiness, children=children,
                              slot_available=active < concurrency, progress=progress, now=self.clock())
            if decision.creates and target is not None and secrets and not secret_checked:
                # Secrets are read from a short cache; never start a mover on a stale "it exists".
                secret_checked = True
                fresh = assess(namespace=key.namespace, name=key.name, exists=True, target=target, problem=problem,
                               secrets={s: self.kube.secret_keys(key.namespace, s, fresh=True) for s in secrets})
                if fresh != readiness:
                    readiness = fresh
                    decision = decide(job=job, target=target, readiness=readiness, children=children,
                                      slot_available=active < concurrency, progress=progress, now=self.clock())
            created, delay = self._execute(body, job, target, decision)
            if decision.status.model_dump(by_alias=True, mode="json", exclude_none=True) != (body.get("status") or {}):
                written.add(job.uid)  # its resourceVersion moved on: judged for history next round
                self._settled.pop(job.uid, None)
            elif not decision.actions and decision.requeue_after is None and (
                    decision.status.phase.is_terminal or decision.status.phase.needs_person):
                self._settled[job.uid] = (meta.get("resourceVersion"), fingerprint)
            active += created
            queued += decision.status.phase.is_queued
            wake += [d for d in (delay, progress_delay) if d is not None]
        if prune_due and target is not None and target_body is not None:
            self._pruned_at[key] = time.monotonic()
            wake += self._prune_history(key, target_body, target, models, written)
            wake.append(PRUNE_INTERVAL)
        elif target is not None and target.spec.history.enabled:
            wake.append(max(1.0, PRUNE_INTERVAL - (time.monotonic() - self._pruned_at.get(key, 0.0))))
        if target_body is not None:
            self._update_target(key, target_body, readiness, target, active=active, queued=queued)
        metrics.observe_target(key.namespace, key.name, bodies=bodies, active=active, now=self.clock())
        return min(wake) if wake else None

    def _pods_needed(self, bodies: list[Body], movers: list[Body]) -> bool:
        """A mover recorded as running has finished (its result is in its pod) or is slow to start,
        or a finished Job was created just before a restart and is not recorded yet (adopted)."""
        by_name = {m["metadata"]["name"]: m for m in movers}
        finished_runs = {(ref.get("uid"), (m["metadata"].get("labels") or {}).get(names.LABEL_RUN))
                         for m in movers if job_state(m) != "Running"
                         for ref in m["metadata"].get("ownerReferences") or []}
        for body in bodies:
            status = body.get("status") or {}
            mover = status.get("moverJob") or {}
            if mover.get("state") == "Running":
                job = by_name.get(mover.get("name", ""))
                if job is not None and (job_state(job) != "Running" or not started(job, [])):
                    return True
            runs = int(status.get("moverRuns") or 0)
            if (body["metadata"].get("uid"), str(runs + 1)) in finished_runs:
                return True
        return False

    def _prune_history(self, key: TargetKey, target_body: Body, target: SyncTarget,
                       jobs: list[SyncJob], written: set[str]) -> list[float]:
        """Delete the finished SyncJobs the target's spec.history lets go (core/history.py); never data."""
        now = self.clock()
        pruning = prune(jobs, policy=target.spec.history, cleanup_enabled=target.spec.cleanup.enabled, now=now)
        deleted = []
        later = False
        for name, uid, resource_version in pruning.delete:
            if uid in written:
                later = True
                continue
            self._fence()
            if self.kube.delete_syncjob(key.namespace, name, uid=uid, resource_version=resource_version):
                deleted.append(name)
        if deleted:
            shown = ", ".join(deleted[:5]) + (f" and {len(deleted) - 5} more" if len(deleted) > 5 else "")
            message = (f"deleted {len(deleted)} finished SyncJob(s) under spec.history ({shown}); "
                       "their data, local and on the NAS, is untouched")
            self.kube.emit_event({**target_body, "kind": "SyncTarget"}, type_="Normal", reason="HistoryPruned",
                                 message=message)
            log.info(message, extra={"target": f"{key.namespace}/{key.name}"})
        wake = [max(1.0, (pruning.next_check - now).total_seconds())] if pruning.next_check else []
        return wake + ([2.0] if later else [])

    def _events_of_stuck_movers(self, namespace: str, movers: list[Body],
                                pods: dict[str, list[Body]]) -> dict[str, list[dict[str, Any]]]:
        """Events of each running mover Job whose pod has not started for DIAGNOSE_AFTER (and of its pods)."""
        found: dict[str, list[dict[str, Any]]] = {}
        now = self.clock()
        for mover in movers:
            name = mover["metadata"]["name"]
            if job_state(mover) != "Running" or started(mover, pods.get(name, [])):
                continue
            created = mover["metadata"].get("creationTimestamp")
            if created and (now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds() \
                    < DIAGNOSE_AFTER:
                continue
            items = list(self.kube.list_events(namespace, name))
            for pod in pods.get(name, []):
                items += self.kube.list_events(namespace, pod["metadata"]["name"])
            found[name] = items
        return found

    def _execute(self, body: Body, job: SyncJob, target: SyncTarget | None,
                 decision: Decision) -> tuple[int, float | None]:
        """Create the movers, write the status, record the Events; in that order (core/actions.py)."""
        created = 0
        # A mover is built from the status decided in this round, not the one read: a verify started
        # in the round that judged its push must expect that push's manifest, and a copy pushed again
        # in the round that judged its mismatch must compare content.
        decided = job.model_copy(update={"status": decision.status})
        for action in decision.actions:
            if isinstance(action, CreateMoverJob):
                assert target is not None  # decide() never starts a mover without a target
                manifest = build_mover_job(job=decided, target=target, step=action.step, name=action.name,
                                           n=action.attempt, default_image=self.default_image,
                                           replica=action.replica)
                manifest["metadata"]["annotations"][TARGET_ANNOTATION] = target.name
                self._fence()
                if self.kube.create_job(manifest):
                    log.info("started mover %s (%s) for %s", action.name, action.step, job.name,
                             extra={"syncjob": f"{job.namespace}/{job.name}"})
                    metrics.MOVERS_STARTED.labels(job.namespace, target.name, action.step).inc()
                created += 1
            elif isinstance(action, DeleteMoverJob):
                self._fence()
                self.kube.delete_job(job.namespace, action.name)
                log.warning("removed mover %s (%s)", action.name, action.reason,
                            extra={"syncjob": f"{job.namespace}/{job.name}"})
        status = decision.status
        new_status = status.model_dump(by_alias=True, mode="json", exclude_none=True)
        if new_status != (body.get("status") or {}):
            updated: Body = {**body, "status": new_status}
            self._fence()
            if not self.kube.replace_syncjob_status(updated):
                return created, 0.5  # conflict: someone changed the object; decide again
        ref = f"{job.namespace}/{job.name}"
        for action in decision.events:
            self.kube.emit_event(body, type_=action.type, reason=action.reason, message=action.message)
            level = logging.WARNING if action.type == "Warning" else logging.INFO
            log.log(level, action.message, extra={"syncjob": ref, "reason": action.reason,
                                                  "phase": str(status.phase)})
        metrics.observe_transition(body, job, status)
        return created, decision.requeue_after

    def _progress(self, job: SyncJob, pods: dict[str, list[Body]]) -> tuple[MoverProgress | None, float | None]:
        """The running push/verify mover's latest progress line, read at most every PROGRESS_INTERVAL."""
        mover = job.status.mover_job
        if mover is None or mover.state != "Running" or mover.step not in ("push", "verify"):
            return None, None
        now = time.monotonic()
        last = self._progress_read.get(job.uid, 0.0)
        if now - last < PROGRESS_INTERVAL:
            return None, PROGRESS_INTERVAL - (now - last)
        self._progress_read[job.uid] = now
        own = pods.get(mover.name) or self.kube.list_pods(job.namespace, f"job-name={mover.name}")
        pod = running_pod(own)
        if pod is None:
            return None, PROGRESS_INTERVAL
        record = latest_progress(self.kube.pod_log_tail(job.namespace, pod))
        if record is None or record.get("step") != mover.step:
            return None, PROGRESS_INTERVAL
        return MoverProgress(name=mover.name, step=mover.step, progress=progress_model(record),
                             replica=mover.replica), PROGRESS_INTERVAL

    def _update_target(self, key: TargetKey, body: Body, readiness: Readiness, target: SyncTarget | None,
                       *, active: int, queued: int) -> None:
        try:
            old = SyncTargetStatus.model_validate(body.get("status") or {})
        except ValidationError:
            old = SyncTargetStatus()
        new, events = target_status(old=old, readiness=readiness, target=target,
                                    generation=body["metadata"].get("generation"),
                                    active=active, queued=queued, now=self.clock())
        if new.to_api() == old.to_api():
            return
        for event in events:
            self.kube.emit_event({**body, "kind": "SyncTarget"}, type_=event.type, reason=event.reason,
                                 message=event.message)
        self.kube.patch_target_status(key.namespace, key.name, new.to_api())
