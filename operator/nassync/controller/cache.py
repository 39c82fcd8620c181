"""Watch-fed caches of SyncTargets, SyncJobs and mover Jobs: what the reconciler reads instead of LISTs.

A reconcile round used to LIST every SyncJob of the namespace, the target's
mover Jobs and pods, and GET the target and its Secret: ~88 apiserver requests
per run, and a round over 10,000 finished SyncJobs parsed them all. Here one
informer per resource (list, then watch from the list's resourceVersion)
keeps the objects in memory and tells the reconciler which target to look at;
a round reads the stores and only writes.

Why not kopf's indexes: after a watch is re-established (apiserver or etcd
restarted, "410 Gone") kopf re-lists but never reports the objects that
vanished meanwhile, so a deleted mover Job would hold its target's slot
forever. Here every (re)list *replaces* the store and reports the difference,
deletions included (client-go's reflector semantics).

Objects are stored slimmed (no managedFields, no kubectl last-applied
annotation) and handed out read-only: callers copy before changing anything.
Writes the operator makes itself (created Jobs, status PUTs) are put into the
store at once from the apiserver's reply, so the next round never decides on
a status older than its own last write.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import watch
from kubernetes.client.rest import ApiException

from nassync.api.common import GROUP, VERSION
from nassync.controller.kube import SYNCJOBS, SYNCTARGETS, ApiKube, Body
from nassync.core import names

log = logging.getLogger("nassync.cache")

Key = tuple[str, str]  # (namespace, name)
OnChange = Callable[[Body | None, Body | None], None]  # (old, new); None = absent
WATCH_SECONDS = 240
SECRET_TTL = 30.0
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
LIST_PAGE = 500


def _trim() -> None:
    """Give memory freed after a big list back to the OS (glibc keeps it otherwise)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def slim(obj: dict[str, Any]) -> Body:
    meta = obj.get("metadata") or {}
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        annotations.pop(LAST_APPLIED)
    return obj  # type: ignore[return-value]


