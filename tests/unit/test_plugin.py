"""`kubectl nassync`: the status table, the patches each command sends, argument handling.

The table is a pure function of SyncJob objects and a clock; the commands are
checked against a fake CustomObjectsApi that records calls, so what is
asserted is the exact request the apiserver would receive.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

import pytest

from nassync import plugin
from nassync.plugin import Client, format_status, human_age, human_bytes

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def job(name: str, *, namespace: str = "lab", target: str = "microscope-01", created: str = "2026-11-28T11:00:00Z",
        **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "nassync.dev/v1alpha1",
        "kind": "SyncJob",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {"targetRef": {"name": target}, "runPath": f"P/{name}"},
        **({"status": status} if status else {}),
    }


def rows(text: str) -> list[list[str]]:
    """Split the table back into cells using the header's column starts."""
    lines = text.splitlines()
    header = lines[0]
    starts: list[int] = []
    for col in plugin.COLUMNS:
        starts.append(header.index(col, starts[-1] + 1 if starts else 0))
    out = []
    for line in lines:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
        out.append(cells)
    return out


def test_header_and_one_row_per_job_sorted_by_namespace_then_name() -> None:
    text = format_status([job("b"), job("a", namespace="z"), job("a")], NOW)
    table = rows(text)
    assert table[0] == list(plugin.COLUMNS)
    assert [(r[0], r[1]) for r in table[1:]] == [("lab", "a"), ("lab", "b"), ("z", "a")]
    assert text.endswith("\n")


def test_columns_show_phase_progress_size_passes_age_and_error() -> None:
    pushing = job("push", phase="Pushing", manifest={"bytes": 3 * 1024**3, "files": 9},
                  transfer={"progress": {"percent": 42}})
    verified = job("ver", phase="Verified", manifest={"bytes": 1536}, verifyPasses=2,
                   transfer={"progress": {"percent": 100}}, created="2026-11-25T12:00:00Z")
    failed = job("fail", phase="Failed", lastError={"kind": "Auth", "message": "the NAS refused the credentials"})
    table = {r[1]: r for r in rows(format_status([pushing, verified, failed], NOW))[1:]}
    assert table["push"][2:] == ["microscope-01", "Pushing", "42%", "3.0 GiB", "0", "-", "60m", "-"]
    # Progress is shown only while pushing: a finished push's 100% would read as "still moving".
    assert table["ver"][3:9] == ["Verified", "-", "1.5 KiB", "2", "-", "3d"]
    assert table["fail"][3] == "Failed"
    assert table["fail"][9] == "Auth: the NAS refused the credentials"


def test_copies_and_a_failing_replica_show_when_the_job_itself_is_fine() -> None:
    replicated = job("rep", phase="Verified", verifyPasses=1, copies="1/2", destinations=[
        {"name": "primary", "state": "Verified"},
        {"name": "offsite", "state": "Pending",
         "lastError": {"kind": "Network", "message": "dial tcp 10.0.0.9:443: connect: connection refused"}}])
    row = rows(format_status([replicated], NOW))[1]
    assert row[7] == "1/2"
    assert row[9].startswith("replica offsite: Network: dial tcp")


def test_job_without_status_reads_as_pending_with_placeholders() -> None:
    table = rows(format_status([job("new", created="2026-11-28T11:59:30Z")], NOW))
    assert table[1][3:] == ["Pending", "-", "-", "0", "-", "30s", "-"]


def test_long_multiline_error_is_one_truncated_line() -> None:
    message = "rsync: the NAS could not be reached\n" + "x" * 200
    text = format_status([job("e", phase="Queued", lastError={"kind": "Network", "message": message})], NOW)
    cell = rows(text)[1][9]
    assert "\n" not in cell.strip() and len(text.splitlines()) == 2
    assert len(cell) == plugin.ERROR_WIDTH and cell.endswith("…")
    assert cell.startswith("Network: rsync: the NAS could not be reached x")


def test_empty_list_is_empty_text() -> None:
    assert format_status([], NOW) == ""


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (5 * 1024**2, "5.0 MiB"),
     (1024**4 * 3, "3.0 TiB")],
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (119, "119s"), (120, "2m"), (200, "3m20s"), (600, "10m"), (3 * 3600 - 1, "179m"),
     (3 * 3600, "3h"), (4 * 3600 + 60, "4h1m"), (30 * 3600, "30h"), (50 * 3600, "2d2h"), (9 * 86400, "9d"),
     (800 * 86400, "2y70d")],
)
def test_human_age_matches_kubectl(seconds: int, text: str) -> None:
    assert human_age(seconds) == text


