"""#12 item 10: a year of history — spec.history removes old finished SyncJobs, never data.

keepFinished: 1 on a target with three runs: the newest Cleaned SyncJob stays,
the one annotated nassync.dev/history=keep stays (e.g. Argo CD-managed), the
other is deleted with an Event on the SyncTarget; its NAS copy and its local
cache dir are untouched and its mover Jobs go with it.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from faultlib import files, nas_holds, wait_phase

from nassync_dev.nas import RcloneSftpNas
from nassync_dev.scenario import OperatorProcess, rclone_target, syncjob, write_run
from nassync_dev.testing import Kubectl, eventually


def test_keep_finished_deletes_old_finished_syncjobs_and_no_data(
        ns: Kubectl, operator: OperatorProcess, own_nas: RcloneSftpNas, tmp_path: Path) -> None:
    source = tmp_path / "acq"
    runs = {f"run-{i}": (f"PROJ/Runs/Run_{i}", files(2, 4000)) for i in (1, 2, 3)}
    for path, data in runs.values():
        write_run(source, path, data)
    rclone_target(ns, own_nas, name="scope", source=source, nas_path="runs", spec={"history": {"keepFinished": 1}})
    kept = yaml.safe_load(syncjob("run-1", "scope", runs["run-1"][0]))
    kept["metadata"]["annotations"] = {"nassync.dev/history": "keep"}
    ns.apply(kept)
    wait_phase(ns, "run-1", "Cleaned")
    ns.apply(syncjob("run-2", "scope", runs["run-2"][0]))
    wait_phase(ns, "run-2", "Cleaned")
    ns.apply(syncjob("run-3", "scope", runs["run-3"][0]))
    wait_phase(ns, "run-3", "Cleaned")

    eventually(lambda: not ns.exists("syncjob", "run-2"), timeout=60, what="run-2 removed by spec.history")
    assert ns.exists("syncjob", "run-1"), "annotated nassync.dev/history=keep"
    assert ns.exists("syncjob", "run-3"), "the newest finished SyncJob is kept"
    events = [e for e in ns.get("events")["items"] if e["involvedObject"].get("kind") == "SyncTarget"]
    assert any(e["reason"] == "HistoryPruned" and "run-2" in e["message"] for e in events)

    path, data = runs["run-2"]
    assert nas_holds(own_nas.root / "runs" / path, data), "deleting a SyncJob never touches the NAS copy"
    cache = source / path / ".exlab-wizard" / "checksums.sha256"
    assert cache.is_file(), "nor the local cache dir a cleanup retained"
    assert all(rel in cache.read_text() for rel in data)

    def gone() -> bool:
        jobs = json.loads(ns("get", "jobs", "-l", "nassync.dev/syncjob=run-2", "-o", "json"))["items"]
        return not jobs
    eventually(gone, timeout=90, what="run-2's mover Jobs garbage-collected")
