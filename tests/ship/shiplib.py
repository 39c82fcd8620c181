"""Helpers for the packaging tests: render the chart with the pinned helm, read YAML streams."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from nassync_dev import binaries

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "nassync"
BASE = REPO / "manifests" / "base"
DEV_OVERLAY = REPO / "manifests" / "overlays" / "dev"
METRIC_RE = re.compile(r"\bnassync_[a-z0-9_]+\b")

Doc = dict[str, Any]


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(binaries.locate().helm), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}{result.stdout}")
    return result


def render(*sets: str, namespace: str = "nassync-system", release: str = "nassync") -> str:
    """`helm template` of the chart; each `sets` item is one `--set` argument."""
    argv = ["template", release, str(CHART), "--namespace", namespace]
    for s in sets:
        argv += ["--set", s]
    return helm(*argv).stdout


def docs(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def one(items: Iterable[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in items if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(items: Iterable[Doc]) -> list[str]:
    return sorted(d["kind"] for d in items)


def rule_set(rules: list[dict[str, Any]]) -> dict[tuple[str, str], frozenset[str]]:
    """RBAC rules as {(apiGroup, resource): verbs}; refuses wildcards, resourceNames and URLs."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                assert "*" not in (group, resource, *rule["verbs"]), f"wildcard in {rule}"
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return {k: frozenset(v) for k, v in out.items()}


def to_yaml_stream(items: Iterable[Doc]) -> str:
    return "".join("---\n" + yaml.safe_dump(d, sort_keys=False) for d in items)