class FakeApi:
    """Records CustomObjectsApi calls; serves one SyncJob."""

    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj = obj
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        self.calls.append(("get", args, {}))
        return self.obj

    def patch_namespaced_custom_object(self, *args: Any, **kw: Any) -> dict[str, Any]:
        self.calls.append(("patch", args, kw))
        return self.obj

    def patches(self) -> list[tuple[str, dict[str, Any]]]:
        return [(args[4], args[5]) for kind, args, _ in self.calls if kind == "patch"]


def run(func: plugin.Command, api: FakeApi, **args: Any) -> int:
    return func(Client(api=api, namespace="lab"), argparse.Namespace(**args), NOW)


def test_retry_and_verify_write_a_fresh_timestamp_as_merge_patch(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(job("j", phase="Failed"))
    assert run(plugin.cmd_retry, api, name="j") == 0
    assert api.patches() == [("j", {"metadata": {"annotations": {"nassync.dev/retry": "2026-11-28T12:00:00.000000Z"}}})]
    _, args, kw = api.calls[-1]
    assert args[:4] == ("nassync.dev", "v1alpha1", "lab", "syncjobs")
    assert kw == {"_content_type": "application/merge-patch+json"}
    out = capsys.readouterr()
    assert "syncjobs.nassync.dev/j annotated nassync.dev/retry=" in out.out and out.err == ""

    api = FakeApi(job("v", phase="Verified"))
    assert run(plugin.cmd_verify, api, name="v") == 0
    assert api.patches()[0][1]["metadata"]["annotations"] == {"nassync.dev/verify": "2026-11-28T12:00:00.000000Z"}


def test_request_outside_its_phases_is_sent_but_explained(capsys: pytest.CaptureFixture[str]) -> None:
    api = FakeApi(job("j", phase="Pushing"))
    assert run(plugin.cmd_retry, api, name="j") == 0
    assert len(api.patches()) == 1
    assert "j is Pushing; the operator acts on nassync.dev/retry only in Failed or Blocked" in capsys.readouterr().err


def test_request_values_differ_between_calls() -> None:
    assert plugin.request_value(NOW) != plugin.request_value(NOW.replace(microsecond=1))


def test_hold_release_suspend_resume_patch_the_spec() -> None:
    api = FakeApi(job("j"))
    run(plugin.cmd_hold, api, name="j", release=False)
    run(plugin.cmd_hold, api, name="j", release=True)
    run(plugin.cmd_suspend, api, name="j")
    run(plugin.cmd_resume, api, name="j")
    assert [body for _, body in api.patches()] == [
        {"spec": {"cleanup": {"hold": True}}},
        {"spec": {"cleanup": {"hold": False}}},
        {"spec": {"suspend": True}},
        {"spec": {"suspend": False}},
    ]


def test_connection_flags_parse_before_and_after_the_subcommand() -> None:
    before = plugin.parser().parse_args(["-n", "a", "--context", "c", "retry", "x"])
    after = plugin.parser().parse_args(["retry", "x", "-n", "a", "--kubeconfig", "/k"])
    assert (before.namespace, before.context, before.name) == ("a", "c", "x")
    assert (after.namespace, after.kubeconfig, after.name) == ("a", "/k", "x")
    status = plugin.parser().parse_args(["status", "-A"])
    assert status.all_namespaces and not hasattr(status, "namespace")


def test_namespace_defaults_to_the_kubeconfig_context(tmp_path: Any) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        """
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user: {token: t}
contexts:
- name: lab
  context: {cluster: c, user: u, namespace: instruments}
- name: other
  context: {cluster: c, user: u}
current-context: lab
"""
    )
    assert plugin.connect(kubeconfig=str(kubeconfig), context=None, namespace=None).namespace == "instruments"
    assert plugin.connect(kubeconfig=str(kubeconfig), context="other", namespace=None).namespace == "default"
    assert plugin.connect(kubeconfig=str(kubeconfig), context=None, namespace="x").namespace == "x"


def test_missing_kubeconfig_is_an_error_not_a_traceback(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert plugin.main(["--kubeconfig", str(tmp_path / "nope"), "status"]) == 1
    assert capsys.readouterr().err.startswith("error: cannot load kubeconfig")