def _rv(obj: Body | None) -> int:
    try:
        return int((obj or {}).get("metadata", {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


@dataclass
class Store:
    """Objects of one resource by (namespace, name); thread-safe.

    With `compact`, objects are kept as zlib-compressed JSON and decoded on
    access (10,000 finished SyncJobs: ~15 MB instead of ~150 MB of dicts), and
    indexed by `index(obj)` (the SyncJob's target) so that a round decodes only
    its own target's SyncJobs.
    """

    compact: bool = False
    index: Callable[[Body], str] | None = None
    objects: dict[Key, Any] = field(default_factory=dict)
    by_index: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _pack(self, obj: Body) -> Any:
        return zlib.compress(json.dumps(obj, separators=(",", ":")).encode(), 1) if self.compact else obj

    def _unpack(self, stored: Any) -> Body:
        if not self.compact:
            return stored  # type: ignore[no-any-return]
        body: Body = json.loads(zlib.decompress(stored))
        return body

    def _meta(self, stored: Any) -> dict[str, Any]:
        return dict(self._unpack(stored)["metadata"])

    def _link(self, obj: Body, add: bool) -> None:
        if self.index is None:
            return
        meta = obj["metadata"]
        bucket = self.by_index.setdefault((meta.get("namespace", ""), self.index(obj)), set())
        (bucket.add if add else bucket.discard)(meta["name"])

    def get(self, namespace: str, name: str) -> Body | None:
        with self.lock:
            stored = self.objects.get((namespace, name))
        return self._unpack(stored) if stored is not None else None

    def in_namespace(self, namespace: str) -> list[Body]:
        with self.lock:
            stored = [obj for (ns, _), obj in self.objects.items() if ns == namespace]
        return [self._unpack(obj) for obj in stored]

    def indexed(self, namespace: str, value: str) -> list[Body]:
        with self.lock:
            names = list(self.by_index.get((namespace, value), ()))
            stored = [self.objects[(namespace, n)] for n in names if (namespace, n) in self.objects]
        return [self._unpack(obj) for obj in stored]

    def put(self, obj: Body) -> tuple[Body | None, bool]:
        """Store `obj` unless a newer version is already there; (previous, stored?)."""
        meta = obj["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        with self.lock:
            raw = self.objects.get(key)
            old = self._unpack(raw) if raw is not None else None
            if old is not None and old["metadata"].get("uid") == meta.get("uid") and _rv(old) > _rv(obj):
                return old, False
            if old is not None:
                self._link(old, False)
            self.objects[key] = self._pack(obj)
            self._link(obj, True)
            return old, True

    def remove(self, namespace: str, name: str) -> Body | None:
        with self.lock:
            raw = self.objects.pop((namespace, name), None)
            old = self._unpack(raw) if raw is not None else None
            if old is not None:
                self._link(old, False)
            return old

    def pack(self, obj: Body) -> tuple[Body, Any]:
        """(a skeleton for change callbacks and the index: metadata and spec.targetRef, the stored form)."""
        skeleton: Body = {"metadata": obj["metadata"]}
        if "spec" in obj:
            skeleton["spec"] = {"targetRef": (obj.get("spec") or {}).get("targetRef")}
        return skeleton, self._pack(obj)

    def replace(self, entries: Iterable[tuple[Body, Any]], namespace: str | None
                ) -> list[tuple[Body | None, Body | None]]:
        """A fresh list (`pack()`ed): the store becomes exactly it (within `namespace`); the changes."""
        fresh = {(s["metadata"].get("namespace", ""), s["metadata"]["name"]): (s, stored) for s, stored in entries}
        changes: list[tuple[Body | None, Body | None]] = []
        with self.lock:
            for key, raw in list(self.objects.items()):
                if (namespace is None or key[0] == namespace) and key not in fresh:
                    gone = self._unpack(raw)
                    del self.objects[key]
                    self._link(gone, False)
                    changes.append((gone, None))
            for key, (skeleton, stored) in fresh.items():
                raw = self.objects.get(key)
                previous = self._unpack(raw) if raw is not None else None
                if previous is None or _rv(previous) != _rv(skeleton):
                    changes.append((previous, skeleton))
                if previous is not None:
                    self._link(previous, False)
                self.objects[key] = stored
                self._link(skeleton, True)
        return changes


def target_of(obj: Body) -> str:
    return str(((obj.get("spec") or {}).get("targetRef") or {}).get("name") or "")


class Informer:
    """list + watch of one resource in one namespace (or all), feeding a Store and a callback."""

    def __init__(self, name: str, lister: Callable[..., Any], store: Store, on_change: OnChange, *,
                 namespace: str | None, label_selector: str | None = None) -> None:
        self.name = name
        self.lister = lister
        self.store = store
        self.on_change = on_change
        self.namespace = namespace
        self.label_selector = label_selector
        self.synced = threading.Event()

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if self.label_selector:
            kwargs["label_selector"] = self.label_selector
        return kwargs

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                rv = self._relist()
                self._watch(rv, stop)
            except Exception as e:  # apiserver away, 410 Gone, ...: list again after a pause
                log.warning("%s informer: %s; listing again", self.name, e)
                stop.wait(2.0)

    def _relist(self) -> str:
        # In pages: 10,000 SyncJobs decoded at once would leave the process ~150 MB bigger
        # for good (the allocator keeps what a peak took).
        items: list[tuple[Body, Any]] = []
        token: str | None = None
        while True:
            kwargs = {**self._kwargs(), "limit": LIST_PAGE}
            if token:
                kwargs["_continue"] = token
            resp = self.lister(_preload_content=False, **kwargs)
            data = json.loads(resp.data)
            del resp
            items += [self.store.pack(slim(item)) for item in data.get("items") or []]
            token = (data.get("metadata") or {}).get("continue")
            if not token:
                break
        for changed in self.store.replace(items, self.namespace):
            self.on_change(*changed)
        del items
        _trim()
        self.synced.set()
        return str(data["metadata"]["resourceVersion"])

    def _watch(self, rv: str, stop: threading.Event) -> None:
        while not stop.is_set():
            stream = watch.Watch()
            for event in stream.stream(self.lister, resource_version=rv, timeout_seconds=WATCH_SECONDS,
                                       allow_watch_bookmarks=True, **self._kwargs()):
                kind, obj = event["type"], event["raw_object"]
                if kind == "ERROR":
                    raise RuntimeError(f"watch error: {obj.get('message') or obj}")
                rv = str(obj.get("metadata", {}).get("resourceVersion") or rv)
                if kind == "BOOKMARK":
                    continue
                obj = slim(obj)
                meta = obj["metadata"]
                if kind == "DELETED":
                    old = self.store.remove(meta.get("namespace", ""), meta["name"])
                    self.on_change(old or obj, None)
                else:
                    old, stored = self.store.put(obj)
                    if stored:
                        self.on_change(old, obj)
                if stop.is_set():
                    stream.stop()
                    return


class CachedKube(ApiKube):
    """`Kube` whose reads come from the informers' stores; writes go to the apiserver and into the stores."""

    def __init__(self, on_target: Callable[[str, str], None], namespaces: list[str] | None = None) -> None:
        super().__init__()
        self.on_target = on_target
        self.targets = Store()
        self.syncjobs = Store(compact=True, index=target_of)
        self.jobs = Store()
        self._secrets: dict[Key, tuple[float, frozenset[str] | None]] = {}
        self.informers: list[Informer] = []
        for namespace in namespaces or [None]:  # type: ignore[list-item]
            self.informers += self._informers(namespace)
        self.threads: list[threading.Thread] = []

    def _informers(self, ns: str | None) -> list[Informer]:
        custom, batch = self.custom, self.batch
        selector = f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}"

        def targets(**kw: Any) -> Any:
            if ns is None:
                return custom.list_cluster_custom_object(GROUP, VERSION, SYNCTARGETS, **kw)
            return custom.list_namespaced_custom_object(GROUP, VERSION, ns, SYNCTARGETS, **kw)

        def syncjobs(**kw: Any) -> Any:
            if ns is None:
                return custom.list_cluster_custom_object(GROUP, VERSION, SYNCJOBS, **kw)
            return custom.list_namespaced_custom_object(GROUP, VERSION, ns, SYNCJOBS, **kw)

        def jobs(**kw: Any) -> Any:
            return batch.list_job_for_all_namespaces(**kw) if ns is None else batch.list_namespaced_job(ns, **kw)

        return [Informer("synctargets", targets, self.targets, self._target_changed, namespace=ns),
                Informer("syncjobs", syncjobs, self.syncjobs, self._syncjob_changed, namespace=ns),
                Informer("jobs", jobs, self.jobs, self._job_changed, namespace=ns, label_selector=selector)]

    def start(self, stop: threading.Event) -> None:
        for informer in self.informers:
            thread = threading.Thread(target=informer.run, args=(stop,), name=f"informer-{informer.name}",
                                      daemon=True)
            thread.start()
            self.threads.append(thread)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(i.synced.wait(max(0.0, deadline - time.monotonic())) for i in self.informers)

    # what changed -> which target to look at ------------------------------------------------
    def _target_changed(self, old: Body | None, new: Body | None) -> None:
        meta = (new or old or {}).get("metadata") or {}
        self.on_target(meta.get("namespace", ""), meta.get("name", ""))

    def _syncjob_changed(self, old: Body | None, new: Body | None) -> None:
        for obj in (old, new):
            if obj is not None:
                target = ((obj.get("spec") or {}).get("targetRef") or {}).get("name")
                if target:
                    self.on_target(obj["metadata"].get("namespace", ""), target)

    def _job_changed(self, old: Body | None, new: Body | None) -> None:
        obj = new or old or {}
        meta = obj.get("metadata") or {}
        target = (meta.get("annotations") or {}).get("nassync.dev/target-name")
        if target:
            self.on_target(meta.get("namespace", ""), target)

    # reads ------------------------------------------------------------------------------------
    def get_target(self, namespace: str, name: str) -> Body | None:
        return self.targets.get(namespace, name)

    def list_syncjobs(self, namespace: str) -> list[Body]:
        return self.syncjobs.in_namespace(namespace)

    def list_target_syncjobs(self, namespace: str, target: str) -> list[Body]:
        return self.syncjobs.indexed(namespace, target)

    def list_jobs(self, namespace: str, selector: str) -> list[Body]:
        wanted = dict(part.split("=", 1) for part in selector.split(","))
        return [job for job in self.jobs.in_namespace(namespace)
                if all((job["metadata"].get("labels") or {}).get(k) == v for k, v in wanted.items())]

    def secret_keys(self, namespace: str, name: str, *, fresh: bool = False) -> frozenset[str] | None:
        """Secrets are not watched (RBAC: get by name only): a GET at most every SECRET_TTL seconds,
        and always (`fresh`) right before a mover would start."""
        now = time.monotonic()
        cached = self._secrets.get((namespace, name))
        if cached is not None and now - cached[0] < SECRET_TTL and not fresh:
            return cached[1]
        keys = super().secret_keys(namespace, name)
        self._secrets[(namespace, name)] = (now, keys)
        return keys

    # writes, reflected at once -----------------------------------------------------------------
    def replace_syncjob_status(self, body: Body) -> bool:
        meta = body["metadata"]
        try:
            new = self.custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, meta["namespace"], SYNCJOBS, meta["name"], body)
        except ApiException as e:
            if e.status == 404:
                self.syncjobs.remove(meta["namespace"], meta["name"])
                return False
            if e.status == 409:
                return False
            raise
        self.syncjobs.put(slim(new))
        return True

    def create_job(self, body: dict[str, Any]) -> bool:
        try:
            resp = self.batch.create_namespaced_job(body["metadata"]["namespace"], body, _preload_content=False)
        except ApiException as e:
            if e.status == 409:
                return False
            raise
        self.jobs.put(slim(json.loads(resp.data)))
        return True

    def delete_syncjob(self, namespace: str, name: str, *, uid: str, resource_version: str) -> bool:
        deleted = super().delete_syncjob(namespace, name, uid=uid, resource_version=resource_version)
        if deleted:
            self.syncjobs.remove(namespace, name)
        return deleted

