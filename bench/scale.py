"""Scale benchmark (#12 item 11): N runs over T targets with H finished SyncJobs in the namespace.

Starts a private local cluster, a loopback NAS and the operator (as a process,
under a ServiceAccount of its own so that the apiserver can tell its requests
apart), then measures:

- latency of one new run to Verified in an empty namespace, and again with H
  finished (Cleaned) SyncJobs present;
- wall time for N new runs over T targets (concurrency 1 each) to reach Verified;
- apiserver requests per run: all clients (`apiserver_request_total`) and the
  operator's own (`apiserver_flowcontrol_dispatched_requests_total` of a
  FlowSchema matching its ServiceAccount), read from the apiserver's /metrics
  before and after the N runs;
- the operator's RSS and CPU seconds at the end.

    .venv/bin/python bench/scale.py                       # defaults: 1000 runs, 20 targets, 10000 finished
    .venv/bin/python bench/scale.py --runs 100 --targets 4 --history 1000

Goals (#12): latency with H finished within 1.5x of an empty namespace, RSS <= 200 MB,
<= 40 operator requests per run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config

from nassync_dev.cluster import LocalCluster
from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, rclone_target, write_run
from nassync_dev.testing import Kubectl, eventually

NS = "bench"
SA_NS = "nassync-bench"
SA = "nassync-bench-operator"
GROUP, VERSION = "nassync.dev", "v1alpha1"


def operator_identity(k: Kubectl, local: LocalCluster, out: Path) -> Path:
    """A kubeconfig for the operator as ServiceAccount nassync-bench-operator (cluster-admin), and a
    FlowSchema that gives its requests a name in the apiserver's /metrics."""
    k("create", "namespace", SA_NS)
    k("create", "serviceaccount", SA, "-n", SA_NS)
    k("create", "clusterrolebinding", SA, "--clusterrole=cluster-admin", f"--serviceaccount={SA_NS}:{SA}")
    k.apply({"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema",
             "metadata": {"name": SA},
             "spec": {"matchingPrecedence": 500, "priorityLevelConfiguration": {"name": "workload-high"},
                      "distinguisherMethod": {"type": "ByUser"},
                      "rules": [{"subjects": [{"kind": "ServiceAccount",
                                               "serviceAccount": {"name": SA, "namespace": SA_NS}}],
                                 "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                                    "clusterScope": True, "namespaces": ["*"]}],
                                 "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}]}]}})
    token = k("create", "token", SA, "-n", SA_NS, "--duration=24h").strip()
    cfg = json.loads(local.kubeconfig.read_text())
    cfg["users"] = [{"name": SA, "user": {"token": token}}]
    cfg["contexts"][0]["context"]["user"] = SA
    out.write_text(json.dumps(cfg))
    out.chmod(0o600)
    return out


def apiserver_counts(local: LocalCluster) -> tuple[float, float]:
    """(all requests, the operator's requests) from the apiserver's /metrics."""
    _status, body = local._get("/metrics", timeout=10)
    text = body.decode()
    total = sum(float(m.group(1)) for m in re.finditer(r"^apiserver_request_total\{[^}]*\} (\S+)$", text, re.M))
    mine = sum(float(m.group(1)) for m in re.finditer(
        r'^apiserver_flowcontrol_dispatched_requests_total\{[^}]*flow_schema="' + SA + r'"[^}]*\} (\S+)$',
        text, re.M))
    return total, mine


def syncjob(name: str, target: str, run_path: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "SyncJob",
            "metadata": {"name": name, "namespace": NS, "labels": labels},
            "spec": {"targetRef": {"name": target}, "runPath": run_path}}


def finished_status(i: int) -> dict[str, Any]:
    at = "2026-06-01T10:00:00Z"
    return {"phase": "Cleaned", "observedGeneration": 1, "moverRuns": 4, "verifyPasses": 2,
            "manifest": {"files": 12, "bytes": 2_000_000_000, "sha256": f"{i:064x}"},
            "remotePath": f"/volume1/runs/old/Run_{i}", "verifiedAt": at, "lastVerifiedAt": at, "cleanedAt": at,
            "transfer": {"startedAt": at, "finishedAt": at, "bytes": 2_000_000_000, "files": 12},
            "gate": {"checkedAt": at, "quiet": True, "findings": []},
            "moverJob": {"name": f"old-{i}-cleanup-4", "step": "cleanup", "phase": "cleanup", "state": "Succeeded",
                         "startedAt": at},
            "conditions": [{"type": t, "status": "True", "reason": t, "message": f"{t} long ago",
                            "lastTransitionTime": at, "observedGeneration": 1}
                           for t in ("Gated", "Pushed", "Verified", "Cleaned")]}


def create_history(api: client.CustomObjectsApi, count: int, targets: list[str]) -> None:
    def one(i: int) -> None:
        body = syncjob(f"old-{i:05d}", targets[i % len(targets)], f"OLD/Runs/Run_{i:05d}", {"bench": "history"})
        created = api.create_namespaced_custom_object(GROUP, VERSION, NS, "syncjobs", body)
        created["status"] = finished_status(i)
        api.replace_namespaced_custom_object_status(GROUP, VERSION, NS, "syncjobs", body["metadata"]["name"],
                                                    created)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def phases(api: client.CustomObjectsApi, selector: str) -> dict[str, int]:
    items = api.list_namespaced_custom_object(GROUP, VERSION, NS, "syncjobs", label_selector=selector)["items"]
    counts: dict[str, int] = {}
    for item in items:
        phase = (item.get("status") or {}).get("phase", "")
        counts[phase] = counts.get(phase, 0) + 1
    return counts


def latency(api: client.CustomObjectsApi, source: Path, target: str, name: str) -> float:
    write_run(source, f"PROBE/Runs/{name}", {"data.bin": os.urandom(1024)})
    start = time.monotonic()
    api.create_namespaced_custom_object(GROUP, VERSION, NS, "syncjobs",
                                        syncjob(name, target, f"PROBE/Runs/{name}", {"bench": "probe"}))
    eventually(lambda: (api.get_namespaced_custom_object(GROUP, VERSION, NS, "syncjobs", name).get("status")
                        or {}).get("phase") == "Verified", timeout=600, interval=0.1, what=f"{name} Verified")
    return time.monotonic() - start


def process_usage(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds) of a process."""
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:")) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return rss, (int(fields[11]) + int(fields[12])) / ticks


def settle(operator: OperatorProcess, quiet: float = 5.0, timeout: float = 600) -> None:
    """Wait until the operator has stopped reconciling for `quiet` seconds (its startup burst is over)."""
    def rounds() -> float:
        m = re.search(r"^nassync_reconcile_duration_seconds_count (\S+)$", operator.metrics(), re.M)
        return float(m.group(1)) if m else 0.0
    deadline = time.monotonic() + timeout
    last, since = rounds(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = rounds()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--targets", type=int, default=20)
    p.add_argument("--history", type=int, default=10_000)
    p.add_argument("--workdir", type=Path, default=None)
    args = p.parse_args(argv)
    # SIGTERM (or Ctrl-C) still tears the cluster, NAS and operator down (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = args.workdir or Path(tempfile.mkdtemp(prefix="nassync-scale-"))
    local = LocalCluster(work / "cluster")
    print(f"# nassync scale bench: {args.runs} runs over {args.targets} targets, {args.history} finished "
          f"SyncJobs (workdir {work})", flush=True)
    local.up()
    nas = RcloneSftpNas(workdir=work / "nas").start()
    operator: OperatorProcess | None = None
    try:
        k = Kubectl(local.kubeconfig)
        k("apply", "-f", str(Path(__file__).resolve().parents[1] / "crds"))
        for crd in ("syncjobs.nassync.dev", "synctargets.nassync.dev"):
            k("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
        k("create", "namespace", NS)
        kns = k.in_namespace(NS)
        targets = [f"t{i:02d}" for i in range(args.targets)]
        sources = {t: work / "acq" / t for t in targets}
        for t in targets:
            sources[t].mkdir(parents=True)
            rclone_target(kns, nas, name=t, source=sources[t], nas_path=f"runs/{t}",
                          spec={"cleanup": {"enabled": False}, "concurrency": 1})
        config.load_kube_config(config_file=str(local.kubeconfig))
        api = client.CustomObjectsApi()
        operator = OperatorProcess(operator_identity(k, local, work / "operator.kubeconfig"),
                                   work / "operator.log")
        operator.start()
        settle(operator)

        empty = latency(api, sources[targets[0]], targets[0], "probe-empty")
        print(f"latency of one run, empty namespace:           {empty:6.1f} s", flush=True)
        # The history is written while the operator is down (a SyncJob created by hand as Cleaned
        # would otherwise be picked up as new before its status lands), then it starts over them.
        operator.stop()
        started = time.monotonic()
        create_history(api, args.history, targets)
        print(f"created {args.history} finished SyncJobs in {time.monotonic() - started:.0f} s", flush=True)
        started = time.monotonic()
        operator.start()
        settle(operator)
        print(f"operator started over them and settled in {time.monotonic() - started:.0f} s", flush=True)
        with_history = latency(api, sources[targets[0]], targets[0], "probe-history")
        print(f"latency of one run, {args.history} finished SyncJobs: {with_history:6.1f} s "
              f"({with_history / empty:.2f}x; goal <= 1.5x)", flush=True)

        for i in range(args.runs):
            t = targets[i % len(targets)]
            write_run(sources[t], f"P/Runs/Run_{i:05d}", {"data.bin": os.urandom(1024)}, age=3600)
        total_before, mine_before = apiserver_counts(local)
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: api.create_namespaced_custom_object(
                GROUP, VERSION, NS, "syncjobs",
                syncjob(f"run-{i:05d}", targets[i % len(targets)], f"P/Runs/Run_{i:05d}", {"bench": "run"})),
                range(args.runs)))

        def all_verified() -> bool:
            counts = phases(api, "bench=run")
            bad = {k: v for k, v in counts.items() if k in ("Failed", "Blocked")}
            if bad:
                raise AssertionError(f"runs failed: {bad}")
            return counts.get("Verified", 0) == args.runs
        eventually(all_verified, timeout=4 * 3600, interval=3, what="all runs Verified")
        wall = time.monotonic() - started
        total_after, mine_after = apiserver_counts(local)
        assert operator.proc is not None
        rss, cpu = process_usage(operator.proc.pid)
        per_run_all = (total_after - total_before) / args.runs
        per_run_mine = (mine_after - mine_before) / args.runs
        print(f"wall time to all {args.runs} runs Verified:     {wall:6.0f} s ({args.runs / wall:.2f} runs/s)")
        print(f"apiserver requests per run, operator:         {per_run_mine:6.1f} (goal <= 40)")
        print(f"apiserver requests per run, all clients:      {per_run_all:6.1f} "
              "(job controller, node, GC, the bench's own polling)")
        print(f"operator RSS:                                 {rss:6.0f} MB (goal <= 200 MB)")
        print(f"operator CPU:                                 {cpu:6.0f} s")
        return 0
    finally:
        if operator is not None:
            operator.stop()
        nas.stop()
        local.down()


if __name__ == "__main__":
    sys.exit(main())
