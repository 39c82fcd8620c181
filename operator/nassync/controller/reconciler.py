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
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from nassync.api.mover_io import MoverResult
from nassync.api.syncjob import LastError, Progress, SyncJob, TransferStatus
from nassync.api.target import SyncTarget
from nassync.controller import metrics
from nassync.controller.kube import Kube
from nassync.controller.moverjob import DEFAULT_IMAGE, build_mover_job
from nassync.core import names
from nassync.core.actions import CreateMoverJob, Decision, EmitEvent
from nassync.core.decide import ChildJob, decide

log = logging.getLogger("nassync.reconciler")

PROGRESS_INTERVAL = 10.0  # seconds between progress reads of a running mover
IDLE_RESYNC = 300.0  # look at every target at least this often, events or not
TARGET_ANNOTATION = "nassync.dev/target-name"


@dataclass(frozen=True, order=True)
class TargetKey:
    namespace: str
    name: str


def _now() -> datetime:
    return datetime.now(UTC)


def _job_state(job: dict[str, Any]) -> str:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Succeeded"
        if cond.get("type") == "Failed":
            return "Failed"
    return "Running"


def _terminated(pod: dict[str, Any]) -> dict[str, Any] | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        if cs.get("name") == "mover" and "terminated" in (cs.get("state") or {}):
            terminated: dict[str, Any] = cs["state"]["terminated"]
            return terminated
    return None


def parse_result(pods: Iterable[dict[str, Any]]) -> MoverResult | None:
    """The mover's JSON result from its termination message, if any pod left one."""
    for pod in pods:
        term = _terminated(pod)
        if term and term.get("message"):
            try:
                return MoverResult.model_validate_json(term["message"])
            except ValidationError:
                log.warning("pod %s left a termination message that is not a mover result",
                            pod["metadata"]["name"])
    return None


def child_jobs(owner_uid: str, jobs: list[dict[str, Any]],
               pods_by_job: dict[str, list[dict[str, Any]]]) -> dict[str, ChildJob]:
    children = {}
    for job in jobs:
        meta = job["metadata"]
        if not any(ref.get("uid") == owner_uid for ref in meta.get("ownerReferences") or []):
            continue
        state = _job_state(job)
        result = parse_result(pods_by_job.get(meta["name"], [])) if state != "Running" else None
        step = (meta.get("labels") or {}).get(names.LABEL_STEP, "push")
        children[meta["name"]] = ChildJob(name=meta["name"], step=step, state=state,  # type: ignore[arg-type]
                                          result=result)
    return children


