"""The docs say what the code does: a current CRD reference, every Event reason, metric, error kind, gate rule.

The reference is generated (nassync_dev.crdref) so that it cannot drift from
the schema the apiserver enforces; this test is what makes a CRD change
without a regenerated reference fail. The hand-written pages cannot be
generated, but the names an admin greps for can be checked: a new Event
reason, metric or gate rule without a line in operations.md or
troubleshooting.md fails here.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nassync_dev import crdref
from nassync_dev.binaries import REPO


def test_reference_md_is_current() -> None:
    expected = crdref.render()
    current = crdref.OUTPUT.read_text(encoding="utf-8") if crdref.OUTPUT.exists() else ""
    assert current == expected, f"docs/reference.md is stale; regenerate it with: {crdref.REGENERATE}"


def _leaf_fields(path: str, schema: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(section path, field name) for every field of every object level."""
    for name, child in (schema.get("properties") or {}).items():
        yield path, name
        items = child.get("items")
        if child.get("type") == "object" and "properties" in child:
            yield from _leaf_fields(f"{path}.{name}", child)
        elif isinstance(items, dict) and "properties" in items:
            yield from _leaf_fields(f"{path}.{name}[]", items)


def _section_rows(text: str, heading: str) -> str:
    start = text.index(f"\n### {heading}\n")
    end = text.find("\n### ", start + 1)
    return text[start : end if end != -1 else len(text)]


@pytest.mark.parametrize("crd", crdref.load_crds(), ids=lambda c: c["spec"]["names"]["kind"])
def test_every_field_default_and_cel_message_is_in_its_section(crd: dict[str, Any]) -> None:
    kind = crd["spec"]["names"]["kind"]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    text = crdref.render([crd])
    fields = 0
    for part in ("spec", "status"):
        for section, name in _leaf_fields(part, schema["properties"][part]):
            assert f"| `{name}`" in _section_rows(text, f"{kind} {section}"), f"{kind} {section}.{name} missing"
            fields += 1
    assert fields > 20
    for cel in _all(schema, "x-kubernetes-validations"):
        for rule in cel:
            assert rule["message"] in text.replace("&lt;", "<").replace("&gt;", ">")


def _all(schema: Any, key: str) -> Iterator[Any]:
    if isinstance(schema, dict):
        if key in schema:
            yield schema[key]
        for value in schema.values():
            yield from _all(value, key)
    elif isinstance(schema, list):
        for value in schema:
            yield from _all(value, key)


def test_rows_carry_type_default_and_validation() -> None:
    text = crdref.render()
    target_spec = _section_rows(text, "SyncTarget spec")
    assert "| `concurrency` | `integer` | `1` | value 1 to 64 |" in target_spec
    verify = _section_rows(text, "SyncTarget spec.verify")
    assert "one of `Auto`, `RemoteHash`, `Download`" in verify
    windows = _section_rows(text, "SyncTarget spec.bandwidth.windows[]")
    assert "pattern `^([01][0-9]\\|2[0-3]):[0-5][0-9]$`" in windows  # the pipe is escaped for the table
    backoff = _section_rows(text, "SyncTarget spec.retry")
    assert "`[30, 120, 480, 1800]`" in backoff and "`[]integer`" in backoff and "each item: value ≥ 0" in backoff
    job_spec = _section_rows(text, "SyncJob spec")
    assert "| `runPath` (required) | `string` |" in job_spec
    assert "[`object`](#syncjob-spectargetref)" in job_spec


