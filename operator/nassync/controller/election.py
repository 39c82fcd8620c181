"""Leader election on a coordination.k8s.io/v1 Lease: one replica reconciles, the others stand by.

Why a Lease and not kopf peering: kopf's peering pauses *every* replica of
equal priority (a Deployment's replicas are equal), is cold standby only and
judges liveness by wall clocks; it also only pauses kopf's own handlers, while
our reconciler is a thread of its own. A Lease is the Kubernetes convention
(`kubectl get lease` shows the holder), needs RBAC on one object in the
operator's namespace, and lets standbys keep their kopf watches running.

The rules are client-go's (leaderelection):
- a candidate takes the Lease when it does not exist, or when its record
  (holder, renewTime) has not changed for `lease_seconds` *as observed on the
  candidate's own monotonic clock* (clock skew between nodes cannot make a
  live leader look expired);
- the holder renews every `renew_every` seconds with a resourceVersion-checked
  update, so two candidates never both win;
- the holder stops acting as leader once it has not renewed for
  `renew_deadline` seconds (< `lease_seconds`): it has stepped down before
  anyone else may take over. `is_leader()` is checked before every write the
  reconciler makes (the fence).

With the defaults (15 s lease, 10 s deadline, 2 s retry) a standby takes over
within about 17 s of the leader's death.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("nassync.election")

MICROTIME = "%Y-%m-%dT%H:%M:%S.%fZ"


@dataclass(frozen=True)
class ElectionConfig:
    namespace: str
    identity: str
    name: str = "nassync-operator"
    lease_seconds: float = 15.0
    renew_deadline: float = 10.0
    retry_every: float = 2.0


class LeaseApi(Protocol):
    """The three Lease calls the election makes (ApiLeases with the kubernetes client; a fake in tests)."""

    def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create(self, namespace: str, body: dict[str, Any]) -> bool: ...  # False: it already exists
    def replace(self, namespace: str, name: str, body: dict[str, Any]) -> bool: ...  # False: conflict


@dataclass
class LeaderElector:
    api: LeaseApi
    config: ElectionConfig
    clock: Callable[[], float] = time.monotonic
    on_change: Callable[[bool], None] = lambda leader: None
    _renewed_at: float | None = None  # monotonic time of our last successful acquire/renew
    _observed: tuple[str, str] | None = None  # (holder, renewTime) last seen on the Lease
    _observed_at: float = 0.0
    _leader: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def is_leader(self) -> bool:
        """True while our last renewal is younger than the renew deadline."""
        with self._lock:
            return self._renewed_at is not None and self.clock() - self._renewed_at < self.config.renew_deadline

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.try_acquire_or_renew()
            except Exception as e:  # the apiserver is away: keep trying, the deadline fences us
                log.warning("lease %s/%s: %s", self.config.namespace, self.config.name, e)
            self._note_change()
            stop.wait(self.config.retry_every)
        self.release()

    def _note_change(self) -> None:
        leader = self.is_leader()
        if leader != self._leader:
            self._leader = leader
            log.warning("%s leadership of lease %s/%s (identity %s)", "acquired" if leader else "lost",
                        self.config.namespace, self.config.name, self.config.identity)
            self.on_change(leader)

    def _spec(self, now: datetime, *, transitions: int, acquired: str | None = None) -> dict[str, Any]:
        stamp = now.strftime(MICROTIME)
        return {"holderIdentity": self.config.identity,
                "leaseDurationSeconds": int(self.config.lease_seconds),
                "acquireTime": acquired or stamp, "renewTime": stamp, "leaseTransitions": transitions}

    def try_acquire_or_renew(self) -> bool:
        cfg = self.config
        now_wall = datetime.now(UTC)
        started = self.clock()
        lease = self.api.get(cfg.namespace, cfg.name)
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                    "spec": self._spec(now_wall, transitions=0)}
            return self._won(self.api.create(cfg.namespace, body), started)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._observed:
            self._observed, self._observed_at = record, started
        duration = float(spec.get("leaseDurationSeconds") or cfg.lease_seconds)
        if holder and holder != cfg.identity and started - self._observed_at < duration:
            return self._won(False, started)  # someone else holds a live lease
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == cfg.identity else 1)
        acquired = spec.get("acquireTime") if holder == cfg.identity else None
        body = {**lease, "spec": self._spec(now_wall, transitions=transitions, acquired=acquired)}
        return self._won(self.api.replace(cfg.namespace, cfg.name, body), started)

    def _won(self, ok: bool, at: float) -> bool:
        with self._lock:
            if ok:
                self._renewed_at = at
        return ok

    def release(self) -> None:
        """On a clean shutdown, hand the lease over at once instead of after its duration."""
        if not self.is_leader():
            return
        with self._lock:
            self._renewed_at = None
        try:
            lease = self.api.get(self.config.namespace, self.config.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.config.identity:
                spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1}
                self.api.replace(self.config.namespace, self.config.name, {**lease, "spec": spec})
        except Exception as e:
            log.warning("could not release lease %s/%s: %s", self.config.namespace, self.config.name, e)


class ApiLeases:
    """`LeaseApi` through the kubernetes client (RBAC: get, create, update on leases)."""

    def __init__(self) -> None:
        self.api = client.CoordinationV1Api()

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            resp = self.api.read_namespaced_lease(name, namespace, _preload_content=False)
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        body: dict[str, Any] = json.loads(resp.data)
        return body

    def create(self, namespace: str, body: dict[str, Any]) -> bool:
        try:
            self.api.create_namespaced_lease(namespace, body, _preload_content=False)
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            raise

    def replace(self, namespace: str, name: str, body: dict[str, Any]) -> bool:
        try:
            self.api.replace_namespaced_lease(name, namespace, body, _preload_content=False)
            return True
        except ApiException as e:
            if e.status == 409:
                return False
            raise