def latest_progress(log_tail: str) -> dict[str, Any] | None:
    """The last `{"event": "progress", ...}` line a mover printed."""
    for line in reversed(log_tail.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if record.get("event") == "progress":
            return dict(record)
    return None


def _progress_model(record: dict[str, Any]) -> Progress:
    done = int(record.get("bytes") or 0)
    total = int(record.get("totalBytes") or 0)
    percent = min(100, int(done * 100 / total)) if total else 0
    eta = record.get("etaSeconds")
    return Progress(bytes=done, total_bytes=total, percent=percent,
                    bytes_per_second=int(record.get("bytesPerSecond") or 0),
                    eta_seconds=int(eta) if eta is not None else None)


_WAITING = {"Pending", "Gating", "Queued", "Verifying", "Verified"}


def _blocked_by_target(decision: Decision, *, reason: str, message: str, now: datetime) -> Decision:
    """Say on the SyncJob why nothing moves: the admin's SyncTarget is not ready."""
    status = decision.status
    if str(status.phase) not in _WAITING or (status.mover_job and status.mover_job.state == "Running"):
        return decision
    text = f"SyncTarget is not ready ({reason}): {message}"
    if status.last_error is not None and status.last_error.message == text:
        return decision
    new_status = status.model_copy(update={"last_error": LastError(kind="Config", message=text, at=now)})
    event = EmitEvent(type="Warning", reason="TargetNotReady", message=text)
    return Decision(status=new_status, actions=(*decision.actions, event), requeue_after=decision.requeue_after)


@dataclass
class Reconciler:
    kube: Kube
    default_image: str = DEFAULT_IMAGE
    clock: Callable[[], datetime] = _now
    _due: list[tuple[float, TargetKey]] = field(default_factory=list)
    _cv: threading.Condition = field(default_factory=threading.Condition)
    _progress_read: dict[str, float] = field(default_factory=dict)
    _known: set[TargetKey] = field(default_factory=set)

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
            key = self._next(stop)
            if key is None:
                return
            started = time.monotonic()
            try:
                delay = self.reconcile(key)
            except Exception:
                log.exception("reconciling target %s/%s failed; retrying in 5s", key.namespace, key.name)
                metrics.RECONCILE_ERRORS.inc()
                delay = 5.0
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
            self.enqueue(key, delay if delay is not None else IDLE_RESYNC)

    # one round ----------------------------------------------------------------
    def reconcile(self, key: TargetKey) -> float | None:
        """Reconcile every SyncJob of one target; return seconds until the next look."""
        target_body = self.kube.get_target(key.namespace, key.name)
        target, target_problem = self._load_target(target_body)
        bodies = sorted(
            (b for b in self.kube.list_syncjobs(key.namespace)
             if ((b.get("spec") or {}).get("targetRef") or {}).get("name") == key.name),
            key=lambda b: (b["metadata"].get("creationTimestamp", ""), b["metadata"]["name"]))
        selector = names.target_selector(target=key.name)
        movers = self.kube.list_jobs(key.namespace, selector)
        pods = self.kube.list_pods(key.namespace, selector)
        pods_by_job: dict[str, list[dict[str, Any]]] = {}
        for pod in pods:
            job_name = (pod["metadata"].get("labels") or {}).get("job-name")
            if job_name:
                pods_by_job.setdefault(job_name, []).append(pod)
        active = sum(1 for m in movers if _job_state(m) == "Running")
        ready, reason, message = self._target_ready(key, target, target_problem) if target_body else (
            False, "TargetMissing", "")
        # A target that is not ready (e.g. its Secret is missing) starts no movers:
        # a pod waiting forever for a Secret would hold a slot and say nothing.
        concurrency = target.spec.concurrency if target and ready else 0
        wake: list[float] = []
        phases: dict[str, int] = {}
        for body in bodies:
            if body["metadata"].get("deletionTimestamp"):
                continue
            try:
                job = SyncJob.from_body(body)
            except ValidationError as e:
                log.error("SyncJob %s/%s cannot be read: %s", key.namespace, body["metadata"]["name"], e)
                continue
            children = child_jobs(body["metadata"]["uid"], movers, pods_by_job)
            decision = decide(job=job, target=target if target_problem is None else None,
                              children=children, slot_available=active < concurrency, now=self.clock())
            if target is not None and not ready:
                decision = _blocked_by_target(decision, reason=reason, message=message, now=self.clock())
            created, delay = self._execute(body, job, target, decision, pods_by_job)
            active += created
            phase = str(decision.status.phase)
            phases[phase] = phases.get(phase, 0) + 1
            if delay is not None:
                wake.append(delay)
        if target_body is not None:
            self._update_target(key, target_body, (ready, reason, message), target, active, phases)
        metrics.observe_target(key.namespace, key.name, bodies=bodies, active=active, now=self.clock())
        return min(wake) if wake else None

    def _load_target(self, body: dict[str, Any] | None) -> tuple[SyncTarget | None, str | None]:
        if body is None:
            return None, None
        try:
            return SyncTarget.from_body(body), None
        except ValidationError as e:
            return None, f"SyncTarget spec is invalid: {e.errors()[0].get('msg', e)}"

    def _execute(self, body: dict[str, Any], job: SyncJob, target: SyncTarget | None,
                 decision: Decision, pods_by_job: dict[str, list[dict[str, Any]]]) -> tuple[int, float | None]:
        created = 0
        for action in decision.actions:
            if isinstance(action, CreateMoverJob):
                assert target is not None  # decide() never starts a mover without a target
                manifest = build_mover_job(job=job, target=target, step=action.step, name=action.name,
                                           n=action.attempt, default_image=self.default_image)
                manifest["metadata"]["annotations"][TARGET_ANNOTATION] = target.metadata["name"]
                if self.kube.create_job(manifest):
                    log.info("started mover %s (%s) for %s", action.name, action.step, job.name,
                             extra={"syncjob": f"{job.metadata.get('namespace')}/{job.name}"})
                    metrics.MOVERS_STARTED.labels(job.metadata.get("namespace", ""),
                                                  target.metadata["name"], action.step).inc()
                created += 1
        status = decision.status
        delay = decision.requeue_after
        progress_delay = self._progress(body, status, pods_by_job)
        if progress_delay is not None:
            delay = progress_delay if delay is None else min(delay, progress_delay)
        new_status = status.model_dump(by_alias=True, mode="json", exclude_none=True)
        if new_status != (body.get("status") or {}):
            updated = {**body, "status": new_status}
            if not self.kube.replace_syncjob_status(updated):
                return created, 0.5  # conflict: someone changed the object; decide again
        ref = f"{body['metadata']['namespace']}/{body['metadata']['name']}"
        for action in decision.actions:
            if isinstance(action, EmitEvent):
                self.kube.emit_event(body, type_=action.type, reason=action.reason, message=action.message)
                level = logging.WARNING if action.type == "Warning" else logging.INFO
                log.log(level, action.message, extra={"syncjob": ref, "reason": action.reason,
                                                      "phase": str(status.phase)})
        metrics.observe_transition(body, job, status)
        return created, delay

    def _progress(self, body: dict[str, Any], status: Any,
                  pods_by_job: dict[str, list[dict[str, Any]]]) -> float | None:
        """Copy the running mover's latest progress line into status.transfer.progress."""
        mover = status.mover_job
        if mover is None or mover.state != "Running" or mover.step not in ("push", "verify"):
            return None
        uid = body["metadata"]["uid"]
        now = time.monotonic()
        last = self._progress_read.get(uid, 0.0)
        if now - last < PROGRESS_INTERVAL:
            return PROGRESS_INTERVAL - (now - last)
        self._progress_read[uid] = now
        running = [p for p in pods_by_job.get(mover.name, [])
                   if (p.get("status") or {}).get("phase") == "Running"]
        if not running:
            return PROGRESS_INTERVAL
        record = latest_progress(self.kube.pod_log_tail(body["metadata"]["namespace"],
                                                        running[0]["metadata"]["name"]))
        if record is not None and record.get("step") == mover.step:
            transfer = status.transfer or TransferStatus()
            status.transfer = transfer.model_copy(update={"progress": _progress_model(record)})
        return PROGRESS_INTERVAL

    def _update_target(self, key: TargetKey, body: dict[str, Any], readiness: tuple[bool, str, str],
                       target: SyncTarget | None, active: int, phases: dict[str, int]) -> None:
        ready, reason, message = readiness
        old = (body.get("status") or {})
        conditions = [c for c in old.get("conditions") or [] if c.get("type") != "Ready"]
        previous = next((c for c in old.get("conditions") or [] if c.get("type") == "Ready"), None)
        status_text = "True" if ready else "False"
        transition = previous["lastTransitionTime"] if previous and previous.get("status") == status_text \
            else self.clock().strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions.append({"type": "Ready", "status": status_text, "reason": reason, "message": message,
                           "lastTransitionTime": transition,
                           "observedGeneration": body["metadata"].get("generation")})
        queued = phases.get("Queued", 0) + phases.get("Pending", 0)
        new = {"observedGeneration": body["metadata"].get("generation"), "conditions": conditions,
               "activeMovers": active, "queued": queued}
        if target is not None:
            new["source"] = target.spec.source_summary()
            new["destinationType"] = target.spec.destination.type
        if any(old.get(k) != v for k, v in new.items()):
            if previous is None or previous.get("status") != status_text:
                self.kube.emit_event({**body, "kind": "SyncTarget"}, type_="Normal" if ready else "Warning",
                                     reason=reason, message=message)
            self.kube.patch_target_status(key.namespace, key.name, new)

    def _target_ready(self, key: TargetKey, target: SyncTarget | None,
                      problem: str | None) -> tuple[bool, str, str]:
        if target is None:
            return False, "InvalidSpec", problem or "SyncTarget cannot be read"
        dest = target.spec.destination
        secret = dest.secret_name
        needed = {dest.rclone.config_secret_ref.key} if dest.rclone else {"ssh-privatekey", "known_hosts"}
        keys = self.kube.secret_keys(key.namespace, secret)
        if keys is None:
            return False, "SecretMissing", (f"Secret {secret!r} not found in namespace {key.namespace!r}; "
                                            "create it before SyncJobs can push")
        missing = sorted(needed - keys)
        if missing:
            return False, "SecretKeyMissing", f"Secret {secret!r} lacks key(s) {', '.join(missing)}"
        return True, "Ready", "source, destination and credentials are configured"
