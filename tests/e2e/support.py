"""Helpers for end-to-end tests: sample runs, targets, SyncJobs, waiting on phases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nassync_dev.testing import Kubectl, eventually


def phase(ns: Kubectl, name: str) -> str:
    return str((ns.get("syncjob", name).get("status") or {}).get("phase", ""))


def wait_phase(ns: Kubectl, name: str, want: str, *, timeout: float = 120) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj = ns.get("syncjob", name)
        got = (obj.get("status") or {}).get("phase")
        if got == "Failed" and want != "Failed":
            raise AssertionError(f"{name} Failed: {obj['status'].get('lastError')}")
        return obj if got == want else None
    result: dict[str, Any] = eventually(reached, timeout=timeout, what=f"SyncJob {name} phase {want}")
    return result


def events(ns: Kubectl, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = ns.get("events", None)["items"]
    return [e for e in items if e["involvedObject"]["name"] == name]


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


