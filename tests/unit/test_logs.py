"""Operator log lines are JSON and name the SyncJob they are about."""

from __future__ import annotations

import json
import logging

from nassync.logs import JsonFormatter


def _format(**extra: object) -> dict[str, object]:
    record = logging.LogRecord("nassync.reconciler", logging.INFO, __file__, 1, "pushed %d files", (3,), None)
    for key, value in extra.items():
        setattr(record, key, value)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, object] = json.loads(line)
    return parsed


def test_a_line_about_a_syncjob_carries_it_and_plain_extras() -> None:
    out = _format(syncjob="lab/run-1", reason="Pushed", phase="Verifying")
    assert out["msg"] == "pushed 3 files"
    assert out["level"] == "info"
    assert (out["syncjob"], out["reason"], out["phase"]) == ("lab/run-1", "Pushed", "Verifying")


def test_kopf_object_references_become_the_syncjob_field() -> None:
    out = _format(k8s_ref={"kind": "SyncJob", "namespace": "lab", "name": "run-1"})
    assert out["syncjob"] == "lab/run-1"
    assert "k8s_ref" not in out


def test_non_plain_extras_are_left_out() -> None:
    out = _format(settings=object(), other=object(), count=2)
    assert "settings" not in out and "other" not in out
    assert out["count"] == 2
