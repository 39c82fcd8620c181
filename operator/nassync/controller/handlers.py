"""kopf wiring: the process's lifecycle, probes and the admission webhook; nothing is decided here.

SyncTargets, SyncJobs and mover Jobs are watched by the informers of
controller/cache.py (list + watch, deletions noticed after a reconnect), which
wake the reconciler; kopf registers no handlers on them, so it stores no state
on the objects and adds no finalizers: deleting a SyncJob never waits for the
operator (docs/concepts.md). All decisions happen in the reconciler, one
target at a time.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

from nassync.certs import CertificateAuthority
from nassync.controller import metrics
from nassync.controller.cache import CachedKube
from nassync.controller.election import ApiLeases, ElectionConfig, LeaderElector
from nassync.controller.kube import load_config
from nassync.controller.moverjob import DEFAULT_IMAGE
from nassync.controller.reconciler import Reconciler, TargetKey
from nassync.core import names

log = logging.getLogger("nassync.operator")


@dataclass(frozen=True)
class WebhookConfig:
    port: int
    address: str = "0.0.0.0"
    host: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    manage: bool = False


@dataclass
class OperatorMemo:
    """Process-wide state, passed by kopf to every handler as `memo` (kopf.run(memo=...)).

    main.py fills in the configuration; `configure` (startup) adds the
    reconciler and its thread. kopf gives each object a shallow copy, so all
    copies share the one reconciler.
    """

    default_image: str = DEFAULT_IMAGE
    webhook: WebhookConfig | None = None
    election: ElectionConfig | None = None  # None: standalone (the only replica)
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    reconciler: Reconciler | None = None
    elector: LeaderElector | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    election_thread: threading.Thread | None = None


def _enqueue(memo: OperatorMemo, namespace: str | None, target: str | None) -> None:
    if memo.reconciler is not None and namespace and target:
        memo.reconciler.enqueue(TargetKey(namespace, target))


def _self_signed(host: str) -> tuple[str, str, str]:
    """A throwaway CA and serving certificate for a development webhook.

    kopf's own generator needs oscrypto, which cannot detect OpenSSL 3 here;
    `cryptography` is already a dependency.
    """
    directory = Path(tempfile.mkdtemp(prefix="nassync-webhook-"))
    ca = CertificateAuthority(directory)
    pair = ca.issue("webhook", common_name=host, hosts=(host, "localhost", "127.0.0.1"), server=True)
    return str(pair.cert), str(pair.key), str(ca.cert_path)


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: OperatorMemo, **_: Any) -> None:
    # Our own prefix and finalizer name from day one (changing them later re-runs handlers).
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="nassync.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="nassync.dev", key="last-handled-configuration")
    settings.persistence.finalizer = "nassync.dev/finalizer"
    settings.posting.level = logging.WARNING
    # Only our mover Jobs matter; filter them on the server, not in Python.
    settings.watching.label_selectors["batch", "jobs"] = (
        f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}")
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    hook = memo.webhook
    if hook is not None:
        certfile, keyfile, cafile = hook.certfile, hook.keyfile, None
        if certfile is None:
            certfile, keyfile, cafile = _self_signed(hook.host or "127.0.0.1")
        settings.admission.server = kopf.WebhookServer(
            addr=hook.address, port=hook.port, host=hook.host,
            certfile=certfile, pkeyfile=keyfile, cafile=cafile)
        # Fail closed: a SyncJob that could not be checked is not admitted.
        settings.admission.managed = "nassync.dev" if hook.manage else None
    load_config()
    memo.stop.clear()
    # Globs (kopf's -n syntax) cannot be listed per namespace: watch all and let RBAC decide.
    exact = [n for n in memo.namespaces if not any(ch in n for ch in "*?[!")]
    kube = CachedKube(lambda namespace, name: _enqueue(memo, namespace, name),
                      namespaces=exact if exact and len(exact) == len(memo.namespaces) else None)
    memo.reconciler = Reconciler(kube, default_image=memo.default_image)
    kube.start(memo.stop)
    if not kube.wait_synced(120):
        log.warning("the caches did not finish their first list within 120 s; reconciling what is known")
    if memo.election is not None:
        memo.elector = LeaderElector(ApiLeases(), memo.election,
                                     on_change=lambda leader: metrics.LEADER.set(1 if leader else 0))
        memo.reconciler.leader = memo.elector.is_leader
        memo.election_thread = threading.Thread(target=memo.elector.run, args=(memo.stop,),
                                                name="leader-election", daemon=True)
        memo.election_thread.start()
    else:
        metrics.LEADER.set(1)
    memo.thread = threading.Thread(target=memo.reconciler.run_forever, args=(memo.stop,),
                                   name="reconciler", daemon=True)
    memo.thread.start()


@kopf.on.cleanup()
def shutdown(memo: OperatorMemo, **_: Any) -> None:
    memo.stop.set()
    if memo.thread is not None:
        memo.thread.join(timeout=10)
    if memo.election_thread is not None:
        memo.election_thread.join(timeout=10)  # releases the lease: a standby takes over at once


@kopf.on.probe(id="reconciler")
def reconciler_alive(memo: OperatorMemo, **_: Any) -> bool:
    return memo.thread is not None and memo.thread.is_alive()