def test_check_mode_fails_on_a_stale_file_and_passes_on_a_fresh_one(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reference.md"
    assert crdref.main(["--check", "--output", str(out)]) == 1  # missing
    assert crdref.main(["--output", str(out)]) == 0
    assert crdref.main(["--check", "--output", str(out)]) == 0
    out.write_text(out.read_text() + "edited by hand\n")
    assert crdref.main(["--check", "--output", str(out)]) == 1
    assert "python -m nassync_dev.crdref" in capsys.readouterr().err


# --- the hand-written docs name what the code emits ----------------------------------

SRC = crdref.REPO / "operator" / "nassync"
DOCS = crdref.REPO / "docs"


def _event_reasons() -> set[str]:
    """Every Event reason decide.py and the reconciler can emit on a SyncJob."""
    from nassync.core.decide import STEPS

    text = (SRC / "core" / "decide.py").read_text() + (SRC / "controller" / "reconciler.py").read_text()
    reasons = set(re.findall(r'set_phase\([^)]*?reason="([A-Za-z]+)"', text, flags=re.S))
    reasons |= set(re.findall(r'emit\("(?:Normal|Warning)",\s*"([A-Za-z]+)"', text))
    reasons |= set(re.findall(r'EmitEvent\(type="(?:Normal|Warning)",\s*reason="([A-Za-z]+)"', text))
    reasons |= set(re.findall(r'_rearm\(run,\s*"([A-Za-z]+)"', text))
    templated = re.findall(r'f"\{step\.capitalize\(\)\}([A-Za-z]+)"', text)
    reasons |= {step.capitalize() + suffix for suffix in templated for step in STEPS}
    return reasons


def test_operations_md_lists_every_event_reason() -> None:
    reasons = _event_reasons()
    expected = {"GateBlocked", "PushStarted", "CleanupFailed", "CleanupDeferred", "RetryRequested", "TargetNotReady"}
    assert expected <= reasons  # the extraction itself still works
    events = (DOCS / "operations.md").read_text().split("## Events", 1)[1].split("\n## ", 1)[0]
    missing = sorted(r for r in reasons if f"`{r}`" not in events)
    assert not missing, f"docs/operations.md#events does not explain Event reasons {missing}"


def test_operations_md_lists_every_metric() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from nassync.controller import metrics

    names = {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    assert len(names) > 10
    text = (DOCS / "operations.md").read_text()
    # prometheus_client keeps a counter's name without its _total suffix.
    missing = sorted(n for n in names if f"`{n}`" not in text and f"`{n}_total`" not in text)
    assert not missing, f"docs/operations.md#metrics does not list {missing}"


def test_troubleshooting_md_covers_every_error_kind_and_gate_rule() -> None:
    from nassync.api import findings as gate
    from nassync.api.mover_io import ErrorKind

    text = (DOCS / "troubleshooting.md").read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    for kind in ErrorKind:
        assert any(h.startswith(f"## {kind.value} ") for h in headings), f"no section for {kind.value}"
    rules = {v for k, v in vars(gate).items() if k.isupper() and isinstance(v, str) and v.islower() and "_" in v}
    assert {"illegal_filesystem_character", "run_missing", "unreadable_path"} <= rules
    missing = sorted(rule for rule in rules if f"`{rule}`" not in text)
    assert not missing, f"docs/troubleshooting.md does not explain gate rules {missing}"


def test_architecture_md_names_every_module() -> None:
    """docs/architecture.md describes the tree as it is: every module and package is named there."""
    text = (DOCS / "architecture.md").read_text()
    root = crdref.REPO / "operator"
    missing = []
    for path in sorted(root.rglob("*.py")):
        name = path.parent.name + "/" if path.name == "__init__.py" else path.name
        if name not in text:
            missing.append(str(path.relative_to(root)))
    assert not missing, f"docs/architecture.md does not describe {missing}"


def test_no_file_holds_merge_conflict_markers() -> None:
    """A conflicted merge once reached docs/development.md; no tracked file may carry its markers."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    marker = re.compile(rb"^(<{7} |>{7} |={7}$)", re.M)
    conflicted = [name for name in tracked.decode().split("\0")
                  if name and (REPO / name).is_file() and marker.search((REPO / name).read_bytes())]
    assert conflicted == []
