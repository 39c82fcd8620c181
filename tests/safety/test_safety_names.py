"""Issue #9, item 11: names the tools cannot carry get a finding or an error a lab admin understands.

Never a traceback, never "blocked" without a reason, never a termination
message cut in the middle of its JSON (the operator could not read it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from safetylib import Mover, Nas, Run, RunFactory, params_for, push_and_verify, remote_dir

from nassync.api.mover_io import MAX_RESULT_BYTES

pytestmark = pytest.mark.nas

BAD = os.fsencode("bad") + b"\xff\xfe" + b".bin"  # not UTF-8: Python sees surrogate escapes


def _whole(result_text: str) -> dict[str, object]:
    assert len(result_text.encode()) <= MAX_RESULT_BYTES
    parsed: dict[str, object] = json.loads(result_text)
    return parsed


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "unexpected" not in stderr, stderr[-2000:]


def _deep_file(run: Run, total: int) -> str:
    """A file whose relpath is `total` bytes (components of ~200 bytes), made through descriptors."""
    fd = os.open(run.dir, os.O_RDONLY | os.O_DIRECTORY)
    parts: list[str] = []
    try:
        while total - sum(len(p) + 1 for p in parts) > 256:
            name = f"d{len(parts):02d}" + "x" * 200
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            parts.append(name)
        leaf = "L" * (total - sum(len(p) + 1 for p in parts))
        out = os.open(leaf, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(out, b"deep")
        os.close(out)
    finally:
        os.close(fd)
    return "/".join([*parts, leaf])


def _make_bad(run: Run) -> None:
    with open(os.fsencode(str(run.dir)) + b"/" + BAD, "wb") as handle:
        handle.write(b"bytes of a badly named file")


def test_a_non_utf8_name_is_a_gate_finding_in_whole_json(nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run({"ok.bin": b"ok"})
    _make_bad(run)
    gated = mover(params_for(nas, run, "gate"))
    result = _whole(gated.result_text)
    _no_traceback(gated.stderr)
    assert gated.returncode == 0
    findings = gated.result["gate"]["findings"]
    assert gated.result["gate"]["blocked"] and result["ok"] is True
    bad = [f for f in findings if f["rule"] == "non_utf8_name"]
    assert bad and bad[0]["path"] == "bad\\xff\\xfe.bin"


def test_rclone_refuses_a_non_utf8_name_it_would_store_under_another_name(
        sftp_nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    """rclone stores undecodable bytes under another name on the NAS: that copy could never be proven."""
    run = make_run({"ok.bin": b"ok"})
    _make_bad(run)
    gated = mover(params_for(sftp_nas, run, "gate", overrides=[{"rule": "non_utf8_name", "reason": "PI says so"}]))
    assert gated.result["gate"]["blocked"], gated.explain()
    assert "transport_reserved_name" in {f["rule"] for f in gated.result["gate"]["findings"]
                                         if not f["overridden"]}
    pushed = mover(params_for(sftp_nas, run, "push"))
    _whole(pushed.result_text)
    _no_traceback(pushed.stderr)
    assert pushed.returncode == 1 and pushed.kind == "Config", pushed.explain()
    assert "not valid UTF-8" in pushed.message and "xff" in pushed.message and "xfe.bin" in pushed.message
    assert not (remote_dir(sftp_nas, run) / "ok.bin").exists()


def test_rsync_carries_a_non_utf8_name_exactly_and_reports_it_readably(
        ssh_nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run({"ok.bin": b"ok"})
    _make_bad(run)
    digest = push_and_verify(mover, ssh_nas, run)
    remote = os.fsencode(str(remote_dir(ssh_nas, run))) + b"/" + BAD
    with open(remote, "r+b") as handle:
        handle.write(b"B")  # same size, other bytes
    verified = mover(params_for(ssh_nas, run, "verify", expectedManifestSha256=digest))
    _whole(verified.result_text)
    _no_traceback(verified.stderr)
    assert verified.returncode == 1 and verified.kind == "HashMismatch", verified.explain()
    assert "xff" in verified.message and "xfe.bin" in verified.message


def test_a_name_with_rclones_quote_character_is_a_finding_and_a_config_error(
        sftp_nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run({"ok.bin": b"ok", "it\u201bs.bin": b"quoted"})
    gated = mover(params_for(sftp_nas, run, "gate"))
    assert gated.result["gate"]["blocked"], gated.explain()
    assert [f["path"] for f in gated.result["gate"]["findings"] if f["rule"] == "transport_reserved_name"] == [
        "it\u201bs.bin"]
    pushed = mover(params_for(sftp_nas, run, "push"))
    assert pushed.returncode == 1 and pushed.kind == "Config", pushed.explain()
    assert "U+201B" in pushed.message
    assert "LocalVanished" not in pushed.result_text


def test_a_path_over_4096_bytes_blocks_the_gate_with_findings_that_fit(
        nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run({"top.bin": b"top"})
    _deep_file(run, 4300)
    gated = mover(params_for(nas, run, "gate"))
    result = _whole(gated.result_text)
    _no_traceback(gated.stderr)
    gate = gated.result["gate"]
    assert gate["blocked"] and result["ok"] is True, gated.explain()
    rules = {f["rule"] for f in gate["findings"]}
    assert "path_too_long" in rules, "blocked without saying why"
    assert all(f["tier"] == "hard" and not f["overridden"] for f in gate["findings"][:1])


@pytest.mark.parametrize("length", [4080, 4300])
def test_a_path_the_copy_tools_cannot_open_is_a_config_error_not_a_retry(
        nas: Nas, make_run: RunFactory, mover: Mover, length: int) -> None:
    """Even with path_too_long overridden, the push says what is wrong (it used to be Unknown, retried)."""
    run = make_run({"top.bin": b"top"})
    _deep_file(run, length)
    gated = mover(params_for(nas, run, "gate", overrides=[{"rule": "path_too_long", "reason": "PI says so"}]))
    assert gated.result["gate"]["blocked"], gated.explain()
    assert "transport_reserved_name" in {f["rule"] for f in gated.result["gate"]["findings"]}
    pushed = mover(params_for(nas, run, "push"))
    _whole(pushed.result_text)
    assert pushed.returncode == 1 and pushed.kind == "Config", pushed.explain()
    assert "bytes" in pushed.message and "Nothing was copied" in pushed.message
    assert not (remote_dir(nas, run) / "top.bin").exists()


def test_thousands_of_findings_are_trimmed_never_the_json(nas: Nas, make_run: RunFactory, mover: Mover) -> None:
    run = make_run({f"dir {i:04d}/<token>{'y' * 180}{i}.bin": b"x" for i in range(600)})
    gated = mover(params_for(nas, run, "gate"))
    result = _whole(gated.result_text)
    gate = gated.result["gate"]
    assert result["ok"] is True and gate["blocked"]
    assert gate["findings"] and gate["findingsTruncated"] > 0
    assert gate["findings"][0]["rule"] == "unresolved_placeholder_token"
    assert len(gate["findings"]) + gate["findingsTruncated"] >= 600
    # The last stdout line carries the same whole result.
    assert json.loads(gated.stdout.strip().splitlines()[-1])["result"] == result


def test_a_result_with_an_undecodable_name_never_crashes_the_mover(
        ssh_nas: Nas, make_run: RunFactory, mover: Mover, tmp_path: Path) -> None:
    """A file vanishing mid-push is named in the error; its name is not UTF-8."""
    from safetylib import Plan

    run = make_run({"ok.bin": b"ok"})
    _make_bad(run)
    gone = os.fsdecode(os.fsencode(str(run.dir)) + b"/" + BAD)
    pushed = mover(params_for(ssh_nas, run, "push"),
                   plan=Plan(when="after-manifest", ops=[["unlink", gone]], fired=tmp_path / "fired"))
    assert pushed.fired
    _whole(pushed.result_text)
    _no_traceback(pushed.stderr)
    assert pushed.returncode == 1 and pushed.kind == "LocalVanished", pushed.explain()
    assert "xff" in pushed.message and "xfe.bin" in pushed.message
