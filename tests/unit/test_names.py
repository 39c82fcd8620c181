"""Mover Job names: deterministic, unique, always valid DNS-1123 labels."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nassync.api.mover_io import Step
from nassync.core import names

SUBDOMAIN = st.from_regex(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", fullmatch=True)
STEPS: st.SearchStrategy[Step] = st.sampled_from(["gate", "push", "verify", "cleanup"])


def test_short_name_is_plain() -> None:
    assert names.job_name(syncjob="run-1", step="push", n=3) == "run-1-push-3"


def test_long_name_is_truncated_hashed_and_keeps_step_suffix() -> None:
    syncjob = "a" * 80
    name = names.job_name(syncjob=syncjob, step="verify", n=12)
    assert len(name) == 63
    assert re.fullmatch(r"a+-[0-9a-f]{8}-verify-12", name)


def test_dotted_name_is_sanitised() -> None:
    name = names.job_name(syncjob="proj.run.1", step="gate", n=1)
    assert names.is_dns1123_label(name)
    assert name.startswith("proj-run-1-") and name.endswith("-gate-1")


def test_same_prefix_long_names_differ() -> None:
    a = names.job_name(syncjob="x" * 70 + "a", step="push", n=1)
    b = names.job_name(syncjob="x" * 70 + "b", step="push", n=1)
    assert a != b


def test_run_number_must_be_positive() -> None:
    with pytest.raises(ValueError):
        names.job_name(syncjob="a", step="push", n=0)


@given(syncjob=SUBDOMAIN, step=STEPS, n=st.integers(1, 10**6))
def test_always_valid_and_deterministic(syncjob: str, step: Step, n: int) -> None:
    name = names.job_name(syncjob=syncjob, step=step, n=n)
    assert names.is_dns1123_label(name)
    assert name == names.job_name(syncjob=syncjob, step=step, n=n)
    assert name.endswith(f"-{step}-{n}")


@given(a=SUBDOMAIN, b=SUBDOMAIN, n=st.integers(1, 50), m=st.integers(1, 50), step=STEPS)
def test_distinct_inputs_give_distinct_names(a: str, b: str, n: int, m: int, step: Step) -> None:
    if (a, n) != (b, m):
        assert names.job_name(syncjob=a, step=step, n=n) != names.job_name(
            syncjob=b,
            step=step,
            n=m,
        )


@given(value=SUBDOMAIN)
def test_label_value_is_valid(value: str) -> None:
    label = names.label_value(value)
    assert len(label) <= 63
    assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", label)
    if len(value) <= 63:
        assert label == value


def test_mover_labels_and_selectors() -> None:
    labels = names.mover_labels(syncjob="run-1", target="mic-01", step="push", n=2)
    assert labels == {
        "nassync.dev/syncjob": "run-1",
        "nassync.dev/target": "mic-01",
        "nassync.dev/step": "push",
        "nassync.dev/run": "2",
        "app.kubernetes.io/managed-by": "nassync",
    }
    assert names.children_selector(syncjob="run-1") == (
        "nassync.dev/syncjob=run-1,app.kubernetes.io/managed-by=nassync"
    )
    assert names.target_selector(target="mic-01").startswith("nassync.dev/target=mic-01,")
