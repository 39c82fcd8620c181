"""Fault injection for tests/faults: stop, restart and freeze the parts of a local cluster.

Everything here acts on a `LocalCluster` the test started for itself (never on
one another test shares) or on the host processes of one pod of the process
node. The tools are the blunt ones a lab's reality uses: SIGKILL, SIGSTOP, a
restarted apiserver, a NAS on a tiny tmpfs. `stop_at_syscall` (strace) stops a
mover exactly at its n-th call of a system call, e.g. half way through the
unlinks of a cleanup, so a test can act at that moment instead of hoping to
hit it with a sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from nassync_dev import binaries
from nassync_dev.cluster import LocalCluster, _alive, wait_for
from nassync_dev.kubelet_node import KubeletNode

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "process-node", "kubelet")


def stop_component(cluster: LocalCluster, name: str, sig: int = signal.SIGKILL) -> None:
    """Kill one process of the control plane (its whole process group) and wait until it is gone."""
    state = cluster._load()
    pid = state.pids[name]
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    wait_for(lambda: not _alive(pid), timeout=30, what=f"{name} (pid {pid}) to exit")
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def start_component(cluster: LocalCluster, name: str) -> None:
    """Start a stopped component again with the same ports, certificates and data (etcd keeps its data dir)."""
    state = cluster._load()
    bins = binaries.locate()
    if name == "etcd":
        cluster._start_etcd(bins, state)
    elif name == "kube-apiserver":
        cluster._start_apiserver(bins, state)
    elif name == "kube-controller-manager":
        cluster._start_controller_manager(bins, state)
    elif name == "process-node":
        cluster._start_node(state)
    elif name == "kubelet":  # the real node's kubelet alone; containerd and its containers keep running
        KubeletNode(cluster.state_dir).start_kubelet(lambda proc, argv: cluster._spawn(state, proc, argv))
    else:
        raise ValueError(f"unknown component {name!r}; one of {COMPONENTS}")
    wait_for(cluster.apiserver_ready, timeout=90, what="kube-apiserver /readyz after the restart")


def restart_component(cluster: LocalCluster, name: str, *, down_for: float = 0.0) -> None:
    stop_component(cluster, name)
    if down_for:
        time.sleep(down_for)  # the outage itself is the fault being tested
    start_component(cluster, name)


# --- the host processes of one pod on the process node ---------------------------


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def pod_processes(namespace: str, pod: str) -> list[int]:
    """Every host process of pod `namespace/pod` on the process node (its sandboxes and what they run)."""
    marker = f"/pods/{namespace}_{pod}_"
    roots = [int(p.name) for p in Path("/proc").iterdir()
             if p.name.isdigit() and _cmdline(int(p.name)).startswith("bwrap") and marker in _cmdline(int(p.name))]
    tree = _children()
    found: list[int] = []
    todo = list(roots)
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, []))
    return found


def mover_pid(namespace: str, pod: str) -> int | None:
    """The `nassync-mover` process of a mover pod, once it runs."""
    for pid in pod_processes(namespace, pod):
        if "nassync-mover" in _cmdline(pid) and not _cmdline(pid).startswith("bwrap"):
            return pid
    return None


def signal_pod(namespace: str, pod: str, sig: int) -> list[int]:
    """Send `sig` to every process of the pod (SIGSTOP freezes it in place, SIGCONT thaws it)."""
    pids = pod_processes(namespace, pod)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids


@contextlib.contextmanager
def stop_at_syscall(pid: int, syscall: str, nth: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Stop process `pid` (and its threads and children) with SIGSTOP on its `nth` call of `syscall`.

    The call itself completes once the process is continued (SIGCONT); leaving
    the context detaches strace. Used to catch a cleanup mover with half of a
    run's files unlinked.
    """
    proc = subprocess.Popen(
        ["strace", "-f", "-p", str(pid), "-e", f"trace={syscall}",
         "-e", f"inject={syscall}:signal=SIGSTOP:when={nth}", "-o", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: "attached" in _strace_state(log) or log.exists(), timeout=10,
                 what=f"strace attached to {pid}")
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()  # strace detaches from its tracees on SIGTERM
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


def _strace_state(log: Path) -> str:
    try:
        return log.read_text()
    except OSError:
        return ""


def stopped_by_strace(pid: int, log: Path) -> bool:
    """True once the injected SIGSTOP of `stop_at_syscall` (si_code SI_KERNEL) has stopped `pid`."""
    return is_stopped(pid) and "si_code=SI_KERNEL" in _strace_state(log)


def is_stopped(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "")
    return state in ("T", "t")
